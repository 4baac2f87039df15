//! Hard limits end to end, through `scripts/up`: a hostile job never takes the service
//! down. Tools that loop are stopped from outside the WebAssembly (their worker process
//! is killed by `data20-supervisor` and replaced), jobs that trap their instance fail at
//! once, the API never runs tool code, and no job is lost or run twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_domain::limits::HARD_LIMIT_GRACE_MS;
use data20_e2e::{example_params, wait_for, Options, Subscriber, TestApp};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// json_query's and markdown_render's `timeout_s` in the registry.
const TIMEOUT_S: u64 = 10;

fn at(rfc3339: &Value) -> SystemTime {
    humantime::parse_rfc3339(rfc3339.as_str().unwrap()).unwrap()
}

/// From the job's creation to its end, by its own timestamps.
fn created_to_finished(status: &Value) -> Duration {
    at(&status["finished_at"])
        .duration_since(at(&status["created_at"]))
        .unwrap()
}

fn hostile_markdown() -> String {
    ">".repeat(100_000) + " deep"
}

/// The lines of `scripts/up`'s log where the HTTP app (source `api`) started a job.
fn api_runs(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("job transition") && l.contains("\"job_started\""))
        .filter(|l| l.contains("\"source\":\"api\""))
        .collect()
}

fn started_counts(events: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events.iter().filter(|e| e["event"] == "job_started") {
        *counts
            .entry(e["job_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

/// The scenario: three hostile jobs and a normal one, with status reads of all
/// of them every second and the catalogue read throughout.
#[test]
fn hostile_jobs_fail_within_the_hard_limit_while_the_api_keeps_answering() {
    let app = TestApp::start_with(Options {
        workers: 3,
        ..Options::default()
    });
    let sub = Subscriber::new(&app.redis.url());
    let (looping, _) = app.submit("json_query", json!({"filter": "def f: f; f", "input": 1}));
    let (counting, _) = app.submit(
        "json_query",
        json!({"filter": "last(range(1e12))", "input": null}),
    );
    let (nested, _) = app.submit("markdown_render", json!({"markdown": hostile_markdown()}));
    let (normal, accepted) = app.submit("build_graph", example_params("build_graph"));
    assert_eq!(accepted.json()["dispatch"], "worker");

    let quick = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let ids = [&looping, &counting, &nested, &normal];
    let mut finals: HashMap<&str, Value> = HashMap::new();
    let mut tools_reads = 0;
    let started = Instant::now();
    while finals.len() < ids.len() && started.elapsed() < Duration::from_secs(40) {
        let tick = Instant::now();
        let tools = quick.get(&format!("{}/api/tools", app.base)).call();
        match tools {
            Ok(r) => assert_eq!(r.status(), 200),
            Err(e) => panic!(
                "GET /api/tools did not answer within 2 s, {:?} in: {e}\n{}",
                started.elapsed(),
                app.log()
            ),
        }
        tools_reads += 1;
        let pending: Vec<&String> = ids
            .iter()
            .copied()
            .filter(|id| !finals.contains_key(id.as_str()))
            .collect();
        for id in pending {
            let r = quick
                .get(&format!("{}/api/jobs/{id}", app.base))
                .call()
                .unwrap_or_else(|e| panic!("status of {id} within 2 s: {e}"));
            let doc: Value = r.into_json().unwrap();
            if matches!(
                doc["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                finals.insert(id.as_str(), doc);
            }
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    assert_eq!(
        finals.len(),
        ids.len(),
        "not all final: {finals:?}\n{}",
        app.log()
    );
    assert!(tools_reads >= 10, "the catalogue was read throughout");

    let limit = Duration::from_secs(TIMEOUT_S) + Duration::from_millis(HARD_LIMIT_GRACE_MS as u64);
    for id in [&looping, &counting] {
        let doc = &finals[id.as_str()];
        assert_eq!(doc["status"], "failed", "{doc}");
        let error = doc["error"].as_str().unwrap();
        assert!(
            error.starts_with("timeout: json_query") && error.contains("hard limit"),
            "{doc}"
        );
        assert!(
            created_to_finished(doc) <= limit,
            "failed {:?} after it was posted, over {limit:?}: {doc}",
            created_to_finished(doc)
        );
        assert_eq!(doc["attempts"], 1, "never run again: {doc}");
    }
    let doc = &finals[nested.as_str()];
    assert_eq!(doc["status"], "failed", "{doc}");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("100000 deep; the limit is 100"),
        "{doc}"
    );
    assert!(created_to_finished(doc) <= limit, "{doc}");
    assert_eq!(finals[normal.as_str()]["status"], "completed");

    // A job posted afterwards runs, within 15 s, on a replaced worker or a free one.
    let (after, _) = app.submit("build_graph", example_params("build_graph"));
    assert_eq!(
        app.wait_final(&after, Duration::from_secs(15))["status"],
        "completed"
    );

    // Every job started once; the API process started none (reads never run jobs).
    let started = started_counts(&sub.drain(Duration::from_secs(1)));
    for id in [&looping, &counting, &nested, &normal, &after] {
        assert_eq!(started.get(id.as_str()), Some(&1), "{id}: {started:?}");
    }
    assert!(
        api_runs(&app.log()).is_empty(),
        "{:?}",
        api_runs(&app.log())
    );
    let stats = app.get("/api/stats").json();
    assert_eq!(stats["limits"]["hard_killed"], 2, "{}", stats["limits"]);
    // The supervisor replaced the killed workers.
    app.wait_for_workers(3);
}

/// `[repeat(.)]` fills the instance's memory (256 MiB under scripts/up) and traps it,
/// and `def f: 1 + f; f` exhausts its stack: each fails with `resource_exhausted` at
/// once, naming the cap, instead of sitting in `running` until its lease ends; the next
/// job runs on the same worker.
#[test]
fn jobs_that_trap_their_instance_fail_at_once_with_resource_exhausted() {
    let app = TestApp::start();
    for filter in ["[repeat(.)]", "def f: 1 + f; f"] {
        let (id, _) = app.submit("json_query", json!({"filter": filter, "input": 1}));
        let status = app.wait_final(&id, Duration::from_secs(5));
        assert_eq!(status["status"], "failed", "{filter}: {status}");
        let error = status["error"].as_str().unwrap();
        assert!(
            error.starts_with("resource_exhausted: ") && error.contains("256 MiB"),
            "{filter}: {status}"
        );
        assert_eq!(status["attempts"], 1, "{filter}: {status}");

        let (next, _) = app.submit("build_graph", example_params("build_graph"));
        assert_eq!(
            app.wait_final(&next, Duration::from_secs(10))["status"],
            "completed"
        );
    }
    let stats = app.get("/api/stats").json();
    assert_eq!(
        stats["limits"]["resource_exhausted"], 2,
        "{}",
        stats["limits"]
    );
    assert_eq!(stats["limits"]["hard_killed"], 0, "{}", stats["limits"]);
}

/// One worker: a looping job holds it, and three jobs wait behind it, their
/// `job_created` messages queued in the process that gets killed. None is lost, none
/// runs twice, and the looping one is not run again.
#[test]
fn a_hard_kill_loses_no_job_and_runs_none_twice() {
    let app = TestApp::start();
    let sub = Subscriber::new(&app.redis.url());
    let (looping, _) = app.submit("json_query", json!({"filter": "def f: f; f", "input": 1}));
    let queued: Vec<String> = (0..3)
        .map(|_| app.submit("build_graph", example_params("build_graph")).0)
        .collect();
    let status = app.wait_final(&looping, Duration::from_secs(30));
    assert_eq!(status["status"], "failed", "{status}");
    for id in &queued {
        let done = app.wait_final(id, Duration::from_secs(20));
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["attempts"], 1, "{done}");
    }
    // The killed job stays failed: nothing claims it again.
    std::thread::sleep(Duration::from_secs(2));
    let again = app.get(&format!("/api/jobs/{looping}")).json();
    assert_eq!(again["status"], "failed");
    assert_eq!(again["attempts"], 1, "{again}");
    let events = sub.drain(Duration::from_millis(500));
    let started = started_counts(&events);
    for id in queued.iter().chain([&looping]) {
        assert_eq!(started.get(id.as_str()), Some(&1), "{id}: {started:?}");
    }
    // Its failure was announced like any transition, and the SSE log has it.
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["job_id"] == looping.as_str() && e["event"] == "job_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0]["status"], "failed");
    assert_eq!(
        app.get(&format!("/api/jobs/{looping}/events")).sse_events(),
        ["job_created", "job_started", "job_failed"]
    );
    // The killed worker is back on job_queue.
    assert!(wait_for(Duration::from_secs(10), || app.subscribers() >= 1));
}

/// SpinKube's equivalent of the supervisor (deploy/spinkube/data20.yaml), run here the
/// way the kubelet runs it: one Spin process with the worker and `stats`, as the worker
/// SpinApp runs them, its `worker_id` set to a pod name; its liveness check polled
/// every second with a 1 s timeout, and the process killed at the first failure. The
/// API runs beside it with no worker of its own and `inline_runs` off, as the HTTP
/// SpinApp does.
#[test]
fn the_spinkube_liveness_check_is_the_hard_limit_of_a_worker_pod() {
    let app = TestApp::start_with(Options {
        workers: 0,
        variables: vec![("inline_runs".into(), "false".into())],
        ..Options::default()
    });
    let pod_port = data20_e2e::free_port();
    let start_pod = || {
        let log = std::fs::File::create(app.dir.join("pod.log")).unwrap();
        data20_e2e::spawn_group(
            std::process::Command::new("spin")
                .current_dir(data20_e2e::repo_root())
                .args(["up", "-f", "spin.toml", "-c", "job-worker", "-c", "stats"])
                .arg("--listen")
                .arg(format!("127.0.0.1:{pod_port}"))
                .arg("--state-dir")
                .arg(app.dir.join("state"))
                .args(["--variable", "worker_id=data20-worker-7d4f9-x2kqp"])
                .args(["--variable", "worker_memory_limit=268435456"])
                .env("SPIN_VARIABLE_REDIS_URL", app.redis.url())
                .env("SPIN_MAX_INSTANCE_MEMORY", "268435456")
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
    };
    let check_url = format!("http://127.0.0.1:{pod_port}/api/health/worker");
    let kubelet = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(1))
        .build();
    // One liveness check: the status, or 0 when it did not answer within the timeout.
    let check = || match kubelet.get(&check_url).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            let status = r.status();
            (status, r.into_json::<Value>().unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    };
    let mut pod = start_pod();
    data20_e2e::wait_until(Duration::from_secs(60), "the pod's worker", || {
        app.subscribers() >= 1
    });
    // The API's own process has no worker: its check is a 404, never a 503.
    app.get("/api/health/worker").assert_error(404, "not_found");
    // The kubelet's initial delay: the pod's HTTP listener may come up after its worker.
    data20_e2e::wait_until(Duration::from_secs(60), "the pod's check", || {
        check().0 == 200
    });

    // A loop: the check fails the job at its hard limit and asks for the restart.
    let (looping, accepted) =
        app.submit("json_query", json!({"filter": "def f: f; f", "input": 1}));
    assert_eq!(accepted.json()["dispatch"], "worker");
    let posted = Instant::now();
    let mut last = (200, Value::Null);
    while posted.elapsed() < Duration::from_secs(30) {
        let tick = Instant::now();
        last = check();
        if last.0 != 200 {
            break;
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    data20_e2e::kill_group(&mut pod);
    assert_eq!(
        last.0, 503,
        "the check should have asked for a restart: {last:?}"
    );
    assert_eq!(last.1["status"], "restart");
    assert_eq!(last.1["failed"], json!([looping]));
    let status = app.get(&format!("/api/jobs/{looping}")).json();
    assert_eq!(status["status"], "failed", "{status}");
    assert!(
        status["error"].as_str().unwrap().contains("hard limit"),
        "{status}"
    );
    let limit = Duration::from_secs(TIMEOUT_S) + Duration::from_millis(HARD_LIMIT_GRACE_MS as u64);
    assert!(created_to_finished(&status) <= limit, "{status}");

    // The container restarts under the same pod name. A job that waited while no
    // worker listened runs: the check wakes the worker for it.
    let (waiting, _) = app.submit("build_graph", example_params("build_graph"));
    let mut pod = start_pod();
    let mut checks = Vec::new();
    let done = wait_for(Duration::from_secs(60), || {
        checks.push(check().0);
        std::thread::sleep(Duration::from_millis(500));
        app.get(&format!("/api/jobs/{waiting}")).json()["status"] == "completed"
    });
    assert!(done, "the waiting job never ran; checks {checks:?}");

    // A trapped instance: the check's wake-up, handled once the instance is gone,
    // fails the job with resource_exhausted, and no restart is asked for.
    let (trapped, _) = app.submit("json_query", json!({"filter": "[repeat(.)]", "input": 1}));
    let mut statuses = Vec::new();
    let failed = wait_for(Duration::from_secs(5), || {
        statuses.push(check().0);
        app.get(&format!("/api/jobs/{trapped}")).json()["status"] == "failed"
    });
    let status = app.get(&format!("/api/jobs/{trapped}")).json();
    data20_e2e::kill_group(&mut pod);
    assert!(failed, "{status}");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .starts_with("resource_exhausted: "),
        "{status}"
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// A process's environment variable and command line, from /proc.
fn env_and_args(pid: u32) -> (HashMap<String, String>, Vec<String>) {
    let split = |path: String| -> Vec<String> {
        std::fs::read(path)
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let env = split(format!("/proc/{pid}/environ"))
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    (env, split(format!("/proc/{pid}/cmdline")))
}

/// `data20-supervisor` runs each worker on one Tokio thread per subscription loop (a
/// loop handles one message at a time; Spin's default, a thread per core, only adds
/// wake-ups between threads). The HTTP process keeps Spin's default: on one thread it
/// served half the cached reads a second (docs/BENCHMARKS.md).
#[test]
fn each_worker_runs_one_runtime_thread_per_loop_and_the_api_spin_s_default() {
    let app = TestApp::start_with(Options {
        workers: 1,
        worker_loops: Some(2),
        ..Options::default()
    });
    app.wait_for_workers(2);
    let processes: Vec<_> = app.spin_pids().into_iter().map(env_and_args).collect();
    let http: Vec<_> = processes
        .iter()
        .filter(|(_, args)| args.iter().any(|a| a == "tools"))
        .collect();
    let workers: Vec<_> = processes
        .iter()
        .filter(|(_, args)| args.iter().any(|a| a == "job-worker"))
        .collect();
    assert!(!http.is_empty() && !workers.is_empty(), "{processes:?}");
    for (env, args) in &workers {
        assert_eq!(
            env.get("TOKIO_WORKER_THREADS").map(String::as_str),
            Some("2"),
            "{args:?}"
        );
    }
    for (env, args) in &http {
        assert_eq!(env.get("TOKIO_WORKER_THREADS"), None, "{args:?}");
    }
}
