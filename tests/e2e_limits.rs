//! Rate limiting and access control, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_e2e::{example_params, Options, TestApp};
use serde_json::json;
use std::sync::Arc;

fn limited(max: u64, extra: &[(&str, &str)]) -> TestApp {
    let mut variables = vec![("rate_limit_max".to_string(), max.to_string())];
    variables.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestApp::start_with(Options {
        workers: 0,
        variables,
        ..Options::default()
    })
}

/// The limiter's counters of one client (`api:{ip}:{window}`).
fn counters(redis: &mut redis::Connection, ip: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("api:{ip}:*"))
        .query(redis)
        .unwrap()
}

#[test]
fn exactly_the_limit_passes_under_concurrency() {
    let app = Arc::new(limited(100, &[]));
    // /api/health was called while starting; clear the windows for an exact count.
    let mut redis = app.redis_conn();
    for key in counters(&mut redis, "127.0.0.1") {
        let _: i64 = redis::cmd("DEL").arg(key).query(&mut redis).unwrap();
    }

    let threads: Vec<_> = (0..30)
        .map(|t| {
            let app = Arc::clone(&app);
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        let path = if (t + i) % 2 == 0 {
                            "/api/tools"
                        } else {
                            "/api/health"
                        };
                        let r = app.get(path);
                        (
                            r.status,
                            r.header("retry-after").map(str::to_string),
                            r.header("x-ratelimit-remaining").map(str::to_string),
                            r.body,
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(results.len(), 150);
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let rejected: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok, 100, "exactly rate_limit_max pass");
    assert_eq!(rejected.len(), 50);
    for (_, retry, remaining, body) in rejected {
        let secs: u64 = retry.as_deref().expect("Retry-After").parse().unwrap();
        // With the whole limit used in this window, one more fits early in the next.
        assert!((1..=61).contains(&secs), "{secs}");
        assert_eq!(remaining.as_deref(), Some("0"));
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
    }
    // O(1) memory per client: one counter per window (two if the test straddled a
    // window's end), holding the admitted count, each with a TTL of two windows.
    let keys = counters(&mut redis, "127.0.0.1");
    assert!((1..=2).contains(&keys.len()), "{keys:?}");
    let mut admitted = 0;
    for key in &keys {
        let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut redis).unwrap();
        assert!((1..=120_000).contains(&pttl), "{key}: pttl {pttl}");
        let count: i64 = redis::cmd("GET").arg(key).query(&mut redis).unwrap();
        admitted += count;
    }
    assert_eq!(admitted, 100, "the counters hold admitted requests only");
    let rejections: i64 = redis::cmd("GET")
        .arg("data20:stats:rate_limited")
        .query(&mut redis)
        .unwrap();
    assert_eq!(rejections, 50);

    // A spoofed X-Forwarded-For gains nothing while trust_forwarded_for is false.
    let spoofed = app.request(
        "GET",
        "/api/tools",
        &[("x-forwarded-for", "203.0.113.77")],
        None,
    );
    assert_eq!(spoofed.status, 429);
    let bad = app.request(
        "POST",
        "/api/run",
        &[("content-type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(bad.status, 429, "POSTs count against the same window");
}

#[test]
fn every_answer_carries_rate_limit_headers() {
    let app = limited(50, &[]);
    let (id, _) = app.submit("build_graph", example_params("build_graph"));
    for path in [
        "/api/tools".to_string(),
        "/api/tools/build_graph".to_string(),
        "/api/health".to_string(),
        "/api/jobs".to_string(),
        format!("/api/jobs/{id}"),
        format!("/api/jobs/{id}/outputs/graph.json"),
        format!("/api/jobs/{id}/events"),
        "/api/jobs/not-a-uuid".to_string(),
    ] {
        let r = app.get(&path);
        assert_eq!(r.header("x-ratelimit-limit"), Some("50"), "{path}");
        let remaining: u64 = r.header("x-ratelimit-remaining").unwrap().parse().unwrap();
        assert!(remaining < 50, "{path}");
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset <= 60, "{path}");
    }
}

#[test]
fn forwarded_for_is_honoured_only_when_trusted() {
    let app = limited(3, &[("trust_forwarded_for", "true")]);
    let from = |ip: &str| {
        app.request("GET", "/api/tools", &[("x-forwarded-for", ip)], None)
            .status
    };
    assert_eq!(
        [
            from("198.51.100.1"),
            from("198.51.100.1"),
            from("198.51.100.1")
        ],
        [200, 200, 200]
    );
    assert_eq!(from("198.51.100.1"), 429);
    assert_eq!(
        from("198.51.100.2"),
        200,
        "another client has its own window"
    );
    let mut redis = app.redis_conn();
    let keys = counters(&mut redis, "198.51.100.2");
    assert!(!keys.is_empty());
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut redis).unwrap();
        assert!(ttl > 0);
    }
    app.request(
        "GET",
        "/api/tools",
        &[("x-forwarded-for", "not-an-ip")],
        None,
    )
    .assert_error(400, "bad_request");
}

#[test]
fn the_limiter_fails_open_by_default_and_closed_when_configured() {
    let mut open = limited(2, &[]);
    open.stop_redis();
    for _ in 0..5 {
        let r = open.get("/api/tools");
        assert_eq!(r.status, 200, "fail open: Redis down lets requests through");
        assert_eq!(r.header("x-cache"), Some("BYPASS"));
        assert!(r.header("x-ratelimit-limit").is_some());
    }
    drop(open);

    let mut closed = limited(2, &[("rate_limit_fail_open", "false")]);
    closed.redis.stop();
    closed.wait_answer("/api/tools", "to fail closed", |status, _| status == 503);
    closed.get("/api/tools").assert_error(503, "unavailable");
    closed.get("/api/jobs").assert_error(503, "unavailable");
    closed.redis.restart();
    closed.wait_answer("/api/tools", "to pass again", |status, _| status == 200);
}

#[test]
fn every_api_route_but_health_and_docs_needs_a_key_when_a_token_is_set() {
    let app = TestApp::start_with(Options {
        workers: 0,
        variables: vec![("api_token".into(), "s3cret-token".into())],
        ..Options::default()
    });
    let body = json!({"tool": "build_graph", "params": example_params("build_graph")}).to_string();
    let post = |auth: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        app.request("POST", "/api/run", &headers, Some(body.as_bytes()))
    };
    let missing = post(None);
    missing.assert_error(401, "unauthorized");
    assert!(missing
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    post(Some("Bearer wrong")).assert_error(401, "unauthorized");
    post(Some("s3cret-token")).assert_error(401, "unauthorized");
    assert_eq!(post(Some("Bearer s3cret-token")).status, 202);
    // Closed mode: reads need a key too; health, OpenAPI and the docs page do not.
    app.get("/api/tools").assert_error(401, "unauthorized");
    app.get("/api/jobs").assert_error(401, "unauthorized");
    let admin = [("authorization", "Bearer s3cret-token")];
    assert_eq!(app.request("GET", "/api/tools", &admin, None).status, 200);
    for open in ["/api/health", "/api/openapi.json", "/api/docs"] {
        assert_eq!(app.get(open).status, 200, "{open}");
    }
}

/// (method, path, headers, body, expected status, expected error code)
type Case<'a> = (
    &'a str,
    String,
    Vec<(&'a str, &'a str)>,
    Option<&'a [u8]>,
    u16,
    &'a str,
);

#[test]
fn hostile_requests_get_clear_4xx_json_errors() {
    let app = TestApp::start_with(Options {
        workers: 0,
        ..Options::default()
    });
    let (job, _) = app.submit("build_graph", example_params("build_graph"));
    let long = "x".repeat(9000);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_body = format!(r#"{{"tool": "build_graph", "params": {{"edges": {deep}}}}}"#);
    let json = [("content-type", "application/json")];
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/api/jobs/not-a-uuid".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/jobs/%00".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("/api/jobs/{}", "a".repeat(400)),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/jobs?limit=1e9".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/jobs?limit=-5".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/jobs?status=%27%20OR%201%3D1--".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/jobs?tool=x%27%3B%20DROP%20TABLE%20jobs".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/jobs?cursor=%FF%FE".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/jobs?limit=1&limit=2".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("/api/jobs/{job}/outputs/..%2F..%2Fsecret"),
            vec![],
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            format!("/api/jobs/{job}/outputs/graph.html%00.txt"),
            vec![],
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/tools".into(),
            vec![("if-none-match", long.as_str())],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/tools?category=..%2F".into(),
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("/api/jobs/{job}/events"),
            vec![("last-event-id", "abc")],
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/run".into(),
            json.to_vec(),
            Some(deep_body.as_bytes()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/run".into(),
            json.to_vec(),
            Some(br#"{"tool": "build_graph", "params": "edges"}"#),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/run".into(),
            json.to_vec(),
            Some(br#"{"tool": ["build_graph"]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/run".into(),
            json.to_vec(),
            Some(b"\xff\xfe{}"),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/run".into(),
            json.to_vec(),
            Some(br#"{"tool": "../registry/build_graph"}"#),
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/run".into(),
            vec![("content-type", "application/xml")],
            Some(b"<run/>"),
            415,
            "unsupported_media_type",
        ),
        (
            "PUT",
            "/api/run".into(),
            json.to_vec(),
            Some(b"{}"),
            405,
            "method_not_allowed",
        ),
        (
            "POST",
            "/api/tools".into(),
            json.to_vec(),
            Some(b"{}"),
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/api/jobs/x/y/z".into(),
            vec![],
            None,
            404,
            "not_found",
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        let r = app.request(method, &path, &headers, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        r.assert_error(status, code);
    }

    // Paths a client library would normalise before sending.
    for path in [
        "outputs/%2e%2e",
        "outputs/%2e%2e%2fgraph.html",
        "outputs/..%5c..%5cwin.ini",
    ] {
        let req =
            format!("GET /api/jobs/{job}/{path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let (status, text) = app.raw(req.as_bytes());
        assert_eq!(status, 404, "{path}: {text}");
        assert!(text.contains("\"not_found\""), "{text}");
    }

    // A body that grows past the cap without announcing its length. (Header values
    // that are not UTF-8 never reach a component: Spin 4.0.2's HTTP trigger refuses
    // the request itself with an empty 500, see README "Spin runtime".)
    let mut chunked = b"POST /api/run HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    let chunk = vec![b'a'; 256 * 1024];
    for _ in 0..5 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = app.raw(&chunked);
    assert_eq!(status, 413, "{}", &text[..text.len().min(300)]);
    let (status, _) = app.raw(b"POST /api/run HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 99999999\r\nconnection: close\r\n\r\n");
    assert_eq!(status, 413);

    // The jobs table survived the injection attempts, and nothing answered 5xx.
    assert_eq!(app.get(&format!("/api/jobs/{job}")).status, 200);
    for entry in std::fs::read_dir(app.dir.join("state/logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let status = line["status"].as_u64().unwrap_or(0);
            assert!(status < 500, "{}: {line}", path.display());
        }
    }
}
