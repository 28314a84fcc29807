use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

use eventsourcing_core::EncodeContext;

use crate::{key::Key, PayloadError};

/// Where each subject's key is kept, for crypto-shredding: payloads of a subject are encrypted
/// under a key of its own, and deleting that key makes them undecryptable for good, while every
/// other subject's payloads still load.
///
/// A deleted subject stays deleted: [`get_or_create`](Self::get_or_create) fails with
/// [`PayloadError::Shredded`] afterwards instead of making a new key, so a save for a shredded
/// subject writes nothing.
pub trait SubjectKeys: Send + Sync + fmt::Debug + 'static {
    /// The subject's key, made (and stored durably) on first use.
    fn get_or_create(&self, subject: &str) -> Result<Key, PayloadError>;
    /// The subject's key; `None` if it was deleted or never made.
    fn get(&self, subject: &str) -> Result<Option<Key>, PayloadError>;
    /// Deletes the subject's key; true if there was one. Idempotent.
    fn delete(&self, subject: &str) -> Result<bool, PayloadError>;
}

/// Subject keys in memory, for tests: gone when the process ends.
#[derive(Debug, Default)]
pub struct MemorySubjectKeys {
    // `None`: deleted.
    keys: BySubject<Option<Key>>,
}

impl MemorySubjectKeys {
    /// No keys yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Values by subject, in memory, shared between threads. `Debug` shows how many subjects it
/// holds, never which (subjects name people).
pub(crate) struct BySubject<V>(Mutex<HashMap<String, V>>);

impl<V> Default for BySubject<V> {
    fn default() -> Self {
        BySubject(Mutex::new(HashMap::new()))
    }
}

impl<V> fmt::Debug for BySubject<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} subjects", self.lock().len())
    }
}

impl<V> BySubject<V> {
    /// The map, behind a lock that survives a panic elsewhere (the map stays consistent: every
    /// write is one insert or remove).
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, V>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SubjectKeys for MemorySubjectKeys {
    fn get_or_create(&self, subject: &str) -> Result<Key, PayloadError> {
        let mut keys = self.keys.lock();
        match keys.get(subject) {
            Some(Some(key)) => Ok(key.clone()),
            Some(None) => Err(PayloadError::Shredded {
                subject: subject.to_owned(),
            }),
            None => {
                let key = Key::generate()?;
                keys.insert(subject.to_owned(), Some(key.clone()));
                Ok(key)
            }
        }
    }

    fn get(&self, subject: &str) -> Result<Option<Key>, PayloadError> {
        Ok(self.keys.lock().get(subject).cloned().flatten())
    }

    fn delete(&self, subject: &str) -> Result<bool, PayloadError> {
        let previous = self.keys.lock().insert(subject.to_owned(), None);
        Ok(matches!(previous, Some(Some(_))))
    }
}

/// Which subject a payload belongs to; `None`: no subject (the key ring's current key).
pub type SubjectOf = Arc<dyn Fn(&EncodeContext) -> Option<String> + Send + Sync>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn deleted_subjects_stay_deleted() {
        let keys = MemorySubjectKeys::new();
        let a = keys.get_or_create("a").unwrap();
        assert_eq!(keys.get_or_create("a").unwrap().id(), a.id());
        assert!(keys.get("b").unwrap().is_none());
        assert!(keys.delete("a").unwrap());
        assert!(!keys.delete("a").unwrap());
        assert!(keys.get("a").unwrap().is_none());
        assert_eq!(
            keys.get_or_create("a").unwrap_err(),
            PayloadError::Shredded {
                subject: "a".into()
            }
        );
        assert!(keys.get_or_create("b").is_ok());
    }
}
