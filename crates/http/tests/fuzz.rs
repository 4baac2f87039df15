//! Property tests of the HTTP-side parsers: query strings, client addresses, bearer
//! tokens and request ids. Run longer with
//! `PROPTEST_CASES=20000 cargo test -p data20-http --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_domain::Settings;
use data20_http::auth::check_bearer;
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
    fn only_the_exact_token_passes(presented in "\\PC{0,80}") {
        let ok = check_bearer(Some("s3cret"), Some(&presented)).is_ok();
        prop_assert_eq!(ok, presented.trim() == "Bearer s3cret" || presented.trim() == "bearer s3cret");
    }

    #[test]
    fn request_ids_are_safe_to_echo(id in "\\PC{0,200}") {
        if is_valid_request_id(&id) {
            prop_assert!(id.len() <= 128 && !id.contains(['\r', '\n', ' ', '"']));
        }
    }
}
