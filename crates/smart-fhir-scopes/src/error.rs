use std::fmt;

/// How many characters of the offending scope an error keeps; the rest is cut off with `…`.
const MAX_SCOPE_CHARS: usize = 120;
/// How many characters of an offending name (context, type, parameter) an error keeps.
const MAX_NAME_CHARS: usize = 40;

/// Why a scope could not be parsed, built or converted.
///
/// `Display` reads "`` `patient/Observation.rx` ``: unknown permission letter `x`". The scope text
/// is made safe to log: everything after a `?` is replaced by `?…`, because search restrictions
/// can name patient data (`?subject=…`); control characters are escaped and long text is cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{scope}`: {kind}")]
#[non_exhaustive]
pub struct ScopeError {
    scope: String,
    kind: ScopeErrorKind,
}

impl ScopeError {
    pub(crate) fn new(scope_text: &str, kind: ScopeErrorKind) -> Self {
        Self {
            scope: loggable_scope(scope_text),
            kind,
        }
    }

    /// The scope the error is about, with any `?` restriction part elided as `?…`, control
    /// characters escaped and long text cut.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// What is wrong.
    pub fn kind(&self) -> &ScopeErrorKind {
        &self.kind
    }
}

/// What is wrong with a scope. Part of [`ScopeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeErrorKind {
    /// The scope is the empty string.
    Empty,
    /// A character that RFC 6749 §3.3 does not allow in a scope token (only printable ASCII
    /// other than space, `"` and `\` is allowed).
    InvalidCharacter {
        /// The first offending character.
        character: char,
    },
    /// The text before `/` is not `patient`, `user` or `system` (SC-5.1).
    UnknownContext {
        /// The text found (cut to a few dozen characters).
        found: String,
    },
    /// Nothing between `/` and `.`.
    MissingResourceType,
    /// The resource type is neither `*` nor a FHIR type name (`[A-Z][A-Za-z]*`).
    InvalidResourceType {
        /// The text found (cut to a few dozen characters).
        found: String,
    },
    /// No `.` introduces the permissions after the resource type.
    MissingPermissions,
    /// The permission suffix after `.` is empty (SC-5.3).
    EmptyPermissions,
    /// A permission letter other than `c`, `r`, `u`, `d`, `s`.
    UnknownPermission {
        /// The offending letter.
        letter: char,
    },
    /// A permission letter given twice (SC-5.2).
    RepeatedPermission {
        /// The repeated letter.
        letter: char,
    },
    /// Permission letters not in `c r u d s` order (SC-5.2).
    PermissionOrder {
        /// The permission suffix found.
        found: String,
    },
    /// A v1 scope (`.read`, `.write`, `.*`) with a `?` restriction, which v1 does not define.
    V1WithRestrictions,
    /// A malformed `?param=value(&param=value)*` restriction (SC-5.5).
    InvalidRestriction {
        /// The parameter concerned, when it has a name (cut to a few dozen characters).
        parameter: Option<String>,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A malformed `launch/<type>[?role=<role>]` scope (SC-5.10).
    InvalidLaunch {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Not a SMART scope, and not an extension scope either (an absolute URI or a `__` prefix,
    /// SC-5.11).
    Unrecognized,
    /// A v2 scope that SMART v1 syntax cannot express exactly (SC-1.14).
    NotRepresentableInV1 {
        /// Why not.
        reason: &'static str,
    },
}

impl fmt::Display for ScopeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty scope"),
            Self::InvalidCharacter { character } => write!(
                f,
                "character `{}` is not allowed in a scope",
                character.escape_debug()
            ),
            Self::UnknownContext { found } if found.is_empty() => {
                f.write_str("missing context before `/` (expected `patient`, `user` or `system`)")
            }
            Self::UnknownContext { found } => write!(
                f,
                "unknown context `{found}` (expected `patient`, `user` or `system`, in lower case)"
            ),
            Self::MissingResourceType => f.write_str("missing resource type between `/` and `.`"),
            Self::InvalidResourceType { found } => write!(
                f,
                "`{found}` is not a FHIR resource type (expected `*` or a name such as `Observation`)"
            ),
            Self::MissingPermissions => f.write_str(
                "missing `.` and permissions after the resource type (e.g. `.rs`, or v1 `.read`)",
            ),
            Self::EmptyPermissions => f.write_str("empty permission suffix after `.`"),
            Self::UnknownPermission { letter } => {
                write!(f, "unknown permission letter `{}`", letter.escape_debug())
            }
            Self::RepeatedPermission { letter } => {
                write!(f, "permission letter `{letter}` is repeated")
            }
            Self::PermissionOrder { found } => write!(
                f,
                "permissions `{found}` are not in `cruds` order (write them as a subsequence of `cruds`)"
            ),
            Self::V1WithRestrictions => {
                f.write_str("v1 permissions (`read`, `write`, `*`) take no `?` restrictions")
            }
            Self::InvalidRestriction {
                parameter: Some(name),
                problem,
            } => write!(f, "invalid restriction: parameter `{name}`: {problem}"),
            Self::InvalidRestriction {
                parameter: None,
                problem,
            } => write!(f, "invalid restriction: {problem}"),
            Self::InvalidLaunch { problem } => write!(f, "invalid launch scope: {problem}"),
            Self::Unrecognized => f.write_str(
                "not a SMART scope (extension scopes are absolute URIs or start with `__`)",
            ),
            Self::NotRepresentableInV1 { reason } => {
                write!(f, "has no SMART v1 equivalent: {reason}")
            }
        }
    }
}

/// The scope text as it may appear in an error: restriction part elided, escaped, bounded.
fn loggable_scope(text: &str) -> String {
    let (head, restricted) = match text.split_once('?') {
        Some((head, _)) => (head, true),
        None => (text, false),
    };
    let mut out = bounded_escaped(head, MAX_SCOPE_CHARS);
    if restricted {
        out.push_str("?…");
    }
    out
}

/// A name (context, resource type, parameter) as it may appear in an error.
pub(crate) fn loggable_name(text: &str) -> String {
    bounded_escaped(text, MAX_NAME_CHARS)
}

fn bounded_escaped(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 2));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_scope_and_problem() {
        let e = ScopeError::new(
            "patient/Observation.rx",
            ScopeErrorKind::UnknownPermission { letter: 'x' },
        );
        assert_eq!(
            e.to_string(),
            "`patient/Observation.rx`: unknown permission letter `x`"
        );
        assert_eq!(e.scope(), "patient/Observation.rx");
    }

    #[test]
    fn restriction_values_never_reach_the_message() {
        let e = ScopeError::new(
            "patient/Observation.rx?subject=Patient/123&code=secret-ish",
            ScopeErrorKind::UnknownPermission { letter: 'x' },
        );
        let shown = e.to_string();
        assert!(!shown.contains("123"), "{shown}");
        assert!(!shown.contains("secret-ish"), "{shown}");
        assert!(shown.starts_with("`patient/Observation.rx?…`"), "{shown}");
    }

    #[test]
    fn long_and_control_text_is_bounded_and_escaped() {
        let long = format!("x{}\n", "a".repeat(1000));
        let e = ScopeError::new(&long, ScopeErrorKind::Unrecognized);
        assert!(e.scope().chars().count() <= MAX_SCOPE_CHARS + 1);
        assert!(e.scope().ends_with('…'));
        let e = ScopeError::new("a\nb", ScopeErrorKind::InvalidCharacter { character: '\n' });
        assert_eq!(e.scope(), "a\\nb");
        assert!(!e.to_string().contains('\n'));
    }
}
