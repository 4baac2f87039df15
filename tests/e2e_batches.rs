//! The worker's batches end to end (issue 20): claims of many jobs at once, each job
//! started, failed or cancelled on its own, endings recorded together; several
//! subscription loops per worker process; a worker killed mid-batch. Real Spin, real
//! Redis, real SQLite, through `scripts/up`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_e2e::{big_graph, wait_until, Options, Subscriber, TestApp};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const FINISH: Duration = Duration::from_secs(60);

fn status_of(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/jobs/{id}")).json()
}

/// Each job's transitions on `job_updates` (progress reports left out), in the order
/// they came.
fn kinds_by_job(events: &[Value]) -> HashMap<String, Vec<String>> {
    let mut by_job: HashMap<String, Vec<String>> = HashMap::new();
    for e in events {
        if let (Some(id), Some(kind)) = (e["job_id"].as_str(), e["event"].as_str()) {
            if kind == "job_progress" {
                continue;
            }
            by_job.entry(id.into()).or_default().push(kind.into());
        }
    }
    by_job
}

fn runner_of(app: &TestApp, id: &str) -> String {
    let conn = rusqlite::Connection::open(app.sqlite_path()).unwrap();
    conn.query_row("SELECT runner FROM jobs WHERE id = ?", [id], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_batch_ends_a_failing_and_a_cancelled_job_alone_and_completes_the_rest() {
    let app = TestApp::start_with(Options {
        workers: 1,
        worker_loops: Some(1),
        ..Options::default()
    });
    let sub = Subscriber::new(&app.redis.url());
    // The only loop is busy with this one while the jobs behind it are posted.
    let (busy, _) = app.submit("build_graph", big_graph(20_000));
    wait_until(Duration::from_secs(20), "the first job to run", || {
        status_of(&app, &busy)["status"] == "running"
    });
    let (slow, _) = app.submit("build_graph", big_graph(20_000));
    let (first, _) = app.submit("text_stats", json!({"text": "one two"}));
    let (failing, _) = app.submit("build_graph", json!({"edges_csv": "no,header\n"}));
    let (cancelled, _) = app.submit("text_stats", json!({"text": "never counted"}));
    let (last, _) = app.submit("text_stats", json!({"text": "three"}));
    let batch = [&first, &failing, &last];

    // Once the busy job ends, the slow one (parameters past the quick size) is claimed
    // alone; the quick ones behind it wait queued, not claimed, so cancelling one then
    // stops it before it runs, and the rest are claimed together once the slow one ends.
    wait_until(
        Duration::from_secs(30),
        "the slow job to be claimed",
        || status_of(&app, &slow)["status"] == "running",
    );
    assert_eq!(
        status_of(&app, &first)["status"],
        "queued",
        "not claimed with it"
    );
    let cancel = app.post_json(&format!("/api/jobs/{cancelled}/cancel"), &json!({}));
    assert!(
        matches!(cancel.status, 200 | 202),
        "{} {}",
        cancel.status,
        cancel.text()
    );
    let finals: HashMap<&str, Value> = batch
        .iter()
        .chain([&&slow, &&cancelled])
        .map(|id| (id.as_str(), app.wait_final(id, FINISH)))
        .collect();
    assert_eq!(finals[slow.as_str()]["status"], "completed");
    assert_eq!(finals[first.as_str()]["status"], "completed");
    assert_eq!(finals[last.as_str()]["status"], "completed");
    assert_eq!(
        finals[failing.as_str()]["status"],
        "failed",
        "{}",
        finals[failing.as_str()]
    );
    assert_eq!(finals[cancelled.as_str()]["status"], "cancelled");
    assert_eq!(finals[cancelled.as_str()]["attempts"], 0, "it never ran");
    assert_eq!(
        finals[first.as_str()]["output_files"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // One claim for the three quick ones, the failing one included; the slow one had
    // its own.
    let runner = runner_of(&app, &first);
    for id in batch {
        assert_eq!(
            runner_of(&app, id),
            runner,
            "{id} was claimed with the others"
        );
    }
    assert_ne!(runner_of(&app, &slow), runner);
    assert_ne!(runner_of(&app, &busy), runner);

    // Every job has its own events, in order, each once.
    let by_job = kinds_by_job(&sub.drain(Duration::from_secs(1)));
    for id in [&slow, &first, &last] {
        assert_eq!(
            by_job[id.as_str()],
            ["job_created", "job_started", "job_completed"],
            "{id}"
        );
    }
    assert_eq!(
        by_job[failing.as_str()],
        ["job_created", "job_started", "job_failed"]
    );
    assert_eq!(by_job[cancelled.as_str()], ["job_created", "job_cancelled"]);
    // The events the SSE route replays from SQLite say the same.
    let sse = app.get(&format!("/api/jobs/{first}/events"));
    assert_eq!(
        sse.sse_events(),
        ["job_created", "job_started", "job_completed"]
    );
}

#[test]
fn two_thousand_jobs_from_eight_clients_run_once_on_two_processes_of_three_loops() {
    let app = Arc::new(TestApp::start_with(Options {
        workers: 2,
        worker_loops: Some(3),
        ..Options::default()
    }));
    // Two processes, three loops each: six subscriptions on job_updates.
    app.wait_for_workers(6);
    // What the workers are woken with: announcements on job_queue.
    let announcements = Subscriber::on(&app.redis.url(), "job_queue");
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let app = app.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|i| {
                        let (id, accepted) = app
                            .submit("text_stats", json!({"text": format!("client {c} job {i}")}));
                        assert_eq!(accepted.status, 202, "{}", accepted.text());
                        id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2_000);

    let conn = rusqlite::Connection::open(app.sqlite_path()).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    wait_until(
        Duration::from_secs(120),
        "all 2 000 jobs to complete",
        || count("SELECT COUNT(*) FROM jobs WHERE status = 'completed'") == 2_000,
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM jobs WHERE attempts != 1"),
        0,
        "each ran once"
    );
    // A job is announced only while no announcement is on its way to the workers
    // (`keys::JOB_QUEUE_WOKEN`): far fewer wake-ups than jobs, and none of them lost.
    let heard = announcements.drain(Duration::from_millis(500)).len();
    assert!(
        (1..1_000).contains(&heard),
        "{heard} announcements for 2 000 jobs"
    );
    eprintln!("{heard} announcements on job_queue for 2 000 jobs");
    // Exactly one start and one completion recorded per job.
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM (SELECT job_id FROM job_events GROUP BY job_id \
             HAVING SUM(event = 'job_started') != 1 OR SUM(event = 'job_completed') != 1)"
        ),
        0
    );
    // The work was shared by both processes and by more than one loop of each.
    let mut stmt = conn.prepare("SELECT DISTINCT runner FROM jobs").unwrap();
    // `worker:{worker_id}:loop{n}:{run}` → `worker:{worker_id}:loop{n}`.
    let loops: HashSet<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap().split(':').take(3).collect::<Vec<_>>().join(":"))
        .collect();
    let processes: HashSet<&str> = loops.iter().filter_map(|l| l.split(':').nth(1)).collect();
    assert_eq!(processes.len(), 2, "{loops:?}");
    assert!(
        loops.len() > 2,
        "more than one loop per process ran jobs: {loops:?}"
    );
}

/// A `build_graph` job of about 14 KiB, under the quick size (16 KiB): a few tens of
/// milliseconds of run, so four of them fill one claim and each starts on its own.
fn quick_graph() -> Value {
    let graph = big_graph(390);
    assert!(graph.to_string().len() <= 16 * 1024 && graph.to_string().len() > 12 * 1024);
    graph
}

#[test]
fn a_worker_killed_mid_batch_loses_nothing() {
    let app = TestApp::start_with(Options {
        workers: 1,
        worker_loops: Some(1),
        ..Options::default()
    });
    let sub = Subscriber::new(&app.redis.url());
    let (busy, _) = app.submit("build_graph", big_graph(20_000));
    wait_until(Duration::from_secs(20), "the first job to run", || {
        status_of(&app, &busy)["status"] == "running"
    });
    // One claim of four quick jobs once the busy one ends, run one after the other.
    let ids: Vec<String> = (0..4)
        .map(|_| app.submit("build_graph", quick_graph()).0)
        .collect();
    assert!(
        sub.wait_for_event(&ids[0], "job_started", Duration::from_secs(60)),
        "the batch started"
    );
    app.kill_worker(1);
    let conn = rusqlite::Connection::open(app.sqlite_path()).unwrap();
    let claimed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND deadline_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(claimed >= 1, "jobs waited claimed behind the running one");

    // The supervisor starts the worker again and ends the dead one's leases: every
    // claimed job runs to completion, the one cut short included.
    for id in ids.iter().chain([&busy]) {
        let doc = app.wait_final(id, Duration::from_secs(90));
        assert_eq!(doc["status"], "completed", "{doc}");
    }
    let never_started_twice: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM jobs WHERE attempts > 1 AND id != ?",
            [&ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        never_started_twice, 0,
        "only the job that was running ran again"
    );
}

/// A long job is claimed alone, so the quick jobs posted behind it are not held by
/// it: the next free worker runs them while it runs.
#[test]
fn quick_jobs_posted_behind_a_long_run_are_taken_by_a_free_worker() {
    let app = TestApp::start_with(Options {
        workers: 2,
        worker_loops: Some(1),
        ..Options::default()
    });
    // One job on each process while the rest is posted.
    for _ in 0..2 {
        let (busy, _) = app.submit("build_graph", big_graph(20_000));
        wait_until(Duration::from_secs(20), "a busy job to run", || {
            status_of(&app, &busy)["status"] == "running"
        });
    }
    let (slow, _) = app.submit("build_graph", big_graph(20_000));
    let quick: Vec<String> = (0..3)
        .map(|i| {
            app.submit("text_stats", json!({"text": format!("quick {i}")}))
                .0
        })
        .collect();
    let slow_doc = app.wait_final(&slow, FINISH);
    assert_eq!(slow_doc["status"], "completed", "{slow_doc}");
    let ended =
        |doc: &Value| humantime::parse_rfc3339(doc["finished_at"].as_str().unwrap()).unwrap();
    for id in &quick {
        let doc = app.wait_final(id, FINISH);
        assert_eq!(doc["status"], "completed", "{doc}");
        assert_eq!(doc["attempts"], 1, "{doc}");
        assert!(
            ended(&doc) < ended(&slow_doc),
            "{id} did not end before the long job posted ahead of it: {doc} {slow_doc}"
        );
        assert_ne!(
            runner_of(&app, id),
            runner_of(&app, &slow),
            "another claim ran it"
        );
    }
}

#[test]
fn concurrent_submissions_share_commits_and_each_job_keeps_its_own_events() {
    let app = Arc::new(TestApp::start_with(Options {
        workers: 1,
        ..Options::default()
    }));
    let events = Subscriber::new(&app.redis.url());
    // 16 clients at once: as many requests as Spin gives one WASIp3 instance.
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let app = app.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let (id, accepted) = app
                            .submit("text_stats", json!({"text": format!("client {c} job {i}")}));
                        assert_eq!(accepted.status, 202, "{}", accepted.text());
                        assert_eq!(
                            accepted.header("location"),
                            Some(format!("/api/jobs/{id}").as_str())
                        );
                        (id, format!("client {c} job {i}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let posted: Vec<(String, String)> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_eq!(
        posted
            .iter()
            .map(|(id, _)| id)
            .collect::<HashSet<_>>()
            .len(),
        400
    );
    let conn = rusqlite::Connection::open(app.sqlite_path()).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    wait_until(FINISH, "all 400 jobs to complete", || {
        count("SELECT COUNT(*) FROM jobs WHERE status = 'completed'") == 400
    });
    // Each job got its own params (a batch does not mix its rows up) ...
    let mut stmt = conn
        .prepare("SELECT params FROM jobs WHERE id = ?")
        .unwrap();
    for (id, text) in &posted {
        let params: String = stmt.query_row([id], |r| r.get(0)).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&params).unwrap(),
            json!({"text": text})
        );
    }
    // ... and its own created, started and completed events: once each on
    // job_updates (where a worker may announce its start before the API's Lua call
    // announces the creation), in that order in SQLite (what the SSE route replays).
    let heard = events.drain(Duration::from_secs(1));
    let kinds = kinds_by_job(&heard);
    for (id, _) in &posted {
        let mut got = kinds.get(id).cloned().unwrap_or_default();
        got.sort();
        assert_eq!(
            got,
            ["job_completed", "job_created", "job_started"].map(String::from),
            "events of {id}"
        );
    }
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM (SELECT job_id, group_concat(event, ',' ORDER BY seq) AS kinds \
             FROM job_events GROUP BY job_id) \
             WHERE kinds != 'job_created,job_started,job_completed'"
        ),
        0
    );
    // Concurrent requests shared commits: fewer commits than jobs.
    let stats = app.get("/api/stats").json();
    let submissions = &stats["submissions"];
    eprintln!("submissions: {submissions}");
    assert_eq!(submissions["jobs"], 400, "{stats}");
    let commits = submissions["commits"].as_i64().unwrap();
    assert!(
        (1..400).contains(&commits),
        "400 jobs from 16 concurrent clients took {commits} commits"
    );
}
