//! Stored rows that no writer of this library wrote: one column of one event overwritten with
//! random content (payload, metadata, event type, schema version, timestamp, stream type) on
//! SQLite and PostgreSQL (and on PostgreSQL a version below 1), and random payloads, types and
//! schema versions in memory. Reading them back through `read_log`, `load`, `load_for_replay` and `Repository::get` never panics
//! (a panic fails the case: proptest catches it), every failure names the event (its stream
//! and version, and for an unreadable column the column), and the store goes on working.
//!
//! Cases: `EVENTSOURCING_DECODE_CASES` per store (default 64; PostgreSQL half as many).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use eventsourcing::prelude::*;
use eventsourcing::{JsonCodec, NewEvent, Position, StoredEvent};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tally {
    meta: Meta<Self>,
    name: String,
    total: i64,
}

#[events]
impl Tally {
    #[event("Opened")]
    fn open(name: String) -> Self {
        Self {
            meta: Meta::default(),
            name,
            total: 0,
        }
    }

    #[event("Added")]
    fn add(&mut self, amount: i64) {
        self.total = self.total.wrapping_add(amount);
    }
}

#[path = "common/cases.rs"]
mod common;

fn cases(divide: u32) -> ProptestConfig {
    common::cases("EVENTSOURCING_DECODE_CASES", 64, divide)
}

/// The saved tally (versions 1 to 3) whose row gets corrupted, and another one that does not.
async fn write<S: EventStore>(app: &Application<S>) -> (Uuid, Uuid) {
    let mut tally = Tally::open("t".into());
    tally.add(1);
    tally.add(2);
    let mut other = Tally::open("other".into());
    app.save((&mut tally, &mut other)).await.unwrap();
    (tally.id(), other.id())
}

/// The column (or `None` where the store keeps no columns) of event `version` of `id` that
/// was overwritten.
struct Corrupted<'a> {
    id: Uuid,
    version: u64,
    column: Option<&'a str>,
}

impl Corrupted<'_> {
    /// A defect must be this row's, and name the column.
    fn defect(&self, event: &StoredEvent) -> Result<(), String> {
        let Some(reason) = &event.defect else {
            return Ok(());
        };
        let names_column = self
            .column
            .is_some_and(|c| reason.contains(&format!("`{c}`")));
        if (event.stream_id, event.version) != (self.id, self.version) || !names_column {
            return Err(format!("a defect that does not name the row: {event:?}"));
        }
        match event.check_defect() {
            Err(e) if self.names(&e) => Ok(()),
            other => Err(format!("check_defect of {event:?} gave {other:?}")),
        }
    }

    /// Whether an error names this event.
    fn names(&self, err: &Error) -> bool {
        let column = |reason: &str| {
            self.column
                .is_some_and(|c| reason.contains(&format!("`{c}`")))
        };
        match err {
            Error::Decode {
                stream_id, version, ..
            } => (*stream_id, *version) == (self.id, self.version),
            Error::BadRow {
                stream_id,
                version,
                reason,
                ..
            } => (*stream_id, *version) == (self.id, self.version) && column(reason),
            // A decodable event of the wrong kind for its place (a creation event later on, or
            // none first).
            Error::Corrupt {
                stream_id, reason, ..
            } => {
                let first = self.version == 1 && reason.contains("first event");
                *stream_id == self.id
                    && (first || reason.contains(&format!("version {}", self.version)))
            }
            // Another type's name in the stream's type column.
            Error::WrongType { stream_id, .. } => {
                *stream_id == self.id && self.column == Some("stream_type")
            }
            _ => false,
        }
    }

    fn events(&self, what: &str, got: Result<Vec<StoredEvent>, Error>) -> Result<(), String> {
        match got {
            Ok(events) => events.iter().try_for_each(|e| self.defect(e)),
            Err(e) if self.names(&e) => Ok(()),
            Err(e) => Err(format!("{what} failed without naming the event: {e:?}")),
        }
    }

    /// Every way of reading the stream: the log, loads, the repository, decoding each event.
    async fn read<S: EventStore>(&self, app: &Application<S>, other: Uuid) -> Result<(), String> {
        let store = app.store();
        let log = store.read_log(Position::START, 100).await;
        let log = log.map_err(|e| format!("read_log failed: {e:?}"))?;
        if log.len() != 4 {
            return Err(format!(
                "the log holds {} events, not 4: {log:?}",
                log.len()
            ));
        }
        for event in &log {
            self.defect(event)?;
            if event.defect.is_none() {
                match event.decode::<TallyEvent, _>(&JsonCodec) {
                    Err(e) if !self.names(&e) => {
                        return Err(format!("decode failed without naming the event: {e:?}"))
                    }
                    _ => {}
                }
            }
        }
        self.events("load", store.load(self.id, 0, None).await)?;
        let replay = store.load_for_replay(self.id, 0, None).await;
        self.events("load_for_replay", replay)?;
        match app.repository().get::<Tally>(self.id).await {
            Err(e) if !self.names(&e) => {
                return Err(format!("get failed without naming the event: {e:?}"))
            }
            _ => {}
        }
        // The untouched stream and the store itself still work.
        let other: Tally = app
            .repository()
            .get(other)
            .await
            .map_err(|e| format!("the untouched stream fails: {e:?}"))?;
        let mut next = Tally::open(format!("after {}", other.name));
        app.save(&mut next)
            .await
            .map_err(|e| format!("the store cannot save any more: {e:?}"))?;
        Ok(())
    }
}

/// A random JSON document, often shaped like metadata (its keys, wrong values).
fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        let key = prop_oneof![
            Just("correlation_id".to_owned()),
            Just("causation_id".to_owned()),
            Just("values".to_owned()),
            "\\PC{0,4}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text for a metadata column: a JSON document, or any text at all.
fn metadata_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json().prop_map(|v| v.to_string()),
        1 => "\\PC{0,24}",
    ]
}

mod sqlite {
    use super::*;
    use eventsourcing::sqlite::rusqlite::{self, types::Value};
    use eventsourcing::sqlite::testing::temp_file_store;

    /// A column and a value of the type its STRICT table allows, with random content.
    fn bad_value() -> impl Strategy<Value = (&'static str, Value)> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(|b| ("payload", Value::Blob(b))),
            metadata_text().prop_map(|t| ("metadata", Value::Text(t))),
            "\\PC{0,12}".prop_map(|t| ("event_type", Value::Text(t))),
            prop_oneof![any::<i64>(), -3..5i64].prop_map(|n| ("schema_version", Value::Integer(n))),
            prop_oneof![any::<i64>(), -62_200_000_000_000_000..0i64]
                .prop_map(|n| ("timestamp", Value::Integer(n))),
            prop_oneof![Just("Other".to_owned()), "\\PC{0,12}"]
                .prop_map(|t| ("stream_type", Value::Text(t))),
        ]
    }

    proptest! {
        #![proptest_config(cases(1))]

        #[test]
        fn a_random_column_value_is_named_never_a_panic(
            version in 1..=3u64,
            (column, value) in bad_value(),
        ) {
            let (store, guard) = temp_file_store();
            let app = Application::new(store);
            let outcome = common::runtime().block_on(async {
                let (id, other) = write(&app).await;
                let conn = rusqlite::Connection::open(guard.path()).unwrap();
                let updated = conn
                    .execute(
                        &format!("UPDATE events SET {column} = ?1 WHERE stream_id = ?2 AND version = ?3"),
                        rusqlite::params![value, id.as_bytes(), version as i64],
                    )
                    .unwrap();
                assert_eq!(updated, 1);
                drop(conn);
                Corrupted { id, version, column: Some(column) }.read(&app, other).await
            });
            drop(app);
            outcome.map_err(TestCaseError::fail)?;
        }
    }
}

mod postgres {
    use super::*;
    use eventsourcing::postgres::testing::TestSchema;
    use eventsourcing::postgres::tokio_postgres::types::ToSql;

    /// A value for a column, as PostgreSQL takes it.
    #[derive(Debug, Clone)]
    enum Bad {
        Payload(Vec<u8>),
        Metadata(String),
        EventType(String),
        SchemaVersion(i32),
        /// Microseconds from the epoch (PostgreSQL's range is wider than chrono's).
        Timestamp(i64),
        /// `infinity` or `-infinity`.
        Infinite(&'static str),
        StreamType(String),
    }

    fn text() -> impl Strategy<Value = String> {
        // PostgreSQL's text refuses NUL, which "\PC" never makes.
        "\\PC{0,12}"
    }

    fn bad() -> impl Strategy<Value = Bad> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bad::Payload),
            json()
                .prop_map(|v| v.to_string())
                .prop_filter("jsonb refuses \\u0000", |t| !t.contains("\\u0000"))
                .prop_map(Bad::Metadata),
            text().prop_map(Bad::EventType),
            prop_oneof![any::<i32>(), -3..5i32].prop_map(Bad::SchemaVersion),
            prop_oneof![
                -210_000_000_000_000_000..9_200_000_000_000_000_000i64,
                -62_200_000_000_000_000..0i64,
            ]
            .prop_map(Bad::Timestamp),
            prop_oneof![Just("infinity"), Just("-infinity")].prop_map(Bad::Infinite),
            prop_oneof![Just("Other".to_owned()), text()].prop_map(Bad::StreamType),
        ]
    }

    /// Overwrites the column; `false` when PostgreSQL refuses the value (out of its range).
    async fn corrupt(
        schema: &TestSchema,
        id: Uuid,
        version: u64,
        bad: &Bad,
    ) -> (&'static str, bool) {
        let client = schema.client().await.unwrap();
        let version = version as i64;
        let (column, set, value): (&str, &str, Box<dyn ToSql + Sync + Send>) = match bad.clone() {
            Bad::Payload(b) => ("payload", "$1::bytea", Box::new(b)),
            Bad::Metadata(t) => ("metadata", "$1::text::jsonb", Box::new(t)),
            Bad::EventType(t) => ("event_type", "$1::text", Box::new(t)),
            Bad::SchemaVersion(n) => ("schema_version", "$1::int4", Box::new(n)),
            Bad::Timestamp(n) => (
                "timestamp",
                "'epoch'::timestamptz + $1::int8 * interval '1 microsecond'",
                Box::new(n),
            ),
            Bad::Infinite(t) => ("timestamp", "$1::text::timestamptz", Box::new(t)),
            Bad::StreamType(t) => ("stream_type", "$1::text", Box::new(t)),
        };
        let sql = format!(
            "UPDATE \"{}\".events SET {column} = {set} WHERE stream_id = $2 AND version = $3",
            schema.name()
        );
        let updated = client.execute(&sql, &[value.as_ref(), &id, &version]).await;
        match updated {
            Ok(n) => {
                assert_eq!(n, 1);
                (column, true)
            }
            Err(e) if e.code().is_some() => (column, false),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// `events` has no `CHECK` on PostgreSQL (migration 6 dropped it), so a version below 1
    /// written by another program is stored. A load refuses the stream naming it, never a
    /// panic, the log still reads every row, and the store goes on working.
    #[test]
    fn a_stored_version_below_one_is_refused_naming_the_stream() {
        common::runtime().block_on(async {
            for bad in [0i64, -1, i64::MIN] {
                let (store, schema) = eventsourcing::postgres::testing::fresh().await;
                let app = Application::new(store);
                let (id, other) = write(&app).await;
                let sql = format!(
                    "UPDATE \"{}\".events SET version = $1 WHERE stream_id = $2 AND version = 1",
                    schema.name()
                );
                let client = schema.client().await.unwrap();
                assert_eq!(client.execute(&sql, &[&bad, &id]).await.unwrap(), 1);
                // A load reads versions from 1 on: the stream's history starts at 2.
                match app.repository().get::<Tally>(id).await {
                    Err(Error::Corrupt {
                        stream_id, reason, ..
                    }) => {
                        assert_eq!(stream_id, id);
                        assert!(reason.contains("expected version 1"), "{reason}");
                    }
                    other => panic!("version {bad} loaded as {other:?}"),
                }
                let log = app.store().read_log(Position::START, 100).await.unwrap();
                assert_eq!(log.len(), 4, "the log still holds every row");
                let other: Tally = app.repository().get(other).await.unwrap();
                assert_eq!(other.name, "other");
                app.save(&mut Tally::open("next".into())).await.unwrap();
            }
        });
    }

    proptest! {
        #![proptest_config(cases(2))]

        #[test]
        fn a_random_column_value_is_named_never_a_panic(version in 1..=3u64, bad in bad()) {
            let outcome = common::runtime().block_on(async {
                let (store, schema) = eventsourcing::postgres::testing::fresh().await;
                let app = Application::new(store);
                let (id, other) = write(&app).await;
                let (column, stored) = corrupt(&schema, id, version, &bad).await;
                let outcome = if stored {
                    Corrupted { id, version, column: Some(column) }.read(&app, other).await
                } else {
                    Ok(())
                };
                drop(app);
                (outcome, schema)
            });
            let (outcome, schema) = outcome;
            drop(schema);
            outcome.map_err(TestCaseError::fail)?;
        }
    }
}

mod memory {
    use super::*;

    fn event_type() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Opened".to_owned()),
            Just("Added".to_owned()),
            "\\PC{1,8}"
        ]
    }

    proptest! {
        #![proptest_config(cases(1))]

        /// The in-memory store keeps what it is given: random bytes reach the generated
        /// decoder directly.
        #[test]
        fn random_payloads_and_schema_versions_are_named_never_a_panic(
            version in 1..=3u64,
            event_type in event_type(),
            schema_version in prop_oneof![0..4u32, Just(i32::MAX as u32)],
            payload in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..24),
                json().prop_map(|v| v.to_string().into_bytes()),
            ],
            stream_type in prop_oneof![Just(String::new()), Just("Tally".to_owned()), "\\PC{0,8}"],
        ) {
            let id = eventsourcing::new_id();
            let events: Vec<NewEvent> = (1..=3)
                .map(|v| {
                    let mut event = if v == 1 {
                        NewEvent::new(id, v, "Opened", br#"{"name":"t"}"#.to_vec()).of_type("Tally")
                    } else {
                        NewEvent::new(id, v, "Added", br#"{"amount":1}"#.to_vec())
                    };
                    if v == version {
                        event.event_type = event_type.clone().into();
                        event.schema_version = schema_version;
                        event.payload = payload.clone();
                        event.stream_type = stream_type.clone().into();
                    }
                    event
                })
                .collect();
            let app = Application::new(MemoryStore::new());
            let outcome = common::runtime().block_on(async {
                let other = {
                    let mut other = Tally::open("other".into());
                    app.save(&mut other).await.unwrap();
                    other.id()
                };
                app.store().append(events).await.unwrap();
                // Any of the columns changed may be the one named.
                Corrupted { id, version, column: Some("stream_type") }.read(&app, other).await
            });
            outcome.map_err(TestCaseError::fail)?;
        }
    }
}
