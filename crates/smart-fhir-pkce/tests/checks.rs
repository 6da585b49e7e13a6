//! Errors that name what was refused: each loader's error says which value (verifier, `state`,
//! `nonce`) broke which rule, without echoing the value (SC-4.6, SC-4.8, P3, P5).
//!
//! These pin the `Display` of [`ValueKind`], so that a message can never lose the name of the
//! value it is about.

use smart_fhir_pkce::{Nonce, PkceError, PkceVerifier, State, ValueKind};

/// SC-4.8: the verifier's errors name the PKCE code verifier and the rule.
#[test]
fn verifier_errors_name_the_code_verifier_sc_4_8() {
    let err = PkceVerifier::from_string("a".repeat(42)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PKCE code verifier must be 43 to 128 characters long, got 42"
    );
    let err = PkceVerifier::from_string(format!("{}+", "a".repeat(43))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PKCE code verifier contains a character outside the unreserved set \
         [A-Za-z0-9-._~] at byte offset 43"
    );
}

/// SC-4.6, P3: `state` and `nonce` errors name their value.
#[test]
fn state_and_nonce_errors_name_their_value_sc_4_6_p3() {
    let err = State::from_string("s").unwrap_err();
    assert_eq!(
        err.to_string(),
        "state must be 43 to 128 characters long, got 1"
    );
    let err = Nonce::from_string(format!("{} ", "n".repeat(43))).unwrap_err();
    assert!(
        matches!(
            err,
            PkceError::Character {
                kind: ValueKind::Nonce,
                offset: 43
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "nonce contains a character outside the unreserved set [A-Za-z0-9-._~] at byte offset 43"
    );
}

/// Each kind prints its own name.
#[test]
fn value_kind_display() {
    assert_eq!(ValueKind::CodeVerifier.to_string(), "PKCE code verifier");
    assert_eq!(ValueKind::State.to_string(), "state");
    assert_eq!(ValueKind::Nonce.to_string(), "nonce");
}
