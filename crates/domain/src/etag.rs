//! Strong ETags over response bytes, and `If-None-Match` matching (RFC 9110 §13.1.2).

use xxhash_rust::xxh3::xxh3_64;

/// A strong ETag for `body`: a quoted 64-bit xxh3 digest. Cheap enough to compute on
/// every cached answer, so it never needs its own Redis round trip.
pub fn etag_for(body: &[u8]) -> String {
    format!("\"{:016x}\"", xxh3_64(body))
}

/// Whether an `If-None-Match` header value matches `etag` (weak comparison, as the
/// RFC asks for this header; `*` matches any current representation).
pub fn if_none_match(header: &str, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_quoted_and_stable() {
        let a = etag_for(b"hello");
        assert_eq!(a, etag_for(b"hello"));
        assert_ne!(a, etag_for(b"hello!"));
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 18);
    }

    #[test]
    fn matches_lists_weak_and_star() {
        let tag = etag_for(b"x");
        assert!(if_none_match(&tag, &tag));
        assert!(if_none_match(&format!("\"nope\", {tag}"), &tag));
        assert!(if_none_match(&format!("W/{tag}"), &tag));
        assert!(if_none_match("*", &tag));
        assert!(!if_none_match("\"nope\"", &tag));
        assert!(!if_none_match("", &tag));
    }
}
