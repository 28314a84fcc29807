//! Waiting in a test for something to happen: polled every few milliseconds, with a deadline
//! only against hanging (never a timed assertion), failing with what did not happen.
//!
//! Included with `#[path]` as a module named `wait` by the suites that wait.

#![allow(dead_code)]

use std::{future::Future, time::Duration};

/// How long any wait may take before the test fails instead of hanging: generous, for a slow
/// machine or a server other tests keep busy.
pub(crate) const WAIT: Duration = Duration::from_secs(120);

/// Polls `found` until it gives a value, and returns it; fails naming `what` after [`WAIT`].
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut found: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = found().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `done` until it holds; fails naming `what` after [`WAIT`].
pub(crate) async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, || {
        let done = done();
        async move { done.await.then_some(()) }
    })
    .await
}
