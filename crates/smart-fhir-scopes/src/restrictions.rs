use std::fmt;

use crate::error::{loggable_name, ScopeError, ScopeErrorKind};
use crate::scope::is_scope_char;

/// Bytes that [`ResourceScopeBuilder::restrict`](crate::ResourceScopeBuilder::restrict) writes
/// as they are, besides ASCII letters and digits: RFC 3986 unreserved characters, the
/// sub-delimiters that carry no meaning inside a restriction, and `|` (the FHIR token
/// separator, written literally in the SMART examples).
const LITERAL_VALUE_BYTES: &[u8] = b"-._~!$'()*,/:;?@|";

/// The search-parameter restrictions of a v2 resource scope: the part after `?` in
/// `patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory`
/// (SC-5.1, SC-5.5).
///
/// The text is kept exactly as written, so a scope is sent back to the server unchanged.
/// Two restrictions are [equivalent](Self::is_equivalent) when they hold the same
/// `param=value` pairs once percent-decoded, in any order; coverage and normalisation use that
/// equivalence, `==` compares the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Restrictions {
    text: String,
}

/// Percent-decoded, sorted, deduplicated `(name, value)` pairs: what equivalence compares.
pub(crate) type RestrictionKey = Vec<(Vec<u8>, Vec<u8>)>;

#[cfg(test)]
thread_local! {
    /// How many restriction keys this thread computed (each decodes and sorts): the measure of
    /// the coverage check's cost in tests.
    pub(crate) static KEY_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Restrictions {
    /// Parses `param=value(&param=value)*`, with or without the leading `?`.
    ///
    /// Every parameter needs a non-empty name and value, `%` must start a `%XX` escape, and only
    /// scope-token characters (printable ASCII other than space, `"` and `\`) are allowed.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        let body = text.strip_prefix('?').unwrap_or(text);
        let error = |kind| ScopeError::new(&format!("?{body}"), kind);
        if let Some(character) = body.chars().find(|c| !is_scope_char(*c)) {
            return Err(error(ScopeErrorKind::InvalidCharacter { character }));
        }
        Self::validate(body).map_err(error)?;
        Ok(Self::from_validated(body))
    }

    /// Checks the text after `?`, whose characters are already known to be scope characters.
    pub(crate) fn validate(body: &str) -> Result<(), ScopeErrorKind> {
        let problem = |parameter: Option<&str>, problem| ScopeErrorKind::InvalidRestriction {
            parameter: parameter.map(loggable_name),
            problem,
        };
        if body.is_empty() {
            return Err(problem(None, "nothing follows `?`"));
        }
        for part in body.split('&') {
            if part.is_empty() {
                return Err(problem(None, "empty parameter (`&&`, or `&` at an end)"));
            }
            // The text of a part without `=` may be a value, so it is not named in the error.
            let Some((name, value)) = part.split_once('=') else {
                return Err(problem(None, "a parameter has no `=value`"));
            };
            if name.is_empty() {
                return Err(problem(None, "a parameter has no name"));
            }
            if value.is_empty() {
                return Err(problem(Some(name), "empty value"));
            }
            if !percent_escapes_are_valid(name) || !percent_escapes_are_valid(value) {
                return Err(problem(Some(name), "`%` not followed by two hex digits"));
            }
        }
        Ok(())
    }

    pub(crate) fn from_validated(body: &str) -> Self {
        Self {
            text: body.to_owned(),
        }
    }

    /// The text after `?`, exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `(name, value)` pairs as written (still percent-encoded), in order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text.split('&').filter_map(|part| part.split_once('='))
    }

    /// The `(name, value)` pairs percent-decoded (invalid UTF-8 replaced by U+FFFD), in order.
    pub fn decoded_params(&self) -> Vec<(String, String)> {
        self.params()
            .map(|(name, value)| {
                (
                    String::from_utf8_lossy(&percent_decode(name)).into_owned(),
                    String::from_utf8_lossy(&percent_decode(value)).into_owned(),
                )
            })
            .collect()
    }

    /// Whether both restrict to the same thing: the same percent-decoded `param=value` pairs, in
    /// any order and counting repeats once.
    ///
    /// This is deliberately conservative: a restriction that is narrower in meaning (more
    /// parameters) is not treated as equivalent, because how a server combines restriction
    /// parameters is its own policy.
    pub fn is_equivalent(&self, other: &Restrictions) -> bool {
        self.text == other.text || self.key() == other.key()
    }

    pub(crate) fn key(&self) -> RestrictionKey {
        #[cfg(test)]
        KEY_CALLS.with(|c| c.set(c.get() + 1));
        let mut key: RestrictionKey = self
            .params()
            .map(|(name, value)| (percent_decode(name), percent_decode(value)))
            .collect();
        key.sort();
        key.dedup();
        key
    }
}

/// Writes the text after `?`, as written.
impl fmt::Display for Restrictions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks a search-parameter name given to the builder: letters, digits, `_`, `-`, `.`, `:`
/// (enough for modifiers such as `code:in`, chains such as `patient.birthdate` and `_has`).
pub(crate) fn validate_param_name(name: &str) -> Result<(), ScopeErrorKind> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ScopeErrorKind::InvalidRestriction {
            parameter: Some(loggable_name(name)),
            problem: "a search parameter name uses letters, digits, `_`, `-`, `.` and `:` only",
        })
    }
}

/// Percent-encodes a restriction value: ASCII letters, digits and [`LITERAL_VALUE_BYTES`] stay
/// as they are, every other UTF-8 byte becomes `%XX` (upper-case hex). That includes `%`, `&`,
/// `=`, `+`, `#`, space, `"` and `\`, so the value can neither end the parameter nor the scope.
pub(crate) fn encode_value(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || LITERAL_VALUE_BYTES.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
    out
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn percent_escapes_are_valid(text: &str) -> bool {
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let high = bytes.next().and_then(hex_value);
            let low = bytes.next().and_then(hex_value);
            if high.is_none() || low.is_none() {
                return false;
            }
        }
    }
    true
}

/// Decodes `%XX` escapes; a `%` that does not start one is kept as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            if let [high, low, after @ ..] = tail {
                if let (Some(h), Some(l)) = (hex_value(*high), hex_value(*low)) {
                    out.push(h << 4 | l);
                    rest = after;
                    continue;
                }
            }
        }
        out.push(byte);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem_of(text: &str) -> (Option<String>, &'static str) {
        match Restrictions::parse(text).unwrap_err().kind() {
            ScopeErrorKind::InvalidRestriction { parameter, problem } => {
                (parameter.clone(), problem)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sc_5_5_text_is_kept_verbatim() {
        let text = "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory&code%3Ain=x";
        let r = Restrictions::parse(text).unwrap();
        assert_eq!(r.as_str(), text);
        assert_eq!(r.to_string(), text);
        assert_eq!(Restrictions::parse(&format!("?{text}")).unwrap(), r);
        assert_eq!(
            r.params().collect::<Vec<_>>(),
            [
                (
                    "category",
                    "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
                ),
                ("code%3Ain", "x")
            ]
        );
        assert_eq!(r.decoded_params()[1], ("code:in".into(), "x".into()));
    }

    #[test]
    fn each_malformation_is_reported() {
        assert_eq!(problem_of("").1, "nothing follows `?`");
        assert_eq!(problem_of("a=1&&b=2").0, None);
        assert_eq!(
            problem_of("a=1&").1,
            "empty parameter (`&&`, or `&` at an end)"
        );
        assert_eq!(problem_of("a=1&12345").1, "a parameter has no `=value`");
        assert_eq!(problem_of("a=1&12345").0, None);
        assert_eq!(problem_of("=1").1, "a parameter has no name");
        assert_eq!(problem_of("category=").0.as_deref(), Some("category"));
        assert_eq!(problem_of("category=").1, "empty value");
        assert_eq!(
            problem_of("code=%zz").1,
            "`%` not followed by two hex digits"
        );
        assert_eq!(
            problem_of("code=%4").1,
            "`%` not followed by two hex digits"
        );
        let e = Restrictions::parse("a=b c").unwrap_err();
        assert_eq!(
            e.kind(),
            &ScopeErrorKind::InvalidCharacter { character: ' ' }
        );
    }

    #[test]
    fn error_text_never_shows_values() {
        let e = Restrictions::parse("subject=Patient/123&").unwrap_err();
        assert!(!e.to_string().contains("123"), "{e}");
    }

    #[test]
    fn equivalence_ignores_order_repeats_and_percent_encoding() {
        let a = Restrictions::parse("a=1&b=x|y").unwrap();
        let b = Restrictions::parse("b=x%7Cy&a=1&a=1").unwrap();
        let c = Restrictions::parse("a=1").unwrap();
        assert!(a.is_equivalent(&b) && b.is_equivalent(&a));
        assert_ne!(a, b);
        assert!(!a.is_equivalent(&c));
        assert!(!c.is_equivalent(&a));
    }

    #[test]
    fn encoding_keeps_fhir_token_syntax_and_escapes_delimiters() {
        assert_eq!(
            encode_value("http://loinc.org|1234-5"),
            "http://loinc.org|1234-5"
        );
        assert_eq!(encode_value("a&b=c+d e#f%"), "a%26b%3Dc%2Bd%20e%23f%25");
        assert_eq!(encode_value("\"\\é"), "%22%5C%C3%A9");
        assert_eq!(
            percent_decode(&encode_value("a&b=c+d é%")),
            "a&b=c+d é%".as_bytes()
        );
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%"), b"%");
    }

    #[test]
    fn builder_parameter_names_are_checked() {
        assert!(validate_param_name("code:in").is_ok());
        assert!(validate_param_name("_has:Observation:patient:code").is_ok());
        assert!(validate_param_name("patient.birthdate").is_ok());
        assert!(validate_param_name("").is_err());
        assert!(validate_param_name("a=b").is_err());
        assert!(validate_param_name("a&b").is_err());
    }
}
