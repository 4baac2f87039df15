//! `markdown_render`: Markdown → sanitized HTML (`page.html`). pulldown-cmark renders
//! CommonMark with tables, footnotes, strikethrough and task lists; ammonia strips
//! anything unsafe (scripts, event handlers, `javascript:` links) from the result.

use crate::html::escape;
use crate::{Deadline, Output, ToolError};
use pulldown_cmark::{html, Options, Parser};
use serde::Deserialize;
use serde_json::Value;

pub const MAX_MARKDOWN_BYTES: usize = 1_000_000;
/// Block quotes and list items nested deeper than this are refused. pulldown-cmark's
/// work grows with the square of the nesting (100 000 nested block quotes ran for 62 s
/// in a worker), and no document a person reads nests a hundred deep. A cheap,
/// honest guard; the job's hard time limit stays the real bound for everything else.
pub const MAX_NESTING: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    markdown: String,
    #[serde(default)]
    title: Option<String>,
}

/// Markdown to sanitized HTML (a fragment).
pub fn render(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_FOOTNOTES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(markdown, options));
    ammonia::Builder::default()
        .add_tags(["input"])
        .add_tag_attributes("input", ["type", "checked", "disabled"])
        .clean(&raw)
        .to_string()
}

/// The deepest nesting of container markers (`>` and list markers) at the start of
/// any line: `> > - x` is 3. Linear in the input.
pub fn nesting_depth(markdown: &str) -> usize {
    markdown.lines().map(line_nesting).max().unwrap_or(0)
}

fn line_nesting(line: &str) -> usize {
    let bytes = line.as_bytes();
    let (mut i, mut depth) = (0, 0);
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'>') => i += 1,
            Some(b'-' | b'*' | b'+') if matches!(bytes.get(i + 1), Some(b' ' | b'\t')) => {
                i += 2;
            }
            Some(b'0'..=b'9') => {
                let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                let after = i + digits;
                let ordered = digits <= 9
                    && matches!(bytes.get(after), Some(b'.' | b')'))
                    && matches!(bytes.get(after + 1), Some(b' ' | b'\t'));
                if !ordered {
                    return depth;
                }
                i = after + 2;
            }
            _ => return depth,
        }
        depth += 1;
    }
}

pub fn run(params: &Value, deadline: &Deadline) -> Result<Vec<Output>, ToolError> {
    let p: Params = crate::params(params)?;
    if p.markdown.len() > MAX_MARKDOWN_BYTES {
        return Err(ToolError::TooLarge(format!(
            "markdown is over {MAX_MARKDOWN_BYTES} bytes"
        )));
    }
    let depth = nesting_depth(&p.markdown);
    if depth > MAX_NESTING {
        return Err(ToolError::TooLarge(format!(
            "markdown nests block quotes or lists {depth} deep; the limit is {MAX_NESTING}"
        )));
    }
    let body = render(&p.markdown);
    deadline.check()?;
    let title = p
        .title
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "Document".into());
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{max-width:46rem;margin:2rem auto;padding:0 1rem;font:16px/1.6 system-ui,sans-serif;color:#222}}
pre{{background:#f5f5f5;padding:.75rem;overflow:auto}} code{{background:#f5f5f5;padding:0 .2em}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.25rem .5rem}}
blockquote{{border-left:4px solid #ddd;margin:0;padding-left:1rem;color:#555}}
</style></head>
<body>
{body}
</body></html>
"#,
        title = escape(&title),
    );
    Ok(vec![Output::new("page.html", page)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn renders_commonmark_and_extensions() {
        let html = render("# Title\n\n*em* **strong** ~~gone~~\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n");
        assert!(html.contains("<h1>Title</h1>"));
        assert!(html.contains("<em>em</em>") && html.contains("<strong>strong</strong>"));
        assert!(html.contains("<del>gone</del>"));
        assert!(html.contains("<table>") && html.contains("<td>1</td>"));
        assert!(html.contains("checkbox"));
    }

    #[test]
    fn strips_scripts_handlers_and_javascript_links() {
        let html = render("<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))\n\n<a href=\"https://ok.example\" onclick=\"x()\">ok</a>");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            !html.contains("onerror") && !html.contains("onclick"),
            "{html}"
        );
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("https://ok.example"));
    }

    #[test]
    fn writes_a_full_page_with_an_escaped_title() {
        let out = run(
            &json!({"markdown": "hi", "title": "<b>T</b>"}),
            &Deadline::after(Duration::from_secs(5)),
        )
        .unwrap();
        let page = String::from_utf8(out[0].bytes.clone()).unwrap();
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<title>&lt;b&gt;T&lt;/b&gt;</title>"));
        assert!(page.contains("<p>hi</p>"));
    }

    #[test]
    fn nesting_is_counted_from_line_starts() {
        assert_eq!(nesting_depth("plain\n\ntext"), 0);
        assert_eq!(nesting_depth("> quote"), 1);
        assert_eq!(nesting_depth("> > - item\n- x"), 3);
        assert_eq!(nesting_depth(">>>x"), 3);
        assert_eq!(nesting_depth("1. one\n   2) two"), 1);
        assert_eq!(
            nesting_depth("- a\n  - b\n    - c"),
            1,
            "indented lists count per line"
        );
        assert_eq!(nesting_depth("-not a list\n2024 was a year\n*em*"), 0);
        assert_eq!(nesting_depth("1234567890. too many digits"), 0);
    }

    #[test]
    fn deep_nesting_is_refused_at_once_with_the_limit_named() {
        let d = Deadline::after(Duration::from_secs(5));
        let deep = ">".repeat(100_000) + " x";
        let err = run(&json!({ "markdown": deep }), &d).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("100000 deep") && msg.contains("limit is 100"),
            "{msg}"
        );
        // At the limit it renders.
        let ok = "> ".repeat(MAX_NESTING) + "x";
        assert!(run(&json!({ "markdown": ok }), &d).is_ok());
    }

    #[test]
    fn limits_and_bad_params() {
        let d = Deadline::after(Duration::from_secs(5));
        let big = "a".repeat(MAX_MARKDOWN_BYTES + 1);
        assert!(matches!(
            run(&json!({"markdown": big}), &d),
            Err(ToolError::TooLarge(_))
        ));
        assert!(matches!(
            run(&json!({"md": "x"}), &d),
            Err(ToolError::InvalidInput(_))
        ));
    }
}
