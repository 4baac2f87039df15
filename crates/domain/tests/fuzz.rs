//! Property tests ("fuzzing") of every parser that takes client input in the domain:
//! whatever the bytes, each returns a value or a 4xx error, never panics. Run longer
//! with `PROPTEST_CASES=20000 cargo test -p data20-domain --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_domain::etag::if_none_match;
use data20_domain::registry::{is_safe_file_name, parse_category};
use data20_domain::{Cursor, JobId, ListFilter, Registry, Settings};
use proptest::prelude::*;

proptest! {
    #[test]
    fn job_ids_parse_or_400(s in "\\PC{0,64}") {
        if let Err(e) = JobId::parse(&s) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn job_ids_round_trip(bytes in any::<[u8; 16]>()) {
        let uuid = uuid_from(bytes);
        let id = JobId::parse(&uuid).unwrap();
        prop_assert_eq!(id.to_string(), uuid.to_lowercase());
    }

    #[test]
    fn cursors_decode_or_400(s in "[A-Za-z0-9_=+/.-]{0,200}") {
        if let Err(e) = Cursor::decode(&s) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn cursors_round_trip(ms in any::<i64>(), bytes in any::<[u8; 16]>()) {
        let c = Cursor { created_ms: ms, id: JobId::parse(&uuid_from(bytes)).unwrap() };
        prop_assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn list_filters_parse_or_400(
        status in proptest::option::of("\\PC{0,20}"),
        tool in proptest::option::of("\\PC{0,80}"),
        limit in proptest::option::of("\\PC{0,12}"),
        cursor in proptest::option::of("\\PC{0,150}"),
    ) {
        match ListFilter::parse(status.as_deref(), tool.as_deref(), limit.as_deref(), cursor.as_deref()) {
            Ok(f) => prop_assert!((1..=500).contains(&f.limit)),
            Err(e) => prop_assert_eq!(e.status(), 400),
        }
    }

    #[test]
    fn registry_files_load_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Registry::parse_tool("x.json", &bytes);
    }

    #[test]
    fn names_and_headers_never_panic(s in "\\PC{0,200}") {
        let _ = parse_category(&s);
        let _ = is_safe_file_name(&s);
        let _ = if_none_match(&s, "\"abc\"");
        let v = s.clone();
        let settings = Settings::new(Box::new(move |_| Some(v.clone())));
        let _ = (settings.redis_url(), settings.rate_limit_max(), settings.trust_forwarded_for(), settings.api_token());
    }

    #[test]
    fn safe_file_names_have_no_path_tricks(s in "\\PC{0,40}") {
        if is_safe_file_name(&s) {
            prop_assert!(!s.contains('/') && !s.contains('\\') && !s.starts_with('.'));
        }
    }
}

fn uuid_from(b: [u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
