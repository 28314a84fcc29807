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
#[derive(Default)]
pub struct MemorySubjectKeys {
    // `None`: deleted.
    keys: Mutex<HashMap<String, Option<Key>>>,
}

impl fmt::Debug for MemorySubjectKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubjectKeys")
            .field("subjects", &lock(&self.keys).len())
            .finish()
    }
}

impl MemorySubjectKeys {
    /// No keys yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A lock that survives a panic elsewhere (the map stays consistent: every write is one insert).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SubjectKeys for MemorySubjectKeys {
    fn get_or_create(&self, subject: &str) -> Result<Key, PayloadError> {
        let mut keys = lock(&self.keys);
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
        Ok(lock(&self.keys).get(subject).cloned().flatten())
    }

    fn delete(&self, subject: &str) -> Result<bool, PayloadError> {
        let previous = lock(&self.keys).insert(subject.to_owned(), None);
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
