//! Stats, health and the OpenAPI document, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_e2e::{example_params, spin_manifest, Options, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

const FINISH: Duration = Duration::from_secs(30);

fn counters(app: &TestApp, cache: &str) -> (i64, i64, Value) {
    let s = app.get("/api/stats").json();
    let c = &s["cache"][cache];
    (
        c["hits"].as_i64().unwrap(),
        c["misses"].as_i64().unwrap(),
        c["hit_ratio"].clone(),
    )
}

#[test]
fn stats_match_the_jobs_run_and_survive_a_redis_outage() {
    let mut app = TestApp::start();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.submit("build_graph", example_params("build_graph")).0);
    }
    for _ in 0..2 {
        ids.push(
            app.submit("build_graph", json!({"edges_csv": "no,header\n"}))
                .0,
        );
    }
    ids.push(app.submit("text_stats", example_params("text_stats")).0);
    for id in &ids {
        app.wait_final(id, FINISH);
    }

    let s = app.get("/api/stats").json();
    assert_eq!(s["jobs"]["total"], 6, "{s}");
    assert_eq!(
        s["jobs"]["by_status"],
        json!({"queued": 0, "running": 0, "completed": 4, "failed": 2, "cancelled": 0})
    );
    assert_eq!(
        s["jobs"]["by_tool"]["build_graph"],
        json!({"total": 5, "completed": 3, "failed": 2})
    );
    assert_eq!(
        s["jobs"]["by_tool"]["text_stats"],
        json!({"total": 1, "completed": 1})
    );
    let d = &s["durations_ms"];
    assert_eq!(d["count"], 4);
    let (p50, p95) = (d["p50"].as_i64().unwrap(), d["p95"].as_i64().unwrap());
    assert!(0 <= p50 && p50 <= p95, "{d}");
    assert!(d["mean"].as_f64().unwrap() >= 0.0);
    let r = &s["redis"];
    assert_eq!(r["available"], true);
    assert!(
        r["version"]
            .as_str()
            .unwrap()
            .chars()
            .next()
            .unwrap()
            .is_ascii_digit(),
        "{r}"
    );
    assert!(r["used_memory_bytes"].as_u64().unwrap() > 0);
    assert!(r["connected_clients"].as_u64().unwrap() >= 1);
    assert!(r["uptime_s"].as_u64().is_some());
    assert!(r["keys"].as_u64().unwrap() >= 1);
    assert!(s["rate_limit"]["rejections"].as_i64().is_some());

    // The registry's hit ratio moves with a MISS, then a HIT. The workers read the
    // registry through the cache too, untallied, and refill it: the supervisor's
    // wake-up behind each job they ran can still be draining an empty queue here. So
    // the entry is dropped until a read finds it gone; every answer must move its own
    // counter either way.
    let mut missed = false;
    for _ in 0..20 {
        let _: () = redis::cmd("DEL")
            .arg("tool_registry")
            .query(&mut app.redis_conn())
            .unwrap();
        let (h0, m0, _) = counters(&app, "tool_registry");
        let cache = app.get("/api/tools").header("x-cache").map(str::to_string);
        let (h1, m1, _) = counters(&app, "tool_registry");
        match cache.as_deref() {
            Some("MISS") => {
                assert_eq!((h1, m1), (h0, m0 + 1));
                missed = true;
                break;
            }
            Some("HIT") => assert_eq!((h1, m1), (h0 + 1, m0)),
            other => panic!("X-Cache {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(missed, "a worker refilled the registry before every read");
    let (h1, m1, _) = counters(&app, "tool_registry");
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("HIT"));
    let (h2, m2, ratio) = counters(&app, "tool_registry");
    assert_eq!((h2, m2), (h1 + 1, m1));
    let expected = (h2 as f64 / (h2 + m2) as f64 * 10_000.0).round() / 10_000.0;
    assert_eq!(ratio.as_f64(), Some(expected));
    // Job status reads count too.
    let (jh0, _, _) = counters(&app, "job_status");
    assert_eq!(
        app.get(&format!("/api/jobs/{}", ids[0])).header("x-cache"),
        Some("HIT")
    );
    assert_eq!(counters(&app, "job_status").0, jh0 + 1);

    app.stop_redis();
    let down = app.get("/api/stats");
    assert_eq!(down.status, 200);
    let s = down.json();
    assert_eq!(s["redis"], json!({"available": false}));
    assert_eq!(s["jobs"]["total"], 6);
    assert_eq!(s["durations_ms"]["count"], 4);
}

/// `/api/tools/...` in spin.toml → the literal prefix `/api/tools`.
fn manifest_routes() -> Vec<String> {
    spin_manifest()["trigger"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["route"]
                .as_str()
                .unwrap()
                .trim_end_matches("/...")
                .to_string()
        })
        .collect()
}

#[test]
fn the_openapi_document_covers_every_route_and_every_get_answers_as_documented() {
    let app = TestApp::start();
    let doc_reply = app.get("/api/openapi.json");
    assert_eq!(doc_reply.status, 200);
    let doc = doc_reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    for route in manifest_routes() {
        assert!(
            paths
                .keys()
                .any(|p| p == &route || p.starts_with(&format!("{route}/"))),
            "spin.toml route {route} is missing from the OpenAPI document"
        );
    }

    let (job, _) = app.submit("build_graph", example_params("build_graph"));
    app.wait_final(&job, FINISH);
    for (path, item) in paths {
        let Some(get) = item.get("get") else { continue };
        if path.starts_with("/api/keys") {
            // Keys work in closed mode only (tests/e2e_access.rs); open mode says so.
            assert!(get["responses"].get("409").is_some(), "{path}");
            app.get(path).assert_error(409, "conflict");
            continue;
        }
        if path == "/api/health/worker" {
            // A worker process's check: the API's own process has no worker_id.
            let r = app.get(path);
            assert!(get["responses"].get("404").is_some(), "{path}");
            r.assert_error(404, "not_found");
            continue;
        }
        let concrete = path.replace("{id}", &job).replace(
            "{name}",
            if path.contains("outputs") {
                "graph.html"
            } else {
                "build_graph"
            },
        );
        let r = app.get(&concrete);
        let documented = get["responses"].as_object().unwrap();
        assert!(
            documented.contains_key(&r.status.to_string()),
            "GET {concrete} answered {} which {path} does not document",
            r.status
        );
        assert_eq!(r.status, 200, "GET {concrete}: {}", r.text());
        // Documented headers are there on the success answer.
        for header in documented["200"]["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            assert!(
                r.header(header).is_some(),
                "GET {concrete} lacks documented header {header}"
            );
        }
        // Documented error shapes: an unknown id answers with a documented 4xx.
        if path.contains("{id}") {
            let missing = app.get(
                &path
                    .replace("{id}", "00000000-0000-7000-8000-000000000000")
                    .replace("{name}", "graph.html"),
            );
            assert!(
                documented.contains_key(&missing.status.to_string()),
                "{path}: {}",
                missing.status
            );
            missing.assert_error(404, "not_found");
        }
    }
    // The job control routes answer what they document, and every field of a job
    // document (a retried one has the most) is a documented property.
    let (failing, _) = app.submit("build_graph", json!({"edges_csv": "no,header\n"}));
    app.wait_final(&failing, FINISH);
    for (action, code) in [("retry", 202), ("cancel", 409), ("retry", 409)] {
        let r = app.post_json(&format!("/api/jobs/{failing}/{action}"), &json!({}));
        assert_eq!(r.status, code, "{action}: {}", r.text());
        let documented = &paths[&format!("/api/jobs/{{id}}/{action}")]["post"]["responses"];
        assert!(
            documented.get(code.to_string()).is_some(),
            "{action} {code}"
        );
    }
    let job_doc = app.get(&format!("/api/jobs/{failing}")).json();
    let documented_fields = doc["components"]["schemas"]["Job"]["properties"]
        .as_object()
        .unwrap();
    for field in job_doc.as_object().unwrap().keys() {
        assert!(
            documented_fields.contains_key(field),
            "Job.{field} is not documented"
        );
    }
    assert!(job_doc.get("retried_by").is_some(), "{job_doc}");
    let post_run = &paths["/api/run"]["post"]["responses"];
    for code in ["202", "400", "401", "404", "413", "415", "422", "429"] {
        assert!(
            post_run.get(code).is_some(),
            "/api/run does not document {code}"
        );
    }

    let page = app.get("/api/docs");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.text();
    assert!(html.contains("/api/openapi.json"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the docs page must not load anything from the network"
    );
}

#[test]
fn every_request_writes_one_structured_log_line() {
    let app = TestApp::start();
    let r = app.request(
        "GET",
        "/api/tools",
        &[("x-request-id", "log-check-1")],
        None,
    );
    assert_eq!(r.header("x-request-id"), Some("log-check-1"));
    let log = std::fs::read_to_string(app.dir.join("state/logs/tools_stderr.txt")).unwrap();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["request_id"] == "log-check-1")
        .unwrap_or_else(|| panic!("no log line for the request in:\n{log}"));
    assert_eq!(line["component"], "tools");
    assert_eq!(line["route"], "/api/tools");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert_eq!(line["cache"], "MISS");
    assert!(line["duration_us"].as_u64().is_some());
}

/// A database made by schema version 1 (no duration index, a rollback journal), as an
/// older data20 left it, is upgraded in place by the first query that needs version 2:
/// the stats query names the index, SQLite answers "no such index", the migrations run
/// and the query is retried; the file turns to write-ahead logging on the way.
#[test]
fn a_version_1_database_is_upgraded_on_first_use() {
    let seed = std::env::temp_dir().join(format!("data20-v1-{}.sql", std::process::id()));
    let v1 = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/0001_init.sql"),
    )
    .unwrap();
    let rows = "
INSERT INTO jobs (id, tool, params, status, created_ms, started_ms, finished_ms, duration_ms, attempts)
VALUES ('01a21921-0000-7000-8000-000000000001', 'text_stats', '{}', 'completed', 1000, 1000, 1100, 100, 1),
       ('01a21921-0000-7000-8000-000000000002', 'text_stats', '{}', 'completed', 2000, 2000, 2300, 300, 1),
       ('01a21921-0000-7000-8000-000000000003', 'json_query', '{}', 'failed', 3000, 3000, 3050, 50, 1);
";
    std::fs::write(&seed, format!("{v1}\n{rows}")).unwrap();
    let app = TestApp::start_with(Options {
        workers: 0,
        http_args: vec!["--sqlite".into(), format!("@{}", seed.display())],
        ..Options::default()
    });
    // SQLite header bytes 18 and 19: 1 for a rollback journal, 2 for WAL.
    let journal = || std::fs::read(app.sqlite_path()).unwrap()[18..20].to_vec();
    assert_eq!(
        journal(),
        [1, 1],
        "the seeded database starts in rollback mode"
    );

    let s = app.get("/api/stats").json();
    assert_eq!(s["jobs"]["total"], 3, "{s}");
    assert_eq!(
        s["jobs"]["by_status"],
        json!({"queued": 0, "running": 0, "completed": 2, "failed": 1, "cancelled": 0})
    );
    let d = &s["durations_ms"];
    assert_eq!(
        (d["count"].as_i64(), d["p50"].as_i64(), d["p95"].as_i64()),
        (Some(2), Some(100), Some(300)),
        "{d}"
    );
    // Only migrate() sets WAL: the stats query made the migrations run.
    assert_eq!(journal(), [2, 2], "migrating turned the file to WAL");
    assert_eq!(app.get("/api/jobs").json()["count"], 3);
    let _ = std::fs::remove_file(seed);
}
