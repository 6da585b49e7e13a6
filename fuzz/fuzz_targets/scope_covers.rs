//! `covers` between a granted and a requested scope set (SC-5.13, SC-5.16), both read leniently
//! from the two halves of the input (split at the first newline). Coverage is reflexive and
//! agrees with `difference`; a set covers each scope it covers as a set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_fhir_scopes::{ScopeRelation, ScopeSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (granted, requested) = text.split_once('\n').unwrap_or((text, ""));
    let granted = ScopeSet::parse_lenient(granted).into_scopes();
    let requested = ScopeSet::parse_lenient(requested).into_scopes();
    assert!(granted.covers(&granted));
    let covered = granted.covers(&requested);
    let each = requested.iter().all(|s| granted.covers(s));
    assert_eq!(covered, each, "set coverage is coverage of each scope");
    let diff = requested.difference(&granted);
    assert_eq!(
        diff.is_fully_granted(),
        covered,
        "difference agrees with covers"
    );
    if covered {
        assert!(diff.missing().is_empty());
    }
    if diff.relation() == ScopeRelation::Equivalent {
        assert!(covered && requested.covers(&granted));
    }
    // Whatever is missing is not covered by what was granted.
    for scope in diff.missing() {
        assert!(
            !granted.covers(scope),
            "{scope} is reported missing but covered"
        );
    }
});
