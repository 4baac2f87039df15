//! `Idempotency-Key` on `POST /api/run` (the IETF draft "The Idempotency-Key HTTP
//! Header Field", as Stripe's API uses it): the key a client sends, the scope it is
//! valid in (one client: its token, else its IP address) and a fingerprint of the
//! request, so a retried POST answers the job the first one made and a key reused for
//! another request is refused.

use crate::ApiError;
use xxhash_rust::xxh3::xxh3_128;

/// A validated `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<IdempotencyKey, ApiError> {
        // The draft makes the value a structured-field string: accept it quoted too.
        let key = raw.trim();
        let key = key
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or(key);
        let ok = (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(IdempotencyKey(key.to_string()))
        } else {
            Err(ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good choice)"
                    .into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose key it is: a client's keys never collide with another client's. In closed
/// mode the client is its API key (by its public id), in open mode its IP.
pub fn scope(api_key_id: Option<&str>, client_ip: &std::net::IpAddr) -> String {
    match api_key_id {
        Some(id) => format!("key:{id}"),
        None => format!("ip:{client_ip}"),
    }
}

/// A fingerprint of a run request: the same tool and params give the same value,
/// whatever the JSON's whitespace or key order.
pub fn fingerprint(tool: &str, params: &serde_json::Value) -> String {
    // serde_json's maps are sorted, so this rendering is canonical.
    let canonical = serde_json::json!({"tool": tool, "params": params}).to_string();
    format!("{:032x}", xxh3_128(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert_eq!(
            IdempotencyKey::parse(" abc-123 ").unwrap().as_str(),
            "abc-123"
        );
        assert_eq!(
            IdempotencyKey::parse("\"quoted\"").unwrap().as_str(),
            "quoted"
        );
        for bad in ["", "has space", "tab\there", "é", &"k".repeat(256)] {
            assert_eq!(
                IdempotencyKey::parse(bad).unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scopes_separate_clients() {
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        assert_ne!(scope(None, &a), scope(None, &b));
        assert_eq!(
            scope(Some("t"), &a),
            scope(Some("t"), &b),
            "one key, one client"
        );
        assert_ne!(scope(Some("t"), &a), scope(Some("u"), &a));
    }

    #[test]
    fn fingerprints_ignore_formatting_only() {
        let one: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let two: serde_json::Value = serde_json::from_str(r#"{ "a":[1,2],"b":1 }"#).unwrap();
        assert_eq!(fingerprint("t", &one), fingerprint("t", &two));
        assert_ne!(fingerprint("t", &one), fingerprint("u", &one));
        assert_ne!(
            fingerprint("t", &one),
            fingerprint("t", &json!({"a": [2, 1], "b": 1}))
        );
    }
}
