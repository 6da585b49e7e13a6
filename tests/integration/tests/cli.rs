//! The `smart-fhir` CLI against the harness, as a person would run it.

use std::process::{Command, Output};

use smart_fhir_integration_tests::*;

fn cli(args: &[&str]) -> Output {
    Command::new(cli_bin())
        .args(args)
        .output()
        .expect("run smart-fhir")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// SC-1.1, SC-1.7, SC-1.8: `smart-fhir discover` prints the configuration and capabilities.
#[test]
fn cli_discover_human_and_json() {
    let b = base().to_string();
    let out = cli(&["discover", &b, "--insecure-http"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("/oidc/token"), "{stdout}");
    assert!(
        stdout.contains("client-confidential-asymmetric"),
        "{stdout}"
    );

    let out = cli(&["discover", &b, "--insecure-http", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert!(v["token_endpoint"]
        .as_str()
        .unwrap_or("")
        .ends_with("/oidc/token"));
}

/// P7: plain http without the opt-in is a clear error (exit 1), and nothing is fetched.
#[test]
fn p7_cli_refuses_http_without_opt_in() {
    let b = base().to_string();
    for args in [
        vec!["discover", b.as_str()],
        vec![
            "token",
            "--fhir-base",
            b.as_str(),
            "--client-id",
            "it-cli",
            "--key",
            "x.pem",
            "--scope",
            "system/Patient.rs",
        ],
    ] {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("--insecure-http"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
    }
}

/// SC-3.4, P5: `smart-fhir token` prints the granted scope, expiry and type; the access token only
/// with `--show-token`.
#[test]
fn cli_token_prints_grant_and_hides_token_unless_asked() {
    let b = base().to_string();
    let key = key_path("rs384");
    let key = key.to_str().expect("utf-8 path");
    let args = [
        "token",
        "--fhir-base",
        &b,
        "--client-id",
        "it-cli",
        "--key",
        key,
        "--scope",
        "system/Patient.rs",
        "--insecure-http",
    ];
    let out = cli(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("system/Patient.rs"), "{stdout}");
    assert!(stdout.to_lowercase().contains("bearer"), "{stdout}");
    assert!(stdout.contains("expires"), "{stdout}");
    // A JWT access token has two dots and starts with "ey"; it must not be printed.
    assert!(
        !stdout
            .split_whitespace()
            .any(|w| w.starts_with("ey") && w.matches('.').count() == 2),
        "token printed without --show-token: {stdout}"
    );

    let mut with = args.to_vec();
    with.push("--show-token");
    let out = cli(&with);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("ey") && w.matches('.').count() == 2)
        .expect("the token with --show-token");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let id = patient_ids().into_iter().next().expect("patient");
    let (status, _) = rt.block_on(fhir_get(
        &format!("Patient/{id}"),
        Some(&smart_fhir_core::AccessToken::new(token)),
    ));
    assert_eq!(status, 200);
}

/// SC-2.15: an unregistered key fails with exit 1 and a one-line reason naming invalid_client.
#[test]
fn cli_token_unregistered_key_fails_cleanly() {
    let b = base().to_string();
    let key = key_path("unregistered");
    let out = cli(&[
        "token",
        "--fhir-base",
        &b,
        "--client-id",
        "it-cli",
        "--key",
        key.to_str().expect("path"),
        "--scope",
        "system/Patient.rs",
        "--insecure-http",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("invalid_client"), "{err}");
}
