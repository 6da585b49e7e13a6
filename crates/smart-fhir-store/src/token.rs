use std::fmt;
use std::io;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smart_fhir_core::{AccessToken, IdToken, RefreshToken};
use zeroize::Zeroizing;

use crate::StoreError;

/// The version written into every serialized [`StoredToken`]; bumped on incompatible changes.
const FORMAT_VERSION: u32 = 1;

/// A token response, kept with absolute times so that it can be cached, shared and persisted.
///
/// The fields are public so that the grant that obtained the token can fill them in and the
/// client that uses it can read them. New fields may be added, so build one with
/// [`StoredToken::new`] and the `with_*` methods.
///
/// `Debug` prints no secret: the tokens show as `[redacted]`, and of the launch context only the
/// parameter names are printed (its values can identify a patient).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use smart_fhir_core::AccessToken;
/// use smart_fhir_store::StoredToken;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let token = StoredToken::new(AccessToken::new("abc"), now, now + Duration::from_secs(300))
///     .with_scope("system/Patient.rs");
/// assert!(!token.is_expired(now));
/// assert!(token.expires_within(now, Duration::from_secs(300)));
/// assert_eq!(token.remaining(now), Duration::from_secs(300));
/// assert!(!format!("{token:?}").contains("abc"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct StoredToken {
    /// The access token.
    pub access_token: AccessToken,
    /// The `token_type` as the server sent it (`Bearer` in SMART, in any letter case).
    pub token_type: String,
    /// When the access token stops being valid (absolute).
    pub expires_at: SystemTime,
    /// When the token was issued (in practice: when the response was received).
    pub issued_at: SystemTime,
    /// The granted `scope` string (SC-5.13): as the server sent it, or, when the server's
    /// response listed none, the requested scope (RFC 6749 §5.1; then
    /// [`scope_given`](Self::scope_given) is `false`).
    pub scope: Option<String>,
    /// Whether the server listed the granted scope. `false` when `scope` holds the requested
    /// scope because the token response had no `scope` member: the server did not say what it
    /// granted, and the client assumes the request was granted as asked.
    pub scope_given: bool,
    /// The refresh token, if one was issued.
    pub refresh_token: Option<RefreshToken>,
    /// The OpenID Connect `id_token`, if one was issued.
    pub id_token: Option<IdToken>,
    /// The other members of the token response kept whole: `patient`, `encounter`,
    /// `fhirContext`, `need_patient_banner`, `intent`, `smart_style_url`, `tenant`,
    /// `authorization_details` and any extension (SC-4.20, SC-4.22). Empty for backend tokens.
    pub launch_context: Map<String, Value>,
}

impl StoredToken {
    /// A token of type `Bearer` with no scope, refresh token, ID token or launch context.
    pub fn new(access_token: AccessToken, issued_at: SystemTime, expires_at: SystemTime) -> Self {
        Self {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_at,
            issued_at,
            scope: None,
            scope_given: true,
            refresh_token: None,
            id_token: None,
            launch_context: Map::new(),
        }
    }

    /// Sets the `token_type`.
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Sets the granted scope string.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets whether the server listed the granted scope (see
    /// [`scope_given`](Self::scope_given); `true` unless set).
    pub fn with_scope_given(mut self, scope_given: bool) -> Self {
        self.scope_given = scope_given;
        self
    }

    /// Sets the refresh token.
    pub fn with_refresh_token(mut self, refresh_token: RefreshToken) -> Self {
        self.refresh_token = Some(refresh_token);
        self
    }

    /// Sets the ID token.
    pub fn with_id_token(mut self, id_token: IdToken) -> Self {
        self.id_token = Some(id_token);
        self
    }

    /// Sets the launch context.
    pub fn with_launch_context(mut self, launch_context: Map<String, Value>) -> Self {
        self.launch_context = launch_context;
        self
    }

    /// Whether the access token has expired at `now` (it is valid strictly before `expires_at`).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.remaining(now).is_zero()
    }

    /// Whether the access token expires within `buffer` of `now`, or has expired already. Use it to
    /// renew a little before expiry, so that a token does not lapse in flight (SC-3.8).
    pub fn expires_within(&self, now: SystemTime, buffer: Duration) -> bool {
        self.remaining(now) <= buffer
    }

    /// How long the access token stays valid after `now`; zero once it has expired.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// Serializes the token, secrets included, as JSON.
    ///
    /// # Security warning
    ///
    /// The output contains the access, refresh and ID tokens in clear text. Write it only to a
    /// store made for secrets (an access-controlled Redis, an encrypted file), never to a log. The
    /// returned buffer is zeroized when dropped.
    ///
    /// Times are written as whole seconds since the Unix epoch, rounded down: a token read back
    /// expires at most one second earlier than the original, never later. Times before 1970 are
    /// written as 0.
    ///
    /// # Errors
    ///
    /// None in practice; the `Result` leaves room for formats that can fail.
    pub fn to_json_bytes(&self) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let repr = ReprOut {
            v: FORMAT_VERSION,
            access_token: self.access_token.secret(),
            token_type: &self.token_type,
            expires_at: unix_seconds(self.expires_at),
            issued_at: unix_seconds(self.issued_at),
            scope: self.scope.as_deref(),
            scope_given: self.scope_given,
            refresh_token: self.refresh_token.as_ref().map(RefreshToken::secret),
            id_token: self.id_token.as_ref().map(IdToken::secret),
            launch_context: &self.launch_context,
        };
        // Measure first and allocate once, so that no partly written copy of the secrets is left
        // behind in a buffer freed by a reallocation.
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, &repr)
            .map_err(|_| StoreError::corrupt("stored token could not be serialized"))?;
        let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
        serde_json::to_writer(&mut *out, &repr)
            .map_err(|_| StoreError::corrupt("stored token could not be serialized"))?;
        Ok(out)
    }

    /// Reads a token written by [`StoredToken::to_json_bytes`]. Unknown members are ignored, so
    /// that a newer writer can add fields.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if `bytes` is not such a document. The message names the kind of
    /// problem and its position, never the content (which would be a secret).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let repr: ReprIn = serde_json::from_slice(bytes).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Syntax => "is not valid JSON",
                serde_json::error::Category::Eof => "is truncated",
                serde_json::error::Category::Data => "has missing or mistyped fields",
                serde_json::error::Category::Io => "could not be read",
            };
            // `e`'s own message can quote the offending value, which may be a token: only its
            // position is kept.
            StoreError::corrupt(format!(
                "stored token {what} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if repr.v != FORMAT_VERSION {
            return Err(StoreError::corrupt(format!(
                "stored token has unsupported format version {}",
                repr.v
            )));
        }
        let ReprIn {
            v: _,
            mut access_token,
            token_type,
            expires_at,
            issued_at,
            scope,
            scope_given,
            refresh_token,
            id_token,
            launch_context,
        } = repr;
        Ok(Self {
            // Moving the `String` out hands over its buffer without copying the secret.
            access_token: AccessToken::new(std::mem::take(&mut *access_token)),
            token_type,
            expires_at: from_unix_seconds(expires_at)?,
            issued_at: from_unix_seconds(issued_at)?,
            scope,
            scope_given,
            refresh_token: refresh_token.map(|mut t| RefreshToken::new(std::mem::take(&mut *t))),
            id_token: id_token.map(|mut t| IdToken::new(std::mem::take(&mut *t))),
            launch_context,
        })
    }
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .field("scope", &self.scope)
            .field("scope_given", &self.scope_given)
            .field("refresh_token", &self.refresh_token)
            .field("id_token", &self.id_token)
            .field("launch_context", &KeysOnly(&self.launch_context))
            .finish()
    }
}

/// Prints the names of a JSON object's members, not their values.
struct KeysOnly<'a>(&'a Map<String, Value>);

impl fmt::Debug for KeysOnly<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[derive(Serialize)]
struct ReprOut<'a> {
    v: u32,
    access_token: &'a str,
    token_type: &'a str,
    expires_at: u64,
    issued_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    /// Written only when `false`, so that documents of tokens whose scope the server listed
    /// stay as they were.
    #[serde(skip_serializing_if = "is_true")]
    scope_given: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    launch_context: &'a Map<String, Value>,
}

#[derive(Deserialize)]
struct ReprIn {
    v: u32,
    access_token: Zeroizing<String>,
    token_type: String,
    expires_at: u64,
    issued_at: u64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default = "yes")]
    scope_given: bool,
    #[serde(default)]
    refresh_token: Option<Zeroizing<String>>,
    #[serde(default)]
    id_token: Option<Zeroizing<String>>,
    #[serde(default)]
    launch_context: Map<String, Value>,
}

// `&bool` is what serde's `skip_serializing_if` passes.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_true(value: &bool) -> bool {
    *value
}

fn yes() -> bool {
    true
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn from_unix_seconds(secs: u64) -> Result<SystemTime, StoreError> {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .ok_or_else(|| StoreError::corrupt("stored token has a time out of range"))
}

/// A writer that only counts.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCESS: &str = "access-SECRET-1";
    const REFRESH: &str = "refresh-SECRET-2";
    const ID: &str = "id-SECRET-3";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn full_token() -> StoredToken {
        let Value::Object(ctx) = json!({
            "patient": "123",
            "encounter": "enc-9",
            "fhirContext": [{"reference": "DiagnosticReport/7", "role": "launch"}],
            "need_patient_banner": true,
            "x-vendor": {"nested": [1, 2]}
        }) else {
            unreachable!("literal is an object")
        };
        StoredToken::new(AccessToken::new(ACCESS), at(1_000), at(4_600))
            .with_token_type("bearer")
            .with_scope("launch patient/*.rs openid fhirUser")
            .with_refresh_token(RefreshToken::new(REFRESH))
            .with_id_token(IdToken::new(ID))
            .with_launch_context(ctx)
    }

    #[test]
    fn expiry_arithmetic_sc_3_8() {
        let t = StoredToken::new(AccessToken::new("a"), at(100), at(400));
        assert!(!t.is_expired(at(399)));
        assert!(t.is_expired(at(400)), "valid strictly before expires_at");
        assert!(t.is_expired(at(10_000)));
        assert_eq!(t.remaining(at(100)), Duration::from_secs(300));
        assert_eq!(t.remaining(at(500)), Duration::ZERO);
        assert!(!t.expires_within(at(300), Duration::from_secs(99)));
        assert!(t.expires_within(at(300), Duration::from_secs(100)));
        assert!(t.expires_within(at(500), Duration::ZERO));
        assert!(!t.expires_within(at(399), Duration::ZERO));
    }

    /// Nothing lost (found by fuzzing): a number in the launch context that only a float can
    /// hold comes back from the store exactly as the server sent it, not one ULP off.
    #[test]
    fn launch_context_numbers_round_trip_exactly() {
        // A float the default (not exactly rounded) parser reads back one ULP off.
        let sent = serde_json::json!(1.0715660391465826e-75_f64);
        let mut ctx = Map::new();
        ctx.insert("x-extension".to_owned(), sent.clone());
        ctx.insert("x-small".to_owned(), serde_json::json!(0.1_f64 + 0.2_f64));
        let original = StoredToken::new(AccessToken::new(ACCESS), at(1_000), at(4_600))
            .with_launch_context(ctx);
        let back = StoredToken::from_json_bytes(&original.to_json_bytes().unwrap()).unwrap();
        assert_eq!(back.launch_context, original.launch_context);
        assert_eq!(back.launch_context["x-extension"], sent);
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let original = full_token();
        let bytes = original.to_json_bytes().unwrap();
        let back = StoredToken::from_json_bytes(&bytes).unwrap();
        assert!(back.access_token.ct_eq(ACCESS));
        assert_eq!(back.token_type, "bearer");
        assert_eq!(back.issued_at, at(1_000));
        assert_eq!(back.expires_at, at(4_600));
        assert_eq!(back.scope, original.scope);
        assert!(back.refresh_token.as_ref().unwrap().ct_eq(REFRESH));
        assert!(back.id_token.as_ref().unwrap().ct_eq(ID));
        assert_eq!(back.launch_context, original.launch_context);
        assert_eq!(
            bytes.capacity(),
            bytes.len(),
            "allocated once, at the exact size"
        );
    }

    #[test]
    fn json_round_trip_of_a_minimal_backend_token() {
        let t = StoredToken::new(AccessToken::new(ACCESS), at(5), at(305));
        let back = StoredToken::from_json_bytes(&t.to_json_bytes().unwrap()).unwrap();
        assert!(back.access_token.ct_eq(ACCESS));
        assert_eq!(back.token_type, "Bearer");
        assert!(back.scope.is_none() && back.refresh_token.is_none() && back.id_token.is_none());
        assert!(back.launch_context.is_empty());
    }

    /// SC-5.13: whether the server listed the granted scope survives a store; documents written
    /// before the field existed read as listed.
    #[test]
    fn scope_given_round_trips_and_defaults_to_listed() {
        let assumed = StoredToken::new(AccessToken::new(ACCESS), at(5), at(305))
            .with_scope("system/*.rs")
            .with_scope_given(false);
        let bytes = assumed.to_json_bytes().unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["scope_given"], false);
        let back = StoredToken::from_json_bytes(&bytes).unwrap();
        assert!(!back.scope_given);
        assert_eq!(back.scope.as_deref(), Some("system/*.rs"));
        let listed = full_token();
        assert!(listed.scope_given);
        let bytes = listed.to_json_bytes().unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v.get("scope_given").is_none(), "not written when true");
        assert!(StoredToken::from_json_bytes(&bytes).unwrap().scope_given);
    }

    #[test]
    fn json_times_are_unix_seconds_rounded_down() {
        let t = StoredToken::new(
            AccessToken::new("a"),
            at(10) + Duration::from_millis(999),
            at(20) + Duration::from_millis(999),
        );
        let v: Value = serde_json::from_slice(&t.to_json_bytes().unwrap()).unwrap();
        assert_eq!(v["issued_at"], 10);
        assert_eq!(v["expires_at"], 20);
        assert_eq!(v["v"], 1);
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        let t = StoredToken::new(AccessToken::new("a"), before_epoch, before_epoch);
        let back = StoredToken::from_json_bytes(&t.to_json_bytes().unwrap()).unwrap();
        assert_eq!(back.expires_at, SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn json_ignores_unknown_members() {
        let doc = br#"{"v":1,"access_token":"a","token_type":"Bearer","expires_at":2,
            "issued_at":1,"future_field":{"x":1}}"#;
        let t = StoredToken::from_json_bytes(doc).unwrap();
        assert!(t.access_token.ct_eq("a"));
        assert_eq!(t.expires_at, at(2));
    }

    #[test]
    fn corrupt_json_is_a_typed_error_that_quotes_nothing_p5() {
        let cases: [&[u8]; 7] = [
            b"",
            b"not json",
            br#"{"v":1,"access_token":"access-SECRET-1""#,
            br#"{"v":1,"token_type":"Bearer","expires_at":2,"issued_at":1}"#,
            // The secret sits where a number belongs: serde_json's own message would quote it.
            br#"{"v":1,"access_token":"a","token_type":"B","expires_at":"access-SECRET-1","issued_at":1}"#,
            br#"{"v":2,"access_token":"a","token_type":"B","expires_at":2,"issued_at":1}"#,
            br#"{"v":1,"access_token":"a","token_type":"B","expires_at":18446744073709551615,"issued_at":1}"#,
        ];
        for doc in cases {
            match StoredToken::from_json_bytes(doc) {
                Err(e @ StoreError::Corrupt { .. }) => {
                    let text = e.to_string();
                    assert!(!text.contains("SECRET"), "{text}");
                    assert!(std::error::Error::source(&e).is_none());
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn debug_prints_no_secret_and_no_context_value_p5() {
        let printed = format!("{:?} {:#?}", full_token(), full_token());
        for secret in [ACCESS, REFRESH, ID, "123", "enc-9", "DiagnosticReport/7"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert!(printed.contains("fhirContext"), "context names are shown");
        assert!(printed.contains("[redacted]"));
    }
}
