//! Jobs end to end: submit, worker, events, cache, listing, outputs, SSE, and the
//! "no accepted job is lost" guarantees under Redis outages and worker crashes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_e2e::{big_graph, example_params, wait_for, Options, Subscriber, TestApp};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const FINISH: Duration = Duration::from_secs(30);

fn is_rfc3339_utc(s: &str) -> bool {
    // 2026-11-26T13:33:52.123Z
    s.len() == 24 && s.as_bytes()[10] == b'T' && s.ends_with('Z') && s[..4].parse::<u32>().is_ok()
}

#[test]
fn job_lifecycle_events_status_cache_outputs_and_sse() {
    let app = TestApp::start();
    let sub = Subscriber::new(&app.redis.url());

    let (id, accepted) = app.submit("build_graph", example_params("build_graph"));
    let body = accepted.json();
    assert_eq!(body["status"], "queued");
    // The run component read the registry through the cache: on a fresh Redis that is
    // a MISS, which writes `tool_registry` (with its TTL) for the next request.
    let ttl: i64 = redis::cmd("TTL")
        .arg("tool_registry")
        .query(&mut app.redis_conn())
        .unwrap();
    assert!(ttl > 0 && ttl <= 3600, "tool_registry TTL {ttl}");
    assert_eq!(body["dispatch"], "worker");
    assert_eq!(
        accepted.header("location"),
        Some(format!("/api/jobs/{id}").as_str())
    );
    assert_eq!(body["links"]["self"], format!("/api/jobs/{id}"));
    assert_eq!(body["links"]["events"], format!("/api/jobs/{id}/events"));

    // Events in order, each with the SPEC's fields.
    let events = sub.events_for(&id, FINISH);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["job_created", "job_started", "job_completed"],
        "{events:?}"
    );
    for (e, status) in events.iter().zip(["queued", "running", "completed"]) {
        assert_eq!(e["job_id"], id.as_str());
        assert_eq!(e["tool"], "build_graph");
        assert_eq!(e["status"], status);
        assert!(is_rfc3339_utc(e["timestamp"].as_str().unwrap()), "{e}");
    }
    let done = &events[2];
    assert!(done["duration_ms"].as_i64().is_some_and(|d| d >= 0));
    let mut files: Vec<&str> = done["output_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    files.sort_unstable();
    assert_eq!(files, ["graph.html", "graph.json"]);

    // Final status from the cache, with a TTL of at most job_status_ttl (600 s).
    let hit = app.get(&format!("/api/jobs/{id}"));
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    let status = hit.json();
    assert_eq!(status["status"], "completed");
    assert_eq!(status["attempts"], 1);
    let mut redis = app.redis_conn();
    let key = format!("job:{id}:status");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut redis).unwrap();
    assert!((1..=600).contains(&ttl), "ttl {ttl}");

    // Without the key, the same answer comes from SQLite.
    let _: i64 = redis::cmd("DEL").arg(&key).query(&mut redis).unwrap();
    let miss = app.get(&format!("/api/jobs/{id}"));
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert_eq!(miss.json(), status);
    assert_eq!(
        app.get(&format!("/api/jobs/{id}")).header("x-cache"),
        Some("HIT"),
        "MISS refills the cache"
    );

    // Outputs, with their declared content types.
    let html = app.get(&format!("/api/jobs/{id}/outputs/graph.html"));
    assert_eq!(html.status, 200);
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(html.text().contains("<svg") && html.text().contains("Friends"));
    let stats = app.get(&format!("/api/jobs/{id}/outputs/graph.json"));
    assert_eq!(stats.header("content-type"), Some("application/json"));
    assert_eq!(stats.json()["node_count"], 4);
    assert_eq!(stats.json()["edge_count"], 3);
    app.get(&format!("/api/jobs/{id}/outputs/nope.txt"))
        .assert_error(404, "not_found");
    app.get(&format!("/api/jobs/{id}/outputs/..%2F..%2Fetc%2Fpasswd"))
        .assert_error(404, "not_found");
    app.get(&format!("/api/jobs/{id}/outputs/.env"))
        .assert_error(404, "not_found");

    // SSE on a finished job replays its history and closes.
    let sse = app.get(&format!("/api/jobs/{id}/events"));
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        sse.sse_events(),
        ["job_created", "job_started", "job_completed"]
    );

    // SSE opened right after submitting follows the job live until it ends.
    let (id2, _) = app.submit("build_graph", example_params("build_graph"));
    let live = app.get(&format!("/api/jobs/{id2}/events"));
    let text = live.text();
    let names = live.sse_events();
    assert_eq!(
        names.first().map(String::as_str),
        Some("job_created"),
        "{text}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("job_completed"),
        "{text}"
    );
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let e: Value = serde_json::from_str(data).unwrap();
        assert_eq!(e["job_id"], id2.as_str());
    }
    // Last-Event-ID resumes after what the client already has.
    let first_id = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_string();
    let resumed = app.request(
        "GET",
        &format!("/api/jobs/{id2}/events"),
        &[("last-event-id", &first_id)],
        None,
    );
    assert!(!resumed.text().contains("event: job_created"));
    assert!(resumed.text().contains("event: job_completed"));

    // The database the jobs went to is in write-ahead-log mode: the SQLite header's
    // read and write format versions (bytes 18 and 19) are 2 for WAL, 1 for a rollback
    // journal.
    let header = std::fs::read(app.sqlite_path()).unwrap();
    assert_eq!(
        &header[18..20],
        &[2, 2],
        "the job database is not in WAL mode"
    );
}

#[test]
fn a_failing_tool_fails_the_job_with_its_message() {
    let app = TestApp::start();
    let sub = Subscriber::new(&app.redis.url());
    // Valid for the schema, but not a usable edge list.
    let (id, _) = app.submit("build_graph", json!({"edges_csv": "from,to\na,b\n"}));
    let events = sub.events_for(&id, FINISH);
    assert_eq!(events.last().unwrap()["event"], "job_failed", "{events:?}");
    assert!(events.last().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("source and target"));
    let status = app.wait_final(&id, FINISH);
    assert_eq!(status["status"], "failed");
    assert!(status["error"]
        .as_str()
        .unwrap()
        .contains("source and target"));
    app.get(&format!("/api/jobs/{id}/outputs/graph.html"))
        .assert_error(404, "not_found");
}

#[test]
fn listing_is_newest_first_with_filters_and_cursors() {
    let app = TestApp::start();
    let mut ids = Vec::new();
    for i in 0..7 {
        let params = if i % 3 == 0 {
            json!({"edges_csv": "bad header\n"})
        } else {
            example_params("build_graph")
        };
        ids.push(app.submit("build_graph", params).0);
    }
    for id in &ids {
        app.wait_final(id, FINISH);
    }
    let all = app.get("/api/jobs?limit=500").json();
    let listed: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(all["next_cursor"], Value::Null);

    // Pages of 3 via the cursor: every job once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            None => "/api/jobs?limit=3".to_string(),
            Some(c) => format!("/api/jobs?limit=3&cursor={c}"),
        };
        let page = app.get(&path).json();
        assert!(page["jobs"].as_array().unwrap().len() <= 3);
        paged.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["job_id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, newest_first);

    let failed = app.get("/api/jobs?status=failed").json();
    assert_eq!(failed["count"], 3);
    assert!(failed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] == "failed"));
    let completed = app
        .get("/api/jobs?status=completed&tool=build_graph&limit=2")
        .json();
    assert_eq!(completed["count"], 2);
    assert!(completed["next_cursor"].is_string());
    assert_eq!(app.get("/api/jobs?tool=csv_nope").json()["count"], 0);

    for bad in [
        "/api/jobs?limit=0",
        "/api/jobs?limit=501",
        "/api/jobs?limit=ten",
        "/api/jobs?status=done",
        "/api/jobs?tool=Bad%20Tool",
        "/api/jobs?cursor=not-a-cursor",
        "/api/jobs?cursor=MTIzLm5vdC1hLXV1aWQ",
        "/api/jobs?page=2",
    ] {
        app.get(bad).assert_error(400, "bad_request");
    }
}

#[test]
fn run_and_jobs_refuse_bad_input_with_json_errors() {
    let app = TestApp::start_with(Options {
        workers: 0,
        ..Options::default()
    });
    let post = |body: &[u8], ct: &str| {
        app.request("POST", "/api/run", &[("content-type", ct)], Some(body))
    };
    post(b"{not json", "application/json").assert_error(400, "bad_request");
    post(b"", "application/json").assert_error(400, "bad_request");
    post(b"[1,2]", "application/json").assert_error(400, "bad_request");
    post(br#"{"params": {}}"#, "application/json").assert_error(400, "bad_request");
    post(br#"{"tool": 5}"#, "application/json").assert_error(400, "bad_request");
    post(
        br#"{"tool": "build_graph", "params": {}, "extra": 1}"#,
        "application/json",
    )
    .assert_error(400, "bad_request");
    post(
        br#"{"tool": "no_such_tool", "params": {}}"#,
        "application/json",
    )
    .assert_error(404, "not_found");
    post(br#"{"tool": "build_graph", "params": {}}"#, "text/plain")
        .assert_error(415, "unsupported_media_type");
    // Refused on its Content-Length before a byte of the body is read: send the head
    // alone (a client still writing a body the server will not read can see a broken
    // pipe instead of the answer, depending on timing).
    let head = format!(
        "POST /api/run HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        1024 * 1024 + 10
    );
    let mut conn = std::net::TcpStream::connect(app.base.trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut conn, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // 422 lists every violation, with its path.
    let v = post(
        br#"{"tool": "build_graph", "params": {"edges": [{"source": "a"}], "directed": "yes", "colour": 1}}"#,
        "application/json",
    )
    .assert_error(422, "validation_failed");
    let details = v["error"]["details"].as_array().unwrap();
    assert!(details.len() >= 3, "{v}");
    let paths: Vec<&str> = details
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/directed") && paths.contains(&"/edges/0"),
        "{paths:?}"
    );
    post(
        br#"{"tool": "build_graph", "params": [1]}"#,
        "application/json",
    )
    .assert_error(422, "validation_failed");

    app.get("/api/run").assert_error(405, "method_not_allowed");
    app.get("/api/jobs/not-a-uuid")
        .assert_error(400, "bad_request");
    app.get("/api/jobs/not-a-uuid/events")
        .assert_error(400, "bad_request");
    app.get("/api/jobs/00000000-0000-7000-8000-000000000000")
        .assert_error(404, "not_found");
    app.get("/api/jobs/00000000-0000-7000-8000-000000000000/events")
        .assert_error(404, "not_found");
    app.get("/api/jobs/00000000-0000-7000-8000-000000000000/outputs/graph.html")
        .assert_error(404, "not_found");
    app.request(
        "DELETE",
        "/api/jobs/00000000-0000-7000-8000-000000000000",
        &[],
        None,
    )
    .assert_error(405, "method_not_allowed");

    // With no worker subscribed, the API runs the job itself, right after its 202:
    // nothing waits forever.
    let (id, accepted) = app.submit("build_graph", example_params("build_graph"));
    assert_eq!(accepted.json()["dispatch"], "inline");
    assert_eq!(accepted.json()["status"], "queued");
    assert_eq!(app.wait_final(&id, FINISH)["status"], "completed");
}

#[test]
fn two_workers_run_each_job_exactly_once() {
    let app = TestApp::start_with(Options {
        workers: 2,
        worker_loops: Some(2),
        ..Options::default()
    });
    // Two processes of two subscription loops each.
    assert_eq!(app.subscribers(), 4);
    let sub = Subscriber::new(&app.redis.url());
    let ids: Vec<String> = (0..12)
        .map(|_| app.submit("build_graph", example_params("build_graph")).0)
        .collect();
    for id in &ids {
        assert_eq!(app.wait_final(id, FINISH)["status"], "completed");
    }
    let events = sub.drain(Duration::from_secs(2));
    let mut started: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        if e["event"] == "job_started" {
            *started.entry(e["job_id"].as_str().unwrap()).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(
            started.get(id.as_str()),
            Some(&1),
            "job {id} started {:?} times",
            started.get(id.as_str())
        );
        // attempts counts claims recorded in SQLite.
        assert_eq!(app.get(&format!("/api/jobs/{id}")).json()["attempts"], 1);
    }
}

#[test]
fn redis_outage_jobs_still_complete_and_the_worker_comes_back() {
    let mut app = TestApp::start();
    let (before, _) = app.submit("build_graph", example_params("build_graph"));
    assert_eq!(app.wait_final(&before, FINISH)["status"], "completed");

    app.stop_redis();
    // Accepted (committed to SQLite) with Redis down. Under scripts/up tool code runs
    // only in the supervised workers, never in the API, so the job waits for one.
    let (id, accepted) = app.submit("build_graph", example_params("build_graph"));
    assert_eq!(accepted.json()["dispatch"], "worker");
    let r = app.get(&format!("/api/jobs/{id}"));
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
    assert_eq!(r.json()["status"], "queued");
    let list = app.get("/api/jobs");
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["count"], 2);

    // Redis returns: the supervisor restarts the worker and wakes it for the job that
    // waited, with no request touching it.
    app.restart_redis();
    let done = wait_for(FINISH, || {
        let mut c = app.redis_conn();
        let doc: Option<String> = redis::cmd("GET")
            .arg(format!("job:{id}:status"))
            .query(&mut c)
            .unwrap_or(None);
        doc.is_some_and(|d| d.contains("\"completed\""))
    });
    assert!(
        done,
        "the job accepted during the outage never ran:\n{}",
        app.log()
    );
    assert_eq!(app.wait_final(&id, FINISH)["attempts"], 1);
    assert_eq!(
        app.get(&format!("/api/jobs/{id}/outputs/graph.json"))
            .status,
        200
    );
    app.wait_for_workers(1);
    let (after, accepted) = app.submit("build_graph", example_params("build_graph"));
    assert_eq!(accepted.json()["dispatch"], "worker");
    assert_eq!(app.wait_final(&after, FINISH)["status"], "completed");
}

#[test]
fn a_job_whose_worker_is_killed_still_ends() {
    let app = TestApp::start();
    let sub = Subscriber::new(&app.redis.url());
    let (id, _) = app.submit("build_graph", big_graph(20_000));
    let mut first_start = None;
    let started = wait_for(FINISH, || {
        first_start = sub
            .drain(Duration::from_millis(20))
            .into_iter()
            .find(|e| e["job_id"] == id.as_str() && e["event"] == "job_started")
            .map(|e| e["timestamp"].clone());
        first_start.is_some()
    });
    assert!(started, "the worker never started the job");
    app.kill_worker(1);
    // Ask SQLite, not the cache: drop the cached status first.
    let mut redis = app.redis_conn();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("job:{id}:status"))
        .query(&mut redis)
        .unwrap();
    let at_kill = app.get(&format!("/api/jobs/{id}")).json();
    assert_eq!(
        at_kill["status"], "running",
        "the job must still be running when its worker dies: {at_kill}"
    );
    // The lease (tool timeout + grace) runs out, the cached status expires with it, and
    // the next read that touches the job claims it again and runs it to the end.
    let status = app.wait_final(&id, Duration::from_secs(90));
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(
        status["attempts"], 2,
        "a second run finished what the killed worker started"
    );
    // The supervisor frees a dead worker's jobs at once: the second run started before
    // the first one's lease would have ended (build_graph's 20 s timeout + 5 s).
    let at = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let rerun_after = at(&status["started_at"])
        .duration_since(at(&first_start.unwrap()))
        .unwrap();
    assert!(
        rerun_after < Duration::from_secs(20 + 5),
        "the rerun waited for the lease ({rerun_after:?}): {status}"
    );
}

/// The README's promise for the worker: a job whose runner died is claimed again by the
/// next `job_created` wake-up, any job's, once its lease has run out, with no read of
/// that job to notice it. (The worker now leaves a wake-up whose own job is already
/// taken after one cached read; this is what still finds the lost run.)
#[test]
fn a_lost_run_is_taken_again_by_the_next_job_created_without_any_read_of_it() {
    let app = TestApp::start();
    let sub = Subscriber::new(&app.redis.url());
    let (lost, _) = app.submit("build_graph", big_graph(20_000));
    let started = wait_for(FINISH, || {
        sub.drain(Duration::from_millis(20))
            .iter()
            .any(|e| e["job_id"] == lost.as_str() && e["event"] == "job_started")
    });
    assert!(started, "the worker never started the job");
    let started_at = std::time::Instant::now();
    app.kill_worker(1);
    // scripts/up starts the worker again (its loops subscribe to job_queue).
    data20_e2e::wait_until(
        Duration::from_secs(5),
        "the killed worker to drop off",
        || app.subscribers() == 0,
    );
    app.wait_for_workers(1);
    // The lease is the tool's timeout (20 s for build_graph) plus 5 s of grace; the
    // cached "running" status expires with it.
    let lease = Duration::from_secs(20 + 5 + 1);
    std::thread::sleep(lease.saturating_sub(started_at.elapsed()));

    let (next, _) = app.submit("build_graph", example_params("build_graph"));
    let events = sub.drain(Duration::from_secs(1));
    let mut completed: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "job_completed")
        .filter_map(|e| e["job_id"].as_str().map(str::to_string))
        .collect();
    let both = wait_for(Duration::from_secs(60), || {
        completed.extend(
            sub.drain(Duration::from_millis(100))
                .iter()
                .filter(|e| e["event"] == "job_completed")
                .filter_map(|e| e["job_id"].as_str().map(str::to_string)),
        );
        completed.contains(&lost) && completed.contains(&next)
    });
    assert!(
        both,
        "the wake-up for {next} did not finish the lost run {lost}: completed {completed:?}"
    );
    // Only now is the lost job read, once it is final.
    let status = app.get(&format!("/api/jobs/{lost}")).json();
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["attempts"], 2, "{status}");
}

#[test]
fn every_tools_example_completes_and_its_outputs_download() {
    let app = TestApp::start();
    let tools = app.get("/api/tools").json();
    let tools = tools["tools"].as_array().unwrap();
    assert!(tools.len() >= 5, "{tools:?}");
    for tool in tools {
        let name = tool["name"].as_str().unwrap();
        for example in tool["examples"].as_array().unwrap() {
            let (id, _) = app.submit(name, example["params"].clone());
            let status = app.wait_final(&id, FINISH);
            assert_eq!(status["status"], "completed", "{name}: {status}");
            for declared in tool["outputs"].as_array().unwrap() {
                let file = declared["name"].as_str().unwrap();
                let r = app.get(&format!("/api/jobs/{id}/outputs/{file}"));
                assert_eq!(r.status, 200, "{name}/{file}");
                assert_eq!(
                    r.header("content-type"),
                    declared["content_type"].as_str(),
                    "{name}/{file}"
                );
                assert!(!r.body.is_empty(), "{name}/{file}");
                if file.ends_with(".json") {
                    r.json();
                }
            }
        }
    }
    // Spot checks that the tools did their work on the example data.
    let find = |tool: &str| {
        let list = app.get(&format!("/api/jobs?tool={tool}&limit=1")).json();
        list["jobs"][0]["job_id"].as_str().unwrap().to_string()
    };
    let output =
        |tool: &str, file: &str| app.get(&format!("/api/jobs/{}/outputs/{file}", find(tool)));
    let r = output("json_query", "result.json").json();
    assert_eq!(r["results"], json!([["book", "lamp"]]));
    let page = output("markdown_render", "page.html").text();
    assert!(page.contains("<table>") && !page.contains("<script>alert"));
    let profile = output("csv_profile", "profile.json").json();
    assert_eq!(profile["rows"], 4);
    let stats = output("text_stats", "stats.json").json();
    assert_eq!(stats["paragraphs"], 2);

    // Each tool's schema is enforced: wrong types are 422s naming the field.
    for (tool, params, path) in [
        ("csv_profile", json!({"csv": 5}), "/csv"),
        ("text_stats", json!({"text": "x", "top": 0}), "/top"),
        ("json_query", json!({"input": 1}), ""),
        (
            "markdown_render",
            json!({"markdown": "x", "title": ["no"]}),
            "/title",
        ),
    ] {
        let v = app
            .post_json("/api/run", &json!({"tool": tool, "params": params}))
            .assert_error(422, "validation_failed");
        let paths: Vec<&str> = v["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert!(paths.contains(&path), "{tool}: {v}");
    }
}

#[test]
fn the_cloud_manifest_runs_jobs_inline_without_a_worker() {
    let app = TestApp::start_with(Options {
        workers: 0,
        cloud_manifest: true,
        ..Options::default()
    });
    // No subscriber at all: any listener on job_updates would count as a receiver.
    assert_eq!(app.subscribers(), 0);
    let (id, accepted) = app.submit("build_graph", example_params("build_graph"));
    assert_eq!(accepted.json()["dispatch"], "inline");
    assert_eq!(accepted.json()["status"], "queued");
    assert_eq!(app.wait_final(&id, FINISH)["status"], "completed");
    let sse = app.get(&format!("/api/jobs/{id}/events"));
    assert_eq!(
        sse.sse_events(),
        ["job_created", "job_started", "job_completed"]
    );
    assert_eq!(
        app.get(&format!("/api/jobs/{id}/outputs/graph.html"))
            .status,
        200
    );
    assert_eq!(app.get("/api/tools").status, 200);
    assert_eq!(app.get("/api/health").json()["status"], "ok");
}

/// `def f: 1 + f; f` recurses until WebAssembly's call stack is exhausted: the instance
/// running it traps. With no worker the API runs it after its 202, so the trap reaches
/// no client; each lost run is noticed by a read once its lease is over, and the second
/// loss fails the job with `timeout`.
#[test]
fn a_job_that_crashes_its_runner_fails_after_two_lost_runs_and_no_request_sees_a_500() {
    let app = TestApp::start_with(Options {
        workers: 0,
        ..Options::default()
    });
    assert_eq!(app.subscribers(), 0);
    let (id, accepted) = app.submit(
        "json_query",
        json!({"filter": "def f: 1 + f; f", "input": 1}),
    );
    assert_eq!(accepted.json()["dispatch"], "inline");

    // A stream on a job nobody runs any more ends (200, no final event) and the job is
    // run again behind it; the client's reconnect would pick up from Last-Event-ID.
    let sse = app.get(&format!("/api/jobs/{id}/events"));
    assert_eq!(sse.status, 200);
    assert_eq!(
        sse.sse_events(),
        ["job_created", "job_started"],
        "{}",
        sse.text()
    );

    // Every read on the way answers 200 (wait_final asserts it), however the runs end.
    let status = app.wait_final(&id, Duration::from_secs(90));
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["attempts"], 2, "{status}");
    assert_eq!(
        status["error"], "timeout: the runner stopped before finishing, 2 attempts",
        "{status}"
    );
    // Spin 4.0.2 logs no trap of work a WASIp3 instance does after its response; the
    // two lost runs show in `attempts` and the error above. The API went on answering:
    let health = app.get("/api/health");
    assert_eq!(health.status, 200, "{}", health.text());
}

/// json_query checks its deadline between results: a query that keeps producing them
/// for longer than the tool's `timeout_s` is stopped by its runner, on the first attempt,
/// with `timeout`. The timeout comes from the registry the worker reads through the
/// Redis cache (`tool_registry`): the test shortens it there to 2 s, so the error also
/// shows that the worker used the cached registry and not the files (10 s).
#[test]
fn a_tool_that_runs_past_its_timeout_fails_with_timeout() {
    let app = TestApp::start();
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("MISS"));
    let mut redis = app.redis_conn();
    let cached: String = redis::cmd("GET")
        .arg("tool_registry")
        .query(&mut redis)
        .unwrap();
    let mut registry: Value = serde_json::from_str(&cached).unwrap();
    let json_query = registry["tools"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == "json_query")
        .unwrap();
    assert_eq!(json_query["timeout_s"], 10, "the file's timeout");
    json_query["timeout_s"] = json!(2);
    let _: () = redis::cmd("SET")
        .arg("tool_registry")
        .arg(registry.to_string())
        .arg("EX")
        .arg(3600)
        .query(&mut redis)
        .unwrap();

    let (id, _) = app.submit(
        "json_query",
        json!({"filter": "range(1e12) | select(. % 100000 == 0)", "input": null}),
    );
    let status = app.wait_final(&id, Duration::from_secs(60));
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(
        status["error"], "timeout: json_query ran longer than 2 s",
        "{status}"
    );
    assert_eq!(status["attempts"], 1, "{status}");
    assert_eq!(status["dispatch"], "worker", "{status}");
    assert!(
        status["duration_ms"].as_i64().unwrap() >= 2_000,
        "stopped at its deadline, not before: {status}"
    );
}

/// `[range(1e9)]` asks for gigabytes. scripts/up caps each component instance's memory
/// (Spin's `SPIN_MAX_INSTANCE_MEMORY`, 256 MiB by default): the worker's allocation
/// fails, the job fails with `resource_exhausted`, and no Spin process grows anywhere
/// near what the filter asked for (2 GiB without the cap, measured).
#[test]
fn a_job_that_wants_too_much_memory_is_stopped_at_the_instance_cap() {
    let app = TestApp::start();
    let (id, accepted) = app.submit(
        "json_query",
        json!({"filter": "[range(1e9)] | length", "input": null}),
    );
    assert_eq!(accepted.json()["dispatch"], "worker");
    let refused = wait_for(FINISH, || {
        app.component_stderr("job-worker")
            .contains("memory allocation of")
    });
    assert!(
        refused,
        "the worker's allocation should have failed at the cap:\n{}",
        app.log()
    );
    let peak_mib = app.spin_peak_rss_kib() / 1024;
    assert!(
        (1..768).contains(&peak_mib),
        "a Spin process peaked at {peak_mib} MiB"
    );
    // The trapped run fails the job at once (see tests/e2e_hard_limits.rs).
    let status = app.wait_final(&id, FINISH);
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("resource_exhausted")),
        "{status}"
    );
}

/// A Spin process whose instance loops (`def f: f; f`, where json_query cannot check its
/// deadline) ignores SIGTERM. Stopping `scripts/up` must still stop every Spin process it
/// started: it KILLs what is left after 3 s.
#[test]
fn stopping_scripts_up_stops_a_spin_process_stuck_in_a_loop() {
    let mut app = TestApp::start_with(Options {
        workers: 0,
        ..Options::default()
    });
    let (id, accepted) = app.submit("json_query", json!({"filter": "def f: f; f", "input": 1}));
    assert_eq!(accepted.json()["dispatch"], "inline");
    // The HTTP trigger runs the loop after the 202, for good. (Watch the log, not the
    // API: with an instance stuck in a loop, other requests to that Spin process can
    // stall; see the README.)
    let started = wait_for(FINISH, || {
        app.log()
            .lines()
            .any(|l| l.contains(id.as_str()) && l.contains("\"job_started\""))
    });
    assert!(started, "the inline run never started:\n{}", app.log());
    assert!(!app.spin_pids().is_empty());
    app.terminate_up();
    let gone = wait_for(Duration::from_secs(10), || app.spin_pids().is_empty());
    assert!(gone, "Spin processes left running: {:?}", app.spin_pids());
}
