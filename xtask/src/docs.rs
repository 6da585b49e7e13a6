//! `cargo xtask docs`: the claims of `docs/CONFORMANCE.md` and `docs/SECURITY.md` hold.
//!
//! * Every test the two documents cite exists. A citation is a code span naming a Rust file
//!   from the workspace root and a function in it: `` `crates/x/tests/y.rs::test_name` ``. The
//!   file must hold a test function of that name: a `#[test]` or `#[tokio::test(...)]`
//!   attribute followed (after other attributes, comments or doc comments) by `fn test_name`.
//! * No row is still waiting for its test: a `<!-- pending: ... -->` marker fails the check, so
//!   nothing ships with a claim that no test proves.
//! * Every checklist id a test cites (`SC-4.13`, `P3`, in its doc comment, or `sc_4_13`, `p3` in
//!   its name) is an item of `docs/CONFORMANCE.md` (the first cell of a table row), so a
//!   citation never points at nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::util::{self, Result};

/// The documents whose test citations are checked.
const DOCUMENTS: [&str; 2] = ["docs/CONFORMANCE.md", "docs/SECURITY.md"];

/// The document every checklist id cited by a test must appear in.
const CONFORMANCE: &str = "docs/CONFORMANCE.md";

/// The marker of a row whose test is still to be written.
const PENDING: &str = "<!-- pending";

/// Folders searched for tests (their checklist ids), from the workspace root. Not `xtask`:
/// the checker's own tests hold sample sources.
const TEST_ROOTS: [&str; 4] = ["crates", "tests", "examples", "fuzz"];

/// Runs the check on the workspace; every problem is printed, then one error counts them.
pub(crate) fn check() -> Result<()> {
    util::step("docs claims");
    let root = util::root();
    let mut problems = Vec::new();
    let mut cited = 0;
    for doc in DOCUMENTS {
        let text = read(&root.join(doc))?;
        for (line, marker) in pending_markers(&text) {
            problems.push(format!("{doc}:{line}: a test is still pending: {marker}"));
        }
        for c in citations(&text) {
            cited += 1;
            if let Some(problem) = check_citation(&root, &c) {
                problems.push(format!("{doc}:{}: `{}`: {problem}", c.line, c.text()));
            }
        }
    }

    let conformance = read(&root.join(CONFORMANCE))?;
    let listed = listed_items(&conformance);
    let mut files = Vec::new();
    for dir in TEST_ROOTS {
        rust_files(&root.join(dir), &mut files)?;
    }
    let mut tests = 0;
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let source = read(file)?;
        tests += test_functions(&source).len();
        for (id, test) in unlisted_ids(&listed, &source) {
            let rel = file.strip_prefix(&root).unwrap_or(file);
            unknown
                .entry(id)
                .or_default()
                .push(format!("{}::{test}", rel.display()));
        }
    }
    for (id, tests) in unknown {
        problems.push(format!(
            "{CONFORMANCE} has no item {id}, which these tests cite: {}",
            tests.join(", ")
        ));
    }

    if problems.is_empty() {
        eprintln!(
            "docs: {cited} test citations found; {tests} tests in {} files cite only ids of {CONFORMANCE}",
            files.len()
        );
        return Ok(());
    }
    let mut report = String::new();
    for p in &problems {
        let _ = writeln!(report, "  {p}");
    }
    eprint!("{report}");
    Err(format!(
        "docs: {} problem(s) in the docs' claims",
        problems.len()
    ))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every `.rs` file under `dir` (none when it does not exist), skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut entries: Vec<_> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | "node_modules" | "corpus" | "artifacts")
                && !name.starts_with('.')
            {
                rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// A test cited by a document: `file::function`, on a line (1-based).
#[derive(Debug, PartialEq, Eq)]
struct Citation {
    file: String,
    function: String,
    line: usize,
}

impl Citation {
    fn text(&self) -> String {
        format!("{}::{}", self.file, self.function)
    }
}

/// What is wrong with a citation, if anything.
fn check_citation(root: &Path, c: &Citation) -> Option<String> {
    let path = root.join(&c.file);
    let Ok(source) = std::fs::read_to_string(&path) else {
        return Some(format!("no file {}", c.file));
    };
    if test_functions(&source).iter().any(|t| t.name == c.function) {
        None
    } else {
        Some(format!("{} has no test function {}", c.file, c.function))
    }
}

/// The code spans of `text` of the form `path.rs::function`.
fn citations(text: &str) -> Vec<Citation> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // Code spans are the odd pieces between backticks.
        for span in line.split('`').skip(1).step_by(2) {
            let Some((file, function)) = span.split_once(".rs::") else {
                continue;
            };
            let file_ok = !file.is_empty()
                && file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
            let function_ok = !function.is_empty()
                && function
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if file_ok && function_ok {
                out.push(Citation {
                    file: format!("{file}.rs"),
                    function: function.to_owned(),
                    line: i + 1,
                });
            }
        }
    }
    out
}

/// The pending markers of `text`, with their lines (1-based).
fn pending_markers(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let at = line.find(PENDING)?;
            let rest = &line[at..];
            let end = rest.find("-->").map_or(rest.len(), |e| e + 3);
            Some((i + 1, rest[..end].to_owned()))
        })
        .collect()
}

/// A test function found in a source file, with the checklist ids it cites.
#[derive(Debug, PartialEq, Eq)]
struct TestFn {
    name: String,
    ids: BTreeSet<String>,
}

/// Whether a (trimmed) line is a test attribute: `#[test]`, `#[tokio::test]`,
/// `#[tokio::test(flavor = ...)]`.
fn is_test_attribute(line: &str) -> bool {
    let Some(inner) = line.strip_prefix("#[").and_then(|l| l.strip_suffix(']')) else {
        return false;
    };
    let path = inner.split('(').next().unwrap_or("").trim();
    path == "test" || path.ends_with("::test")
}

/// The function name declared on a (trimmed) line: `fn x`, `async fn x`, `pub fn x`...
fn function_name(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        match w {
            "pub" | "async" | "unsafe" | "const" => continue,
            w if w.starts_with("pub(") => continue,
            "fn" => {
                let rest = words.next()?;
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                return (end > 0).then(|| &rest[..end]);
            }
            _ => return None,
        }
    }
    None
}

/// The test functions of a Rust source: each test attribute, then the first `fn` line after
/// it; the doc comments directly above the attribute (among other attributes) and between it
/// and the `fn` are the test's doc.
fn test_functions(source: &str) -> Vec<TestFn> {
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !is_test_attribute(line) {
            continue;
        }
        let mut doc = String::new();
        for above in lines[..i].iter().rev() {
            if let Some(d) = above.strip_prefix("///") {
                doc.insert_str(0, &format!("{d}\n"));
            } else if !above.starts_with("#[") {
                break;
            }
        }
        let mut name = None;
        for below in &lines[i + 1..] {
            if let Some(d) = below.strip_prefix("///") {
                doc.push_str(d);
                doc.push('\n');
            } else if let Some(n) = function_name(below) {
                name = Some(n);
                break;
            } else if !(below.starts_with("#[") || below.starts_with("//") || below.is_empty()) {
                break;
            }
        }
        if let Some(name) = name {
            let mut ids = ids_in_text(&doc);
            ids.extend(ids_in_name(name));
            out.push(TestFn {
                name: name.to_owned(),
                ids,
            });
        }
    }
    out
}

/// The items of the conformance list: the ids in the first cell of a table row (`| SC-4.13 |`).
fn listed_items(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix('|')?.split('|').next())
        .map(str::trim)
        .filter(|cell| ids_in_text(cell).iter().any(|id| id == cell))
        .map(str::to_owned)
        .collect()
}

/// The checklist ids the tests of `source` cite that are not in `listed`, each with the test.
fn unlisted_ids(listed: &BTreeSet<String>, source: &str) -> Vec<(String, String)> {
    test_functions(source)
        .into_iter()
        .flat_map(|t| {
            t.ids
                .difference(listed)
                .map(|id| (id.clone(), t.name.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The checklist ids written out in text: `SC-4.13`, `P3`.
fn ids_in_text(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |i: usize| {
        bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    };
    for (i, _) in text.match_indices("SC-") {
        if i > 0 && word(i - 1) {
            continue;
        }
        let (major, rest) = digits(&text[i + 3..]);
        let Some(rest) = rest.strip_prefix('.') else {
            continue;
        };
        let (minor, _) = digits(rest);
        if !major.is_empty() && !minor.is_empty() {
            ids.insert(format!("SC-{major}.{minor}"));
        }
    }
    for (i, _) in text.match_indices('P') {
        if i > 0 && word(i - 1) {
            continue;
        }
        let (n, _) = digits(&text[i + 1..]);
        if (1..=2).contains(&n.len()) && !word(i + 1 + n.len()) {
            ids.insert(format!("P{n}"));
        }
    }
    ids
}

/// The checklist ids spelled in a test name: `sc_4_13` → `SC-4.13`, `p3` → `P3`, each
/// between underscores or at an end.
fn ids_in_name(name: &str) -> BTreeSet<String> {
    let parts: Vec<&str> = name.split('_').collect();
    let number = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    let mut ids = BTreeSet::new();
    for (i, part) in parts.iter().enumerate() {
        if *part == "sc" {
            if let (Some(a), Some(b)) = (parts.get(i + 1), parts.get(i + 2)) {
                if number(a) && number(b) {
                    ids.insert(format!("SC-{a}.{b}"));
                }
            }
        } else if let Some(n) = part.strip_prefix('p') {
            if number(n) {
                ids.insert(format!("P{n}"));
            }
        }
    }
    ids
}

/// The leading ASCII digits of `s`, and the rest.
fn digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn citations_are_code_spans_naming_a_rust_file_and_a_function() {
        let text = "| a | `crates/x/tests/y.rs::one_test`, `src/lib.rs::two` |\n\
                    plain crates/x/src/z.rs::not_a_span and `cargo xtask docs`\n\
                    `x.rs::has space` `a.rs::` `::f` `dir/f.rs::ok_3`";
        assert_eq!(
            citations(text),
            vec![
                Citation {
                    file: "crates/x/tests/y.rs".into(),
                    function: "one_test".into(),
                    line: 1
                },
                Citation {
                    file: "src/lib.rs".into(),
                    function: "two".into(),
                    line: 1
                },
                Citation {
                    file: "dir/f.rs".into(),
                    function: "ok_3".into(),
                    line: 3
                },
            ]
        );
    }

    #[test]
    fn pending_markers_are_found_with_their_lines() {
        let text = "| row | `a.rs::t` |\n| other | <!-- pending: leak test --> |\n";
        assert_eq!(
            pending_markers(text),
            vec![(2, "<!-- pending: leak test -->".to_owned())]
        );
        assert!(pending_markers("no marker, <!-- a comment -->").is_empty());
    }

    #[test]
    fn test_attributes_of_every_flavour() {
        assert!(is_test_attribute("#[test]"));
        assert!(is_test_attribute("#[tokio::test]"));
        assert!(is_test_attribute(
            "#[tokio::test(flavor = \"multi_thread\", worker_threads = 2)]"
        ));
        assert!(is_test_attribute("#[tokio::test(start_paused = true)]"));
        assert!(!is_test_attribute("#[cfg(test)]"));
        assert!(!is_test_attribute("#[testing]"));
        assert!(!is_test_attribute("#[derive(Debug)]"));
    }

    #[test]
    fn function_names_after_qualifiers() {
        assert_eq!(function_name("fn a_b() {"), Some("a_b"));
        assert_eq!(function_name("async fn c() -> Result<()> {"), Some("c"));
        assert_eq!(function_name("pub(crate) async fn d<T>()"), Some("d"));
        assert_eq!(function_name("let fn_x = 1;"), None);
        assert_eq!(function_name("mod tests {"), None);
    }

    #[test]
    fn test_functions_with_their_doc_and_name_ids() {
        let source = r#"
/// SC-1.2 and P7: a doc comment above the attribute.
/// Continued, citing SC-3.10 – SC-3.11 as a range.
#[cfg(unix)]
#[test]
fn sc_4_13_name_ids_p3() {}

fn helper_sc_9_9() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// a plain comment
async fn no_ids_here() {}

    /// Inside a module, after the attribute too:
    #[tokio::test]
    /// SC-5.1.
    async fn indented() {}
"#;
        let tests = test_functions(source);
        assert_eq!(
            tests,
            vec![
                TestFn {
                    name: "sc_4_13_name_ids_p3".into(),
                    ids: set(&["P3", "P7", "SC-1.2", "SC-3.10", "SC-3.11", "SC-4.13"]),
                },
                TestFn {
                    name: "no_ids_here".into(),
                    ids: set(&[]),
                },
                TestFn {
                    name: "indented".into(),
                    ids: set(&["SC-5.1"]),
                },
            ]
        );
    }

    #[test]
    fn a_citation_needs_a_test_function_in_an_existing_file() {
        let root = util::root();
        let cite = |file: &str, function: &str| Citation {
            file: file.into(),
            function: function.into(),
            line: 1,
        };
        assert_eq!(
            check_citation(
                &root,
                &cite(
                    "xtask/src/docs.rs",
                    "pending_markers_are_found_with_their_lines"
                )
            ),
            None
        );
        let missing = check_citation(&root, &cite("xtask/src/docs.rs", "no_such_test"));
        assert_eq!(
            missing.as_deref(),
            Some("xtask/src/docs.rs has no test function no_such_test")
        );
        // A function that is not a test does not count.
        assert!(check_citation(&root, &cite("xtask/src/docs.rs", "citations")).is_some());
        assert_eq!(
            check_citation(&root, &cite("xtask/src/nowhere.rs", "t")).as_deref(),
            Some("no file xtask/src/nowhere.rs")
        );
    }

    #[test]
    fn items_are_the_first_cells_of_table_rows() {
        let text = "| id | level |\n|---|---|\n| SC-1.1 | MUST, see SC-1.2 |\n| P3 | x |\n\
                    Prose naming SC-7.7 and P9 lists nothing.\n| SC-2.x | bad |";
        assert_eq!(listed_items(text), set(&["P3", "SC-1.1"]));
    }

    #[test]
    fn ids_cited_by_tests_must_be_listed() {
        let source = "/// SC-1.1, SC-9.1: one listed, one not.\n#[test]\nfn sc_1_2_p99_x() {}\n\n\
                      /// P3.\n#[test]\nfn fine() {}\n";
        let listed = set(&["SC-1.1", "SC-1.2", "P3"]);
        assert_eq!(
            unlisted_ids(&listed, source),
            vec![
                ("P99".to_owned(), "sc_1_2_p99_x".to_owned()),
                ("SC-9.1".to_owned(), "sc_1_2_p99_x".to_owned()),
            ]
        );
    }

    #[test]
    fn ids_in_text_need_word_boundaries() {
        assert_eq!(
            ids_in_text("SC-4.13, P3 (P15). ES384 on P-384, HTTP2, P123, XSC-1.1, SC-2."),
            set(&["P15", "P3", "SC-4.13"])
        );
    }

    #[test]
    fn ids_in_names_are_whole_parts() {
        assert_eq!(
            ids_in_name("sc_2_3_sc_2_4_p13_public_jwk"),
            set(&["P13", "SC-2.3", "SC-2.4"])
        );
        assert_eq!(
            ids_in_name("verifies_replay_sc_2_10_sc_2_11_p8_p11"),
            set(&["P11", "P8", "SC-2.10", "SC-2.11"])
        );
        assert_eq!(ids_in_name("sc_8_crud_lifecycle"), set(&[]));
        assert_eq!(ids_in_name("http2_alpn_top3_p"), set(&[]));
        assert_eq!(ids_in_name("sc_1_1_to_1_3_request"), set(&["SC-1.1"]));
    }
}
