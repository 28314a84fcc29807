//! A pooled connection: a tokio-postgres client and the statements it has prepared.

use eventsourcing_core::Error;
use tokio_postgres::{Client, Statement};

use crate::{
    error::query_error,
    sql::{Sql, Stmt},
};

/// A pooled connection: the client and the statements it has prepared so far.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    /// At most one per [`Stmt`]: a short list to scan.
    statements: Vec<(Stmt, Statement)>,
    /// Not to be reused (see [`discard`](Self::discard)).
    discarded: bool,
}

impl PgConn {
    pub(crate) fn from_client(client: Client) -> Self {
        PgConn {
            client,
            statements: Vec::new(),
            discarded: false,
        }
    }

    /// Keeps the pool from handing this connection out again: the state of its session is
    /// not known (a statement's outcome was lost with the connection).
    pub(crate) fn discard(&mut self) {
        self.discarded = true;
    }

    /// Whether the pool must drop this connection: discarded, or closed.
    pub(crate) fn is_broken(&self) -> bool {
        self.discarded || self.client.is_closed()
    }

    /// The prepared statement, preparing it on first use on this connection. `schema` names
    /// the schema in the error if its tables are missing.
    pub(crate) async fn prepared(
        &mut self,
        stmt: Stmt,
        sql: &Sql,
        schema: &str,
    ) -> Result<Statement, Error> {
        if let Some((_, prepared)) = self.statements.iter().find(|(s, _)| *s == stmt) {
            return Ok(prepared.clone());
        }
        let prepared = self
            .client
            .prepare(&sql.get(stmt))
            .await
            .map_err(|e| query_error(e, schema))?;
        self.statements.push((stmt, prepared.clone()));
        Ok(prepared)
    }
}
