//! The FHIR commands: `get`, `search`, `create`, `update`, `patch`, `delete`, `history`, `batch`.
//!
//! Output: the resource or Bundle the server returns, as pretty JSON on stdout. `search --all`
//! instead prints every matching resource as NDJSON (one compact JSON object a line) while it
//! follows the pages, so that a large result is never held in memory and each line can be piped
//! into line-oriented tools (`jq -c`, `wc -l`, a Bulk-style loader).
//!
//! Exit codes: 0 success; 1 a failure (a FHIR error prints the request, the status and the
//! server's diagnostics on one stderr line); 2 bad usage.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;
use smart_fhir_http::client::{is_valid_id, is_valid_resource_type, BundleEntry, SearchParams};
use smart_fhir_http::{FhirClient, FhirError, FhirResponse};

use crate::server::FhirArgs;
use crate::transport::rt;
use crate::{Failure, Result};

/// A `TYPE/ID` argument.
#[derive(Debug, Clone)]
pub(crate) struct TypeId {
    resource_type: String,
    id: String,
}

/// A `TYPE[/ID]` argument.
#[derive(Debug, Clone)]
pub(crate) struct TypeMaybeId {
    resource_type: String,
    id: Option<String>,
}

const TYPE_HINT: &str =
    "a resource type starts with a capital letter and has letters only (e.g. Patient)";
const ID_HINT: &str = "an id has 1 to 64 of A-Z a-z 0-9 - .";

fn parse_type(s: &str) -> std::result::Result<String, String> {
    if is_valid_resource_type(s) {
        Ok(s.to_owned())
    } else {
        Err(TYPE_HINT.to_owned())
    }
}

fn parse_type_id(s: &str) -> std::result::Result<TypeId, String> {
    let Some((t, id)) = s.split_once('/') else {
        return Err("expected TYPE/ID, e.g. Patient/123".to_owned());
    };
    let resource_type = parse_type(t)?;
    if !is_valid_id(id) {
        return Err(ID_HINT.to_owned());
    }
    Ok(TypeId {
        resource_type,
        id: id.to_owned(),
    })
}

fn parse_type_maybe_id(s: &str) -> std::result::Result<TypeMaybeId, String> {
    match s.split_once('/') {
        None => Ok(TypeMaybeId {
            resource_type: parse_type(s)?,
            id: None,
        }),
        Some(_) => {
            let TypeId { resource_type, id } = parse_type_id(s)?;
            Ok(TypeMaybeId {
                resource_type,
                id: Some(id),
            })
        }
    }
}

fn parse_param(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err("expected NAME=VALUE, e.g. family=Smith".to_owned()),
    }
}

/// A path under the base: no scheme, no `..`, no spaces or control characters.
fn parse_path(s: &str) -> std::result::Result<String, String> {
    let p = s.trim_start_matches('/');
    let path_part = p.split('?').next().unwrap_or("");
    if p.is_empty() {
        return Err("expected a path under the FHIR base, e.g. Patient/123 or metadata".to_owned());
    }
    if p.contains("://") {
        return Err("expected a path under the FHIR base, not a URL".to_owned());
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the path must not contain spaces (percent-encode them)".to_owned());
    }
    // `%2e` and `\` are dot and slash to a URL parser: refuse them in the path, so that the
    // request cannot climb out of the base path.
    let lowered = path_part.to_ascii_lowercase();
    if lowered.contains("%2e") || path_part.contains('\\') {
        return Err("the path must not contain encoded dots or backslashes".to_owned());
    }
    if path_part.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err("the path must not contain . or .. segments".to_owned());
    }
    Ok(p.to_owned())
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The path under the FHIR base: Patient/123, Patient/123/_history/2, metadata, or any
    /// read such as Patient?family=Smith (percent-encoded as in a URL).
    #[arg(value_name = "PATH", value_parser = parse_path)]
    path: String,
    #[command(flatten)]
    fhir: FhirArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The resource type, e.g. Patient.
    #[arg(value_name = "TYPE", value_parser = parse_type)]
    resource_type: String,
    /// Search parameters, unencoded; repeat a name to combine values, e.g. family=Smith
    /// birthdate=ge1970 _count=50.
    #[arg(value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Send POST [TYPE]/_search with a form body: keeps the parameters out of URLs and server
    /// access logs.
    #[arg(long)]
    post: bool,
    /// Follow the Bundle's next links and print every matching resource as NDJSON (one JSON
    /// object a line) instead of the first Bundle. Server notes (search outcome entries) go to
    /// stderr.
    #[arg(long)]
    all: bool,
    /// With --all: fetch at most N pages (a server may page for ever). Stopping at the limit
    /// while the server has more is a failure (exit 1) after the resources already printed.
    #[arg(long, value_name = "N", requires = "all", default_value_t = DEFAULT_MAX_PAGES)]
    max_pages: usize,
    /// With --all: follow no further page after this many seconds (stopping early exits 1).
    #[arg(long, value_name = "SECONDS", requires = "all", default_value_t = DEFAULT_PAGING_SECS)]
    max_time: u64,
    #[command(flatten)]
    fhir: FhirArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The resource type, e.g. Patient.
    #[arg(value_name = "TYPE", value_parser = parse_type)]
    resource_type: String,
    /// The resource as JSON: a file, or - for stdin.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Create only if no resource matches this search (conditional create), e.g.
    /// "identifier=urn:mrn|12345".
    #[arg(long, value_name = "QUERY")]
    if_none_exist: Option<String>,
    #[command(flatten)]
    fhir: FhirArgs,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The resource to replace, e.g. Patient/123.
    #[arg(value_name = "TYPE/ID", value_parser = parse_type_id)]
    target: TypeId,
    /// The new resource as JSON: a file, or - for stdin. Its id, if any, must be ID.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Update only if the current version is VERSION (a version id, or an ETag such as
    /// W/"3"); otherwise the server refuses with 412.
    #[arg(long, value_name = "VERSION")]
    if_match: Option<String>,
    #[command(flatten)]
    fhir: FhirArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PatchArgs {
    /// The resource to patch, e.g. Patient/123.
    #[arg(value_name = "TYPE/ID", value_parser = parse_type_id)]
    target: TypeId,
    /// A JSON Patch document (RFC 6902): a file, or - for stdin.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Patch only if the current version is VERSION.
    #[arg(long, value_name = "VERSION")]
    if_match: Option<String>,
    #[command(flatten)]
    fhir: FhirArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The resource to delete, e.g. Patient/123.
    #[arg(value_name = "TYPE/ID", value_parser = parse_type_id)]
    target: TypeId,
    #[command(flatten)]
    fhir: FhirArgs,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// A resource type (Patient) or one resource (Patient/123).
    #[arg(value_name = "TYPE[/ID]", value_parser = parse_type_maybe_id)]
    target: TypeMaybeId,
    /// The most entries per page (_count).
    #[arg(long, value_name = "N")]
    count: Option<u32>,
    /// Only versions since this instant (_since), e.g. 2024-01-01T00:00:00Z.
    #[arg(long, value_name = "INSTANT")]
    since: Option<String>,
    #[command(flatten)]
    fhir: FhirArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// A Bundle of type batch or transaction: a file, or - for stdin. Exits 1 when the server
    /// refuses a transaction, or when any entry of a batch failed (the response Bundle is
    /// printed first).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    fhir: FhirArgs,
}

fn print_json(v: &Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A FHIR failure on one line: the command, then the error (request, status, diagnostics).
fn failed(command: &str, e: &FhirError) -> Failure {
    Failure::from_error(command, e)
}

/// The default page limit of `search --all`.
const DEFAULT_MAX_PAGES: usize = 1000;

/// The default time limit of `search --all`: ten minutes.
const DEFAULT_PAGING_SECS: u64 = 600;

/// Reads a JSON document from a file or stdin (`-`). The error never quotes the content.
fn read_json(path: &Path) -> Result<Value> {
    let (name, bytes) = crate::files::read_input(
        path,
        "a resource, patch or Bundle",
        crate::files::RESOURCE_LIMIT,
    )?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(format!(
            "{name} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Prints a write's answer: the body as JSON, or, when there is none, the status and location
/// on stderr.
fn print_write(r: &FhirResponse<Option<Value>>) {
    match r.body() {
        Some(body) => print_json(body),
        None => {
            let location = r
                .location()
                .map(|l| format!(", Location: {l}"))
                .unwrap_or_default();
            eprintln!("smart-fhir: HTTP {} (no body){location}", r.status());
        }
    }
}

pub(crate) fn get(a: GetArgs) -> Result<u8> {
    let client = a.fhir.client()?;
    let r = rt()?
        .block_on(client.get::<Value>(&a.path))
        .map_err(|e| failed("get", &e))?;
    check_type(&a.path, r.body())?;
    print_json(r.body());
    Ok(0)
}

/// The `resourceType` a read of `path` must answer with: the type of `Type/id` and
/// `Type/id/_history/vid`, a Bundle for searches and history, a CapabilityStatement for
/// `metadata`; `None` for other paths (operations), which may answer with anything.
fn expected_type(path: &str) -> Option<String> {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_type = |s: &str| s.starts_with(|c: char| c.is_ascii_uppercase());
    let is_id = |s: &str| !s.is_empty() && !s.starts_with(['_', '$']);
    match segments.as_slice() {
        ["metadata"] if query.is_none() => Some("CapabilityStatement".to_owned()),
        [t] if is_type(t) => Some("Bundle".to_owned()),
        [t, "_history"] if is_type(t) => Some("Bundle".to_owned()),
        [t, id] if is_type(t) && is_id(id) && query.is_none() => Some((*t).to_owned()),
        [t, id, "_history"] if is_type(t) && is_id(id) => Some("Bundle".to_owned()),
        [t, id, "_history", v] if is_type(t) && is_id(id) && is_id(v) && query.is_none() => {
            Some((*t).to_owned())
        }
        _ => None,
    }
}

/// Refuses an answer of another resource type than `path` reads (a server must not answer
/// `Group/X` with a Patient; printed, it would pass for the Group).
fn check_type(path: &str, body: &Value) -> Result<()> {
    let Some(expected) = expected_type(path) else {
        return Ok(());
    };
    let got = body.get("resourceType").and_then(Value::as_str);
    if got == Some(expected.as_str()) {
        return Ok(());
    }
    let shown = path.split('?').next().unwrap_or(path);
    Err(Failure::new(match got {
        Some(other) => format!(
            "get {shown}: the server answered with a {}, not a {expected}",
            smart_fhir_core::text::printable(other, 64)
        ),
        None => format!("get {shown}: the server answered with no resourceType, not a {expected}"),
    }))
}

pub(crate) fn search(a: SearchArgs) -> Result<u8> {
    let client = a.fhir.client()?;
    let params: SearchParams = a.params.iter().cloned().collect();
    let rt = rt()?;
    if !a.all {
        let r = rt
            .block_on(async {
                if a.post {
                    client.search_post::<Value>(&a.resource_type, &params).await
                } else {
                    client.search::<Value>(&a.resource_type, &params).await
                }
            })
            .map_err(|e| failed("search", &e))?;
        print_json(r.body());
        return Ok(0);
    }
    rt.block_on(search_all(&client, &a, &params))
}

/// `search --all`: every resource of every page as NDJSON.
async fn search_all(client: &FhirClient, a: &SearchArgs, params: &SearchParams) -> Result<u8> {
    let pages = if a.post {
        client.search_post_pages(&a.resource_type, params)
    } else {
        client.search_pages(&a.resource_type, params)
    }
    .map_err(|e| failed("search", &e))?;
    let pages = pages
        .max_pages(a.max_pages)
        .time_limit(std::time::Duration::from_secs(a.max_time));
    let mut entries = pages.entries::<Value>();
    let mut count: u64 = 0;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| failed("search", &e))?
    {
        let entry: BundleEntry = entry;
        if entry.is_outcome() {
            if let Some(o) = &entry.outcome {
                eprintln!("smart-fhir: search: server note: {}", o.summary());
            }
            continue;
        }
        if let Some(resource) = entry.resource {
            outln!("{}", serde_json::to_string(&resource).unwrap_or_default());
            count += 1;
        }
    }
    if entries.next_url().is_some() {
        eprintln!(
            "smart-fhir: search: stopped after {} pages ({count} resources; --max-pages {}, \
             --max-time {} s); the server has more",
            entries.pages_fetched(),
            a.max_pages,
            a.max_time
        );
        // Nothing lost silently: a pipeline must not take a truncated result for the whole.
        return Ok(1);
    }
    Ok(0)
}

pub(crate) fn create(a: CreateArgs) -> Result<u8> {
    let body = read_json(&a.file)?;
    let client = a.fhir.client()?;
    let r = rt()?
        .block_on(client.create::<Value>(&a.resource_type, &body, a.if_none_exist.as_deref()))
        .map_err(|e| failed("create", &e))?;
    print_write(&r);
    Ok(0)
}

pub(crate) fn update(a: UpdateArgs) -> Result<u8> {
    let body = read_json(&a.file)?;
    let client = a.fhir.client()?;
    let t = &a.target;
    let r = rt()?
        .block_on(client.update::<Value>(&t.resource_type, &t.id, &body, a.if_match.as_deref()))
        .map_err(|e| failed("update", &e))?;
    print_write(&r);
    Ok(0)
}

pub(crate) fn patch(a: PatchArgs) -> Result<u8> {
    let patch = read_json(&a.file)?;
    if !patch.is_array() {
        return Err(Failure::new(
            "a JSON Patch document is an array of operations, e.g. [{\"op\": \"replace\", \"path\": \"/active\", \"value\": false}]",
        ));
    }
    let client = a.fhir.client()?;
    let t = &a.target;
    let r = rt()?
        .block_on(client.patch_json::<Value>(
            &t.resource_type,
            &t.id,
            &patch,
            a.if_match.as_deref(),
        ))
        .map_err(|e| failed("patch", &e))?;
    print_write(&r);
    Ok(0)
}

pub(crate) fn delete(a: DeleteArgs) -> Result<u8> {
    let client = a.fhir.client()?;
    let t = &a.target;
    let r = rt()?
        .block_on(client.delete(&t.resource_type, &t.id))
        .map_err(|e| failed("delete", &e))?;
    eprintln!(
        "smart-fhir: deleted {}/{} (HTTP {})",
        t.resource_type,
        t.id,
        r.status()
    );
    Ok(0)
}

pub(crate) fn history(a: HistoryArgs) -> Result<u8> {
    let client = a.fhir.client()?;
    let mut params = SearchParams::new();
    if let Some(n) = a.count {
        params = params.count(n);
    }
    if let Some(s) = &a.since {
        params = params.since(s.clone());
    }
    let t = &a.target;
    let r = rt()?
        .block_on(async {
            match &t.id {
                Some(id) => {
                    client
                        .history_instance::<Value>(&t.resource_type, id, &params)
                        .await
                }
                None => {
                    client
                        .history_type::<Value>(&t.resource_type, &params)
                        .await
                }
            }
        })
        .map_err(|e| failed("history", &e))?;
    print_json(r.body());
    Ok(0)
}

pub(crate) fn batch(a: BatchArgs) -> Result<u8> {
    let bundle = read_json(&a.file)?;
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    let is_bundle = bundle.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    if !is_bundle || !matches!(kind, "batch" | "transaction") {
        return Err(Failure::new(
            "expected a Bundle with \"type\": \"batch\" or \"transaction\"",
        ));
    }
    let client = a.fhir.client()?;
    let r = rt()?
        .block_on(async {
            if kind == "batch" {
                client.batch::<Value>(&bundle).await
            } else {
                client.transaction::<Value>(&bundle).await
            }
        })
        .map_err(|e| failed(kind, &e))?;
    print_json(r.body());
    let entries = r
        .body()
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let failed_entries = entries
        .iter()
        .filter(|e| {
            let status = e
                .pointer("/response/status")
                .and_then(Value::as_str)
                .unwrap_or("");
            status.starts_with('4') || status.starts_with('5')
        })
        .count();
    if failed_entries > 0 {
        return Err(Failure::new(format!(
            "{kind}: {failed_entries} of {} entries failed (see each entry's response)",
            entries.len()
        )));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11 §1 (`get Group/X` prints whatever came back): the type a read must answer
    /// with, and the refusal of another.
    #[test]
    fn get_checks_the_resource_type() {
        for (path, expected) in [
            ("Group/X", Some("Group")),
            ("Patient/1/_history/2", Some("Patient")),
            ("Patient/1/_history", Some("Bundle")),
            ("Patient?family=Smith", Some("Bundle")),
            ("Patient", Some("Bundle")),
            ("metadata", Some("CapabilityStatement")),
            ("Patient/1/$everything", None),
            ("Patient/$match", None),
            ("$export-poll-status", None),
        ] {
            assert_eq!(expected_type(path).as_deref(), expected, "{path}");
        }
        let patient = serde_json::json!({"resourceType": "Patient", "id": "X"});
        let e = check_type("Group/X", &patient).unwrap_err();
        assert!(e.0.contains("a Patient, not a Group"), "{}", e.0);
        assert!(check_type("Patient/X", &patient).is_ok());
        assert!(check_type("Group/X", &serde_json::json!({})).is_err());
        let escape = serde_json::json!({"resourceType": "\u{1b}]0;x\u{7}"});
        let e = check_type("Group/X", &escape).unwrap_err();
        assert!(!e.0.contains('\u{1b}'), "{}", e.0);
    }

    #[test]
    fn argument_parsers() {
        assert_eq!(parse_type("Patient").unwrap(), "Patient");
        assert!(parse_type("patient").is_err());
        let t = parse_type_id("Patient/123").unwrap();
        assert_eq!(
            (t.resource_type.as_str(), t.id.as_str()),
            ("Patient", "123")
        );
        for bad in [
            "Patient",
            "Patient/",
            "patient/1",
            "Patient/1/2",
            "Patient/a b",
        ] {
            assert!(parse_type_id(bad).is_err(), "{bad}");
        }
        assert!(parse_type_maybe_id("Patient").unwrap().id.is_none());
        assert_eq!(
            parse_type_maybe_id("Patient/1").unwrap().id.as_deref(),
            Some("1")
        );
        assert_eq!(
            parse_param("identifier=urn:x|a=b").unwrap(),
            ("identifier".to_owned(), "urn:x|a=b".to_owned())
        );
        assert_eq!(parse_param("name=").unwrap().1, "");
        assert!(parse_param("name").is_err());
        assert!(parse_param("=x").is_err());
        assert_eq!(parse_path("/metadata").unwrap(), "metadata");
        assert_eq!(
            parse_path("Patient?name=a..b").unwrap(),
            "Patient?name=a..b"
        );
        for bad in [
            "",
            "/",
            "https://evil.example/x",
            "Patient/../x",
            "a b",
            "./metadata",
            "Patient/%2e%2e/%2E%2E/x",
            "Patient\\..\\x",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }
}
