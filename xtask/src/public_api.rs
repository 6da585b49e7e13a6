//! `cargo xtask public-api`: no type of the HTTP/TLS stack in a public signature.
//!
//! `docs/ARCHITECTURE.md` (invariant 2) promises that hyper, hyper-util, hyper-rustls and rustls stay
//! inside `smart-fhir-http` and never appear in a public signature, so the transport's
//! dependencies can move to new versions without breaking users. `http` types (`Request`,
//! `HeaderMap`, `Uri`) are the shared vocabulary and allowed everywhere.
//!
//! The check documents every library crate under `crates/` as rustdoc JSON
//! (`RUSTC_BOOTSTRAP=1`, `--output-format json`), walks every public item of the crate (function
//! signatures and generics, public fields and variants, type aliases, constants, statics, traits,
//! re-exports, and the trait impls of public types, whose trait arguments leak as much as a
//! signature does: `impl From<hyper::Error> for Error`), resolves each type path to the crate that
//! defines it through the JSON's `paths` and `external_crates`, and fails naming the item and the
//! foreign type. The JSON is read as a `serde_json::Value` and only the few stable keys are
//! relied on, so a new rustdoc JSON format version rarely matters.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use crate::util::{cargo, output, root, run, step, Result};

/// Crates whose types must not appear in a public signature outside [`ALLOWED`]: the transport's
/// implementation, which changes with its own release cycle (hyper-util and http-body-util are
/// 0.x; rustls is 0.x).
const FORBIDDEN: &[&str] = &[
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "h2",
    "http_body_util",
    "rustls",
    "rustls_pki_types",
    "rustls_native_certs",
    "tokio_rustls",
    "webpki",
    "webpki_roots",
];

/// `(library crate, forbidden crate, reason)`: the decided exceptions.
///
/// `smart-fhir-testkit` is test tooling (`publish = false`) built on hyper's server side; a test
/// that scripts a fault may hand it hyper types. Every published crate, `smart-fhir-http`
/// included, names none: its builder takes root certificates as PEM and a `Roots` choice
/// rather than a rustls `ClientConfig`.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "smart_fhir_testkit",
        "hyper",
        "test tooling (publish = false) on hyper's server side",
    ),
    (
        "smart_fhir_testkit",
        "hyper_util",
        "test tooling (publish = false) on hyper's server side",
    ),
];

/// One type of a forbidden crate named by a public item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Finding {
    /// The public item, e.g. `smart_fhir_http::TransportError::from` or
    /// `impl From<hyper::Error> for smart_fhir_http::TransportError`.
    pub(crate) item: String,
    /// The foreign type's path, e.g. `hyper::error::Error`.
    pub(crate) foreign: String,
}

/// `cargo xtask public-api`.
pub(crate) fn run_check() -> Result<()> {
    step("public API (no hyper/rustls type in a public signature)");
    let crates = library_crates()?;
    let mut doc = cargo();
    doc.args(["doc", "--no-deps", "--lib", "--all-features"])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTDOCFLAGS", "-Z unstable-options --output-format json");
    for (package, _) in &crates {
        doc.args(["-p", package]);
    }
    run(&mut doc)?;
    let doc_dir = target_dir()?.join("doc");
    let mut failures = Vec::new();
    for (package, lib) in &crates {
        let path = doc_dir.join(format!("{lib}.json"));
        let json = read_json(&path)?;
        let findings = check_crate(&json).map_err(|e| {
            format!(
                "{}: {e} (format_version {})",
                path.display(),
                json["format_version"]
            )
        })?;
        let (allowed, denied): (Vec<_>, Vec<_>) = findings
            .into_iter()
            .partition(|f| allowed_reason(lib, &f.foreign).is_some());
        if !allowed.is_empty() {
            eprintln!("{package}: {} allowed by decision", allowed.len());
        }
        for f in denied {
            failures.push(format!("{package}: {} names {}", f.item, f.foreign));
        }
    }
    if failures.is_empty() {
        eprintln!(
            "public API: {} crates checked, no forbidden type",
            crates.len()
        );
        Ok(())
    } else {
        Err(format!(
            "forbidden types in public signatures (see docs/ARCHITECTURE.md, invariant 2):\n  {}",
            failures.join("\n  ")
        ))
    }
}

/// The allow-list entry that lets `lib` name the crate `foreign` (a path `krate::…`) belongs to.
fn allowed_reason(lib: &str, foreign: &str) -> Option<&'static str> {
    let krate = foreign.split("::").next().unwrap_or(foreign);
    ALLOWED
        .iter()
        .find(|(l, f, _)| *l == lib && *f == krate)
        .map(|(_, _, reason)| *reason)
}

/// `cargo metadata --no-deps` of the workspace.
fn metadata() -> Result<Value> {
    serde_json::from_str(&output(cargo().args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ]))?)
    .map_err(|e| format!("cargo metadata: {e}"))
}

/// `(package, lib target name)` of every workspace member under `crates/` with a library.
fn library_crates() -> Result<Vec<(String, String)>> {
    let meta = metadata()?;
    let crates_dir = root().join("crates");
    let mut out = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        if !manifest.starts_with(&crates_dir) {
            continue;
        }
        let lib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "lib"))
            });
        if let (Some(name), Some(lib)) = (package["name"].as_str(), lib) {
            let lib_name = lib["name"].as_str().unwrap_or(name).replace('-', "_");
            out.push((name.to_owned(), lib_name));
        }
    }
    out.sort();
    Ok(out)
}

fn target_dir() -> Result<std::path::PathBuf> {
    let meta = metadata()?;
    meta["target_directory"]
        .as_str()
        .map(Into::into)
        .ok_or_else(|| "cargo metadata: no target_directory".to_owned())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// An id of the JSON (a number in recent formats, a string in older ones) as a map key.
fn key(id: &Value) -> Option<String> {
    match id {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Every type of a [`FORBIDDEN`] crate named by a public item of the crate documented in `doc`.
pub(crate) fn check_crate(doc: &Value) -> Result<Vec<Finding>> {
    let index = doc["index"]
        .as_object()
        .ok_or("no `index` object in the rustdoc JSON")?;
    let paths = doc["paths"]
        .as_object()
        .ok_or("no `paths` object in the rustdoc JSON")?;
    let crates = doc["external_crates"]
        .as_object()
        .ok_or("no `external_crates` object in the rustdoc JSON")?;
    let root_crate = index
        .get(&key(&doc["root"]).unwrap_or_default())
        .and_then(|item| key(&item["crate_id"]))
        .unwrap_or_else(|| "0".to_owned());

    // The crate that defines the item `id`, and its path.
    let resolve = |id: &str| -> Option<(String, String)> {
        let summary = paths.get(id)?;
        let crate_id = key(&summary["crate_id"])?;
        if crate_id == root_crate {
            return None;
        }
        let krate = crates.get(&crate_id)?["name"].as_str()?.to_owned();
        let path = summary["path"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("::")
            })
            .unwrap_or_else(|| krate.clone());
        Some((krate, path))
    };

    // Parents, for naming methods, fields and variants: every list of ids in an item's `inner`
    // (a module's items, a struct's fields, an impl's items, an enum's variants), except the
    // lists of impls, whose members belong to the implementing type rather than to the item.
    let mut parent: HashMap<String, String> = HashMap::new();
    for (id, item) in index {
        collect_children(&item["inner"], id, &mut parent);
    }

    let mut findings = BTreeMap::new();
    for (id, item) in index {
        if key(&item["crate_id"]).as_deref() != Some(root_crate.as_str()) {
            continue;
        }
        // Stripped items are absent without `--document-private-items`; this also skips
        // anything restricted that a future format keeps.
        let visibility = &item["visibility"];
        if !(visibility == "public" || visibility == "default") {
            continue;
        }
        let inner = &item["inner"];
        if let Some(imp) = inner.get("impl") {
            // Auto-trait impls (`Send`, `Unpin`) and blanket impls (`impl<T> From<T> for T`) are
            // the compiler's and the other crates' doing, not a choice of this crate.
            let synthetic = imp["is_synthetic"].as_bool().unwrap_or(false)
                || imp["synthetic"].as_bool().unwrap_or(false);
            if synthetic || !imp["blanket_impl"].is_null() {
                continue;
            }
        }
        let mut named = Vec::new();
        collect_type_ids(inner, &mut named);
        for foreign_id in named {
            if let Some((krate, path)) = resolve(&foreign_id) {
                if FORBIDDEN.contains(&krate.as_str()) {
                    let item = label(id, index, paths, &parent);
                    findings.insert(
                        (item.clone(), path.clone()),
                        Finding {
                            item,
                            foreign: path,
                        },
                    );
                }
            }
        }
    }
    Ok(findings.into_values().collect())
}

/// The ids of every path an item's `inner` names: a resolved type path (`{"path", "id", "args"}`),
/// a trait bound, a `dyn` trait, a re-export's source.
fn collect_type_ids(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(id) = map.get("id").and_then(key) {
                out.push(id);
            }
            for (name, v) in map {
                // Lists of child items are checked as items of their own.
                if matches!(
                    name.as_str(),
                    "items" | "impls" | "implementations" | "variants" | "fields"
                ) && v
                    .as_array()
                    .is_some_and(|a| a.iter().all(|x| !x.is_object()))
                {
                    continue;
                }
                collect_type_ids(v, out);
            }
        }
        Value::Array(values) => values.iter().for_each(|v| collect_type_ids(v, out)),
        _ => {}
    }
}

fn collect_children(value: &Value, parent_id: &str, parent: &mut HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (name, v) in map {
                if matches!(name.as_str(), "impls" | "implementations") {
                    continue;
                }
                if let Some(ids) = v.as_array() {
                    if !ids.is_empty() && ids.iter().all(|x| x.is_number() || x.is_string()) {
                        for id in ids.iter().filter_map(key) {
                            parent.entry(id).or_insert_with(|| parent_id.to_owned());
                        }
                        continue;
                    }
                }
                collect_children(v, parent_id, parent);
            }
        }
        Value::Array(values) => values
            .iter()
            .for_each(|v| collect_children(v, parent_id, parent)),
        _ => {}
    }
}

/// A readable name for the item `id`: its path when rustdoc records one, `impl Trait for Type`
/// for an impl, otherwise its parent's name and its own.
fn label(
    id: &str,
    index: &serde_json::Map<String, Value>,
    paths: &serde_json::Map<String, Value>,
    parent: &HashMap<String, String>,
) -> String {
    if let Some(path) = paths.get(id).and_then(|s| s["path"].as_array()) {
        return path
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("::");
    }
    let Some(item) = index.get(id) else {
        return format!("item {id}");
    };
    if let Some(imp) = item["inner"].get("impl") {
        let for_type = type_name(&imp["for"], paths);
        return match imp["trait"].as_object() {
            Some(t) => format!(
                "impl {} for {for_type}",
                t.get("path")
                    .or_else(|| t.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ),
            None => format!("impl {for_type}"),
        };
    }
    let name = item["name"].as_str().unwrap_or("_");
    match parent.get(id) {
        // A method of an inherent impl reads as the type's: `Type::method`.
        Some(p) => match index.get(p).and_then(|i| i["inner"].get("impl")) {
            Some(imp) if imp["trait"].is_null() => {
                format!("{}::{name}", type_name(&imp["for"], paths))
            }
            _ => format!("{}::{name}", label(p, index, paths, parent)),
        },
        None => name.to_owned(),
    }
}

/// A short display of a type: its path when it is a resolved path, else `_`.
fn type_name(ty: &Value, paths: &serde_json::Map<String, Value>) -> String {
    let resolved = ty.get("resolved_path").unwrap_or(ty);
    if let Some(path) = resolved
        .get("id")
        .and_then(key)
        .and_then(|id| paths.get(&id))
        .and_then(|s| s["path"].as_array())
    {
        return path
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("::");
    }
    resolved
        .get("path")
        .or_else(|| resolved.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("_")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written rustdoc JSON (format 5x shape) for a crate `demo` with: a function taking
    /// `hyper::Error` (forbidden), a function taking `http::Request` (allowed everywhere), a
    /// struct whose public field is a `rustls::ClientConfig` (forbidden), an `impl From<hyper::Error>`
    /// (forbidden: the trait's argument leaks), a blanket impl naming hyper (not this crate's
    /// choice) and a synthetic `Send` impl.
    fn fixture() -> Value {
        serde_json::json!({
            "root": 0,
            "format_version": 57,
            "index": {
                "0": {"id": 0, "crate_id": 0, "name": "demo", "visibility": "public",
                      "inner": {"module": {"is_crate": true, "items": [1, 2, 3, 10]}}},
                "1": {"id": 1, "crate_id": 0, "name": "leaky", "visibility": "public",
                      "inner": {"function": {"sig": {
                          "inputs": [["e", {"resolved_path": {"path": "hyper::Error", "id": 100, "args": null}}]],
                          "output": null}, "generics": {"params": [], "where_predicates": []}}}},
                "2": {"id": 2, "crate_id": 0, "name": "fine", "visibility": "public",
                      "inner": {"function": {"sig": {
                          "inputs": [["r", {"borrowed_ref": {"lifetime": null, "is_mutable": false,
                              "type": {"resolved_path": {"path": "http::Request", "id": 200,
                                  "args": {"angle_bracketed": {"args": [{"type": {"primitive": "u8"}}], "constraints": []}}}}}}]],
                          "output": {"primitive": "bool"}}, "generics": {"params": [], "where_predicates": []}}}},
                "3": {"id": 3, "crate_id": 0, "name": "Settings", "visibility": "public",
                      "inner": {"struct": {"kind": {"plain": {"fields": [4], "has_stripped_fields": true}},
                                           "generics": {"params": [], "where_predicates": []},
                                           "impls": [5, 6, 7, 8]}}},
                "4": {"id": 4, "crate_id": 0, "name": "tls", "visibility": "public",
                      "inner": {"struct_field": {"resolved_path": {"path": "rustls::ClientConfig", "id": 101, "args": null}}}},
                "5": {"id": 5, "crate_id": 0, "name": null, "visibility": "default",
                      "inner": {"impl": {"is_unsafe": false, "generics": {"params": [], "where_predicates": []},
                          "provided_trait_methods": [],
                          "trait": {"path": "From", "id": 300, "args": {"angle_bracketed": {"args": [
                              {"type": {"resolved_path": {"path": "hyper::Error", "id": 100, "args": null}}}], "constraints": []}}},
                          "for": {"resolved_path": {"path": "Settings", "id": 3, "args": null}},
                          "items": [], "is_negative": false, "is_synthetic": false, "blanket_impl": null}}},
                "6": {"id": 6, "crate_id": 0, "name": null, "visibility": "default",
                      "inner": {"impl": {"is_unsafe": false, "generics": {"params": [], "where_predicates": []},
                          "provided_trait_methods": [],
                          "trait": {"path": "Send", "id": 301, "args": null},
                          "for": {"resolved_path": {"path": "Settings", "id": 3, "args": null}},
                          "items": [], "is_negative": false, "is_synthetic": true, "blanket_impl": null}}},
                "7": {"id": 7, "crate_id": 0, "name": null, "visibility": "default",
                      "inner": {"impl": {"is_unsafe": false, "generics": {"params": [], "where_predicates": []},
                          "provided_trait_methods": [],
                          "trait": {"path": "Executor", "id": 102, "args": null},
                          "for": {"generic": "T"},
                          "items": [], "is_negative": false, "is_synthetic": false,
                          "blanket_impl": {"generic": "T"}}}},
                "8": {"id": 8, "crate_id": 0, "name": null, "visibility": "default",
                      "inner": {"impl": {"is_unsafe": false, "generics": {"params": [], "where_predicates": []},
                          "provided_trait_methods": [], "trait": null,
                          "for": {"resolved_path": {"path": "Settings", "id": 3, "args": null}},
                          "items": [9], "is_negative": false, "is_synthetic": false, "blanket_impl": null}}},
                "9": {"id": 9, "crate_id": 0, "name": "connector", "visibility": "public",
                      "inner": {"function": {"sig": {"inputs": [["self", {"borrowed_ref": {"lifetime": null,
                              "is_mutable": false, "type": {"generic": "Self"}}}]],
                          "output": {"impl_trait": [{"trait_bound": {"trait": {"path": "Connect", "id": 103, "args": null},
                              "generic_params": [], "modifier": "none"}}]}},
                          "generics": {"params": [], "where_predicates": []}}}},
                "10": {"id": 10, "crate_id": 0, "name": "Uri", "visibility": "public",
                       "inner": {"use": {"source": "http::Uri", "name": "Uri", "id": 201, "is_glob": false}}}
            },
            "paths": {
                "0": {"crate_id": 0, "path": ["demo"], "kind": "module"},
                "1": {"crate_id": 0, "path": ["demo", "leaky"], "kind": "function"},
                "2": {"crate_id": 0, "path": ["demo", "fine"], "kind": "function"},
                "3": {"crate_id": 0, "path": ["demo", "Settings"], "kind": "struct"},
                "100": {"crate_id": 1, "path": ["hyper", "error", "Error"], "kind": "struct"},
                "101": {"crate_id": 3, "path": ["rustls", "client", "ClientConfig"], "kind": "struct"},
                "102": {"crate_id": 1, "path": ["hyper", "rt", "Executor"], "kind": "trait"},
                "103": {"crate_id": 4, "path": ["hyper_util", "client", "legacy", "connect", "Connect"], "kind": "trait"},
                "200": {"crate_id": 2, "path": ["http", "request", "Request"], "kind": "struct"},
                "201": {"crate_id": 2, "path": ["http", "uri", "Uri"], "kind": "struct"},
                "300": {"crate_id": 5, "path": ["core", "convert", "From"], "kind": "trait"},
                "301": {"crate_id": 5, "path": ["core", "marker", "Send"], "kind": "trait"}
            },
            "external_crates": {
                "1": {"name": "hyper", "html_root_url": null},
                "2": {"name": "http", "html_root_url": null},
                "3": {"name": "rustls", "html_root_url": null},
                "4": {"name": "hyper_util", "html_root_url": null},
                "5": {"name": "core", "html_root_url": null}
            }
        })
    }

    #[test]
    fn names_each_public_item_that_leaks_a_forbidden_type() {
        let findings = check_crate(&fixture()).unwrap();
        let found: Vec<(&str, &str)> = findings
            .iter()
            .map(|f| (f.item.as_str(), f.foreign.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "demo::Settings::connector",
                    "hyper_util::client::legacy::connect::Connect"
                ),
                ("demo::Settings::tls", "rustls::client::ClientConfig"),
                ("demo::leaky", "hyper::error::Error"),
                ("impl From for demo::Settings", "hyper::error::Error"),
            ]
        );
    }

    #[test]
    fn http_types_synthetic_and_blanket_impls_pass() {
        let mut doc = fixture();
        let index = doc["index"].as_object_mut().unwrap();
        for leaky in ["1", "4", "5", "9"] {
            index.remove(leaky);
        }
        assert_eq!(check_crate(&doc).unwrap(), []);
    }

    #[test]
    fn the_allow_list_is_per_crate_and_per_foreign_crate() {
        assert!(allowed_reason("smart_fhir_testkit", "hyper::body::Incoming").is_some());
        assert!(allowed_reason("smart_fhir_testkit", "rustls::ClientConfig").is_none());
        assert!(allowed_reason("smart_fhir_http", "hyper::body::Incoming").is_none());
    }

    #[test]
    fn a_json_without_an_index_is_an_error() {
        assert!(check_crate(&serde_json::json!({"paths": {}})).is_err());
    }
}
