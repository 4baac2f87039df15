//! The tool registry route and health, end to end: real Spin, real Redis, real SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_e2e::TestApp;
use std::time::Duration;

/// Status codes seen by a test: a 5xx anywhere fails it.
fn assert_no_5xx(status: u16, what: &str) {
    assert!(status < 500, "{what} answered {status}");
}

#[test]
fn registry_is_cached_in_redis_with_etags_filters_and_404s() {
    let app = TestApp::start();
    let mut redis = app.redis_conn();

    // MISS, then HIT with the same bytes.
    let first = app.get("/api/tools");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let tools = first.json();
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"build_graph"), "{names:?}");
    let second = app.get("/api/tools");
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(first.body, second.body);

    // The cache key exists with a TTL of at most tool_cache_ttl (3600 s by default).
    let ttl: i64 = redis::cmd("TTL")
        .arg("tool_registry")
        .query(&mut redis)
        .unwrap();
    assert!((1..=3600).contains(&ttl), "ttl {ttl}");
    let cached: Vec<u8> = redis::cmd("GET")
        .arg("tool_registry")
        .query(&mut redis)
        .unwrap();
    assert_eq!(
        cached, first.body,
        "the HIT serves the cached bytes as stored"
    );

    // ETag + If-None-Match → 304 with no body; a different tag → 200.
    let etag = second.header("etag").expect("etag").to_string();
    assert_eq!(first.header("etag"), Some(etag.as_str()));
    let not_modified = app.request("GET", "/api/tools", &[("if-none-match", &etag)], None);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    let modified = app.request("GET", "/api/tools", &[("if-none-match", "\"other\"")], None);
    assert_eq!(modified.status, 200);

    // One tool, with its parameter schema.
    let one = app.get("/api/tools/build_graph");
    assert_eq!(one.status, 200);
    let spec = one.json();
    assert_eq!(spec["name"], "build_graph");
    assert_eq!(spec["params"]["type"], "object");
    assert!(spec["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["name"] == "graph.html"));
    let etag_one = one.header("etag").unwrap().to_string();
    assert_eq!(
        app.request(
            "GET",
            "/api/tools/build_graph",
            &[("if-none-match", &etag_one)],
            None
        )
        .status,
        304
    );

    // Category filter.
    let graphs = app.get("/api/tools?category=graphs").json();
    assert!(graphs["tools"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["category"] == "graphs"));
    assert!(!graphs["tools"].as_array().unwrap().is_empty());
    let none = app.get("/api/tools?category=no-such-category").json();
    assert_eq!(none["tools"].as_array().unwrap().len(), 0);

    // Errors: unknown tool, bad category, unknown parameter, wrong method, unknown route.
    app.get("/api/tools/no_such_tool")
        .assert_error(404, "not_found");
    app.get("/api/tools/..%2F..%2Fetc")
        .assert_error(404, "not_found");
    app.get("/api/tools?category=Bad%20Cat")
        .assert_error(400, "bad_request");
    app.get("/api/tools?sort=name")
        .assert_error(400, "bad_request");
    app.request("DELETE", "/api/tools", &[], None)
        .assert_error(405, "method_not_allowed");
    app.get("/api/tools/build_graph/extra")
        .assert_error(404, "not_found");

    // Every answer carries a request id, echoed when the client sends a sane one.
    let echoed = app.request("GET", "/api/tools", &[("x-request-id", "test-123")], None);
    assert_eq!(echoed.header("x-request-id"), Some("test-123"));
    let replaced = app.request(
        "GET",
        "/api/tools",
        &[("x-request-id", "bad id with spaces")],
        None,
    );
    assert_ne!(replaced.header("x-request-id"), Some("bad id with spaces"));

    // Health: all up.
    let health = app.get("/api/health");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json(),
        serde_json::json!({"status": "ok", "redis": "up", "sqlite": "up"})
    );
}

#[test]
fn redis_outage_degrades_to_bypass_and_recovers_without_restart() {
    let mut app = TestApp::start();
    let http_pid = std::fs::read_to_string(app.dir.join("state/http.pid")).unwrap();
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("MISS"));
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("HIT"));

    // Redis goes away mid-run. The very next request, on the instance's kept (now
    // dead) connection, is answered from the files.
    app.redis.stop();
    let first = app.get("/api/tools");
    assert_eq!(
        (first.status, first.header("x-cache")),
        (200, Some("BYPASS"))
    );
    app.stop_redis();
    for _ in 0..5 {
        let r = app.get("/api/tools");
        assert_no_5xx(r.status, "/api/tools with redis down");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cache"), Some("BYPASS"));
        assert!(r.json()["tools"].as_array().is_some_and(|t| !t.is_empty()));
    }
    let one = app.get("/api/tools/build_graph");
    assert_eq!((one.status, one.header("x-cache")), (200, Some("BYPASS")));
    app.get("/api/tools/nope").assert_error(404, "not_found");
    let health = app.get("/api/health");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json(),
        serde_json::json!({"status": "degraded", "redis": "down", "sqlite": "up"})
    );

    // Redis comes back on the same port (empty): caching resumes, same app process.
    app.restart_redis();
    let r = app.get("/api/tools");
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("HIT"));
    assert_eq!(app.get("/api/health").json()["status"], "ok");
    assert_eq!(
        std::fs::read_to_string(app.dir.join("state/http.pid")).unwrap(),
        http_pid,
        "the HTTP app was restarted"
    );
}

/// Connections Redis has accepted since it started.
fn connections_received(redis: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(redis).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// How often Redis ran `command` since its stats were last reset.
fn command_calls(redis: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(redis).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn cached_reads_ride_on_the_connection_the_instance_keeps() {
    let app = TestApp::start_with(data20_e2e::Options {
        workers: 0,
        ..Default::default()
    });
    let (id, _) = app.submit("text_stats", serde_json::json!({"text": "one two"}));
    app.wait_final(&id, Duration::from_secs(30));
    assert_eq!(app.get("/api/tools").status, 200);
    assert_eq!(app.get(&format!("/api/jobs/{id}")).status, 200);
    let mut redis = app.redis_conn();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut redis)
        .unwrap();
    let before = connections_received(&mut redis);
    for _ in 0..20 {
        let tools = app.get("/api/tools");
        assert_eq!(tools.header("x-cache"), Some("HIT"));
        let status = app.get(&format!("/api/jobs/{id}"));
        assert_eq!(status.header("x-cache"), Some("HIT"));
    }
    // The limiter and the cache read are one script per request.
    assert_eq!(command_calls(&mut redis, "evalsha"), 40);
    // One request at a time: Spin 4 serves them from one kept instance per component,
    // whose connection was opened before the count began (our own INFO counts once).
    let opened = connections_received(&mut redis) - before;
    assert!(
        opened <= 2,
        "{opened} connections opened for 40 cached reads"
    );
}

#[test]
fn cache_ttl_follows_the_spin_variable() {
    let app = TestApp::start_with(data20_e2e::Options {
        workers: 0,
        variables: vec![("tool_cache_ttl".into(), "2".into())],
        ..Default::default()
    });
    let mut redis = app.redis_conn();
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("MISS"));
    let ttl: i64 = redis::cmd("TTL")
        .arg("tool_registry")
        .query(&mut redis)
        .unwrap();
    assert!((1..=2).contains(&ttl), "ttl {ttl}");
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("HIT"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        app.get("/api/tools").header("x-cache"),
        Some("MISS"),
        "the entry expired"
    );
}
