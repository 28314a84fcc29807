//! Event-sourced aggregates from plain Rust structs, stored in PostgreSQL, SQLite or memory.
//!
//! A struct with `#[derive(Aggregate)]` and an `#[events]` impl block whose methods are marked
//! `#[event]` becomes an event-sourced aggregate: calling an event method records an event whose
//! fields are the method's arguments and applies it by running the method's body. The macros
//! write the event enum, its serialization and the replay code; the compiler checks them.
//!
//! ```
//! use eventsourcing::prelude::*;
//!
//! #[derive(Aggregate, Debug, Serialize, Deserialize)]
//! pub struct WidgetRegistryEndpoint {
//!     meta: Meta<Self>,
//!     pub url: String,
//!     pub name: String,
//!     pub tenant_id: String,
//! }
//!
//! #[events]
//! impl WidgetRegistryEndpoint {
//!     #[event("Registered")]
//!     pub fn create(url: String, name: String, tenant_id: String) -> Self {
//!         Self { meta: Meta::default(), url, name, tenant_id }
//!     }
//!
//!     #[event("NameUpdated")]
//!     pub fn update_name(&mut self, name: String) {
//!         self.name = name;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), eventsourcing::Error> {
//! let app = Application::new(MemoryStore::new());
//! let mut endpoint = WidgetRegistryEndpoint::create(
//!     "https://example.com".into(), "Test".into(), "tenant-123".into());
//! app.save(&mut endpoint).await?;
//!
//! let mut loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await?;
//! loaded.update_name("Updated".into());
//! app.save(&mut loaded).await?;
//!
//! let reloaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await?;
//! assert_eq!(reloaded.name, "Updated");
//! assert_eq!(reloaded.version(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `derive` | yes | `#[derive(Aggregate)]`, `#[events]`, `#[event]` |
//! | `sqlite` | yes | [`sqlite`]: the embedded SQLite store |
//! | `postgres` | yes | [`postgres`]: the PostgreSQL store |

pub use eventsourcing_core::*;

mod any_store;
pub use any_store::{application_from_env, AnyStore, StoreKind, ACCEPTED, PERSISTENCE_MODULE};

#[cfg(feature = "derive")]
pub use eventsourcing_derive::{event, events, Aggregate};

/// The embedded SQLite store.
#[cfg(feature = "sqlite")]
pub use eventsourcing_sqlite as sqlite;

/// The PostgreSQL store.
#[cfg(feature = "postgres")]
pub use eventsourcing_postgres as postgres;

/// Everything a domain module needs: `use eventsourcing::prelude::*;`.
pub mod prelude {
    pub use eventsourcing_core::{
        Aggregate, Application, Error, EventStore, MemoryStore, Meta, Metadata, Retry, Uuid,
    };
    #[cfg(feature = "derive")]
    pub use eventsourcing_derive::{event, events, Aggregate};
    pub use serde::{Deserialize, Serialize};
}

/// The README's code blocks, compiled and run as doctests so they never drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
