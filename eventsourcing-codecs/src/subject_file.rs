use std::{
    fs, io,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{
    envelope::NONCE_LEN,
    error::KeyId,
    key::{fill_random, Key, Keyring, KEY_LEN, TAG_LEN},
    subject::{BySubject, SubjectKeys},
    PayloadError,
};

const WRAPPED: &[u8; 4] = b"ESK1";
const DELETED: &[u8; 4] = b"ESK0";
const WRAPPED_LEN: usize = 4 + 4 + NONCE_LEN + KEY_LEN + TAG_LEN;

/// Subject keys in a directory, one small file per subject, each key encrypted ("wrapped")
/// under the key ring's current key; any key of the ring unwraps.
///
/// A file's name is a SHA-256 of the subject (no subject text reaches the file system).
/// Creating a key is atomic and safe between processes (the file appears complete or not at
/// all, and two creators of one subject agree on the winner's key); files are synced before
/// they count. Deleting a subject replaces its file with a marker, so the subject is not given a
/// new key later. Keys read are kept in memory by this value; another process that read a
/// subject's key before it was deleted keeps it until it restarts. Deleting a file does not
/// scrub the disk blocks or backups that held it: shredding is as good as the care taken with
/// this directory's copies.
#[derive(Debug)]
pub struct FileSubjectKeys {
    dir: PathBuf,
    master: Keyring,
    cache: BySubject<Key>,
}

fn store_error(what: &str, e: io::Error) -> PayloadError {
    PayloadError::KeyStore {
        reason: format!("{what}: {e}"),
    }
}

impl FileSubjectKeys {
    /// Keys in `dir` (created if missing), wrapped under `master`'s current key.
    pub fn open(dir: impl Into<PathBuf>, master: Keyring) -> Result<Self, PayloadError> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .map_err(|e| store_error(&format!("cannot create {}", dir.display()), e))?;
        Ok(FileSubjectKeys {
            dir,
            master,
            cache: BySubject::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, subject: &str) -> PathBuf {
        let digest = Sha256::new()
            .chain_update(b"eventsourcing-rs subject\0")
            .chain_update(subject.as_bytes())
            .finalize();
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.key"))
    }

    /// Reads a subject's file: `Ok(None)` if there is none, `Ok(Some(None))` if deleted.
    fn read(&self, subject: &str) -> Result<Option<Option<Key>>, PayloadError> {
        let bytes = match fs::read(self.path(subject)) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(store_error("cannot read a subject key", e)),
        };
        if bytes.as_slice() == DELETED {
            return Ok(Some(None));
        }
        self.unwrap_key(subject, &bytes).map(|k| Some(Some(k)))
    }

    fn unwrap_key(&self, subject: &str, bytes: &[u8]) -> Result<Key, PayloadError> {
        let damaged = || PayloadError::KeyStore {
            reason: format!("the key file of subject `{subject}` is damaged"),
        };
        if bytes.len() != WRAPPED_LEN || !bytes.starts_with(WRAPPED) {
            return Err(damaged());
        }
        let id = KeyId([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[8..8 + NONCE_LEN]);
        let master = self
            .master
            .get(id)
            .ok_or(PayloadError::UnknownKey { key_id: id })?;
        let aad = aad(id, subject);
        let plain = Zeroizing::new(
            master
                .open(&nonce, &aad, &bytes[8 + NONCE_LEN..])
                .map_err(|_| damaged())?,
        );
        let key: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| damaged())?;
        Ok(Key::from_bytes(key))
    }

    fn wrap_key(&self, subject: &str, key: &Key) -> Result<Vec<u8>, PayloadError> {
        let master = self.master.current();
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(WRAPPED);
        out.extend_from_slice(&master.id().0);
        out.extend_from_slice(&nonce);
        let from = out.len();
        out.extend_from_slice(key.bytes());
        master.seal(&nonce, &aad(master.id(), subject), &mut out, from)?;
        Ok(out)
    }

    /// Writes `bytes` to a new temporary file in the directory, synced.
    fn temp_file(&self, bytes: &[u8]) -> Result<PathBuf, PayloadError> {
        let mut tag = [0u8; 8];
        fill_random(&mut tag)?;
        let name: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(format!(".tmp-{name}"));
        let write = || -> io::Result<()> {
            use io::Write;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&path);
            store_error("cannot write a subject key", e)
        })?;
        Ok(path)
    }

    fn sync_dir(&self) -> Result<(), PayloadError> {
        #[cfg(unix)]
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| store_error("cannot sync the subject key directory", e))?;
        Ok(())
    }
}

fn aad(id: KeyId, subject: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + subject.len());
    aad.extend_from_slice(WRAPPED);
    aad.extend_from_slice(&id.0);
    aad.extend_from_slice(subject.as_bytes());
    aad
}

impl SubjectKeys for FileSubjectKeys {
    fn get_or_create(&self, subject: &str) -> Result<Key, PayloadError> {
        let shredded = || PayloadError::Shredded {
            subject: subject.to_owned(),
        };
        if let Some(key) = self.cache.lock().get(subject) {
            return Ok(key.clone());
        }
        let key = match self.read(subject)? {
            Some(Some(key)) => key,
            Some(None) => return Err(shredded()),
            None => {
                let key = Key::generate()?;
                let temp = self.temp_file(&self.wrap_key(subject, &key)?)?;
                // A hard link fails if the name exists: the first creator wins, atomically.
                let linked = fs::hard_link(&temp, self.path(subject));
                let _ = fs::remove_file(&temp);
                match linked {
                    Ok(()) => {
                        self.sync_dir()?;
                        key
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        match self.read(subject)? {
                            Some(Some(key)) => key,
                            _ => return Err(shredded()),
                        }
                    }
                    Err(e) => return Err(store_error("cannot store a subject key", e)),
                }
            }
        };
        self.cache.lock().insert(subject.to_owned(), key.clone());
        Ok(key)
    }

    fn get(&self, subject: &str) -> Result<Option<Key>, PayloadError> {
        if let Some(key) = self.cache.lock().get(subject) {
            return Ok(Some(key.clone()));
        }
        let key = self.read(subject)?.flatten();
        if let Some(key) = &key {
            self.cache.lock().insert(subject.to_owned(), key.clone());
        }
        Ok(key)
    }

    fn delete(&self, subject: &str) -> Result<bool, PayloadError> {
        let existed = matches!(self.read(subject), Ok(Some(Some(_))) | Err(_));
        let temp = self.temp_file(DELETED)?;
        let renamed = fs::rename(&temp, self.path(subject));
        if renamed.is_err() {
            let _ = fs::remove_file(&temp);
        }
        renamed.map_err(|e| store_error("cannot delete a subject key", e))?;
        self.sync_dir()?;
        self.cache.lock().remove(subject);
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_persist_across_instances_and_deletes_are_final() {
        let dir = tempfile::tempdir().unwrap();
        let master = Keyring::new(Key::generate().unwrap());
        let keys = FileSubjectKeys::open(dir.path(), master.clone()).unwrap();
        let alice = keys.get_or_create("alice").unwrap();
        let bob = keys.get_or_create("bob").unwrap();
        assert_ne!(alice.id(), bob.id());

        // Another process (a fresh instance) reads the same keys.
        let again = FileSubjectKeys::open(dir.path(), master.clone()).unwrap();
        assert_eq!(again.get("alice").unwrap().unwrap().id(), alice.id());
        assert_eq!(again.get_or_create("bob").unwrap().id(), bob.id());
        assert!(again.get("carol").unwrap().is_none());

        assert!(keys.delete("alice").unwrap());
        let fresh = FileSubjectKeys::open(dir.path(), master.clone()).unwrap();
        assert!(fresh.get("alice").unwrap().is_none());
        assert!(matches!(
            fresh.get_or_create("alice"),
            Err(PayloadError::Shredded { .. })
        ));
        assert_eq!(fresh.get("bob").unwrap().unwrap().id(), bob.id());

        // Under another master key the files do not open.
        let other =
            FileSubjectKeys::open(dir.path(), Keyring::new(Key::generate().unwrap())).unwrap();
        assert!(matches!(
            other.get("bob"),
            Err(PayloadError::UnknownKey { .. })
        ));
        // After a master key rotation, with the old key kept, they do.
        let rotated =
            Keyring::new(Key::generate().unwrap()).with_old_keys([master.current().clone()]);
        let rotated = FileSubjectKeys::open(dir.path(), rotated).unwrap();
        assert_eq!(rotated.get("bob").unwrap().unwrap().id(), bob.id());
    }

    #[test]
    fn concurrent_creators_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let master = Keyring::new(Key::generate().unwrap());
        let ids: Vec<KeyId> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (dir, master) = (dir.path().to_owned(), master.clone());
                    s.spawn(move || {
                        FileSubjectKeys::open(dir, master)
                            .unwrap()
                            .get_or_create("shared")
                            .unwrap()
                            .id()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let keys =
            FileSubjectKeys::open(dir.path(), Keyring::new(Key::generate().unwrap())).unwrap();
        keys.get_or_create("x").unwrap();
        let path = keys.path("x");
        let mut bytes = fs::read(&path).unwrap();
        for cut in [0, 3, 10, bytes.len() - 1] {
            fs::write(&path, &bytes[..cut]).unwrap();
            let fresh = FileSubjectKeys::open(dir.path(), keys.master.clone()).unwrap();
            assert!(
                matches!(fresh.get("x"), Err(PayloadError::KeyStore { .. })),
                "cut {cut}"
            );
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let fresh = FileSubjectKeys::open(dir.path(), keys.master.clone()).unwrap();
        assert!(matches!(fresh.get("x"), Err(PayloadError::KeyStore { .. })));
    }
}
