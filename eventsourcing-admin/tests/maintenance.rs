//! `status` counts, `verify`, `snapshots prune`, `vacuum` and `indexes`, each run as the real
//! binary on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{append, snapshot, Target};
use eventsourcing::{EventStore, Uuid};

#[tokio::test]
async fn status_counts_events_streams_snapshots_and_each_consumers_lag() {
    for target in Target::both().await {
        let name = target.name();
        let store = target.open().await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        append(&store, a, 3).await;
        append(&store, b, 2).await;
        for v in 1..=3 {
            snapshot(&store, a, v).await;
        }
        drop(store);
        target
            .sql(
                "INSERT INTO tracking (name, position_commit, position_seq) VALUES ('proj', 0, 0);",
            )
            .await;

        let run = target.admin(&["status", "--json"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        let stats = &run.json()["stats"];
        assert_eq!(stats["events"], 5, "{name}: {stats}");
        assert_eq!(stats["streams"], 2, "{name}: {stats}");
        assert_eq!(stats["snapshots"], 3, "{name}: {stats}");
        assert_eq!(stats["consumers"][0]["name"], "proj", "{name}: {stats}");
        assert_eq!(stats["consumers"][0]["behind"], 5, "{name}: {stats}");
        let events = stats["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "events")
            .unwrap();
        assert!(events["bytes"].as_u64().unwrap() > 0, "{name}: {stats}");
        assert!(
            events["index_bytes"].as_u64().unwrap() > 0,
            "{name}: {stats}"
        );

        let run = target.admin(&["status"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        run.assert_stdout(name, "events: 5");
        run.assert_stdout(name, "5 behind");
    }
}

#[tokio::test]
async fn verify_pages_through_a_sound_store_without_false_alarms() {
    for target in Target::both().await {
        let name = target.name();
        let store = target.open().await;
        // Longer than two pages, so a stream crosses page boundaries.
        let (long, short) = (Uuid::new_v4(), Uuid::new_v4());
        append(&store, long, 1234).await;
        append(&store, short, 3).await;
        snapshot(&store, long, 1000).await;
        drop(store);

        let run = target.admin(&["verify"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        run.assert_stdout(name, "checked 1237 events in 2 streams");
        run.assert_stdout(name, "no problems found");
    }
}

#[tokio::test]
async fn verify_exits_1_listing_every_corrupted_row() {
    for target in Target::both().await {
        let name = target.name();
        let store = target.open().await;
        let sound = Uuid::new_v4();
        append(&store, sound, 2).await;
        drop(store);
        let [gap, no_type, bad_payload, bad_meta, orphan] = [(); 5].map(|_| Uuid::new_v4());
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

        let run = target.admin(&["verify", "--json"]);
        assert_eq!(run.code, 1, "{name}: {}", run.all());
        assert!(
            run.stderr.contains("6 problems found"),
            "{name}: {}",
            run.all()
        );
        let report = run.json();
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
        assert_eq!(found, expected, "{name}: {report}");

        // The text names each stream and what is wrong with it.
        let run = target.admin(&["verify"]);
        assert_eq!(run.code, 1, "{name}: {}", run.all());
        run.assert_stdout(
            name,
            &format!(
                "stream {gap} version 4: version 4 follows version 1: versions 2..=3 are missing"
            ),
        );
        assert!(
            run.stdout
                .contains(&format!("stream {orphan} version 1: a snapshot")),
            "{name}: {}",
            run.all()
        );

        // A non-JSON codec: payloads are only bytes then.
        let run = target.admin(&["verify", "--payload", "bytes", "--json"]);
        assert_eq!(run.code, 1, "{name}: {}", run.all());
        let kinds = run.json()["problems"].to_string();
        assert!(!kinds.contains("\"payload\""), "{name}: {kinds}");
        assert!(kinds.contains("\"unreadable\""), "{name}: {kinds}");
    }
}

#[tokio::test]
async fn snapshots_prune_keeps_the_newest_of_every_stream() {
    for target in Target::both().await {
        let name = target.name();
        let store = target.open().await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        append(&store, a, 3).await;
        append(&store, b, 2).await;
        for v in 1..=3 {
            snapshot(&store, a, v).await;
        }
        snapshot(&store, b, 2).await;

        let run = target.admin(&["snapshots", "prune", "--keep", "2", "--json"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        assert_eq!(run.json()["deleted"], 1, "{name}: {}", run.all());
        assert_eq!(run.json()["kept"], 3, "{name}: {}", run.all());
        assert_eq!(
            store.load_snapshot(a, Some(1)).await.unwrap(),
            None,
            "{name}"
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
        let run = target.admin(&["snapshots", "prune", "--keep", "1", "--older-than", "1d"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        run.assert_stdout(name, "deleted 0 snapshots, 3 kept");

        let run = target.admin(&["snapshots", "prune", "--keep", "1"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        run.assert_stdout(name, "deleted 1 snapshots, 2 kept");
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
            let run = target.admin(&args);
            assert_eq!(run.code, 2, "{name} {bad:?}: {}", run.all());
        }
    }
}

#[tokio::test]
async fn vacuum_runs_each_step_and_leaves_the_store_sound() {
    for target in Target::both().await {
        let name = target.name();
        let store = target.open().await;
        let id = Uuid::new_v4();
        append(&store, id, 50).await;
        drop(store);
        target.sql("DELETE FROM events WHERE version > 10;").await;

        let run = target.admin(&["vacuum"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        // stderr is not a terminal here: progress is plain lines.
        let step = match name {
            "sqlite" => "vacuum 2/4: VACUUM",
            _ => "vacuum 1/5: VACUUM (ANALYZE)",
        };
        assert!(run.stderr.contains(step), "{name}: {}", run.all());
        assert!(
            !run.stderr.contains('\u{1b}'),
            "no terminal codes: {}",
            run.all()
        );

        let run = target.admin(&["vacuum", "--json"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        assert!(
            run.json().as_array().unwrap().len() >= 4,
            "{name}: {}",
            run.all()
        );

        let run = target.admin(&["verify"]);
        run.assert_stdout(name, "checked 10 events in 1 streams");
    }
}

#[tokio::test]
async fn indexes_lists_each_index_with_size_and_usage() {
    for target in Target::both().await {
        let name = target.name();
        let store = target.open().await;
        let id = Uuid::new_v4();
        append(&store, id, 5).await;
        drop(store);
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

        let run = target.admin(&["indexes", "--json"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        let rows = run.json();
        let rows = rows.as_array().unwrap();
        let on_events: Vec<_> = rows.iter().filter(|r| r["table"] == "events").collect();
        assert!(!on_events.is_empty(), "{name}: {rows:?}");
        let unique = on_events.iter().find(|r| r["unique"] == true).unwrap();
        assert!(unique["bytes"].as_u64().unwrap() > 0, "{name}: {rows:?}");
        match name {
            "sqlite" => assert!(rows.iter().all(|r| r["usage"] == "unknown"), "{rows:?}"),
            _ => {
                // The read above went through the primary key.
                let pkey = rows.iter().find(|r| r["index"] == "events_pkey").unwrap();
                assert_eq!(pkey["usage"], "used", "{rows:?}");
                assert!(rows.iter().all(|r| r["scans"].is_u64()), "{rows:?}");
            }
        }
        let run = target.admin(&["indexes"]);
        assert_eq!(run.code, 0, "{name}: {}", run.all());
        run.assert_stdout(name, "usage");
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
        let run = common::admin_with(args, &[]);
        assert_eq!(run.code, 0, "{args:?}: {}", run.all());
        assert!(run.stdout.contains("Example"), "{args:?}: {}", run.all());
    }
}
