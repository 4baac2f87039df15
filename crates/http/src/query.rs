//! Query-string parsing with clear 4xx errors for unknown or repeated parameters.

use data20_domain::ApiError;

/// A parsed query string: each parameter at most once, only the names a route accepts.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: &str, allowed: &[&str]) -> Result<Query, ApiError> {
        if raw.len() > 4096 {
            return Err(ApiError::BadRequest("query string is too long".into()));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {k:?}; allowed: {}",
                    allowed.join(", ")
                )));
            }
            if pairs.iter().any(|(name, _)| *name == k) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {k:?} is repeated"
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Query { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let q = Query::parse("category=graphs&x=a%20b", &["category", "x"]).unwrap();
        assert_eq!(q.get("category"), Some("graphs"));
        assert_eq!(q.get("x"), Some("a b"));
        assert_eq!(q.get("missing"), None);
        assert!(Query::parse("", &[]).is_ok());
    }

    #[test]
    fn rejects_unknown_repeated_and_long() {
        assert_eq!(
            Query::parse("nope=1", &["category"]).unwrap_err().status(),
            400
        );
        assert_eq!(Query::parse("a=1&a=2", &["a"]).unwrap_err().status(), 400);
        let long = format!("a={}", "x".repeat(5000));
        assert_eq!(Query::parse(&long, &["a"]).unwrap_err().status(), 400);
    }
}
