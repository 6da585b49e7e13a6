//! The FHIR commands (`get`, `search`, `create`, `batch`, …) run as a person runs them, against a
//! scripted HTTP/1.1 server on 127.0.0.1 inside the test (no harness needed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// One request as the server saw it: the request line, the headers (lower-case names) and the
/// body.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers one connection per scripted reply, in order, then stops. Returns the base URL and the
/// log of requests.
fn serve(replies: Vec<(u16, Value)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for (status, body) in replies {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                return;
            }
            let mut headers = vec![];
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut buf = vec![0; len];
            let _ = reader.read_exact(&mut buf);
            seen.lock().unwrap().push(Seen {
                line: line.trim().to_owned(),
                headers,
                body: String::from_utf8_lossy(&buf).into_owned(),
            });
            let text = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/fhir+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let mut stream = reader.into_inner();
            let _ = stream.write_all(reply.as_bytes());
            let _ = stream.flush();
        }
    });
    (format!("http://127.0.0.1:{port}/fhir"), log)
}

fn cli(args: &[&str], base: &str, stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smart-fhir"))
        .args(args)
        .args(["--fhir-base", base, "--insecure-http"])
        .env_remove("RUST_BACKTRACE")
        .env_remove("SMART_FHIR_BASE")
        .env_remove("SMART_CLIENT_ID")
        .env_remove("SMART_SCOPE")
        .env_remove("SMART_PRIVATE_KEY")
        .env_remove("SMART_PRIVATE_KEY_FILE")
        .env_remove("SMART_TOKEN_URL")
        .env_remove("SMART_INSECURE_HTTP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smart-fhir");
    if let Some(mut w) = child.stdin.take() {
        if let Some(text) = stdin {
            w.write_all(text.as_bytes()).expect("stdin");
        }
    }
    child.wait_with_output().expect("output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id})
}

/// SC-8.2, SC-8.4: `get` prints the resource as pretty JSON; without a client id no token is
/// sent (an open server).
#[test]
fn sc_8_4_get_prints_pretty_json() {
    let (base, log) = serve(vec![(200, patient("123"))]);
    let o = cli(&["get", "Patient/123"], &base, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("\n  \"id\": \"123\""), "pretty: {out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, patient("123"));
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].line, "GET /fhir/Patient/123 HTTP/1.1");
    assert_eq!(seen[0].header("accept"), Some("application/fhir+json"));
    assert_eq!(seen[0].header("authorization"), None);
}

/// SC-8.18: `search --all` follows the next link and prints every resource as NDJSON; a search
/// outcome entry is a note on stderr, not a line.
#[test]
fn sc_8_18_search_all_prints_ndjson_across_pages() {
    // The next link is relative: servers that send such links are followed too.
    let page1 = json!({"resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": "Patient?family=Smith&_page=2"}],
        "entry": [{"resource": patient("1"), "search": {"mode": "match"}},
                  {"resource": {"resourceType": "OperationOutcome", "issue": [
                      {"severity": "warning", "code": "processing", "diagnostics": "_sort ignored"}]},
                   "search": {"mode": "outcome"}}]});
    let page2 = json!({"resourceType": "Bundle", "type": "searchset",
        "entry": [{"resource": patient("2")}, {"resource": patient("3")}]});
    let (base, log) = serve(vec![(200, page1), (200, page2)]);
    let o = cli(&["search", "Patient", "family=Smith", "--all"], &base, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one object a line"))
        .collect();
    assert_eq!(lines, vec![patient("1"), patient("2"), patient("3")]);
    assert!(stderr(&o).contains("_sort ignored"), "{}", stderr(&o));
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].line, "GET /fhir/Patient?family=Smith HTTP/1.1");
    assert_eq!(
        seen[1].line,
        "GET /fhir/Patient?family=Smith&_page=2 HTTP/1.1"
    );
}

/// SC-8.17: `search --post` sends the parameters as a form body; without `--all` the Bundle is
/// printed.
#[test]
fn sc_8_17_search_post_sends_a_form() {
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": 0});
    let (base, log) = serve(vec![(200, bundle.clone())]);
    let o = cli(
        &[
            "search",
            "Patient",
            "name=Zoë Smith",
            "birthdate=ge1970",
            "--post",
        ],
        &base,
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap(), bundle);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].line, "POST /fhir/Patient/_search HTTP/1.1");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(seen[0].body, "name=Zo%C3%AB+Smith&birthdate=ge1970");
}

/// SC-8.24, SC-8.25: a FHIR error exits 1 with the request, the status and the diagnostics on
/// one stderr line, and never the query string.
#[test]
fn sc_8_24_fhir_error_is_one_line_exit_1() {
    let outcome = json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found", "diagnostics": "Patient/9 is not known\nat all"}]});
    let (base, _) = serve(vec![(404, outcome)]);
    let o = cli(&["get", "Patient/9"], &base, None);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("GET /fhir/Patient/9: HTTP 404 Not Found: Patient/9 is not known"),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    let (base, _) = serve(vec![(
        400,
        json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": "bad parameter"}]}),
    )]);
    let o = cli(&["search", "Patient", "name=Smith"], &base, None);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("HTTP 400") && err.contains("bad parameter"),
        "{err}"
    );
    assert!(!err.contains("Smith"), "{err}");
}

/// SC-8.13, SC-8.7: `create` reads stdin and POSTs it; `update --if-match` sends a weak ETag.
#[test]
fn sc_8_13_create_from_stdin_and_update_if_match() {
    let (base, log) = serve(vec![(201, patient("n1")), (200, patient("n1"))]);
    let body = json!({"resourceType": "Patient", "active": true});
    let o = cli(&["create", "Patient", "-"], &base, Some(&body.to_string()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        patient("n1")
    );
    let o = cli(
        &["update", "Patient/n1", "-", "--if-match", "7"],
        &base,
        Some(&patient("n1").to_string()),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].line, "POST /fhir/Patient HTTP/1.1");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/fhir+json")
    );
    assert_eq!(serde_json::from_str::<Value>(&seen[0].body).unwrap(), body);
    assert_eq!(seen[1].line, "PUT /fhir/Patient/n1 HTTP/1.1");
    assert_eq!(seen[1].header("if-match"), Some("W/\"7\""));
}

/// SC-8.21: `batch` prints the response Bundle and exits 1 when an entry failed.
#[test]
fn sc_8_21_batch_with_a_failed_entry_exits_1() {
    let response = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
        {"response": {"status": "200 OK"}}, {"response": {"status": "404 Not Found"}}]});
    let (base, log) = serve(vec![(200, response.clone())]);
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/1"}},
        {"request": {"method": "GET", "url": "Patient/2"}}]});
    let o = cli(&["batch", "-"], &base, Some(&batch.to_string()));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        response
    );
    assert!(
        stderr(&o).contains("1 of 2 entries failed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(log.lock().unwrap()[0].line, "POST /fhir HTTP/1.1");
}

/// Bad usage exits 2 and sends nothing; a bad input file exits 1 without quoting it.
#[test]
fn usage_errors_exit_2_and_bad_input_exits_1() {
    let base = "http://127.0.0.1:9/fhir";
    for args in [
        vec!["update", "Patient", "-"],
        vec!["delete", "Patient/a b"],
        vec!["search", "patient"],
        vec!["search", "Patient", "family"],
        vec!["get", "https://elsewhere.example/Patient/1"],
        vec!["get", "Patient/../../admin"],
        vec!["history", "Patient/1/2"],
        vec!["search", "Patient", "--max-pages", "2"],
    ] {
        let o = cli(&args, base, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = cli(
        &["create", "Patient", "-"],
        base,
        Some("{\"name\": \"Smith\""),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("stdin is not valid JSON"), "{err}");
    assert!(!err.contains("Smith"), "{err}");
    let o = cli(
        &["batch", "-"],
        base,
        Some("{\"resourceType\": \"Bundle\", \"type\": \"collection\"}"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("batch"), "{}", stderr(&o));
}

/// P7: plain http needs the opt-in (exit 1, one line naming it).
#[test]
fn p7_http_base_without_opt_in() {
    let o = Command::new(env!("CARGO_BIN_EXE_smart-fhir"))
        .args(["get", "metadata", "--fhir-base", "http://127.0.0.1:9/fhir"])
        .env_remove("SMART_FHIR_BASE")
        .env_remove("SMART_CLIENT_ID")
        .env_remove("SMART_INSECURE_HTTP")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--insecure-http"), "{}", stderr(&o));
}

/// Issue 11 §1 (`get Group/X` prints whatever came back): an answer of another resource type
/// is refused, exit 1, and not printed.
#[test]
fn get_refuses_another_resource_type() {
    let (base, _) = serve(vec![(200, patient("X"))]);
    let o = cli(&["get", "Group/X"], &base, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("answered with a Patient, not a Group"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

/// Issue 11 §1 (terminal escapes from server text): the human output of `discover` shows no
/// control character the server sent; `--json` keeps the server's strings exact.
#[test]
fn discover_human_output_has_no_terminal_escapes() {
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let config = json!({
        "issuer": format!("https://ehr.example/{hostile}"),
        "token_endpoint": "http://127.0.0.1:9/token",
        "authorization_endpoint": format!("http://127.0.0.1:9/auth{hostile}"),
        "capabilities": [format!("launch-ehr{hostile}"), "client-confidential-asymmetric"],
        "grant_types_supported": [format!("client_credentials{hostile}")],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "code_challenge_methods_supported": ["S256"]
    });
    for json_output in [false, true] {
        let (base, _) = serve(vec![(200, config.clone())]);
        let mut args = vec!["discover", base.as_str(), "--insecure-http"];
        if json_output {
            args.push("--json");
        }
        let o = Command::new(env!("CARGO_BIN_EXE_smart-fhir"))
            .args(&args)
            .env_remove("SMART_INSECURE_HTTP")
            .output()
            .expect("run smart-fhir");
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        if json_output {
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["capabilities"][0], json!(format!("launch-ehr{hostile}")));
        } else {
            assert!(out.contains("launch-ehr"), "{out}");
            assert!(
                !out.contains(['\u{1b}', '\u{7}']),
                "escape on stdout: {out:?}"
            );
        }
    }
}

/// Marks a raw reply after which the server keeps the connection open and sends nothing more.
const STALL: &str = "\u{0}stall\u{0}";

/// A scripted server whose replies are raw HTTP responses, made once the port is known; one
/// connection per reply, in order (a reply starting with [`STALL`] is sent without it and its
/// connection then stalls). Returns the base URL and the request lines seen.
fn serve_raw(replies: impl FnOnce(u16) -> Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let replies = replies(port);
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut stalled = Vec::new();
        for reply in replies {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                return;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
            }
            seen.lock().unwrap().push(line.trim().to_owned());
            let mut stream = reader.into_inner();
            let (reply, stall) = match reply.strip_prefix(STALL) {
                Some(rest) => (rest, true),
                None => (reply.as_str(), false),
            };
            let _ = stream.write_all(reply.as_bytes());
            let _ = stream.flush();
            if stall {
                // Keep the connection open, sending nothing more, for as long as the server runs.
                stalled.push(stream);
            }
        }
    });
    (format!("http://127.0.0.1:{port}/fhir"), log)
}

fn raw(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

/// The replies of an export whose one file answers `file_body`, then the DELETE of the job.
fn export_replies(port: u16, file_body: &str) -> Vec<String> {
    let origin = format!("http://127.0.0.1:{port}");
    let manifest = json!({
        "transactionTime": "2024-05-01T10:00:00Z\u{1b}]0;pwned\u{7}",
        "request": format!("{origin}/fhir/$export"),
        "requiresAccessToken": false,
        "output": [{"type": "Patient", "url": format!("{origin}/files/p1")}],
        "error": []
    })
    .to_string();
    vec![
        raw(
            "202 Accepted",
            &[("content-location", &format!("{origin}/status/1"))],
            "",
        ),
        raw("200 OK", &[("content-type", "application/json")], &manifest),
        raw(
            "200 OK",
            &[("content-type", "application/fhir+ndjson")],
            file_body,
        ),
        raw("202 Accepted", &[], ""),
    ]
}

fn export(base: &str, out: &std::path::Path) -> Output {
    cli(&["export", "--out", out.to_str().unwrap()], base, None)
}

/// Issue 11 §1 (Bulk downloads without a bound, SC-7.23): a failed download deletes the job at
/// the server and writes no manifest.json beside the partial set of files; a complete export
/// writes it after the files (replacing a planted symlink, never following it), and its human
/// summary shows no terminal escape from the server.
#[test]
fn export_failure_deletes_the_job_and_writes_no_manifest() {
    let (base, log) =
        serve_raw(|port| export_replies(port, "{\"resourceType\":\"Patient\"}\nnot json\n"));
    let dir = tempfile::tempdir().unwrap();
    let o = export(&base, dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("deleted at the server"), "{err}");
    assert!(err.contains("incomplete"), "{err}");
    assert!(!dir.path().join("manifest.json").exists());
    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen.last().map(String::as_str),
        Some("DELETE /status/1 HTTP/1.1"),
        "{seen:?}"
    );

    let (base, log) =
        serve_raw(|port| export_replies(port, "{\"resourceType\":\"Patient\",\"id\":\"1\"}\n"));
    let dir = tempfile::tempdir().unwrap();
    // A symlink planted at manifest.json is replaced, never written through.
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&victim, dir.path().join("manifest.json")).unwrap();
    let o = export(&base, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let manifest = dir.path().join("manifest.json");
    assert!(!std::fs::symlink_metadata(&manifest).unwrap().is_symlink());
    assert!(manifest.is_file());
    assert!(dir.path().join("Patient.1.ndjson").is_file());
    let out = stdout(&o);
    assert!(
        out.contains("transactionTime: 2024-05-01T10:00:00Z"),
        "{out}"
    );
    assert!(
        !out.contains(['\u{1b}', '\u{7}']),
        "escape on stdout: {out:?}"
    );
    assert_eq!(log.lock().unwrap().len(), 4);
}

/// Issue 11 §1 (Bulk downloads without a bound, SC-7.23): `--timeout` covers the downloads, not
/// only the kick-off and the polling: a file whose body never ends fails the export when the
/// whole-export deadline passes, the job is deleted at the server and no manifest.json is
/// written.
#[test]
fn sc_7_23_export_timeout_covers_a_download_that_never_ends() {
    let (base, log) = serve_raw(|port| {
        let mut replies = export_replies(port, "");
        // The file announces a megabyte, sends one line, then nothing more.
        replies[2] = format!(
            "{STALL}HTTP/1.1 200 OK\r\ncontent-type: application/fhir+ndjson\r\n\
             content-length: 1000000\r\n\r\n{{\"resourceType\":\"Patient\"}}\n"
        );
        replies
    });
    let dir = tempfile::tempdir().unwrap();
    let o = cli(
        &[
            "export",
            "--out",
            dir.path().to_str().unwrap(),
            "--timeout",
            "2",
        ],
        &base,
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("did not finish within --timeout 2 s"), "{err}");
    assert!(!dir.path().join("manifest.json").exists());
    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen.last().map(String::as_str),
        Some("DELETE /status/1 HTTP/1.1"),
        "{seen:?}"
    );
}

/// Issue 11 §1 (paging without a bound, SC-8.18): `search --all` without `--max-pages` stops at
/// the default page limit against a server whose every page links to a new one, says so, and
/// exits 1: a truncated result is never reported as complete.
#[test]
fn sc_8_18_search_all_stops_at_the_default_page_limit() {
    let pages: Vec<(u16, Value)> = (1..=1001)
        .map(|n| {
            let next = format!("Patient?_page={}&pad={}", n + 1, "x".repeat(200));
            (
                200,
                json!({"resourceType": "Bundle", "type": "searchset",
                       "link": [{"relation": "next", "url": next}],
                       "entry": [{"resource": patient(&n.to_string())}]}),
            )
        })
        .collect();
    let (base, log) = serve(pages);
    let o = cli(&["search", "Patient", "--all"], &base, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("stopped after 1000 pages"), "{err}");
    assert!(err.contains("the server has more"), "{err}");
    assert_eq!(stdout(&o).lines().count(), 1000);
    assert_eq!(log.lock().unwrap().len(), 1000);
}
