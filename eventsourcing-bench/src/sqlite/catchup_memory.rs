//! `-- sqlite-catchup-memory`: the peak memory of a catch-up through a long SQLite log
//! (`common/catchup_memory.rs`). `EVENTSOURCING_BENCH_SQLITE_DIR` says where the database file
//! goes (deleted at the end).

use eventsourcing::sqlite::{SqliteConfig, SqliteStore};

use super::Cleanup;
use crate::common::{catchup_memory, BoxError};

pub(crate) async fn run() -> Result<(), BoxError> {
    let events = catchup_memory::events()?;
    let dir = std::env::var_os("EVENTSOURCING_BENCH_SQLITE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("eventsourcing-catchup-{}.db", std::process::id()));
    let cleanup = Cleanup(path.clone());
    let dbname = path.to_str().ok_or("the temporary path is not UTF-8")?;
    let store = SqliteStore::open(SqliteConfig::builder().dbname(dbname).build()).await?;
    catchup_memory::measure("sqlite_catchup_memory", &store, events).await?;
    drop(store);
    drop(cleanup);
    Ok(())
}
