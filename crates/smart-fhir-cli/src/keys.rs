//! `keygen`, `jwks`, `assertion`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use smart_fhir_core::{Clock, InsecureHttp, SystemClock};
use smart_fhir_jwt::{merge_jwks, Algorithm, AssertionSigner, KeySpec, KeyType, PrivateKey};

use crate::files::{read_file, write_all_or_none, NewFile, KEY_FILE_LIMIT};
use crate::{Failure, Result};

/// The algorithms the CLI signs with.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "verbatim")]
pub enum Alg {
    RS384,
    ES384,
    RS256,
    ES256,
    PS384,
}

impl From<Alg> for Algorithm {
    fn from(a: Alg) -> Self {
        match a {
            Alg::RS384 => Algorithm::RS384,
            Alg::ES384 => Algorithm::ES384,
            Alg::RS256 => Algorithm::RS256,
            Alg::ES256 => Algorithm::ES256,
            Alg::PS384 => Algorithm::PS384,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// The signing algorithm the key is for (RS*/PS*: RSA; ES256: P-256; ES384: P-384).
    #[arg(long, value_enum)]
    alg: Alg,
    /// RSA key size in bits.
    #[arg(long, default_value = "2048", value_parser = ["2048", "3072", "4096"])]
    bits: String,
    /// The key id to publish (default: the RFC 7638 thumbprint). A custom kid is written into
    /// the PEM file (a `kid:` line before the key), so `token`, `jwks` and `assertion` use it.
    #[arg(long)]
    kid: Option<String>,
    /// Where to write the PKCS#8 private key (created with mode 0600; never overwritten unless
    /// --force).
    #[arg(long, value_name = "PRIVATE.pem")]
    out: PathBuf,
    /// Where to write the public JWKS to register with the server.
    #[arg(long, value_name = "PUBLIC.json")]
    jwks: Option<PathBuf>,
    /// Replace existing files (a symlink there is replaced, never followed).
    #[arg(long)]
    force: bool,
}

pub(crate) fn keygen(a: KeygenArgs) -> Result<u8> {
    let alg = Algorithm::from(a.alg);
    let spec = match (alg, a.bits.as_str()) {
        (Algorithm::ES256, _) => KeySpec::P256,
        (Algorithm::ES384, _) => KeySpec::P384,
        (_, "3072") => KeySpec::Rsa3072,
        (_, "4096") => KeySpec::Rsa4096,
        _ => KeySpec::Rsa2048,
    };
    // The published JWK carries no `alg`, so the same key serves every algorithm that fits it
    // and `jwks` on the PEM prints exactly what keygen published.
    let mut key = PrivateKey::generate(spec)
        .map_err(|e| Failure::from_error("cannot generate the key", &e))?;
    if let Some(kid) = &a.kid {
        key = key
            .with_kid(kid.clone())
            .map_err(|e| Failure::from_error("invalid --kid", &e))?;
    }
    let pem = if a.kid.is_some() {
        key.to_pkcs8_pem_with_kid()
            .map_err(|e| Failure::from_error("invalid --kid", &e))?
    } else {
        key.to_pkcs8_pem()
    };
    let mut pem_bytes = zeroize::Zeroizing::new(pem.as_bytes().to_vec());
    pem_bytes.push(b'\n');
    let jwks_text = a.jwks.as_ref().map(|_| pretty(&key.public_jwks()) + "\n");
    // Both files or neither: the private key is never left without its JWKS.
    let mut outputs = vec![NewFile {
        path: &a.out,
        bytes: &pem_bytes,
        mode: 0o600,
    }];
    if let (Some(path), Some(text)) = (&a.jwks, &jwks_text) {
        outputs.push(NewFile {
            path,
            bytes: text.as_bytes(),
            mode: 0o644,
        });
    }
    write_all_or_none(&outputs, a.force)?;
    outln!("{}", key.kid());
    Ok(0)
}

#[derive(Debug, Args)]
pub(crate) struct JwksArgs {
    /// A private key: PKCS#8, PKCS#1 or SEC1 PEM, a private JWK, or a JWKS of private keys.
    #[arg(value_name = "KEYFILE")]
    key: PathBuf,
}

pub(crate) fn jwks(a: JwksArgs) -> Result<u8> {
    let text = read_key_file(&a.key)?;
    let value: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let public = match value
        .as_ref()
        .and_then(|v| v.get("keys"))
        .and_then(|k| k.as_array())
    {
        Some(keys) => {
            // A JWKS: publish every key in it, checking kid uniqueness (SC-2.5).
            let mut publics = Vec::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate() {
                let key = PrivateKey::from_jwk(&k.to_string())
                    .map_err(|e| Failure::from_error(&format!("key {i} of the JWKS"), &e))?;
                publics.push(key.public_jwk());
            }
            merge_jwks(publics).map_err(|e| Failure::from_error("cannot build the JWKS", &e))?
        }
        None => load_key_text(&text, None, &a.key)?.public_jwks(),
    };
    outln!("{}", pretty(&public));
    Ok(0)
}

#[derive(Debug, Args)]
pub(crate) struct AssertionArgs {
    /// The private key (PEM, JWK or JWKS).
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,
    /// The registered client id (the assertion's iss and sub).
    #[arg(long)]
    client_id: String,
    /// The token endpoint, exactly as the server advertises it (the assertion's aud).
    #[arg(long, value_name = "URL")]
    token_url: String,
    /// The algorithm (default: RS384 for RSA keys, ES384 for P-384, ES256 for P-256).
    #[arg(long, value_enum)]
    alg: Option<Alg>,
    /// The kid header (default: the key's kid or its thumbprint; selects the key in a JWKS).
    #[arg(long)]
    kid: Option<String>,
    /// The jku header: the client's registered JWKS URL.
    #[arg(long, value_name = "URL")]
    jku: Option<String>,
    /// Seconds until exp, 1 to 300.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    lifetime: u64,
}

pub(crate) fn assertion(a: AssertionArgs) -> Result<u8> {
    let key = load_key(&a.key, a.kid.as_deref())?;
    let alg = a
        .alg
        .map(Algorithm::from)
        .unwrap_or_else(|| default_alg(&key));
    let mut builder =
        AssertionSigner::builder(&key, alg).insecure_http(InsecureHttp::AllowLoopback);
    if let Some(jku) = a.jku {
        builder = builder.jku(jku);
    }
    let signer = builder
        .build()
        .map_err(|e| Failure::from_error("cannot sign", &e))?;
    let assertion = signer
        .sign(
            &a.client_id,
            &a.token_url,
            Duration::from_secs(a.lifetime),
            SystemClock.now(),
        )
        .map_err(|e| Failure::from_error("cannot sign", &e))?;
    // Printing the assertion is what this command is for.
    outln!("{}", assertion.secret());
    Ok(0)
}

/// RS384 for RSA, ES384 for P-384, ES256 for P-256 (SC-2.7).
pub(crate) fn default_alg(key: &PrivateKey) -> Algorithm {
    if let Some(alg) = key.algorithm() {
        return alg;
    }
    match key.key_type() {
        KeyType::EcP256 => Algorithm::ES256,
        KeyType::EcP384 => Algorithm::ES384,
        _ => Algorithm::RS384,
    }
}

fn read_key_file(path: &Path) -> Result<zeroize::Zeroizing<String>> {
    let bytes = zeroize::Zeroizing::new(read_file(path, "a key file", KEY_FILE_LIMIT)?);
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(zeroize::Zeroizing::new(text.to_owned())),
        Err(_) => Err(Failure::new(format!(
            "{} is not UTF-8 text (DER is not supported: convert it to PEM)",
            path.display()
        ))),
    }
}

pub(crate) fn load_key_text(text: &str, kid: Option<&str>, path: &Path) -> Result<PrivateKey> {
    let context = format!("cannot load the key in {}", path.display());
    let is_jwks = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .is_some_and(|v| v.get("keys").is_some());
    let key = if is_jwks {
        PrivateKey::from_jwks(text, kid).map_err(|e| Failure::from_error(&context, &e))?
    } else {
        let key = PrivateKey::from_bytes(text.as_bytes())
            .map_err(|e| Failure::from_error(&context, &e))?;
        match kid {
            Some(k) => key
                .with_kid(k)
                .map_err(|e| Failure::from_error("invalid --kid", &e))?,
            None => key,
        }
    };
    Ok(key)
}

/// Loads a private key file (PEM, JWK or JWKS); `kid` selects a key of a JWKS or overrides the
/// key id of a PEM or JWK.
pub(crate) fn load_key(path: &Path, kid: Option<&str>) -> Result<PrivateKey> {
    let text = read_key_file(path)?;
    load_key_text(&text, kid, path)
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
