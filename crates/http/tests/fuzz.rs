//! Property tests of the HTTP-side parsers: query strings, client addresses, bearer
//! tokens and request ids. Run longer with
//! `PROPTEST_CASES=20000 cargo test -p data20-http --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_domain::access;
use data20_domain::Settings;
use data20_http::gate::client_ip;
use data20_http::{is_valid_request_id, Query};
use proptest::prelude::*;

proptest! {
    #[test]
    fn query_strings_parse_or_400(raw in "\\PC{0,300}") {
        if let Err(e) = Query::parse(&raw, &["status", "tool", "limit", "cursor", "category"]) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn client_addresses_parse_or_400(
        xff in proptest::option::of("\\PC{0,60}"),
        tci in proptest::option::of("\\PC{0,60}"),
        addr in proptest::option::of("\\PC{0,60}"),
        trust in any::<bool>(),
    ) {
        let settings = Settings::from_pairs(&[("trust_forwarded_for", if trust { "true" } else { "false" })]);
        if let Err(e) = client_ip(&settings, xff.as_deref(), tci.as_deref(), addr.as_deref()) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn authorization_headers_give_a_key_or_401(presented in "\\PC{0,80}") {
        match access::bearer(Some(&presented)) {
            Ok(key) => {
                let key = key.unwrap();
                prop_assert!(!key.is_empty() && presented.trim().len() > key.len());
                prop_assert!(!access::is_bootstrap(key, "s3cret") || key == "s3cret");
                // Nothing but a made key's shape names a key id.
                if let Some(id) = access::key_id(key) {
                    prop_assert_eq!(id.len(), 32);
                }
            }
            Err(e) => prop_assert_eq!(e.status(), 401),
        }
    }

    #[test]
    fn request_ids_are_safe_to_echo(id in "\\PC{0,200}") {
        if is_valid_request_id(&id) {
            prop_assert!(id.len() <= 128 && !id.contains(['\r', '\n', ' ', '"']));
        }
    }
}
