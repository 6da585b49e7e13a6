//! Untrusted text made safe for error messages and logs.
//!
//! Servers send HTML error pages, control characters and megabytes of body; JSON parse errors
//! can quote the input, which may be a token or patient data. Every crate formats such text
//! through these functions, so the rules live in one place. URLs are shown through
//! [`display_url`], which drops what may be secret or personal (credentials, query, fragment).

/// A bounded, printable rendition of untrusted text: control characters count as white space,
/// each run of white space collapses to one space, leading and trailing white space goes, and at
/// most `max_chars` characters are kept (a cut is marked with `…`, never needlessly: text that
/// fits once collapsed is not cut).
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            pending_space = count > 0;
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if count + needed > max_chars {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// The characters of a body excerpt in error messages.
pub const EXCERPT_CHARS: usize = 200;

/// A bounded, printable excerpt of a response body (see [`printable`]; at most
/// [`EXCERPT_CHARS`] characters), for the error when a body is not what was expected. At most
/// eight bytes a character are read (four for the widest character, the rest for white space
/// that collapses), so a huge body costs no more than a small one.
pub fn excerpt(body: &[u8]) -> String {
    let head = body
        .get(..body.len().min(EXCERPT_CHARS * 8))
        .unwrap_or(body);
    let mut out = printable(&String::from_utf8_lossy(head), EXCERPT_CHARS);
    if head.len() < body.len() && !out.ends_with('…') {
        out.push('…');
    }
    out
}

/// A URL as shown in errors and logs: scheme, host, port and path only. Credentials, the query
/// (it can carry patient data or a code) and the fragment are dropped, and the result is
/// bounded (300 characters).
pub fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    // Both calls fail only for URLs that cannot carry credentials, which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    printable(shown.as_str(), 300)
}

/// A JSON parse error described without quoting the input: what went wrong (truncated, not
/// JSON, unexpected content with the field and expected type) and where (line, column). Every
/// quoted input value in serde's message is replaced with `…`.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "the JSON is truncated".to_owned(),
        Category::Syntax => "the body is not valid JSON".to_owned(),
        Category::Io => "the body could not be read".to_owned(),
        Category::Data => {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or("");
            format!("unexpected content: {}", strip_quoted(msg))
        }
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

fn strip_quoted(msg: &str) -> String {
    for prefix in ["unknown variant `", "unknown field `"] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // The last match is serde's own: what follows it names the caller's type only.
            let end = ["`, expected ", "`, there are no "]
                .iter()
                .filter_map(|t| rest.rfind(t))
                .max();
            let tail = end.and_then(|e| rest.get(e..)).unwrap_or("`");
            return format!("{prefix}…{tail}");
        }
    }
    let keep_backticks = msg.starts_with("missing field `") || msg.starts_with("duplicate field `");
    let mut out = String::with_capacity(msg.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in msg.chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || (c == '`' && !keep_backticks) => {
                out.push(c);
                out.push('…');
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_bounds_and_cleans() {
        assert_eq!(printable(" a\u{1b}[31mb\n ", 10), "a [31mb");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("abc", 3), "abc");
    }

    /// White space collapses, and a cut is never made needlessly or before a space.
    #[test]
    fn printable_collapses_white_space_and_cuts_cleanly() {
        assert_eq!(printable("  ab \n\t cd  ", 10), "ab cd");
        assert_eq!(printable("abc   ", 3), "abc");
        assert_eq!(printable("abc d", 4), "abc…");
        assert_eq!(printable("\u{1b}[31mred", 20), "[31mred");
        assert_eq!(printable("", 5), "");
    }

    #[test]
    fn excerpt_is_bounded_even_for_huge_bodies() {
        let big = vec![b'x'; 10 * 1024 * 1024];
        let e = excerpt(&big);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"short"), "short");
        // A body cut short of the excerpt's length is still marked as cut.
        let spaces = [b' '; 4000];
        assert_eq!(excerpt(&[b"ab".as_slice(), &spaces, b"cd"].concat()), "ab…");
    }

    /// Moved from discovery: lines collapse, controls go, invalid UTF-8 shows as U+FFFD.
    #[test]
    fn excerpt_is_printable_and_marks_the_cut() {
        let body = format!("line one\r\n\tline\u{7}two {}", "x".repeat(500));
        let e = excerpt(body.as_bytes());
        assert!(e.starts_with("line one line two xxx"), "{e}");
        assert!(e.chars().all(|c| !c.is_control()));
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"  short  "), "short");
        assert_eq!(excerpt(b"\xff\xfe bad utf8"), "\u{fffd}\u{fffd} bad utf8");
    }

    /// P5: a URL in an error shows no credentials, query or fragment.
    #[test]
    fn p5_display_url_drops_credentials_query_and_fragment() {
        let url =
            url::Url::parse("https://u:pw@ehr.example:8443/fhir/metadata?patient=123#x").unwrap();
        assert_eq!(display_url(&url), "https://ehr.example:8443/fhir/metadata");
        let long = url::Url::parse(&format!("https://a.example/{}", "p".repeat(500))).unwrap();
        assert_eq!(display_url(&long).chars().count(), 301);
        let urn = url::Url::parse("urn:uuid:4b4f1d6a?x=1").unwrap();
        assert_eq!(display_url(&urn), "urn:uuid:4b4f1d6a");
    }

    /// P5: no input value is quoted, whatever serde's message looks like.
    #[test]
    fn p5_json_errors_quote_no_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Gender {
            Male,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            id: String,
            gender: Option<Gender>,
            count: Option<u32>,
        }
        for body in [
            r#"{"id":"1","count":"Jane \" SECRET-1 Doe"}"#,
            r#"{"id":"1","gender":"SECRET-2"}"#,
            r#"{"id":"1","gender":"SE`CRET-3`, expected `x"}"#,
            r#"{"id":"1","count":"a\\\" SECRET-4 \""}"#,
        ] {
            let e = describe_json_error(&serde_json::from_str::<Doc>(body).unwrap_err());
            assert!(e.contains("unexpected content"), "{e}");
            assert!(!e.contains("CRET"), "{body}: {e}");
        }
        let e = describe_json_error(&serde_json::from_str::<Doc>("{}").unwrap_err());
        assert!(e.contains("missing field `id`"), "{e}");
        let e = describe_json_error(&serde_json::from_str::<Doc>(r#"{"id":"1""#).unwrap_err());
        assert!(e.starts_with("the JSON is truncated"), "{e}");
    }
}

/// Text made safe for HTML element content and quoted attribute values: `&`, `<`, `>`, `"` and
/// `'` become character references, everything else is kept.
///
/// For the small pages that redirect listeners and sample apps write, where a message can quote
/// a server's error description or a user's input.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An error and its sources on one line, `: `-separated, each piece once: a source whose text
/// the line already holds (an error that repeats its cause) is not repeated.
///
/// The line ends at a transport error ([`HttpError`](crate::HttpError)): its message already
/// says what failed and why in this project's words (connection refused, DNS, the TLS
/// handshake and its reason); its sources are the HTTP and TLS libraries' own wording (hyper's
/// "client error (Connect)", rustls's UNIX times), kept for `source()` and `Debug`.
///
/// The pieces are the errors' own `Display`, which in this workspace carries no token, secret or
/// query string; control characters are kept, so use [`printable`] before writing the line to a
/// terminal.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut link = e;
    while !is_transport_error(link) {
        let Some(s) = link.source() else { break };
        let piece = s.to_string();
        if !text.contains(&piece) {
            text.push_str(": ");
            text.push_str(&piece);
        }
        link = s;
    }
    text
}

/// Whether `e` is an [`HttpError`](crate::HttpError), also held in an `Arc` or a `Box` (as
/// the errors that single flight clones hold it).
fn is_transport_error(e: &(dyn std::error::Error + 'static)) -> bool {
    use crate::HttpError;
    e.is::<HttpError>() || e.is::<std::sync::Arc<HttpError>>() || e.is::<Box<HttpError>>()
}

#[cfg(test)]
mod html_and_chain_tests {
    use super::*;

    /// P15: a server's error text or a user's input shown on a page cannot open a tag or leave
    /// an attribute.
    #[test]
    fn p15_escape_html_escapes_the_five_special_characters() {
        assert_eq!(
            escape_html(r#"<a href="x" title='y'>Tom & Jerry</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;Tom &amp; Jerry&lt;/a&gt;"
        );
        assert_eq!(
            escape_html("&amp;"),
            "&amp;amp;",
            "an existing entity is escaped again"
        );
        assert_eq!(escape_html("plain ünïcode"), "plain ünïcode");
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn error_chain_joins_sources_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "cannot read: connection reset",
            Some(Box::new(E(
                "connection reset",
                Some(Box::new(E("os error 104", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "cannot read: connection reset: os error 104"
        );
        assert_eq!(error_chain(&E("alone", None)), "alone");
    }

    /// Issue 11 §1 (TLS seen from outside): the line ends at the transport error, whose message
    /// is the project's; the HTTP library's words below it ("client error (Connect)") are not
    /// printed, though `source()` still reaches them.
    #[test]
    fn error_chain_ends_at_the_transport_error() {
        #[derive(Debug, thiserror::Error)]
        #[error("token request failed")]
        struct Outer(#[source] std::sync::Arc<crate::HttpError>);
        let uri: http::Uri = "https://ehr.example/token".parse().unwrap();
        let http = crate::HttpError::new(
            crate::HttpErrorKind::Connect,
            &uri,
            "the connection was refused",
        )
        .with_source(std::io::Error::other("client error (Connect)"));
        let e = Outer(std::sync::Arc::new(http));
        assert_eq!(
            error_chain(&e),
            "token request failed: connection failed (https://ehr.example): the connection was refused"
        );
        let below = std::error::Error::source(&e).and_then(std::error::Error::source);
        assert_eq!(below.unwrap().to_string(), "client error (Connect)");
    }
}
