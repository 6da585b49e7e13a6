//! Lenient, typed reads of fields from untrusted JSON objects. Every error names the JSON path
//! of the offending field.

use serde_json::{Map, Value};

use crate::error::DiscoveryError;

/// How a lone string is read where an array of strings is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoneString {
    /// As a one-element array.
    One,
    /// Split on whitespace, as OAuth writes scope lists (`"openid fhirUser"`).
    SplitWhitespace,
}

/// An object found in an array, with its JSON path.
pub(crate) type PathedObject<'a> = (String, &'a Map<String, Value>);

/// A JSON object being read, with its path for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    url: &'a str,
    object: &'a Map<String, Value>,
    path: &'a str,
}

/// A path of an object inside a document; owned because array indices are formatted.
pub(crate) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl<'a> Fields<'a> {
    /// Reads `object`, found at `path` in the document from `url` (already made displayable).
    pub(crate) fn new(url: &'a str, object: &'a Map<String, Value>, path: &'a str) -> Self {
        Self { url, object, path }
    }

    /// The path of `key` in this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        child_path(self.path, key)
    }

    pub(crate) fn wrong_type(&self, field: String, expected: &'static str) -> DiscoveryError {
        DiscoveryError::WrongType {
            url: self.url.to_owned(),
            field,
            expected,
        }
    }

    /// The value of `key`; an explicit `null` reads as absent.
    pub(crate) fn value(&self, key: &str) -> Option<&'a Value> {
        match self.object.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// A string field, trimmed. Absent, `null` and empty strings read as `None`: servers emit
    /// `"registration_endpoint": ""` for features they do not offer.
    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>, DiscoveryError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                Ok((!s.is_empty()).then_some(s))
            }
            Some(_) => Err(self.wrong_type(self.path_of(key), "a string")),
        }
    }

    /// An array of strings. Leniencies: a lone string is accepted as described by `lone`;
    /// `null` and empty entries are skipped; entries are trimmed. Other entry types are errors
    /// naming the entry (`capabilities[2]`).
    pub(crate) fn strings(
        &self,
        key: &str,
        lone: LoneString,
    ) -> Result<Option<Vec<String>>, DiscoveryError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(match lone {
                LoneString::One => {
                    let s = s.trim();
                    if s.is_empty() {
                        Vec::new()
                    } else {
                        vec![s.to_owned()]
                    }
                }
                LoneString::SplitWhitespace => s.split_whitespace().map(str::to_owned).collect(),
            })),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Null => {}
                        Value::String(s) => {
                            let s = s.trim();
                            if !s.is_empty() {
                                out.push(s.to_owned());
                            }
                        }
                        _ => {
                            return Err(
                                self.wrong_type(format!("{}[{i}]", self.path_of(key)), "a string")
                            )
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(self.wrong_type(self.path_of(key), "an array of strings")),
        }
    }

    /// An object field.
    pub(crate) fn object(
        &self,
        key: &str,
    ) -> Result<Option<&'a Map<String, Value>>, DiscoveryError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(self.wrong_type(self.path_of(key), "an object")),
        }
    }

    /// An array of objects, each with its path. A lone object is accepted as a one-element
    /// array; `null` entries are skipped.
    pub(crate) fn objects(&self, key: &str) -> Result<Vec<PathedObject<'a>>, DiscoveryError> {
        match self.value(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(o)) => Ok(vec![(self.path_of(key), o)]),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{}[{i}]", self.path_of(key));
                    match item {
                        Value::Null => {}
                        Value::Object(o) => out.push((path, o)),
                        _ => return Err(self.wrong_type(path, "an object")),
                    }
                }
                Ok(out)
            }
            Some(_) => Err(self.wrong_type(self.path_of(key), "an array of objects")),
        }
    }

    /// The displayable URL of the document.
    pub(crate) fn url(&self) -> &'a str {
        self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn sc_1_6_null_and_empty_read_as_absent() {
        let o = obj(json!({"a": null, "b": "", "c": "  x  "}));
        let f = Fields::new("u", &o, "");
        assert_eq!(f.string("a").unwrap(), None);
        assert_eq!(f.string("b").unwrap(), None);
        assert_eq!(f.string("c").unwrap(), Some("x"));
        assert_eq!(f.string("missing").unwrap(), None);
        assert_eq!(f.strings("a", LoneString::One).unwrap(), None);
    }

    #[test]
    fn lone_strings_become_arrays() {
        let o =
            obj(json!({"caps": "launch-ehr", "scopes": "openid  fhirUser", "rt": "code id_token"}));
        let f = Fields::new("u", &o, "");
        assert_eq!(
            f.strings("caps", LoneString::One).unwrap(),
            Some(vec!["launch-ehr".into()])
        );
        assert_eq!(
            f.strings("scopes", LoneString::SplitWhitespace).unwrap(),
            Some(vec!["openid".into(), "fhirUser".into()])
        );
        assert_eq!(
            f.strings("rt", LoneString::One).unwrap(),
            Some(vec!["code id_token".into()])
        );
    }

    #[test]
    fn wrong_types_name_the_path() {
        let o = obj(json!({"caps": ["a", null, 3], "n": 5, "objs": [{}, 1]}));
        let f = Fields::new("u", &o, "rest[0]");
        match f.strings("caps", LoneString::One) {
            Err(DiscoveryError::WrongType {
                field, expected, ..
            }) => {
                assert_eq!(field, "rest[0].caps[2]");
                assert_eq!(expected, "a string");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(f.string("n"), Err(DiscoveryError::WrongType { field, .. }) if field == "rest[0].n")
        );
        assert!(
            matches!(f.objects("objs"), Err(DiscoveryError::WrongType { field, .. }) if field == "rest[0].objs[1]")
        );
        assert!(matches!(
            f.object("n"),
            Err(DiscoveryError::WrongType { .. })
        ));
    }
}
