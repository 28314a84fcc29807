//! `-- postgres-catchup-memory`: the peak memory of a catch-up through a long PostgreSQL log
//! (`common/catchup_memory.rs`), read ahead as a subscription reads it. The schema
//! `es_bench_catchup_<pid>` is created and dropped at the end.

use eventsourcing::postgres::PostgresStore;

use super::server::Server;
use crate::common::{catchup_memory, BoxError};

pub(crate) async fn run() -> Result<(), BoxError> {
    let events = catchup_memory::events()?;
    let server = Server::connect().await?;
    let schema = format!("es_bench_catchup_{}", std::process::id());
    server
        .dropping(&[&schema], async {
            let store = PostgresStore::connect(server.store_config(&schema).build()?).await?;
            catchup_memory::measure("postgres_catchup_memory", &store, events).await?;
            Ok(())
        })
        .await
}
