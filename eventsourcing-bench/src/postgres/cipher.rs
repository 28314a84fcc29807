//! `-- postgres-cipher`: the cipher figures (`common/cipher.rs`) on a new schema of the server
//! of `EVENTSOURCING_BENCH_POSTGRES_URL`, dropped at the end.

use eventsourcing::postgres::PostgresStore;

use super::server::Server;
use crate::common::{cipher, BoxError};

pub(crate) async fn run(saves: usize) -> Result<(), BoxError> {
    let schema = format!("es_bench_cipher_{}", std::process::id());
    let server = Server::connect().await?;
    server.describe("postgres-cipher", saves);
    let figures = async {
        let store = PostgresStore::connect(server.store_config(&schema).build()?).await?;
        cipher::figures(store, saves).await
    };
    server.dropping(&[&schema], figures).await
}
