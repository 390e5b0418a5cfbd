//! Where kmodlab keeps what it builds and fetches, and how cache keys are made.
//!
//! Everything lives under one root (`$KMODLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/kmodlab`, else
//! `~/.cache/kmodlab`), keyed by content hashes, so nothing is written into the user's module folders.

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The cache root, created if needed.
pub fn root() -> Result<PathBuf> {
    let dir = root_path()?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the cache folder {}", dir.display()))?;
    Ok(dir)
}

fn root_path() -> Result<PathBuf> {
    if let Some(dir) = non_empty_env("KMODLAB_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty_env("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("kmodlab"));
    }
    match non_empty_env("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("kmodlab")),
        None => bail!("cannot place the cache: set KMODLAB_CACHE_DIR, XDG_CACHE_HOME or HOME"),
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A named subfolder of the cache root, created if needed.
pub fn dir(name: &str) -> Result<PathBuf> {
    let dir = root()?.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Builds a cache key from labelled parts; the same parts in the same order give the same key.
#[derive(Default)]
pub struct KeyBuilder {
    hasher: Sha256,
}

impl KeyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a labelled value. Labels keep `("a", "bc")` and `("ab", "c")` apart.
    pub fn part(&mut self, label: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        self.hasher.update((label.len() as u64).to_le_bytes());
        self.hasher.update(label.as_bytes());
        self.hasher.update((value.len() as u64).to_le_bytes());
        self.hasher.update(value);
        self
    }

    /// Adds a file's contents under its label.
    pub fn file(&mut self, label: &str, path: &Path) -> Result<&mut Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(self.part(label, bytes))
    }

    /// The key: 16 hex digits are plenty to tell a handful of builds apart.
    pub fn finish(&self) -> String {
        let digest = self.hasher.clone().finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Takes an exclusive `flock` on `path`, saying so when another process holds it.
pub fn lock(path: &Path, what: &str) -> Result<Flock<File>> {
    let open = || {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening the lock {}", path.display()))
    };
    match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => return Ok(lock),
        Err((_, Errno::EWOULDBLOCK)) => {
            eprintln!(
                "kmodlab: another kmodlab process is {what}; waiting for it ({})",
                path.display()
            )
        }
        Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    let mut file = open()?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((again, Errno::EINTR)) => file = again,
            Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_makes_the_second_taker_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = lock(&path, "testing").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let _second = lock(&path, "testing").unwrap();
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "second lock taken too early"
        );
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn keys_depend_on_every_part_and_its_label() {
        let key = |parts: &[(&str, &str)]| {
            let mut k = KeyBuilder::new();
            for (label, value) in parts {
                k.part(label, value);
            }
            k.finish()
        };
        let base = key(&[("a", "bc")]);
        assert_eq!(base.len(), 16);
        assert_eq!(base, key(&[("a", "bc")]));
        assert_ne!(base, key(&[("ab", "c")]));
        assert_ne!(base, key(&[("a", "bc"), ("d", "")]));
    }
}
