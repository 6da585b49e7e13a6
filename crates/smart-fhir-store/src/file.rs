//! [`FileSessionStore`]: a [`SessionStore`] in a JSON file that only its owner can read, for a
//! session that outlives the process that signed in (a command-line tool's saved sign-in).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use smart_fhir_core::{Clock, SharedClock};
use tokio::sync::Mutex;
use zeroize::Zeroize;

use crate::session::scrub;
use crate::{SessionStore, StoreError};

/// The version of the file format.
const FILE_VERSION: u32 = 1;

/// How long a lock on the file may be held before another process breaks it.
const STALE_LOCK: Duration = Duration::from_secs(30);

/// How long to wait for a lock on the file.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The longest session file read (a few tokens and settings fit in a few KiB).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A [`SessionStore`] kept in a JSON file that only its owner can read (mode 0600, in a directory
/// of mode 0700 when the store creates it), for a session that outlives the process that signed
/// in. It keeps the same contract as [`MemorySessionStore`](crate::MemorySessionStore): a
/// one-time [`take`](SessionStore::take), an atomic
/// [`compare_and_swap`](SessionStore::compare_and_swap), expiry by the injected clock, and a zero
/// time-to-live that removes.
///
/// The file also holds one JSON *metadata* value chosen by the application, written with the
/// entries and read back by [`open`](Self::open): for a command-line tool, the client settings
/// needed to use the session again (never a secret: the file is only as private as its mode).
///
/// # Life cycle
///
/// A store starts [in memory](Self::in_memory) while a sign-in runs, so that the PKCE verifier
/// and `state` never reach the disk; [`save_to`](Self::save_to) then writes it, and from then on
/// every operation re-reads the file and writes it back under a lock file (`<file>.lock`,
/// created exclusively; one older than 30 s is taken to be left by a dead process and broken), so
/// that several processes sharing the file agree on one refresh-token rotation (P12). A write
/// goes to a temporary file that is renamed over the file, so a reader never sees half a file.
/// Once the file is removed (sign-out), operations fail rather than write it again.
///
/// String values are overwritten with zeros when they leave the store's memory; `Debug` shows
/// only where the file is.
pub struct FileSessionStore {
    state: Mutex<State>,
    metadata: Value,
    clock: SharedClock,
}

struct State {
    entries: Vec<Entry>,
    /// `None` while the store is in memory.
    path: Option<PathBuf>,
}

/// One stored value, with its expiry in milliseconds since the Unix epoch.
#[derive(Serialize, Deserialize)]
struct Entry {
    session: String,
    key: String,
    value: Value,
    expires_at_ms: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        scrub(&mut self.value);
    }
}

/// The file as read.
#[derive(Deserialize)]
struct Document {
    version: u32,
    // Files written before the store moved out of the command-line tool named it `login`.
    #[serde(default, alias = "login")]
    metadata: Value,
    #[serde(default)]
    entries: Vec<Entry>,
}

impl fmt::Debug for FileSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FileSessionStore");
        match self.state.try_lock() {
            Ok(state) => match &state.path {
                Some(path) => d.field("path", path),
                None => d.field("path", &"(in memory)"),
            },
            Err(_) => d.field("path", &"(busy)"),
        };
        d.field("clock", &self.clock).finish_non_exhaustive()
    }
}

impl FileSessionStore {
    /// An empty store in memory, with `metadata` to write with it, on the system clock. Nothing
    /// is written until [`save_to`](Self::save_to).
    pub fn in_memory(metadata: Value) -> Self {
        Self {
            state: Mutex::new(State {
                entries: Vec::new(),
                path: None,
            }),
            metadata,
            clock: SharedClock::default(),
        }
    }

    /// Opens a file written by [`save_to`](Self::save_to); every operation then works on the
    /// file.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the file cannot be read (its cause chained);
    /// [`StoreError::Corrupt`] if it is not a session file of this format, without quoting it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let mut document = read_document(path)?;
        Ok(Self {
            state: Mutex::new(State {
                entries: std::mem::take(&mut document.entries),
                path: Some(path.to_path_buf()),
            }),
            metadata: std::mem::take(&mut document.metadata),
            clock: SharedClock::default(),
        })
    }

    /// Opens the store in the file at `path`, first creating it empty (with `metadata`; its
    /// directory with mode 0700 if needed) when there is none. The file appears whole or not at
    /// all (written aside, then linked into place only if absent), so processes started at once
    /// agree on one file: the store a token cache shares between processes
    /// ([`SessionTokenStore`](crate::SessionTokenStore)). Takes no lock and never waits.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open) and [`save_to`](Self::save_to).
    pub fn open_or_create(path: impl AsRef<Path>, metadata: Value) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if std::fs::symlink_metadata(path).is_err() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir)?;
            }
            let fresh = sibling(path, &format!("new-{}", std::process::id()));
            write_document(&fresh, &metadata, &[])?;
            let linked = std::fs::hard_link(&fresh, path);
            let _ = std::fs::remove_file(&fresh);
            match linked {
                Ok(()) => {}
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::backend(
                        format!("cannot create the session file {}", path.display()),
                        e,
                    ))
                }
            }
        }
        Self::open(path)
    }

    /// Uses `clock` to decide expiry (and how long to wait for a lock).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The application's metadata saved with the entries.
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// Writes the store to `path` (creating its directory, mode 0700, if needed) and keeps it
    /// there from now on.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the directory or the file cannot be written or the file stays
    /// locked by another process.
    pub async fn save_to(&self, path: impl AsRef<Path>) -> Result<(), StoreError> {
        let path = path.as_ref();
        let mut state = self.state.lock().await;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let _lock = FileLock::acquire(path, &self.clock).await?;
        let now = now_ms(&self.clock);
        state.entries.retain(|e| e.expires_at_ms > now);
        write_document(path, &self.metadata, &state.entries)?;
        state.path = Some(path.to_path_buf());
        Ok(())
    }

    /// Runs `f` on the live entries: in memory, or on the file re-read under its lock, written
    /// back when `f` says it changed something (or expired entries were dropped).
    async fn update<R>(
        &self,
        f: impl FnOnce(&mut Vec<Entry>, u64) -> Result<(R, bool), StoreError>,
    ) -> Result<R, StoreError> {
        let mut state = self.state.lock().await;
        let now = now_ms(&self.clock);
        let Some(path) = state.path.clone() else {
            state.entries.retain(|e| e.expires_at_ms > now);
            return f(&mut state.entries, now).map(|(r, _)| r);
        };
        let _lock = FileLock::acquire(&path, &self.clock).await?;
        let mut document = match read_document(&path) {
            Ok(d) => d,
            Err(e) => {
                // The in-memory copy is stale whatever happened; never serve it.
                state.entries.clear();
                return Err(e);
            }
        };
        let mut entries = std::mem::take(&mut document.entries);
        let before = entries.len();
        entries.retain(|e| e.expires_at_ms > now);
        let expired = entries.len() != before;
        let (result, changed) = f(&mut entries, now)?;
        if changed || expired {
            write_document(&path, &self.metadata, &entries)?;
        }
        state.entries = entries;
        Ok(result)
    }
}

fn now_ms(clock: &SharedClock) -> u64 {
    clock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The expiry of an entry stored at `now` for `ttl`, as [`MemorySessionStore`] refuses a
/// deadline it cannot represent.
///
/// [`MemorySessionStore`]: crate::MemorySessionStore
fn deadline(now: u64, ttl: Duration) -> Result<u64, StoreError> {
    u64::try_from(ttl.as_millis())
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .ok_or_else(|| StoreError::invalid_argument("session entry ttl is too long"))
}

fn position(entries: &[Entry], session_id: &str, key: &str) -> Option<usize> {
    entries
        .iter()
        .position(|e| e.session == session_id && e.key == key)
}

/// Replaces the entry under (`session_id`, `key`) with `value` until `expires_at_ms`, or only
/// removes it when that is not after `now`.
fn store(
    entries: &mut Vec<Entry>,
    session_id: &str,
    key: &str,
    value: Value,
    now: u64,
    expires_at_ms: u64,
) {
    if let Some(i) = position(entries, session_id, key) {
        entries.remove(i);
    }
    if expires_at_ms > now {
        entries.push(Entry {
            session: session_id.to_owned(),
            key: key.to_owned(),
            value,
            expires_at_ms,
        });
    }
}

#[async_trait]
impl SessionStore for FileSessionStore {
    async fn put(
        &self,
        session_id: &str,
        key: &str,
        value: Value,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.update(|entries, now| {
            let expires_at_ms = deadline(now, ttl)?;
            store(entries, session_id, key, value, now, expires_at_ms);
            Ok(((), true))
        })
        .await
    }

    async fn get(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.update(|entries, _| {
            let value = position(entries, session_id, key).map(|i| entries[i].value.clone());
            Ok((value, false))
        })
        .await
    }

    async fn take(&self, session_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.update(|entries, _| {
            Ok(match position(entries, session_id, key) {
                Some(i) => {
                    let mut entry = entries.remove(i);
                    (Some(std::mem::take(&mut entry.value)), true)
                }
                None => (None, false),
            })
        })
        .await
    }

    async fn delete(&self, session_id: &str, key: &str) -> Result<(), StoreError> {
        self.update(|entries, _| {
            let found = position(entries, session_id, key).map(|i| entries.remove(i));
            Ok(((), found.is_some()))
        })
        .await
    }

    async fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.update(|entries, _| {
            let before = entries.len();
            entries.retain(|e| e.session != session_id);
            Ok(((), entries.len() != before))
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        session_id: &str,
        key: &str,
        expected: Option<&Value>,
        new: Value,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.update(|entries, now| {
            let expires_at_ms = deadline(now, ttl)?;
            let current = position(entries, session_id, key).map(|i| &entries[i].value);
            if current != expected {
                return Ok((false, false));
            }
            store(entries, session_id, key, new, now, expires_at_ms);
            Ok((true, true))
        })
        .await
    }
}

fn read_document(path: &Path) -> Result<Document, StoreError> {
    use std::io::Read as _;
    let file = open_regular_file(path)?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_failed(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    // The parse error could quote the file (tokens): it is not passed on.
    let document: Document = serde_json::from_slice(&bytes)
        .map_err(|_| StoreError::corrupt("not a smart-fhir session file"))?;
    bytes.zeroize();
    if document.version != FILE_VERSION {
        return Err(StoreError::corrupt(format!(
            "a session file of another smart-fhir version (format {}, this one reads {FILE_VERSION})",
            document.version
        )));
    }
    Ok(document)
}

/// Opens the session file for reading: a regular file only, never through a symlink, and
/// never waiting (a FIFO planted where the file is expected would block an ordinary open until
/// a writer came). The type and size are checked on the opened file itself, so a file swapped
/// in after a check cannot slip through.
fn open_regular_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(not_regular(path));
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return not_regular(path);
        }
        read_failed(path, e)
    })?;
    let meta = file.metadata().map_err(|e| read_failed(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(file)
}

fn not_regular(path: &Path) -> StoreError {
    StoreError::backend_message(format!(
        "the session file {} is not a regular file (a symlink, a FIFO, a device or a \
         directory); refused",
        path.display()
    ))
}

fn too_large(path: &Path) -> StoreError {
    StoreError::corrupt(format!(
        "the session file {} is larger than {MAX_FILE_BYTES} bytes, the limit for a session file",
        path.display()
    ))
}

fn read_failed(path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        // Removed meanwhile (sign-out): never bring the session back.
        StoreError::backend(
            format!("the session file {} was removed", path.display()),
            e,
        )
    } else {
        StoreError::backend(
            format!("cannot read the session file {}", path.display()),
            e,
        )
    }
}

/// Writes the document to a temporary file (mode 0600) next to `path`, then renames it over
/// `path`.
fn write_document(path: &Path, metadata: &Value, entries: &[Entry]) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Out<'a> {
        version: u32,
        metadata: &'a Value,
        entries: &'a [Entry],
    }
    let bytes = zeroize::Zeroizing::new(
        serde_json::to_vec(&Out {
            version: FILE_VERSION,
            metadata,
            entries,
        })
        .map_err(|e| StoreError::backend("cannot serialize the session", e))?,
    );
    let tmp = sibling(path, &format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        // A leftover temporary file keeps its old mode: set it explicitly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::backend(
            format!("cannot write the session file {}", path.display()),
            e,
        ));
    }
    Ok(())
}

/// `path` with `.suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Creates `dir` (and its parents) readable only by its owner, if it does not exist.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| {
        StoreError::backend(
            format!("cannot create the session directory {}", dir.display()),
            e,
        )
    })
}

/// An exclusive lock on a session file between processes: a `.lock` file created with
/// `O_EXCL`, removed on drop. A lock older than [`STALE_LOCK`] (its holder died) is broken.
#[derive(Debug)]
struct FileLock {
    path: PathBuf,
}

impl FileLock {
    async fn acquire(file: &Path, clock: &SharedClock) -> Result<Self, StoreError> {
        let path = sibling(file, "lock");
        let started = clock.now();
        let mut step = Duration::from_millis(5);
        loop {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&path) {
                Ok(_) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let now = clock.now();
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_LOCK));
                    if stale {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if now.duration_since(started).unwrap_or(Duration::ZERO) > LOCK_WAIT {
                        return Err(StoreError::backend_message(format!(
                            "the session file is locked by another process ({} exists)",
                            path.display()
                        )));
                    }
                    // Another process holds it for one read and write: poll, backing off.
                    tokio::time::sleep(step).await;
                    step = (step * 2).min(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(StoreError::backend(
                        format!("cannot lock the session file {}", file.display()),
                        e,
                    ))
                }
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests;
