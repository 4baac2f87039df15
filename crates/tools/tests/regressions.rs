//! Inputs the property tests found, kept as plain regression tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_tools::markdown_render::render;

/// A backslash before raw HTML turned the tag into escaped text; the first version of
/// the property flagged the harmless text "onerror" in it. The rule that matters:
/// nothing executable stays inside a tag.
#[test]
fn escaped_html_after_a_backslash_stays_text() {
    let html = render("\\<script>alert(1)</script>\\<img src=x onerror=alert(2)>");
    assert!(!html.contains("<script"));
    assert!(
        !html
            .split('<')
            .skip(1)
            .any(|t| t.split('>').next().unwrap_or("").contains("onerror")),
        "{html}"
    );
}
