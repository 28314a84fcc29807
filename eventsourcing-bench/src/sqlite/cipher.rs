//! `-- sqlite-cipher`: the cipher figures (`common/cipher.rs`) on a new SQLite database file
//! (in `EVENTSOURCING_BENCH_SQLITE_DIR` or the system temporary directory; the store's
//! default `synchronous=full`), deleted at the end.

use std::path::PathBuf;

use eventsourcing::sqlite::{SqliteConfig, SqliteStore};

use super::Cleanup;
use crate::common::{cipher, BoxError};

pub(crate) async fn run(saves: usize) -> Result<(), BoxError> {
    let dir = std::env::var_os("EVENTSOURCING_BENCH_SQLITE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!(
        "eventsourcing-bench-cipher-{}.db",
        std::process::id()
    ));
    let cleanup = Cleanup(path.clone());
    let dbname = path.to_str().ok_or("the temporary path is not UTF-8")?;
    println!("# sqlite-cipher: {dbname}, {saves} saves per append figure");
    let store = SqliteStore::open(SqliteConfig::builder().dbname(dbname).build()).await?;
    let result = cipher::figures(store, saves).await;
    drop(cleanup);
    result
}
