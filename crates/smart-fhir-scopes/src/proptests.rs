//! Property tests: round trips (SC-5.1, SC-5.2, SC-5.5, SC-5.6, SC-5.10, SC-5.11), coverage
//! laws (SC-5.16), normalisation (SC-5.8), differences (SC-5.13), and no panic on any input.

use proptest::prelude::*;

use crate::permissions::{Permission, Permissions};
use crate::resource::ResourceScope;
use crate::restrictions::Restrictions;
use crate::scope::Scope;
use crate::set::ScopeSet;

fn permissions_text() -> impl Strategy<Value = String> {
    (1u8..32).prop_map(|bits| {
        Permission::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, p)| p.letter())
            .collect()
    })
}

fn context_text() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("patient"), Just("user"), Just("system")]
}

fn type_text() -> impl Strategy<Value = String> {
    prop_oneof![Just("*".to_owned()), "[A-Z][A-Za-z]{0,10}"]
}

fn restriction_text() -> impl Strategy<Value = String> {
    let param = (
        "[a-z_][a-z0-9_.:-]{0,6}",
        "([A-Za-z0-9|:/.,~!$'()*;@?-]|%[0-9A-F]{2}){1,8}",
    )
        .prop_map(|(name, value)| format!("{name}={value}"));
    prop::collection::vec(param, 1..4).prop_map(|params| params.join("&"))
}

/// Canonical text of every kind of scope.
fn canonical_scope_text() -> impl Strategy<Value = String> {
    let v2 = (
        context_text(),
        type_text(),
        permissions_text(),
        prop::option::of(restriction_text()),
    )
        .prop_map(|(c, t, p, r)| match r {
            Some(r) => format!("{c}/{t}.{p}?{r}"),
            None => format!("{c}/{t}.{p}"),
        });
    let v1 = (
        context_text(),
        type_text(),
        prop_oneof![Just("read"), Just("write"), Just("*")],
    )
        .prop_map(|(c, t, a)| format!("{c}/{t}.{a}"));
    let launch = prop_oneof![
        Just("launch".to_owned()),
        "[a-z]{1,12}".prop_map(|t| format!("launch/{t}")),
        ("[a-z]{1,12}", "[a-z]{1,5}:[A-Za-z0-9/._=-]{1,10}")
            .prop_map(|(t, role)| format!("launch/{t}?role={role}")),
    ];
    let simple = prop_oneof![
        Just("openid".to_owned()),
        Just("fhirUser".to_owned()),
        Just("profile".to_owned()),
        Just("offline_access".to_owned()),
        Just("online_access".to_owned()),
    ];
    let extension = prop_oneof![
        "__[A-Za-z0-9._-]{1,10}",
        "https://example\\.org/[a-z]{1,8}",
        "urn:[a-z]{1,5}:[a-z0-9]{1,5}",
    ];
    prop_oneof![4 => v2, 2 => v1, 2 => launch, 1 => simple, 1 => extension]
}

/// Scopes from a small universe, so that sets often cover one another.
fn small_scope_text() -> impl Strategy<Value = String> {
    let resource = (
        prop_oneof![Just("patient"), Just("user")],
        prop_oneof![Just("*"), Just("Observation"), Just("Patient")],
        prop_oneof![
            3 => permissions_text(),
            1 => prop_oneof![Just("read".to_owned()), Just("write".to_owned()), Just("*".to_owned())],
        ],
        prop_oneof![
            3 => Just(""),
            1 => Just("?a=1"),
            1 => Just("?a=%31"),
            1 => Just("?a=1&b=2"),
            1 => Just("?b=2&a=1"),
        ],
    )
        .prop_map(|(c, t, p, r)| {
            if matches!(p.as_str(), "read" | "write" | "*") {
                format!("{c}/{t}.{p}")
            } else {
                format!("{c}/{t}.{p}{r}")
            }
        });
    let other = prop_oneof![
        Just("openid".to_owned()),
        Just("fhirUser".to_owned()),
        Just("profile".to_owned()),
        Just("launch".to_owned()),
        Just("launch/patient".to_owned()),
        Just("__x".to_owned()),
    ];
    prop_oneof![4 => resource, 1 => other]
}

fn small_set() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec(small_scope_text(), 0..7).prop_map(|texts| {
        texts
            .iter()
            .filter_map(|text| Scope::parse(text).ok())
            .collect()
    })
}

/// A set that `set` covers by construction: each scope is dropped, kept, given fewer
/// permissions, split into single permissions, narrowed to a type or a restriction, or
/// rewritten in v1 (or `fhirUser` ↔ `profile`).
fn narrow(set: &ScopeSet, choices: &[u8]) -> ScopeSet {
    let mut out = ScopeSet::new();
    for (i, scope) in set.iter().enumerate() {
        let choice = choices.get(i).copied().unwrap_or(1);
        let Some(view) = scope.resource_view() else {
            match (choice % 3, scope) {
                (0, _) => {}
                (1, Scope::FhirUser) => {
                    out.insert(Scope::Profile);
                }
                (1, Scope::Profile) => {
                    out.insert(Scope::FhirUser);
                }
                _ => {
                    out.insert(scope.clone());
                }
            }
            continue;
        };
        let rebuild = |permissions: Permissions, restrictions: Option<Restrictions>| {
            Scope::Resource(ResourceScope::from_parts(
                view.context(),
                view.resource().clone(),
                permissions,
                restrictions,
            ))
        };
        match choice % 6 {
            0 => {}
            1 => {
                out.insert(scope.clone());
            }
            2 => {
                let mask = Permission::ALL
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| (choice >> 3) & (1 << bit) != 0)
                    .map(|(_, p)| *p)
                    .collect::<Permissions>();
                let mut fewer = view.permissions() & mask;
                if fewer.is_empty() {
                    fewer = view
                        .permissions()
                        .iter()
                        .next()
                        .map(Permissions::from)
                        .unwrap_or(Permissions::READ);
                }
                out.insert(rebuild(fewer, view.restrictions().cloned()));
            }
            3 => {
                for p in view.permissions().iter() {
                    out.insert(rebuild(p.into(), view.restrictions().cloned()));
                }
            }
            4 => {
                let narrowed = match view.resource() {
                    crate::ResourceType::Any => Scope::Resource(ResourceScope::from_parts(
                        view.context(),
                        crate::ResourceType::named("Observation")
                            .unwrap_or(crate::ResourceType::Any),
                        view.permissions(),
                        view.restrictions().cloned(),
                    )),
                    crate::ResourceType::Named(_) => rebuild(
                        view.permissions(),
                        Some(
                            view.restrictions()
                                .cloned()
                                .unwrap_or_else(|| Restrictions::from_validated("a=1")),
                        ),
                    ),
                };
                out.insert(narrowed);
            }
            _ => match view.to_v1() {
                Ok(v1) => {
                    out.insert(Scope::ResourceV1(v1));
                }
                Err(_) => {
                    out.insert(scope.to_v2());
                }
            },
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// SC-5.1, SC-5.2, SC-5.5, SC-5.6, SC-5.10, SC-5.11: parse ∘ display is the identity on
    /// canonical scopes, as text and as value.
    #[test]
    fn canonical_scopes_round_trip(text in canonical_scope_text()) {
        let scope = Scope::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(scope.to_string(), text.clone());
        prop_assert_eq!(Scope::parse(&scope.to_string()), Ok(scope.clone()));
        prop_assert_eq!(Scope::parse_lenient(&text), Ok(scope));
    }

    /// Sets of canonical scopes round trip through their space-separated text.
    #[test]
    fn canonical_sets_round_trip(texts in prop::collection::vec(canonical_scope_text(), 0..8)) {
        let set = ScopeSet::parse(&texts.join(" ")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ScopeSet::parse(&set.to_string()), Ok(set.clone()));
        prop_assert_eq!(ScopeSet::parse_lenient(&set.to_string()).into_scopes(), set);
    }

    /// SC-5.16: coverage is reflexive.
    #[test]
    fn coverage_is_reflexive(a in small_set()) {
        prop_assert!(a.covers(&a));
        for scope in &a {
            prop_assert!(scope.covers(scope));
            prop_assert!(a.covers(scope));
        }
    }

    /// SC-5.16: coverage is transitive, on random triples and on chains built to cover.
    #[test]
    fn coverage_is_transitive(
        a in small_set(),
        b in small_set(),
        c in small_set(),
        choices1 in prop::collection::vec(any::<u8>(), 8),
        choices2 in prop::collection::vec(any::<u8>(), 8),
    ) {
        if a.covers(&b) && b.covers(&c) {
            prop_assert!(a.covers(&c));
        }
        let b = narrow(&a, &choices1);
        let c = narrow(&b, &choices2);
        prop_assert!(a.covers(&b), "{} should cover {}", a, b);
        prop_assert!(b.covers(&c), "{} should cover {}", b, c);
        prop_assert!(a.covers(&c), "{} should cover {}", a, c);
    }

    /// SC-5.8: normalising is idempotent, never longer, and keeps the meaning both ways.
    #[test]
    fn normalize_is_idempotent_and_preserves_coverage(a in small_set()) {
        let n = a.normalize();
        prop_assert!(n.covers(&a), "{} should cover {}", n, a);
        prop_assert!(a.covers(&n), "{} should cover {}", a, n);
        prop_assert!(n.len() <= a.len());
        let nn = n.normalize();
        prop_assert_eq!(nn.to_string(), n.to_string());
        prop_assert!(n.iter().all(|s| !matches!(s, Scope::ResourceV1(_))));
    }

    /// SC-5.13: nothing is missing exactly when the grant covers the request; the grant plus
    /// what is missing covers the request; the request plus the extra covers the grant.
    #[test]
    fn difference_matches_coverage(requested in small_set(), granted in small_set()) {
        let diff = requested.difference(&granted);
        prop_assert_eq!(diff.is_fully_granted(), granted.covers(&requested));
        prop_assert_eq!(diff.extra().is_empty(), requested.covers(&granted));
        let mut patched = granted.clone();
        patched.extend(diff.missing().iter().cloned());
        prop_assert!(patched.covers(&requested));
        let mut widened = requested.clone();
        widened.extend(diff.extra().iter().cloned());
        prop_assert!(widened.covers(&granted));
        prop_assert!(!granted.covers(diff.missing()) || diff.missing().is_empty());
    }

    /// SC-1.14, SC-5.7: a v1 rendering, when it exists, means exactly the same; v2 mapping too.
    #[test]
    fn version_mappings_keep_the_meaning(a in small_set()) {
        let v2 = a.to_v2();
        prop_assert!(v2.covers(&a) && a.covers(&v2));
        if let Ok(v1) = a.to_v1() {
            prop_assert!(v1.covers(&a) && a.covers(&v1), "{} vs {}", v1, a);
        }
    }

    /// No input makes the parsers panic; whatever parses strictly displays as it was written
    /// and whatever parses leniently displays as a strictly valid scope.
    #[test]
    fn parsers_never_panic(text in prop_oneof![any::<String>(), "[a-zA-Z_/.*?=&%:| \t-]{0,40}"]) {
        if let Ok(scope) = Scope::parse(&text) {
            prop_assert_eq!(scope.to_string(), text.clone());
        }
        if let Ok(scope) = Scope::parse_lenient(&text) {
            prop_assert_eq!(Scope::parse(&scope.to_string()), Ok(scope));
        }
        let lenient = ScopeSet::parse_lenient(&text);
        prop_assert!(lenient.unrecognized().iter().all(|u| !u.text().is_empty()));
        prop_assert_eq!(ScopeSet::parse(&lenient.scopes().to_string()), Ok(lenient.scopes().clone()));
        let _ = ScopeSet::parse(&text);
        let _ = Restrictions::parse(&text);
    }
}
