//! The page that posts an authorize request as a form (SC-4.10), for
//! [`AuthorizeRequest::FormPost`].

use smart_fhir_core::text::escape_html;

use crate::launch::authorize::AuthorizeRequest;

impl AuthorizeRequest {
    /// For [`FormPost`](Self::FormPost): a minimal HTML page that submits the form on load, with
    /// a button for when scripts are off or blocked by a content security policy. Every value
    /// is HTML-escaped. `None` for a redirect.
    pub fn auto_submit_html(&self) -> Option<String> {
        let Self::FormPost { action, fields } = self else {
            return None;
        };
        let mut html = String::from(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Signing in</title></head>\
             <body onload=\"document.forms[0].submit()\">",
        );
        html.push_str(&format!(
            "<form method=\"post\" action=\"{}\">",
            escape_html(action.as_str())
        ));
        for (name, value) in fields {
            html.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            ));
        }
        html.push_str("<button type=\"submit\">Continue</button></form></body></html>");
        Some(html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smart_fhir_core::Url;

    #[test]
    fn form_page_escapes_values() {
        let req = AuthorizeRequest::FormPost {
            action: Url::parse("https://as.example/authorize?a=1&b=2").unwrap(),
            fields: vec![("scope".into(), "\"><script>x</script>".into())],
        };
        let html = req.auto_submit_html().unwrap();
        assert!(html.contains("action=\"https://as.example/authorize?a=1&amp;b=2\""));
        assert!(html.contains("&quot;&gt;&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(
            AuthorizeRequest::Redirect(Url::parse("https://x.example").unwrap())
                .auto_submit_html()
                .is_none()
        );
    }
}
