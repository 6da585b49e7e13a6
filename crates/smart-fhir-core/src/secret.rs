//! Secret newtypes.
//!
//! Every type here:
//! * prints `TypeName([redacted])` under `Debug`, and has no `Display`;
//! * zeroizes its memory when dropped;
//! * has no derived `PartialEq`: compare with [`AccessToken::ct_eq`] and friends, which run in
//!   constant time;
//! * exposes the value only through `secret()`, whose name makes every use visible in review.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident, clone = true) => {
        $(#[$meta])*
        ///
        /// Cloning shares one zeroized buffer (a reference count), so handing the same token to
        /// many requests copies no secret bytes; the memory is wiped when the last clone drops.
        #[derive(Clone)]
        pub struct $name(Arc<Zeroizing<String>>);

        secret_type!(@common $name, |v: String| Arc::new(Zeroizing::new(v)));

        impl $name {
            /// Whether `other` is a clone of this very value (no comparison of the secret).
            pub fn is_same_value(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0)
            }
        }
    };
    ($(#[$meta:meta])* $name:ident, clone = false) => {
        $(#[$meta])*
        pub struct $name(Zeroizing<String>);

        secret_type!(@common $name, |v: String| Zeroizing::new(v));
    };
    (@common $name:ident, $wrap:expr) => {
        impl $name {
            #[doc = concat!("Wraps a value as a [`", stringify!($name), "`].")]
            pub fn new(value: impl Into<String>) -> Self {
                Self(($wrap)(value.into()))
            }

            /// The secret value.
            ///
            /// # Security warning
            ///
            /// Never log, print or persist the returned value outside a store made for secrets.
            pub fn secret(&self) -> &str {
                self.0.as_str()
            }

            /// Compares with another value in constant time.
            pub fn ct_eq(&self, other: &str) -> bool {
                self.0.as_bytes().ct_eq(other.as_bytes()).into()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_type!(
    /// An OAuth 2.0 access token (a bearer credential).
    AccessToken,
    clone = true
);
secret_type!(
    /// An OAuth 2.0 refresh token.
    RefreshToken,
    clone = true
);
secret_type!(
    /// An OpenID Connect `id_token` (a compact JWS).
    IdToken,
    clone = true
);
secret_type!(
    /// A client secret for `client_secret_basic` / `client_secret_post`.
    ClientSecret,
    clone = true
);
secret_type!(
    /// An authorization code from the authorize callback. Used once, so not `Clone`.
    AuthorizationCode,
    clone = false
);
secret_type!(
    /// A PKCE code verifier (RFC 7636). Belongs to one flow, so not `Clone`.
    PkceCodeVerifier,
    clone = false
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_for_every_secret_type_p5() {
        let s = "super-secret-value";
        let printed = [
            format!("{:?}", AccessToken::new(s)),
            format!("{:?}", RefreshToken::new(s)),
            format!("{:?}", IdToken::new(s)),
            format!("{:?}", ClientSecret::new(s)),
            format!("{:?}", AuthorizationCode::new(s)),
            format!("{:?}", PkceCodeVerifier::new(s)),
            format!("{:#?}", Some(AccessToken::new(s))),
        ];
        for p in printed {
            assert!(!p.contains(s), "{p} leaks the secret");
            assert!(p.contains("[redacted]"), "{p}");
        }
    }

    #[test]
    fn secret_accessor_and_constant_time_compare() {
        let t = AccessToken::new("abc");
        assert_eq!(t.secret(), "abc");
        assert!(t.ct_eq("abc"));
        assert!(!t.ct_eq("abd"));
        assert!(!t.ct_eq("ab"));
        let c = t.clone();
        assert_eq!(c.secret(), "abc");
        assert!(c.is_same_value(&t));
        assert!(!AccessToken::new("abc").is_same_value(&t));
    }
}
