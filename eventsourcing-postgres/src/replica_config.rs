//! The read-replica settings a [`PostgresConfig`](crate::PostgresConfig) holds: the standbys
//! (host and port each) and the bound on a read-your-writes wait, with their defaults. Their
//! accessors, builder methods and variables are in `hosts.rs`, the routing in `replica.rs`.

use std::time::Duration;

/// Default of `POSTGRES_READ_YOUR_WRITES_TIMEOUT`: how long a load after a save waits for a
/// standby to replay that save before it reads from the primary.
pub const DEFAULT_READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(1);

/// The standbys reads may go to, and how long a read waits for one to catch up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaSettings {
    /// Host and port of each standby, in the order given.
    pub(crate) hosts: Vec<(String, u16)>,
    pub(crate) read_your_writes_timeout: Duration,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            hosts: Vec::new(),
            read_your_writes_timeout: DEFAULT_READ_YOUR_WRITES_TIMEOUT,
        }
    }
}
