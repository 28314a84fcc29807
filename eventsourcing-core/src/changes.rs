use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

/// Tells subscribers that new events may be readable. A hint, never the source of truth:
/// subscribers always re-read the log, and poll when no hint comes.
#[derive(Debug, Clone)]
pub struct ChangeNotifier {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for ChangeNotifier {
    fn default() -> Self {
        ChangeNotifier::new()
    }
}

impl ChangeNotifier {
    /// A notifier nobody listens to yet.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(0);
        ChangeNotifier { tx: Arc::new(tx) }
    }

    /// Wakes every subscriber (cheap: no allocation, no await).
    pub fn notify(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A handle that waits for the next [`notify`](Self::notify).
    pub fn subscribe(&self) -> Changes {
        Changes {
            rx: Some(self.tx.subscribe()),
        }
    }
}

/// The receiving side of a [`ChangeNotifier`].
#[derive(Debug, Clone)]
pub struct Changes {
    rx: Option<watch::Receiver<u64>>,
}

impl Changes {
    /// A handle that is never woken: its holder polls.
    pub fn none() -> Self {
        Changes { rx: None }
    }

    /// Whether a notifier stands behind this handle.
    pub fn is_live(&self) -> bool {
        self.rx.is_some()
    }

    /// Forgets earlier notifications. Call before reading, so that a notification arriving during
    /// the read is not lost.
    pub fn mark_seen(&mut self) {
        if let Some(rx) = &mut self.rx {
            rx.borrow_and_update();
        }
    }

    /// Whether a notification came after the last [`mark_seen`](Self::mark_seen). Always true
    /// for a handle without a notifier, whose holder must read to find out.
    pub fn has_changed(&self) -> bool {
        match &self.rx {
            Some(rx) => rx.has_changed().unwrap_or(true),
            None => true,
        }
    }

    /// Waits for a notification newer than the last [`mark_seen`](Self::mark_seen), or for
    /// `poll`, whichever comes first.
    pub async fn wait(&mut self, poll: Duration) {
        match &mut self.rx {
            Some(rx) => {
                if let Ok(Err(_closed)) = tokio::time::timeout(poll, rx.changed()).await {
                    // The notifier is gone: from now on, poll.
                    self.rx = None;
                    tokio::time::sleep(poll).await;
                }
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}
