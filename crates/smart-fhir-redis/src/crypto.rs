//! Encryption at rest: XChaCha20-Poly1305 with a key id in every value, the Redis key name as
//! associated data, and the framing of clear values.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use smart_fhir_store::StoreError;
use zeroize::Zeroizing;

/// The first bytes of every value this crate writes, then `p` (clear) or `e` (encrypted).
const MAGIC: &[u8; 4] = b"sfr1";
const NONCE_LEN: usize = 24;
/// Domain separation for the associated data.
const AD_LABEL: &[u8] = b"smart-fhir-redis v1\0";
/// The longest key id.
pub const MAX_KEY_ID_LEN: usize = 32;

/// A 256-bit key for encryption at rest, with the id stored beside every value it encrypts.
///
/// `Debug` shows the id only; the key bytes are zeroized when dropped.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl EncryptionKey {
    /// A key named `id`: 1 to 32 ASCII letters, digits, `-`, `_` or `.`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidArgument`] if the id is empty, too long or has other characters.
    pub fn new(id: impl Into<String>, key: [u8; 32]) -> Result<Self, StoreError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= MAX_KEY_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(StoreError::invalid_argument(
                "encryption key id must be 1 to 32 of A-Z a-z 0-9 - _ .",
            ));
        }
        Ok(Self {
            id,
            key: Zeroizing::new(key),
        })
    }

    /// A key from a slice, which must be 32 bytes long.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidArgument`] for another length or a bad id (see [`EncryptionKey::new`]).
    pub fn from_slice(id: impl Into<String>, key: &[u8]) -> Result<Self, StoreError> {
        let bytes: [u8; 32] = key.try_into().map_err(|_| {
            StoreError::invalid_argument(format!(
                "encryption key must be 32 bytes, got {}",
                key.len()
            ))
        })?;
        let bytes = Zeroizing::new(bytes);
        Self::new(id, *bytes)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.key).into())
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The keys a store encrypts and decrypts with: values are encrypted with the current key and
/// decrypted with whichever key their stored id names, so keys can rotate without a flag day.
///
/// Rotation: add the new key as current and keep the old one with
/// [`Keyring::with_old_key`] until every value written under it has expired or been rewritten.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: EncryptionKey,
    old: Vec<EncryptionKey>,
}

impl Keyring {
    /// A keyring that encrypts with `current`.
    pub fn new(current: EncryptionKey) -> Self {
        Self {
            current,
            old: Vec::new(),
        }
    }

    /// Also decrypts values written under `key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidArgument`] if the keyring already has a key with this id.
    pub fn with_old_key(mut self, key: EncryptionKey) -> Result<Self, StoreError> {
        if key.id == self.current.id || self.old.iter().any(|k| k.id == key.id) {
            return Err(StoreError::invalid_argument(
                "two encryption keys have the same id",
            ));
        }
        self.old.push(key);
        Ok(self)
    }

    /// The id of the key new values are encrypted with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn find(&self, id: &[u8]) -> Option<&EncryptionKey> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id.as_bytes() == id)
    }
}

fn associated_data(key_id: &[u8], redis_key: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_LABEL.len() + key_id.len() + 1 + redis_key.len());
    ad.extend_from_slice(AD_LABEL);
    ad.extend_from_slice(key_id);
    ad.push(0);
    ad.extend_from_slice(redis_key.as_bytes());
    ad
}

/// Frames `plaintext` for storage under `redis_key`: encrypted when `keys` is given.
pub(crate) fn seal(
    keys: Option<&Keyring>,
    redis_key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let Some(keys) = keys else {
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + plaintext.len());
        out.extend_from_slice(MAGIC);
        out.push(b'p');
        out.extend_from_slice(plaintext);
        return Ok(out);
    };
    let key = &keys.current;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| StoreError::backend("no randomness for an encryption nonce", e))?;
    let ad = associated_data(key.id.as_bytes(), redis_key);
    let ciphertext = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &ad,
            },
        )
        .map_err(|_| StoreError::backend_message("value could not be encrypted"))?;
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + key.id.len() + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.push(b'e');
    // The id is at most 32 bytes (checked in `EncryptionKey::new`).
    out.push(key.id.len() as u8);
    out.extend_from_slice(key.id.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Reads a value framed by [`seal`] under `redis_key`. With a keyring, a value stored in the
/// clear is refused (it could have been planted by anyone who can write to Redis).
pub(crate) fn open(
    keys: Option<&Keyring>,
    redis_key: &str,
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let body = stored
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| StoreError::corrupt("stored value was not written by smart-fhir-redis"))?;
    match (body.split_first(), keys) {
        (Some((b'p', plain)), None) => Ok(Zeroizing::new(plain.to_vec())),
        (Some((b'p', _)), Some(_)) => Err(StoreError::corrupt(
            "stored value is not encrypted but the store requires encryption",
        )),
        (Some((b'e', _)), None) => Err(StoreError::corrupt(
            "stored value is encrypted but no encryption key is configured",
        )),
        (Some((b'e', rest)), Some(keys)) => {
            let (&id_len, rest) = rest
                .split_first()
                .ok_or_else(|| StoreError::corrupt("encrypted value is truncated"))?;
            let id_len = usize::from(id_len);
            if rest.len() < id_len + NONCE_LEN {
                return Err(StoreError::corrupt("encrypted value is truncated"));
            }
            let (id, rest) = rest.split_at(id_len);
            let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
            let key = keys.find(id).ok_or_else(|| {
                StoreError::corrupt("stored value is encrypted with a key id not in the keyring")
            })?;
            let ad = associated_data(id, redis_key);
            key.cipher()
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &ad,
                    },
                )
                .map(Zeroizing::new)
                .map_err(|_| {
                    StoreError::corrupt(
                        "stored value failed authentication (wrong key, or moved from another key name)",
                    )
                })
        }
        _ => Err(StoreError::corrupt("stored value has an unknown framing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(id: &str, byte: u8) -> Keyring {
        Keyring::new(EncryptionKey::new(id, [byte; 32]).unwrap())
    }

    #[test]
    fn round_trip_and_no_plaintext_in_the_stored_bytes() {
        let keys = ring("k1", 1);
        let sealed = seal(Some(&keys), "p:tok:{a}", b"the-access-token").unwrap();
        assert!(!sealed
            .windows(b"access-token".len())
            .any(|w| w == b"access-token"));
        let opened = open(Some(&keys), "p:tok:{a}", &sealed).unwrap();
        assert_eq!(opened.as_slice(), b"the-access-token");
        // A fresh nonce every time.
        assert_ne!(
            sealed,
            seal(Some(&keys), "p:tok:{a}", b"the-access-token").unwrap()
        );
    }

    #[test]
    fn a_value_copied_to_another_key_name_does_not_decrypt() {
        let keys = ring("k1", 1);
        let sealed = seal(Some(&keys), "p:tok:{a}", b"v").unwrap();
        let e = open(Some(&keys), "p:tok:{b}", &sealed).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn rotation_decrypts_with_old_keys_and_encrypts_with_the_current_one() {
        let old = ring("k1", 1);
        let sealed_old = seal(Some(&old), "k", b"v1").unwrap();
        let rotated = Keyring::new(EncryptionKey::new("k2", [2; 32]).unwrap())
            .with_old_key(EncryptionKey::new("k1", [1; 32]).unwrap())
            .unwrap();
        assert_eq!(
            open(Some(&rotated), "k", &sealed_old).unwrap().as_slice(),
            b"v1"
        );
        let sealed_new = seal(Some(&rotated), "k", b"v2").unwrap();
        assert_eq!(&sealed_new[5..8], b"\x02k2");
        // The old keyring alone cannot read what the new key wrote.
        assert!(matches!(
            open(Some(&old), "k", &sealed_new),
            Err(StoreError::Corrupt { .. })
        ));
        // A key with the right id but other bytes fails authentication.
        assert!(open(Some(&ring("k1", 9)), "k", &sealed_old).is_err());
        assert!(rotated
            .with_old_key(EncryptionKey::new("k1", [3; 32]).unwrap())
            .is_err());
    }

    #[test]
    fn clear_and_encrypted_values_are_not_mixed_up() {
        let keys = ring("k1", 1);
        let clear = seal(None, "k", b"{}").unwrap();
        assert_eq!(clear, b"sfr1p{}");
        assert_eq!(open(None, "k", &clear).unwrap().as_slice(), b"{}");
        assert!(open(Some(&keys), "k", &clear).is_err());
        let sealed = seal(Some(&keys), "k", b"{}").unwrap();
        assert!(open(None, "k", &sealed).is_err());
        for junk in [
            &b""[..],
            b"sfr1",
            b"sfr1e",
            b"sfr1e\x05k1",
            b"other",
            b"sfr1x",
        ] {
            assert!(
                matches!(
                    open(Some(&keys), "k", junk),
                    Err(StoreError::Corrupt { .. })
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn key_ids_are_checked_and_debug_hides_the_key() {
        assert!(EncryptionKey::new("", [0; 32]).is_err());
        assert!(EncryptionKey::new("a b", [0; 32]).is_err());
        assert!(EncryptionKey::new("x".repeat(33), [0; 32]).is_err());
        assert!(EncryptionKey::from_slice("k", &[0; 31]).is_err());
        let k = EncryptionKey::from_slice("k-1.a_b", &[0xAB; 32]).unwrap();
        let printed = format!("{k:?} {:?}", Keyring::new(k.clone()));
        assert!(printed.contains("k-1.a_b"));
        assert!(!printed.contains("171"), "{printed}");
    }
}
