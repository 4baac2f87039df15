//! Instances that live across requests (Spin 4 reuses the WASIp3 components' instances,
//! up to 16 requests at once): what one request leaves in an instance never reaches
//! another, memory stays flat, and the compatibility build (spin-sdk 5.2, spin.cloud.toml)
//! still does the whole job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_e2e::{example_params, Options, TestApp};
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const FINISH: Duration = Duration::from_secs(60);

/// Sends `per_client` requests for each of two clients at once, interleaved, `rounds`
/// times each; `request(client)` is one request. Answers `(client, reply)` for every one.
fn interleaved(
    app: &Arc<TestApp>,
    per_client: usize,
    rounds: usize,
    request: impl Fn(&TestApp, usize) -> data20_e2e::Reply + Send + Sync + 'static,
) -> Vec<(usize, data20_e2e::Reply)> {
    let barrier = Arc::new(Barrier::new(2 * per_client));
    let request = Arc::new(request);
    let threads: Vec<_> = (0..2 * per_client)
        .map(|t| {
            let (app, barrier, request) =
                (Arc::clone(app), Arc::clone(&barrier), Arc::clone(&request));
            std::thread::spawn(move || {
                let client = t % 2;
                barrier.wait();
                (0..rounds)
                    .map(|_| (client, request(&app, client)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// Two clients (told apart by X-Forwarded-For, which the app trusts here) post 16 at a
/// time each, interleaved, with the same Idempotency-Key and different bodies. Each sees
/// only its own job and its own rate-limit count.
#[test]
fn two_clients_interleaving_never_share_idempotency_replays_or_rate_limits() {
    let app = Arc::new(TestApp::start_with(Options {
        workers: 1,
        variables: vec![
            ("trust_forwarded_for".into(), "true".into()),
            ("rate_limit_max".into(), "1000".into()),
        ],
        ..Options::default()
    }));
    const PER_CLIENT: usize = 16;
    const ROUNDS: usize = 4;
    let results = interleaved(&app, PER_CLIENT, ROUNDS, |app, client| {
        let ip = ["198.51.100.1", "198.51.100.2"][client];
        let text = ["client a", "client b c"][client];
        let body = json!({"tool": "text_stats", "params": {"text": text}}).to_string();
        app.request(
            "POST",
            "/api/run",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", ip),
                ("idempotency-key", "shared-key"),
            ],
            Some(body.as_bytes()),
        )
    });
    for client in 0..2 {
        let mine: Vec<_> = results
            .iter()
            .filter(|r| r.0 == client)
            .map(|r| &r.1)
            .collect();
        assert!(
            mine.iter().all(|r| r.status == 202),
            "client {client}: {:?}",
            mine.iter()
                .map(|r| (r.status, r.text()))
                .collect::<Vec<_>>()
        );
        // Every one of the client's 64 posts names one job: its own.
        let jobs: std::collections::HashSet<String> = mine
            .iter()
            .map(|r| r.json()["job_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(jobs.len(), 1, "client {client}: {jobs:?}");
        let job = jobs.into_iter().next().unwrap();
        assert_eq!(app.wait_final(&job, FINISH)["status"], "completed");
        let stats = app
            .get(&format!("/api/jobs/{job}/outputs/stats.json"))
            .json();
        assert_eq!(stats["words"], [2, 3][client], "client {client}: {stats}");
        // Its rate-limit count covers its own 64 requests, not the other's.
        let least = mine
            .iter()
            .filter_map(|r| r.header("x-ratelimit-remaining")?.parse::<u64>().ok())
            .min()
            .unwrap();
        assert_eq!(
            least,
            1000 - (PER_CLIENT * ROUNDS) as u64,
            "client {client}"
        );
    }
}

/// With `api_token` set, a client with the token and one without post 16 at a time each,
/// interleaved: the token never rubs off on the other client's requests.
#[test]
fn a_token_never_outlives_its_request() {
    let app = Arc::new(TestApp::start_with(Options {
        workers: 1,
        variables: vec![("api_token".into(), "t0ken-a".into())],
        ..Options::default()
    }));
    let results = interleaved(&app, 16, 4, |app, client| {
        let body = json!({"tool": "text_stats", "params": {"text": "x"}}).to_string();
        let mut headers = vec![("content-type", "application/json")];
        if client == 0 {
            headers.push(("authorization", "Bearer t0ken-a"));
        }
        app.request("POST", "/api/run", &headers, Some(body.as_bytes()))
    });
    // The keyless client gets 401s, then 429s once its IP has had its share of 401s
    // (`gate::UNAUTHORIZED_MAX`): never a 202.
    let mut refused = 0;
    for (client, reply) in &results {
        if *client == 0 {
            assert_eq!(reply.status, 202, "client 0: {}", reply.text());
        } else {
            assert!(
                matches!(reply.status, 401 | 429),
                "client 1: {}",
                reply.text()
            );
            refused += usize::from(reply.status == 401);
        }
    }
    assert!(refused > 0, "the keyless client was answered 401 first");
}

/// Redis stops and starts twice while 4 clients post jobs and read tools through
/// `scripts/up`: every request is answered (no connection error, no 5xx), and every job
/// that got a 202 completes.
#[test]
fn redis_outages_under_load_drop_no_request_and_lose_no_job() {
    outages_under_load(
        TestApp::start_with(Options {
            workers: 1,
            ..Options::default()
        }),
        None,
    );
}

/// The same in closed mode: every client holds a key, checked in SQLite on every
/// request while Redis is down too.
#[test]
fn redis_outages_under_load_drop_no_request_and_lose_no_job_in_closed_mode() {
    let app = TestApp::start_with(Options {
        workers: 1,
        variables: vec![("api_token".into(), "outage-admin".into())],
        ..Options::default()
    });
    let (_, key) = app.make_key("outage-admin", "poster", &["read", "run"], None);
    app.use_key(&key);
    outages_under_load(app, Some(key));
}

fn outages_under_load(mut app: TestApp, key: Option<String>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let auth = key.map(|k| format!("Bearer {k}"));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let stop = Arc::clone(&stop);
            let base = app.base.clone();
            let auth = auth.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(30))
                    .build();
                let (mut jobs, mut failures, mut answered) = (Vec::new(), Vec::new(), 0u32);
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let with_key = |r: ureq::Request| match &auth {
                        Some(a) => r.set("authorization", a),
                        None => r,
                    };
                    let result = if i.is_multiple_of(2) {
                        with_key(agent.post(&format!("{base}/api/run")))
                            .set("content-type", "application/json")
                            .send_string(
                                &json!({"tool": "text_stats", "params": {"text": format!("client {c} post {i}")}})
                                    .to_string(),
                            )
                    } else {
                        with_key(agent.get(&format!("{base}/api/tools"))).call()
                    };
                    match result {
                        Ok(r) | Err(ureq::Error::Status(_, r)) => {
                            answered += 1;
                            let status = r.status();
                            let body = r.into_string().unwrap_or_default();
                            if status >= 500 {
                                failures.push(format!("{status}: {body}"));
                            } else if status == 202 {
                                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                                jobs.push(v["job_id"].as_str().unwrap().to_string());
                            }
                        }
                        Err(e) => failures.push(format!("transport: {e}")),
                    }
                }
                (jobs, failures, answered)
            })
        })
        .collect();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(700));
        app.redis.stop();
        std::thread::sleep(Duration::from_millis(1500));
        app.restart_redis();
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut jobs, mut failures, mut answered) = (Vec::new(), Vec::new(), 0);
    for c in clients {
        let (j, f, a) = c.join().unwrap();
        jobs.extend(j);
        failures.extend(f);
        answered += a;
    }
    assert!(
        failures.is_empty(),
        "{} of {answered} requests failed: {failures:?}",
        failures.len()
    );
    assert!(
        jobs.len() >= 8,
        "only {} jobs accepted in {answered} requests",
        jobs.len()
    );
    for id in &jobs {
        assert_eq!(
            app.wait_final(id, FINISH)["status"],
            "completed",
            "job {id}"
        );
    }
    eprintln!(
        "{answered} requests answered, {} jobs accepted and completed",
        jobs.len()
    );
}

/// 20 000 cached reads, 16 at a time: once Spin's instance pool has warmed up, another
/// 7 000 requests leave its resident memory within 16 MiB of where the 7 000 before left
/// it, so nothing a request leaves accumulates. (Spin's RSS climbs over the first tens of
/// thousands of requests as its pooling allocator touches more instance slots, ever more
/// slowly: +12, +10, +5, +1, +2 MiB per 40 000 requests, measured by hand.)
#[test]
fn twenty_thousand_requests_leave_spins_memory_flat() {
    let app = Arc::new(TestApp::start_with(Options {
        workers: 0,
        ..Options::default()
    }));
    let (id, _) = app.submit("text_stats", json!({"text": "memory"}));
    app.wait_final(&id, FINISH);
    let burst = |total: usize| {
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let app = Arc::clone(&app);
                let id = id.clone();
                std::thread::spawn(move || {
                    for i in 0..total / 16 {
                        let path = if (t + i) % 2 == 0 {
                            "/api/tools".to_string()
                        } else {
                            format!("/api/jobs/{id}")
                        };
                        assert_eq!(app.get(&path).status, 200);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    let rss_kib = || -> u64 {
        app.spin_pids()
            .into_iter()
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .sum()
    };
    burst(6_000);
    let warm = rss_kib();
    burst(7_000);
    let middle = rss_kib();
    burst(7_000);
    let after = rss_kib();
    eprintln!(
        "Spin RSS: {warm} KiB after 6 000 requests, {middle} KiB after 13 000, {after} KiB after 20 000"
    );
    assert!(warm > 0, "no Spin process found");
    assert!(
        after <= middle + 16 * 1024,
        "Spin's memory grew from {middle} KiB to {after} KiB over the last 7 000 requests \
         ({warm} KiB after the first 6 000)"
    );
}

/// The registry a reused instance serves is the one Redis holds now: a new entry is
/// served on the next request, and once it is gone the files are read again.
#[test]
fn a_registry_change_in_redis_is_served_at_once() {
    let app = TestApp::start_with(Options {
        workers: 0,
        ..Options::default()
    });
    let first = app.get("/api/tools");
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let mut registry = first.json();
    let count = registry["tools"].as_array().unwrap().len();
    registry["tools"].as_array_mut().unwrap().truncate(1);
    let mut redis = app.redis_conn();
    let _: () = redis::cmd("SET")
        .arg("tool_registry")
        .arg(registry.to_string())
        .arg("EX")
        .arg(60)
        .query(&mut redis)
        .unwrap();
    let changed = app.get("/api/tools");
    assert_eq!(changed.header("x-cache"), Some("HIT"));
    assert_eq!(changed.json()["tools"].as_array().unwrap().len(), 1);
    assert_ne!(changed.header("etag"), first.header("etag"));
    let _: () = redis::cmd("DEL")
        .arg("tool_registry")
        .query(&mut redis)
        .unwrap();
    let files = app.get("/api/tools");
    assert_eq!(files.header("x-cache"), Some("MISS"));
    assert_eq!(files.json()["tools"].as_array().unwrap().len(), count);
    assert_eq!(files.header("etag"), first.header("etag"));
}

/// The compatibility build (spin-sdk 5.2, `spin up -f spin.cloud.toml`): tools, a job run
/// to completion, stats, and a Redis outage it rides out.
#[test]
fn the_compatibility_build_serves_tools_jobs_stats_and_rides_out_an_outage() {
    let mut app = TestApp::start_with(Options {
        workers: 0,
        cloud_manifest: true,
        ..Options::default()
    });
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("MISS"));
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("HIT"));
    let (id, accepted) = app.submit("build_graph", example_params("build_graph"));
    assert_eq!(accepted.status, 202);
    assert_eq!(app.wait_final(&id, FINISH)["status"], "completed");
    let sse = app.get(&format!("/api/jobs/{id}/events"));
    assert_eq!(
        sse.sse_events(),
        ["job_created", "job_started", "job_completed"]
    );
    let stats = app.get("/api/stats");
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json()["jobs"]["by_status"]["completed"], 1);

    app.stop_redis();
    let r = app.get("/api/tools");
    assert_eq!((r.status, r.header("x-cache")), (200, Some("BYPASS")));
    let (down_id, accepted) = app.submit("text_stats", json!({"text": "redis is away"}));
    assert_eq!(accepted.status, 202);
    assert_eq!(app.wait_final(&down_id, FINISH)["status"], "completed");
    assert_eq!(app.get("/api/stats").json()["redis"]["available"], false);

    app.restart_redis();
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("MISS"));
    assert_eq!(app.get("/api/tools").header("x-cache"), Some("HIT"));
}
