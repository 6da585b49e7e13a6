//! `serde` support (feature `serde`); the JSON shape is described in the crate documentation.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::scope::Scope;
use crate::set::{LenientScopeSet, ScopeDiff, ScopeRelation, ScopeSet, UnrecognizedScope};

#[derive(serde::Serialize)]
struct Param {
    name: String,
    value: String,
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("scope", &self.to_string())?;
        match self {
            Scope::Resource(_) | Scope::ResourceV1(_) => {
                map.serialize_entry("kind", "resource")?;
                let v1 = match self {
                    Scope::ResourceV1(v1) => Some(v1.access()),
                    _ => None,
                };
                map.serialize_entry("syntax", if v1.is_some() { "v1" } else { "v2" })?;
                if let Some(view) = self.resource_view() {
                    map.serialize_entry("context", view.context().as_str())?;
                    map.serialize_entry("resource", &view.resource().to_string())?;
                    map.serialize_entry("permissions", &view.permissions().to_string())?;
                    if let Some(access) = v1 {
                        map.serialize_entry("v1_access", access.as_str())?;
                    }
                    let params: Option<Vec<Param>> = view.restrictions().map(|r| {
                        r.decoded_params()
                            .into_iter()
                            .map(|(name, value)| Param { name, value })
                            .collect()
                    });
                    map.serialize_entry("restrictions", &params)?;
                }
            }
            Scope::Launch(launch) => {
                map.serialize_entry("kind", "launch")?;
                let context = launch.context();
                map.serialize_entry("context", &context.map(|c| c.resource_type()))?;
                map.serialize_entry("role", &context.and_then(|c| c.role()))?;
            }
            Scope::OpenId => map.serialize_entry("kind", "openid")?,
            Scope::FhirUser => map.serialize_entry("kind", "fhir_user")?,
            Scope::Profile => map.serialize_entry("kind", "profile")?,
            Scope::OfflineAccess => map.serialize_entry("kind", "offline_access")?,
            Scope::OnlineAccess => map.serialize_entry("kind", "online_access")?,
            Scope::Extension(extension) => {
                map.serialize_entry("kind", "extension")?;
                map.serialize_entry("uri", &extension.is_uri())?;
            }
        }
        map.end()
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ScopeRepr {
    Text(String),
    Detailed { scope: String },
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = match ScopeRepr::deserialize(deserializer)? {
            ScopeRepr::Text(text) | ScopeRepr::Detailed { scope: text } => text,
        };
        Scope::parse(&text).map_err(D::Error::custom)
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ScopeSetRepr {
    Text(String),
    List(Vec<Scope>),
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ScopeSetRepr::deserialize(deserializer)? {
            ScopeSetRepr::Text(text) => ScopeSet::parse(&text).map_err(D::Error::custom),
            ScopeSetRepr::List(list) => Ok(list.into_iter().collect()),
        }
    }
}

impl Serialize for ScopeRelation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            ScopeRelation::Equivalent => "equivalent",
            ScopeRelation::Narrower => "narrower",
            ScopeRelation::Broader => "broader",
            ScopeRelation::Different => "different",
        })
    }
}

impl Serialize for ScopeDiff {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ScopeDiff", 3)?;
        s.serialize_field("relation", &self.relation())?;
        s.serialize_field("missing", self.missing())?;
        s.serialize_field("extra", self.extra())?;
        s.end()
    }
}

impl Serialize for UnrecognizedScope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("UnrecognizedScope", 2)?;
        s.serialize_field("text", self.text())?;
        s.serialize_field("error", &self.error().kind().to_string())?;
        s.end()
    }
}

impl Serialize for LenientScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("LenientScopeSet", 2)?;
        s.serialize_field("scopes", self.scopes())?;
        s.serialize_field("unrecognized", self.unrecognized())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resource_scope_serialises_its_parts() {
        let scope = Scope::parse("patient/Observation.rs?category=a%7Cb").unwrap();
        assert_eq!(
            serde_json::to_value(&scope).unwrap(),
            json!({
                "scope": "patient/Observation.rs?category=a%7Cb",
                "kind": "resource",
                "syntax": "v2",
                "context": "patient",
                "resource": "Observation",
                "permissions": "rs",
                "restrictions": [{"name": "category", "value": "a|b"}],
            })
        );
        let v1 = Scope::parse("user/*.write").unwrap();
        assert_eq!(
            serde_json::to_value(&v1).unwrap(),
            json!({
                "scope": "user/*.write",
                "kind": "resource",
                "syntax": "v1",
                "context": "user",
                "resource": "*",
                "permissions": "cud",
                "v1_access": "write",
                "restrictions": null,
            })
        );
    }

    #[test]
    fn other_scopes_serialise_their_kind() {
        let value = serde_json::to_value(
            ScopeSet::parse("launch launch/list?role=https://x.example/r openid fhirUser profile offline_access online_access __x")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            value,
            json!([
                {"scope": "launch", "kind": "launch", "context": null, "role": null},
                {"scope": "launch/list?role=https://x.example/r", "kind": "launch", "context": "list", "role": "https://x.example/r"},
                {"scope": "openid", "kind": "openid"},
                {"scope": "fhirUser", "kind": "fhir_user"},
                {"scope": "profile", "kind": "profile"},
                {"scope": "offline_access", "kind": "offline_access"},
                {"scope": "online_access", "kind": "online_access"},
                {"scope": "__x", "kind": "extension", "uri": false},
            ])
        );
    }

    #[test]
    fn round_trips_and_accepts_plain_text() {
        let set =
            ScopeSet::parse("patient/Observation.rs?category=x launch/patient openid system/*.*")
                .unwrap();
        let json = serde_json::to_string(&set).unwrap();
        let back: ScopeSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_string(), set.to_string());
        let from_text: ScopeSet = serde_json::from_str("\"openid  launch\"").unwrap();
        assert_eq!(from_text.to_string(), "openid launch");
        let from_list: ScopeSet =
            serde_json::from_str(r#"["openid", {"scope": "launch"}]"#).unwrap();
        assert_eq!(from_list.to_string(), "openid launch");
        let scope: Scope = serde_json::from_str("\"patient/*.rs\"").unwrap();
        assert_eq!(scope.to_string(), "patient/*.rs");
    }

    #[test]
    fn deserialising_refuses_bad_scopes_without_echoing_restrictions() {
        let e = serde_json::from_str::<Scope>("\"patient/Observation.rx?subject=Patient/123\"")
            .unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("unknown permission letter `x`"), "{shown}");
        assert!(!shown.contains("123"), "{shown}");
        assert!(serde_json::from_str::<ScopeSet>("\"openid nope\"").is_err());
        assert!(serde_json::from_str::<Scope>("42").is_err());
    }

    #[test]
    fn diff_and_lenient_results_serialise() {
        let requested = ScopeSet::parse("patient/Observation.crs").unwrap();
        let granted = ScopeSet::parse("patient/Observation.rs").unwrap();
        let value = serde_json::to_value(requested.difference(&granted)).unwrap();
        assert_eq!(value["relation"], "narrower");
        assert_eq!(value["missing"][0]["scope"], "patient/Observation.c");
        assert_eq!(value["extra"], json!([]));
        let lenient = ScopeSet::parse_lenient("openid odd");
        let value = serde_json::to_value(&lenient).unwrap();
        assert_eq!(value["scopes"][0]["kind"], "openid");
        assert_eq!(value["unrecognized"][0]["text"], "odd");
    }
}
