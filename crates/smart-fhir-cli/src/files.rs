//! Local files: every read is bounded and takes only regular files (a FIFO or a device never
//! blocks nor floods memory); every write creates new files without following a symlink, and a
//! command that writes several files writes all of them or none.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{Failure, Result};

/// The largest key file: a JWKS of a few dozen private RSA keys fits many times over.
pub(crate) const KEY_FILE_LIMIT: u64 = 1 << 20;
/// The largest `--ca-cert` file: a bundle of a few hundred certificates.
pub(crate) const CA_CERT_LIMIT: u64 = 1 << 20;
/// The largest resource, patch or Bundle read for `create`, `update`, `patch` and `batch`.
pub(crate) const RESOURCE_LIMIT: u64 = 64 << 20;
/// The largest session file checked before it is opened (the session store bounds it too).
pub(crate) const SESSION_FILE_LIMIT: u64 = 1 << 20;

/// A byte count as people read it (`64 MiB`, `1 MiB`, `512 bytes`).
pub(crate) fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

fn too_large(name: &str, what: &str, limit: u64) -> Failure {
    Failure::new(format!(
        "{name} is larger than {} (the limit for {what})",
        human(limit)
    ))
}

/// Refuses what is not a regular file (a FIFO, a device, a directory, a socket).
pub(crate) fn check_regular(path: &Path, what: &str) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Failure::new(format!(
            "{} is not a regular file (expected {what})",
            path.display()
        )));
    }
    Ok(meta)
}

/// Reads at most `limit` bytes of a regular file; a larger file, or what is not a regular
/// file, is refused with the limit in the error. The type is checked before the file is
/// opened, so a FIFO is never opened (opening one for reading blocks until a writer comes),
/// and again on the opened file.
pub(crate) fn read_file(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let meta = check_regular(path, what)?;
    if meta.len() > limit {
        return Err(too_large(&name, what, limit));
    }
    let file =
        std::fs::File::open(path).map_err(|e| Failure::new(format!("cannot read {name}: {e}")))?;
    // The path could have been replaced between the check and the open.
    let opened = file
        .metadata()
        .map_err(|e| Failure::new(format!("cannot read {name}: {e}")))?;
    if !opened.is_file() {
        return Err(Failure::new(format!(
            "{name} is not a regular file (expected {what})"
        )));
    }
    read_bounded(file, &name, what, limit)
}

/// Reads at most `limit` bytes of a reader; more is refused with the limit in the error.
pub(crate) fn read_bounded(
    reader: impl Read,
    name: &str,
    what: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::new(format!("cannot read {name}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(name, what, limit));
    }
    Ok(bytes)
}

/// A file or, for `-`, stdin, read with [`read_file`] or [`read_bounded`]; returns the name to
/// show in messages and the bytes.
pub(crate) fn read_input(path: &Path, what: &str, limit: u64) -> Result<(String, Vec<u8>)> {
    if path == Path::new("-") {
        let bytes = read_bounded(std::io::stdin().lock(), "stdin", what, limit)?;
        Ok(("stdin".to_owned(), bytes))
    } else {
        Ok((path.display().to_string(), read_file(path, what, limit)?))
    }
}

/// One file to write with [`write_all_or_none`].
#[derive(Debug)]
pub(crate) struct NewFile<'a> {
    /// Where.
    pub path: &'a Path,
    /// What.
    pub bytes: &'a [u8],
    /// The Unix mode of the new file.
    pub mode: u32,
}

/// Removes the temporary files it holds unless they were moved into place.
struct Temps(Vec<PathBuf>);

impl Drop for Temps {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes every file or none. Each is first written in full to a new temporary file beside it
/// (created exclusively, so a symlink planted there is never followed); then each is moved into
/// place: without `force` by a hard link, which fails on any existing name (a symlink included)
/// instead of following or clobbering it; with `force` by a rename, which replaces the name
/// itself (a symlink there is replaced, its target is untouched). A file already moved into place
/// is removed again when a later one fails.
pub(crate) fn write_all_or_none(files: &[NewFile<'_>], force: bool) -> Result<()> {
    for f in files {
        if let Ok(meta) = std::fs::symlink_metadata(f.path) {
            if !force {
                return Err(Failure::new(format!(
                    "{} exists (use --force to overwrite)",
                    f.path.display()
                )));
            }
            if meta.is_dir() {
                return Err(Failure::new(format!("{} is a directory", f.path.display())));
            }
        }
    }
    let mut temps = Temps(Vec::new());
    for f in files {
        let temp = write_temp(f)?;
        temps.0.push(temp);
    }
    let mut placed: Vec<&Path> = Vec::new();
    for (f, temp) in files.iter().zip(&temps.0) {
        let moved = if force {
            std::fs::rename(temp, f.path)
        } else {
            std::fs::hard_link(temp, f.path)
        };
        if let Err(e) = moved {
            if !force {
                for p in &placed {
                    let _ = std::fs::remove_file(p);
                }
            }
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                Failure::new(format!(
                    "{} exists (use --force to overwrite)",
                    f.path.display()
                ))
            } else {
                Failure::new(format!("cannot write {}: {e}", f.path.display()))
            });
        }
        placed.push(f.path);
    }
    Ok(())
}

/// A new temporary file beside `f.path` holding `f.bytes` with `f.mode`.
fn write_temp(f: &NewFile<'_>) -> Result<PathBuf> {
    let dir = match f.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = f
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::new(format!("{} names no file", f.path.display())))?;
    for attempt in 0..100u32 {
        let temp = dir.join(format!(".{base}.{}.{attempt}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        // O_CREAT | O_EXCL: fails on any existing name, a symlink included, and never follows.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(f.mode);
        }
        let mut file = match options.open(&temp) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Failure::new(format!(
                    "cannot write {}: {e}",
                    f.path.display()
                )))
            }
        };
        let written = (|| {
            // The umask may have narrowed the mode: set it exactly.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(f.mode))?;
            }
            file.write_all(f.bytes)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(Failure::new(format!(
                "cannot write {}: {e}",
                f.path.display()
            )));
        }
        return Ok(temp);
    }
    Err(Failure::new(format!(
        "cannot write {}: no free temporary name beside it",
        f.path.display()
    )))
}

/// Creates one new file (see [`write_all_or_none`]).
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<()> {
    write_all_or_none(&[NewFile { path, bytes, mode }], force)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let ok = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo failed");
    }

    /// Issue 11 §1 (local input without a bound): a FIFO is refused at once, never opened (a
    /// read would block for ever with no writer).
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("key.pem");
        mkfifo(&fifo);
        let e = read_file(&fifo, "a key file", KEY_FILE_LIMIT).unwrap_err();
        assert!(e.0.contains("not a regular file"), "{}", e.0);
    }

    /// A device (endless data) is refused, not read into memory.
    #[test]
    fn a_device_is_refused() {
        let e = read_file(Path::new("/dev/zero"), "a resource file", RESOURCE_LIMIT).unwrap_err();
        assert!(e.0.contains("not a regular file"), "{}", e.0);
    }

    /// A file over the limit is refused, and the error says the limit.
    #[test]
    fn a_file_over_the_limit_is_refused_naming_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; 1025]).unwrap();
        let e = read_file(&path, "a resource file", 1024).unwrap_err();
        assert!(e.0.contains("larger than 1 KiB"), "{}", e.0);
        assert_eq!(
            read_file(&path, "a resource file", 1025).unwrap().len(),
            1025
        );
    }

    /// A stream (stdin) longer than the limit is refused after limit + 1 bytes, whatever its size.
    #[test]
    fn a_stream_over_the_limit_is_refused() {
        let endless = std::io::repeat(b'x');
        let e = read_bounded(endless, "stdin", "a resource", 4096).unwrap_err();
        assert!(e.0.contains("stdin is larger than 4 KiB"), "{}", e.0);
    }

    /// Issue 11 §1 (writes that follow symlinks): a symlink planted at the target is neither
    /// followed nor replaced without --force; with --force the link itself is replaced and its
    /// target keeps its content.
    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_target_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("key.pem");
        std::os::unix::fs::symlink(&victim, &link).unwrap();

        let e = write_new(&link, b"new", 0o600, false).unwrap_err();
        assert!(e.0.contains("exists"), "{}", e.0);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

        write_new(&link, b"new", 0o600, true).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
        assert_eq!(leftovers(dir.path()), 0);
    }

    /// All or none: when the second file cannot be written, the first is not left behind.
    #[test]
    fn all_outputs_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("key.pem");
        let second = dir.path().join("missing-dir").join("jwks.json");
        let e = write_all_or_none(
            &[
                NewFile {
                    path: &first,
                    bytes: b"a",
                    mode: 0o600,
                },
                NewFile {
                    path: &second,
                    bytes: b"b",
                    mode: 0o644,
                },
            ],
            false,
        )
        .unwrap_err();
        assert!(e.0.contains("jwks.json"), "{}", e.0);
        assert!(!first.exists());
        assert_eq!(leftovers(dir.path()), 0);
    }

    fn leftovers(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    }
}
