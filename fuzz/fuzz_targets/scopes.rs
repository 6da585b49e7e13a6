//! Scope strings as a server grants them (SC-5.1–5.7): one scope and a set, strict and lenient.
//! A scope that parses displays in a form that parses back to the same scope; the lenient
//! reading of a set accounts for every token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_fhir_scopes::{Scope, ScopeSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for lenient in [false, true] {
        let parsed = if lenient {
            Scope::parse_lenient(text)
        } else {
            Scope::parse(text)
        };
        if let Ok(scope) = parsed {
            let shown = scope.to_string();
            let again = Scope::parse(&shown).expect("a displayed scope parses strictly");
            assert_eq!(again, scope, "{shown}");
            assert!(scope.covers(&scope), "a scope covers itself: {shown}");
            let v2 = scope.to_v2();
            assert!(
                v2.covers(&scope) && scope.covers(&v2),
                "v1 and v2 forms: {shown}"
            );
        }
    }
    if let Ok(set) = ScopeSet::parse(text) {
        let shown = set.to_string();
        let again = ScopeSet::parse(&shown).expect("a displayed set parses");
        assert_eq!(again, set, "{shown}");
        assert!(set.covers(&set));
        assert!(set.covers(&ScopeSet::new()));
        for scope in &set {
            assert!(set.covers(scope), "{scope}");
        }
        let normalized = set.normalize();
        assert!(
            normalized.covers(&set) && set.covers(&normalized),
            "{shown}"
        );
    }
    let lenient = ScopeSet::parse_lenient(text);
    let tokens = text.split_ascii_whitespace().count();
    assert!(lenient.scopes().len() + lenient.unrecognized().len() <= tokens);
    if tokens > 0 {
        assert!(lenient.scopes().len() + lenient.unrecognized().len() >= 1);
    }
    let shown = lenient.scopes().to_string();
    assert_eq!(
        ScopeSet::parse(&shown).as_ref(),
        Ok(lenient.scopes()),
        "{shown}"
    );
});
