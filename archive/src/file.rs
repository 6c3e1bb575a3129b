//! `file://<dir>`: one file per object under a directory. A put writes a
//! temporary file, syncs it, renames it over the key and syncs the
//! directory, so an object is whole and durable once `put` returns.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Archive, ArchiveError, ObjectInfo, Result, check_key, check_prefix};

/// Files being written start with this (never a valid key segment).
const TEMP: &str = "~tmp-";

/// Names the temporary files of concurrent writes apart.
static NEXT_STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct FileArchive {
    root: PathBuf,
}

/// A temporary file older than this whose writer is gone is a leftover.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl FileArchive {
    /// Opens (creating) the directory; leftovers of puts cut short by a
    /// crash are removed in the background.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        let swept = root.clone();
        std::thread::spawn(move || sweep_leftovers(&swept));
        Ok(FileArchive { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ArchiveError::Transient(e.to_string()))?
    }
}

fn io(path: &Path, e: std::io::Error) -> ArchiveError {
    ArchiveError::Transient(format!("{}: {e}", path.display()))
}

fn put_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    // Named apart from every other write in flight, of this key too (a
    // put whose caller was aborted goes on in its blocking thread while a
    // new put of the same key starts).
    let temp = dir.join(format!(
        "{TEMP}{}-{}-{name}",
        std::process::id(),
        NEXT_STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut file = match std::fs::File::create(&temp) {
        // A delete removed the directory as it emptied it: once more.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            std::fs::File::create(&temp)
        }
        created => created,
    }
    .map_err(|e| io(&temp, e))?;
    file.write_all(bytes).map_err(|e| io(&temp, e))?;
    file.sync_all().map_err(|e| io(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| io(path, e))?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Removes temporary files below `dir` whose writing process is no longer
/// running on this host and that have not changed for [`STALE_AFTER`]: a
/// `kill -9` between create and rename leaves one per object in flight,
/// and without a sweep they pile up with each crash.
fn sweep_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            sweep_leftovers(&path);
            continue;
        }
        let name = entry.file_name();
        let Some(writer) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = writer == std::process::id() || Path::new(&format!("/proc/{writer}")).exists();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if !alive && stale {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "removed a crashed put's temporary file")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "removing a leftover temporary file")
                }
            }
        }
    }
}

/// Every object file below `dir`, keys relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let key = relative.to_string_lossy().replace('\\', "/");
            if check_key(&key).is_ok() {
                let size = entry.metadata().map_err(|e| io(&path, e))?.len();
                out.push(ObjectInfo { key, size });
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Archive for FileArchive {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(key)?;
        Self::blocking(move || put_durably(&path, &bytes)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(key)?;
        Self::blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // A key that is a directory here holds no object.
            Err(_) if path.is_dir() => Ok(None),
            Err(e) => Err(io(&path, e)),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_prefix(prefix)?;
        let (root, prefix) = (self.root.clone(), prefix.to_owned());
        Self::blocking(move || {
            // Walk only the directory the prefix is inside of.
            let start = match prefix.rfind('/') {
                Some(i) => root.join(&prefix[..i]),
                None => root.clone(),
            };
            let mut out = Vec::new();
            walk(&root, &start, &mut out)?;
            out.retain(|o| o.key.starts_with(&prefix));
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let path = self.path(key)?;
        Self::blocking(move || {
            // Written whole beside it, then linked: a link fails when the
            // name exists, so only one racing writer gets it.
            let dir = path.parent().unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object");
            let staged = dir.join(format!(
                "{TEMP}{}-{}-{name}",
                std::process::id(),
                NEXT_STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            put_durably(&staged, &bytes)?;
            let linked = std::fs::hard_link(&staged, &path);
            let _ = std::fs::remove_file(&staged);
            match linked {
                Ok(()) => {
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| io(dir, e))?;
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(io(&path, e)),
            }
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        Self::blocking(move || match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let root = self.root.clone();
        Self::blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(_) if path.is_dir() => return Ok(()),
                Err(e) => return Err(io(&path, e)),
            }
            // Directories it leaves empty go too (an upload's, a
            // conversation's cold tier), up to the root.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }
}
