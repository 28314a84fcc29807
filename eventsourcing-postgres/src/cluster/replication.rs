//! Standbys of a [`TestCluster`]: `pg_basebackup -R` into a cluster of their own, streaming
//! from the primary (synchronously if asked), replay paused and resumed, promotion.

use std::time::{Duration, Instant};

use super::{blocking, server::append_to, server::Inner, TestCluster};

/// How long a standby may take to stream, replay or promote before the fixture fails.
const REPLICATION_WAIT: Duration = Duration::from_secs(60);

impl TestCluster {
    /// A hot standby of this cluster, in a temporary directory and on a free port of its own:
    /// `pg_basebackup -R -X stream` from this server, streaming under an `application_name`
    /// of its own ([`standby_name`](Self::standby_name)). With `sync`, this server's
    /// `synchronous_standby_names` names it too, so that a commit here returns only once
    /// the standby has flushed it (`synchronous_commit = on`). Returns once the standby
    /// streams (and, with `sync`, is the synchronous one). Stopped and deleted on drop, like
    /// any cluster. Panics if it cannot be made.
    pub async fn standby(&self, sync: bool) -> TestCluster {
        let name = format!(
            "standby_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let primary_port = self.port();
        let standby = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || create_standby(primary_port, &name))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        };
        let standby = TestCluster::of(standby, Some(name.clone()));
        let admin = self.admin_client().await;
        if sync {
            let names = {
                let mut names = self.sync_standbys.lock().unwrap_or_else(|p| p.into_inner());
                names.push(name.clone());
                names.join(", ")
            };
            // One of them is enough (FIRST 1): the others wait as potential ones. ALTER
            // SYSTEM cannot share a (implicit) transaction with the reload.
            let sql = format!("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({names})'");
            for sql in [sql.as_str(), "SELECT pg_reload_conf()"] {
                admin
                    .batch_execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("setting synchronous_standby_names: {e:?}"));
            }
        }
        let wanted = if sync { "sync" } else { "async" };
        wait_for(&format!("standby {name} to stream ({wanted})"), || async {
            let row = admin
                .query_opt(
                    "SELECT sync_state FROM pg_stat_replication \
                     WHERE application_name = $1 AND state = 'streaming'",
                    &[&name],
                )
                .await
                .unwrap_or_else(|e| panic!("reading pg_stat_replication: {e}"));
            // With several synchronous candidates, the others are `potential`.
            row.is_some_and(|r| {
                let state: String = r.get(0);
                !sync || state == "sync" || state == "potential"
            })
        })
        .await;
        standby
    }

    /// As a standby: the `application_name` it streams under (what `pg_stat_replication`
    /// and `synchronous_standby_names` on its primary name it by); `None` for a primary.
    pub fn standby_name(&self) -> Option<&str> {
        self.standby_name.as_deref()
    }

    /// The server's current WAL write position (`pg_current_wal_lsn()`, as text), on a
    /// primary.
    pub async fn current_lsn(&self) -> String {
        let admin = self.admin_client().await;
        let row = admin
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap_or_else(|e| panic!("pg_current_wal_lsn(): {e}"));
        row.get(0)
    }

    /// As a standby: waits until it has replayed the WAL up to `lsn` (text, as
    /// [`current_lsn`](Self::current_lsn) gives it). Panics after a minute.
    pub async fn wait_replayed(&self, lsn: &str) {
        let admin = self.admin_client().await;
        wait_for(
            &format!("port {} to replay up to {lsn}", self.port()),
            || async {
                let row = admin
                    .query_one(
                        "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                        &[&lsn],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("pg_last_wal_replay_lsn(): {e}"));
                row.get::<_, bool>(0)
            },
        )
        .await;
    }

    /// As a standby: waits until it has replayed everything `primary` had written when called.
    pub async fn catch_up_with(&self, primary: &TestCluster) {
        let lsn = primary.current_lsn().await;
        self.wait_replayed(&lsn).await;
    }

    /// As a standby: pauses replay (`pg_wal_replay_pause()`), returning once it is paused. The
    /// standby goes on receiving WAL and answering queries, with the data as of the pause:
    /// a lagging replica.
    pub async fn pause_replay(&self) {
        let admin = self.admin_client().await;
        admin
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .unwrap_or_else(|e| panic!("pg_wal_replay_pause(): {e}"));
        wait_for("replay to pause", || async {
            let row = admin
                .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                .await
                .unwrap_or_else(|e| panic!("pg_get_wal_replay_pause_state(): {e}"));
            row.get::<_, String>(0) == "paused"
        })
        .await;
    }

    /// As a standby: resumes replay (`pg_wal_replay_resume()`).
    pub async fn resume_replay(&self) {
        let admin = self.admin_client().await;
        admin
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .unwrap_or_else(|e| panic!("pg_wal_replay_resume(): {e}"));
    }

    /// As a standby: promotes it to a primary (`pg_ctl promote`, waiting until it accepts
    /// writes). Its old primary, if still running, knows nothing of it.
    pub async fn promote(&self) {
        let inner = std::sync::Arc::clone(&self.inner);
        blocking(move || {
            inner
                .pg_ctl(&["promote"])
                .unwrap_or_else(|e| panic!("promoting the standby: {e}"))
        })
        .await;
        let admin = self.admin_client().await;
        wait_for("the promoted standby to leave recovery", || async {
            let row = admin
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .unwrap_or_else(|e| panic!("pg_is_in_recovery(): {e}"));
            !row.get::<_, bool>(0)
        })
        .await;
    }
}

/// `pg_basebackup` of the primary on `primary_port` into a new directory, set to stream as
/// `name`, started on a free port.
fn create_standby(primary_port: u16, name: &str) -> Inner {
    let (mut inner, mut cleanup) = Inner::new_dir();
    let data = inner.data_dir();
    let basebackup = inner.bin.join("pg_basebackup");
    inner.run_server_command(&basebackup, |c| {
        c.args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
            .args(["-U", "postgres", "-D"])
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync", "--checkpoint=fast"]);
    });
    // Later lines of postgresql.auto.conf win over what `-R` wrote and over the primary's
    // own `ALTER SYSTEM` settings the backup copied: a promoted standby must not wait for a
    // synchronous standby of its old primary. Its own socket directory, not the primary's.
    let conf = format!(
        "\n# eventsourcing TestCluster standby\n\
         primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres \
         application_name={name}'\n\
         synchronous_standby_names = ''\n\
         unix_socket_directories = '{}'\n\
         hot_standby = on\n\
         hot_standby_feedback = on\n\
         wal_receiver_status_interval = 1s\n",
        inner.dir.display()
    );
    append_to(&data.join("postgresql.auto.conf"), &conf);
    inner.start_on_free_port();
    cleanup.0 = None;
    inner
}

/// Polls `done` every 10 ms until it holds; panics naming `what` after [`REPLICATION_WAIT`].
async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        if start.elapsed() > REPLICATION_WAIT {
            panic!("the test cluster: waited {REPLICATION_WAIT:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
