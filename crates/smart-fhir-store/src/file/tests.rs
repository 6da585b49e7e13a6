use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;

use serde_json::json;
use smart_fhir_core::{FixedClock, SystemClock};

use super::*;
use crate::contract::StoreFactory;

const MINUTE: Duration = Duration::from_secs(60);

fn metadata() -> Value {
    json!({"client_id": "cli-app", "auth": {"method": "client_secret_basic", "secret_env": "MY_SECRET"}})
}

fn clock() -> (FixedClock, SharedClock) {
    let c = FixedClock::at_unix(1_700_000_000);
    (c.clone(), SharedClock::new(c))
}

/// Fresh stores saved to files of one temporary directory, which the factory owns.
fn saved_stores() -> impl StoreFactory<Store = FileSessionStore> {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    move |clock: SharedClock| {
        let path = dir.path().join(format!(
            "session-{}.json",
            n.fetch_add(1, Ordering::Relaxed)
        ));
        async move {
            let store = FileSessionStore::in_memory(metadata()).with_clock(clock);
            store.save_to(&path).await.unwrap();
            store
        }
    }
}

/// The contract every session store keeps (`crate::contract`), on a store saved to its file.
mod contract_on_disk {
    use super::*;

    crate::session_store_contract_tests!(saved_stores());
}

/// The same contract while the store is in memory (a sign-in in progress).
mod contract_in_memory {
    use super::*;

    crate::session_store_contract_tests!(|clock: SharedClock| async move {
        FileSessionStore::in_memory(metadata()).with_clock(clock)
    });
}

/// P12, P3: two handles on one file (two processes) see each other's writes and agree on
/// compare-and-swap and `take`; nothing reaches the disk before `save_to`; expiry follows the
/// clock; no lock or temporary file is left behind.
#[tokio::test]
async fn two_handles_on_one_file_agree_p12() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("session.json");
    let (fixed, clock) = clock();
    let store = FileSessionStore::in_memory(metadata()).with_clock(clock.clone());
    store
        .put("s", "a", json!({"t": "one"}), MINUTE)
        .await
        .unwrap();
    assert!(!path.exists(), "nothing on disk before save_to");
    store.save_to(&path).await.unwrap();
    assert!(path.exists());

    let other = FileSessionStore::open(&path).unwrap().with_clock(clock);
    assert_eq!(
        other.get("s", "a").await.unwrap(),
        Some(json!({"t": "one"}))
    );
    assert!(other
        .compare_and_swap(
            "s",
            "a",
            Some(&json!({"t": "one"})),
            json!({"t": "two"}),
            MINUTE
        )
        .await
        .unwrap());
    assert!(!store
        .compare_and_swap(
            "s",
            "a",
            Some(&json!({"t": "one"})),
            json!({"t": "x"}),
            MINUTE
        )
        .await
        .unwrap());
    assert_eq!(
        store.get("s", "a").await.unwrap(),
        Some(json!({"t": "two"}))
    );

    store.put("s", "b", json!(1), MINUTE).await.unwrap();
    assert_eq!(other.take("s", "b").await.unwrap(), Some(json!(1)));
    assert_eq!(store.take("s", "b").await.unwrap(), None);
    assert!(store
        .compare_and_swap("s", "b", None, json!(2), MINUTE)
        .await
        .unwrap());

    fixed.advance(MINUTE);
    assert_eq!(store.get("s", "a").await.unwrap(), None);
    store.put("s", "c", json!(3), MINUTE).await.unwrap();
    store.put("s", "c", json!(3), Duration::ZERO).await.unwrap();
    assert_eq!(other.get("s", "c").await.unwrap(), None);

    store.put("s", "d", json!(4), MINUTE).await.unwrap();
    store.put("t", "d", json!(5), MINUTE).await.unwrap();
    store.delete("t", "d").await.unwrap();
    store.delete_session("s").await.unwrap();
    assert_eq!(other.get("s", "d").await.unwrap(), None);

    assert_eq!(other.metadata(), &metadata());
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        ["session.json"],
        "no lock or temporary file left"
    );
}

/// SC-4.26, SC-2.16: the file and its new directory are readable by the owner only; the
/// metadata is saved as given; `Debug` shows no value.
#[cfg(unix)]
#[tokio::test]
async fn sc_4_26_session_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-dir").join("session.json");
    let (_, clock) = clock();
    let store = FileSessionStore::in_memory(metadata()).with_clock(clock);
    store
        .put("cli", "k", json!("token-value"), MINUTE)
        .await
        .unwrap();
    store.save_to(&path).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"secret_env\":\"MY_SECRET\""), "{text}");
    assert!(!format!("{store:?}").contains("token-value"));
}

/// A removed file (sign-out) is not written again: operations fail.
#[tokio::test]
async fn a_removed_file_is_not_brought_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let (_, clock) = clock();
    let store = FileSessionStore::in_memory(metadata()).with_clock(clock);
    store.put("cli", "k", json!(1), MINUTE).await.unwrap();
    store.save_to(&path).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let e = store.put("cli", "k", json!(1), MINUTE).await.unwrap_err();
    assert!(e.to_string().contains("was removed"), "{e}");
    assert!(store.get("cli", "k").await.is_err());
    assert!(!path.exists());
}

#[tokio::test]
async fn stale_lock_is_broken_and_a_live_one_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let (fixed, clock) = clock();
    std::fs::write(sibling(&path, "lock"), b"").unwrap();
    // The lock file's mtime is the real time; the clock is far ahead of it: stale.
    fixed.set(SystemClock.now() + 2 * STALE_LOCK);
    let lock = FileLock::acquire(&path, &clock).await.unwrap();
    // Held by someone alive: after LOCK_WAIT the wait ends with an error, and the lock is not
    // broken. Each reading of this clock moves it past LOCK_WAIT, never past STALE_LOCK of the
    // lock file's age.
    let stepping = SharedClock::new(StepClock(
        StdMutex::new(SystemClock.now()),
        LOCK_WAIT + Duration::from_secs(1),
    ));
    let err = FileLock::acquire(&path, &stepping).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("locked by another process"),
        "{err:?}"
    );
    assert!(sibling(&path, "lock").exists());
    drop(lock);
    assert!(!sibling(&path, "lock").exists());
}

/// A clock that moves forward by a fixed step each time it is read.
#[derive(Debug)]
struct StepClock(StdMutex<SystemTime>, Duration);

impl Clock for StepClock {
    fn now(&self) -> SystemTime {
        let mut t = self.0.lock().unwrap();
        *t += self.1;
        *t
    }
}

/// P5, P15: a file that is not a session file, or of another format version, or too large, is
/// refused with a reason that quotes nothing of it.
#[test]
fn garbage_and_other_versions_are_refused_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    std::fs::write(&path, "secret-looking garbage").unwrap();
    let e = FileSessionStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(
        e.to_string().contains("not a smart-fhir session file"),
        "{e}"
    );
    assert!(!e.to_string().contains("garbage"));

    std::fs::write(
        &path,
        json!({"version": 99, "metadata": metadata(), "entries": []}).to_string(),
    )
    .unwrap();
    let e = FileSessionStore::open(&path).unwrap_err();
    assert!(e.to_string().contains("another smart-fhir version"), "{e}");

    std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
    let e = FileSessionStore::open(&path).unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");

    let e = FileSessionStore::open(dir.path().join("absent.json")).unwrap_err();
    assert!(matches!(e, StoreError::Backend { .. }), "{e:?}");
}

/// Issue 11 §1 (local input without a bound): what is not a regular file where the session
/// file is expected — a FIFO (which would block an ordinary open for ever), a device, a
/// directory, a symlink even to a good session file — is refused at once with the path named;
/// an oversize file is refused with the path and the limit named.
#[cfg(unix)]
#[tokio::test]
async fn only_a_regular_file_of_bounded_size_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    FileSessionStore::in_memory(metadata())
        .save_to(&good)
        .await
        .unwrap();
    assert!(FileSessionStore::open(&good).is_ok());

    let fifo = dir.path().join("fifo.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    for path in [
        fifo.as_path(),
        link.as_path(),
        Path::new("/dev/zero"),
        dir.path(),
    ] {
        let e = FileSessionStore::open(path).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("not a regular file"),
            "{}: {shown}",
            path.display()
        );
        assert!(shown.contains(&path.display().to_string()), "{shown}");
    }

    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
    let e = FileSessionStore::open(&big).unwrap_err();
    let shown = e.to_string();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(shown.contains(&big.display().to_string()), "{shown}");
    assert!(shown.contains(&MAX_FILE_BYTES.to_string()), "{shown}");
}

/// A file written while the metadata was named `login` still opens.
#[test]
fn files_of_the_earlier_field_name_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    std::fs::write(
        &path,
        json!({"version": 1, "login": {"client_id": "old"}, "entries": [
            {"session": "cli", "key": "k", "value": 1, "expires_at_ms": u64::MAX}
        ]})
        .to_string(),
    )
    .unwrap();
    let store = FileSessionStore::open(&path).unwrap();
    assert_eq!(store.metadata(), &json!({"client_id": "old"}));
}
