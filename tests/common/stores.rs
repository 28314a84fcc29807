//! The projection calls the two store crates both have, under the same names, as one trait: for
//! the suites written once for SQLite and PostgreSQL.
//!
//! Included with `#[path]` as a module named `stores`, beside `wait.rs` included as `wait`.

#![allow(dead_code, async_fn_in_trait, clippy::unwrap_used)]

use eventsourcing::{
    postgres::PostgresStore, sqlite::SqliteStore, Error, EventStore, ParkedEvent, Position,
};

use super::wait::wait_until;

/// A store with projections: `SqliteStore` or `PostgresStore`.
pub(crate) trait Projections: EventStore + Clone {
    /// The store's own `projection_lag(name)`: the events of the log after `name`'s position.
    async fn projection_lag(&self, name: &str) -> Result<u64, Error>;

    /// The store's own `unpark(name, position)`.
    async fn unpark(&self, name: &str, position: Position) -> Result<bool, Error>;

    /// The store's own `parked(name)` (its inherent method, not `EventStore::parked`).
    async fn own_parked(&self, name: &str) -> Result<Vec<ParkedEvent>, Error>;
}

/// Implements [`Projections`] for each store by calling its inherent methods.
macro_rules! projections {
    ($($store:ty),*) => {
        $(
            impl Projections for $store {
                async fn projection_lag(&self, name: &str) -> Result<u64, Error> {
                    <$store>::projection_lag(self, name).await
                }

                async fn unpark(&self, name: &str, position: Position) -> Result<bool, Error> {
                    <$store>::unpark(self, name, position).await
                }

                async fn own_parked(&self, name: &str) -> Result<Vec<ParkedEvent>, Error> {
                    <$store>::parked(self, name).await
                }
            }
        )*
    };
}

projections!(SqliteStore, PostgresStore);

/// Waits until the projection `name` has caught up with `store`'s log (its lag is 0).
pub(crate) async fn caught_up<S: Projections>(store: &S, name: &str) {
    wait_until(
        &format!("the projection {name} catches up"),
        move || async move { store.projection_lag(name).await.unwrap() == 0 },
    )
    .await;
}
