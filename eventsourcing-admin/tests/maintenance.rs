//! `status` counts, `verify`, `snapshots prune`, `vacuum` and `indexes`, each run as the real
//! binary on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{snapshots, Target};
use eventsourcing::EventStore;

#[tokio::test]
async fn status_counts_events_streams_snapshots_and_each_consumers_lag() {
    for target in Target::both().await {
        let (store, [a, _]) = target.with_streams([3, 2]).await;
        snapshots(&store, a, 1..=3).await;
        drop(store);
        target
            .sql(
                "INSERT INTO tracking (name, position_commit, position_seq) VALUES ('proj', 0, 0);",
            )
            .await;

        let stats = &target.admin(&["status", "--json"]).assert_code(0).json()["stats"];
        assert_eq!(stats["events"], 5, "{target}: {stats}");
        assert_eq!(stats["streams"], 2, "{target}: {stats}");
        assert_eq!(stats["snapshots"], 3, "{target}: {stats}");
        assert_eq!(stats["consumers"][0]["name"], "proj", "{target}: {stats}");
        assert_eq!(stats["consumers"][0]["behind"], 5, "{target}: {stats}");
        let events = stats["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "events")
            .unwrap();
        assert!(events["bytes"].as_u64().unwrap() > 0, "{target}: {stats}");
        assert!(
            events["index_bytes"].as_u64().unwrap() > 0,
            "{target}: {stats}"
        );

        target
            .admin(&["status"])
            .assert_code(0)
            .assert_stdout("events: 5")
            .assert_stdout("5 behind");
    }
}

#[tokio::test]
async fn verify_pages_through_a_sound_store_without_false_alarms() {
    for target in Target::both().await {
        // Longer than two pages, so a stream crosses page boundaries.
        let (store, [long, _]) = target.with_streams([1234, 3]).await;
        snapshots(&store, long, [1000]).await;
        drop(store);

        target
            .admin(&["verify"])
            .assert_code(0)
            .assert_stdout("checked 1237 events in 2 streams")
            .assert_stdout("no problems found");
    }
}

#[tokio::test]
async fn verify_exits_1_listing_every_corrupted_row() {
    for target in Target::both().await {
        let sound = target.with_stream(2).await;
        let [gap, no_type, bad_payload, bad_meta, orphan] =
            [(); 5].map(|_| eventsourcing::Uuid::new_v4());
        let json = target.bytes("{}");
        let sql = [
            target.insert_event(gap, 1, "Created", &json, "NULL"),
            target.insert_event(gap, 4, "Updated", &json, "NULL"),
            target.insert_event(no_type, 1, "", &json, "NULL"),
            target.insert_event(bad_payload, 1, "Created", &target.bytes("not json"), "NULL"),
            target.insert_event(bad_meta, 1, "Created", &json, "'[1, 2]'"),
            target.insert_snapshot(orphan, 1),
            target.insert_snapshot(sound, 9),
        ]
        .concat();
        target.sql(&sql).await;

        let report = target
            .admin(&["verify", "--json"])
            .assert_code(1)
            .assert_stderr("6 problems found")
            .json();
        let mut found: Vec<(String, i64, String)> = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["stream_id"].as_str().unwrap().to_owned(),
                    p["version"].as_i64().unwrap(),
                    p["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        found.sort();
        let mut expected: Vec<(String, i64, String)> = [
            (gap, 4, "gap"),
            (no_type, 1, "event_type"),
            (bad_payload, 1, "payload"),
            (bad_meta, 1, "unreadable"),
            (orphan, 1, "snapshot"),
            (sound, 9, "snapshot"),
        ]
        .iter()
        .map(|(id, v, k)| (id.to_string(), *v, (*k).to_owned()))
        .collect();
        expected.sort();
        assert_eq!(found, expected, "{target}: {report}");

        // The text names each stream and what is wrong with it.
        target
            .admin(&["verify"])
            .assert_code(1)
            .assert_stdout(&format!(
                "stream {gap} version 4: version 4 follows version 1: versions 2..=3 are missing"
            ))
            .assert_stdout(&format!("stream {orphan} version 1: a snapshot"));

        // A non-JSON codec: payloads are only bytes then.
        let run = target.admin(&["verify", "--payload", "bytes", "--json"]);
        let kinds = run.assert_code(1).json()["problems"].to_string();
        assert!(!kinds.contains("\"payload\""), "{target}: {kinds}");
        assert!(kinds.contains("\"unreadable\""), "{target}: {kinds}");
    }
}

#[tokio::test]
async fn snapshots_prune_keeps_the_newest_of_every_stream() {
    for target in Target::both().await {
        let (store, [a, b]) = target.with_streams([3, 2]).await;
        snapshots(&store, a, 1..=3).await;
        snapshots(&store, b, [2]).await;

        let run = target.admin(&["snapshots", "prune", "--keep", "2", "--json"]);
        let pruned = run.assert_code(0).json();
        assert_eq!(pruned["deleted"], 1, "{target}: {pruned}");
        assert_eq!(pruned["kept"], 3, "{target}: {pruned}");
        assert_eq!(
            store.load_snapshot(a, Some(1)).await.unwrap(),
            None,
            "{target}"
        );
        assert_eq!(
            store
                .load_snapshot(a, Some(2))
                .await
                .unwrap()
                .unwrap()
                .version,
            2
        );

        // All are younger than a day: nothing goes.
        target
            .admin(&["snapshots", "prune", "--keep", "1", "--older-than", "1d"])
            .assert_code(0)
            .assert_stdout("deleted 0 snapshots, 3 kept");

        target
            .admin(&["snapshots", "prune", "--keep", "1"])
            .assert_code(0)
            .assert_stdout("deleted 1 snapshots, 2 kept");
        assert_eq!(
            store.load_snapshot(a, None).await.unwrap().unwrap().version,
            3
        );
        assert_eq!(
            store.load_snapshot(b, None).await.unwrap().unwrap().version,
            2
        );

        for bad in [
            &["--keep", "0"][..],
            &["--keep", "1", "--older-than", "3x"],
            &[],
        ] {
            let args = [&["snapshots", "prune"][..], bad].concat();
            target.admin(&args).assert_code(2);
        }
    }
}

#[tokio::test]
async fn vacuum_runs_each_step_and_leaves_the_store_sound() {
    for target in Target::both().await {
        target.with_stream(50).await;
        target.sql("DELETE FROM events WHERE version > 10;").await;

        // stderr is not a terminal here: progress is plain lines.
        let step = match target {
            Target::Sqlite { .. } => "vacuum 2/4: VACUUM",
            Target::Postgres { .. } => "vacuum 1/5: VACUUM (ANALYZE)",
        };
        let run = target.admin(&["vacuum"]);
        run.assert_code(0).assert_stderr(step);
        assert!(
            !run.stderr.contains('\u{1b}'),
            "no terminal codes: {}",
            run.all()
        );

        let steps = target.admin(&["vacuum", "--json"]).assert_code(0).json();
        assert!(steps.as_array().unwrap().len() >= 4, "{target}: {steps}");

        target
            .admin(&["verify"])
            .assert_stdout("checked 10 events in 1 streams");
    }
}

#[tokio::test]
async fn indexes_lists_each_index_with_size_and_usage() {
    for target in Target::both().await {
        let id = target.with_stream(5).await;
        if let Target::Postgres { schema } = &target {
            // One read through the primary key, its statistics flushed now rather than when the
            // server gets round to it.
            let client = schema.client().await.unwrap();
            let read = format!(
                "SET enable_seqscan = off; SELECT version FROM \"{}\".events WHERE stream_id = '{id}'",
                schema.name()
            );
            for sql in [
                read.as_str(),
                "SELECT pg_stat_force_next_flush()",
                "SELECT 1",
            ] {
                client.simple_query(sql).await.unwrap();
            }
        }

        let rows = target.admin(&["indexes", "--json"]).assert_code(0).json();
        let rows = rows.as_array().unwrap();
        let on_events: Vec<_> = rows.iter().filter(|r| r["table"] == "events").collect();
        assert!(!on_events.is_empty(), "{target}: {rows:?}");
        let unique = on_events.iter().find(|r| r["unique"] == true).unwrap();
        assert!(unique["bytes"].as_u64().unwrap() > 0, "{target}: {rows:?}");
        match target {
            Target::Sqlite { .. } => {
                assert!(rows.iter().all(|r| r["usage"] == "unknown"), "{rows:?}")
            }
            Target::Postgres { .. } => {
                // The read above went through the primary key.
                let pkey = rows.iter().find(|r| r["index"] == "events_pkey").unwrap();
                assert_eq!(pkey["usage"], "used", "{rows:?}");
                assert!(rows.iter().all(|r| r["scans"].is_u64()), "{rows:?}");
            }
        }
        target
            .admin(&["indexes"])
            .assert_code(0)
            .assert_stdout("usage");
    }
}

#[tokio::test]
async fn every_command_has_help_with_an_example() {
    for args in [
        &["migrate", "--help"][..],
        &["status", "--help"],
        &["verify", "--help"],
        &["snapshots", "prune", "--help"],
        &["vacuum", "--help"],
        &["indexes", "--help"],
    ] {
        common::admin_with(args, &[])
            .assert_code(0)
            .assert_stdout("Example");
    }
}
