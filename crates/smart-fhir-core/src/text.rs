//! Untrusted text made safe for error messages and logs.
//!
//! Servers send HTML error pages, control characters and megabytes of body; JSON parse errors
//! can quote the input, which may be a token or patient data. Every crate formats such text
//! through these functions, so the rules live in one place.

/// A bounded, printable rendition of untrusted text: control characters become spaces, at most
/// `max_chars` characters are kept (a cut is marked with `…`), and surrounding white space is
/// trimmed.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out.trim().to_owned()
}

/// The characters of a body excerpt in error messages.
pub const EXCERPT_CHARS: usize = 200;

/// A bounded, printable excerpt of a response body (at most [`EXCERPT_CHARS`] characters, read
/// from at most four bytes a character), for the error when a body is not what was expected.
pub fn excerpt(body: &[u8]) -> String {
    let head = body
        .get(..body.len().min(EXCERPT_CHARS * 4))
        .unwrap_or(body);
    let mut out = printable(&String::from_utf8_lossy(head), EXCERPT_CHARS);
    if head.len() < body.len() && !out.ends_with('…') {
        out.push('…');
    }
    out
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

    #[test]
    fn excerpt_is_bounded_even_for_huge_bodies() {
        let big = vec![b'x'; 10 * 1024 * 1024];
        let e = excerpt(&big);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"short"), "short");
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
