//! Two complete data20 nodes on this machine, as on two machines: each has its own HTTP
//! process on its own port and its own job worker, and they share one job database and
//! one Redis.
//!
//! On real machines the shared database is libSQL (deploy/runtime-config.toml). No
//! package registry reachable here ships a libSQL server, so the nodes share one SQLite
//! file instead, through the same mechanism: node 2's runtime config points Spin's
//! `default` database at node 1's file, as a libSQL URL would point every machine at
//! one database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unsafe_code)] // setpgid, prctl(PR_SET_PDEATHSIG) and kill for node 2's processes.

use data20_e2e::{
    big_graph, example_params, free_port, repo_root, spawn_group, spin_manifest, spin_pids_under,
    wait_for, wait_until, Options, Reply, Subscriber, TestApp,
};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::Duration;

const FINISH: Duration = Duration::from_secs(30);

/// The second node: the two Spin processes `scripts/up` runs (the HTTP components under
/// one `spin up`, the job worker under another), with a state directory of its own.
///
/// Why not a second `scripts/up`: it puts the database in its state directory, and two
/// `scripts/up` sharing one state directory overwrite each other's pid files. And why
/// not a symlink to node 1's file: SQLite puts the WAL beside the name it opened, so a
/// symlink would give the two nodes two WALs for one database, which corrupts it.
struct SecondNode {
    base: String,
    dir: PathBuf,
    processes: Vec<Child>,
    agent: ureq::Agent,
}

impl SecondNode {
    /// Starts node 2 against `first`'s database and Redis, and waits until it answers
    /// and its worker has subscribed.
    fn start(first: &TestApp) -> SecondNode {
        let dir = first.dir.join("node2");
        std::fs::create_dir_all(&dir).unwrap();
        // The database: a local file that is node 1's.
        let runtime_config = dir.join("runtime-config.toml");
        std::fs::write(
            &runtime_config,
            format!(
                "[sqlite_database.default]\ntype = \"spin\"\npath = {path}\n",
                path = toml_string(&first.sqlite_path()),
            ),
        )
        .unwrap();
        let port = free_port();
        let spin_up = |log: &str| {
            let log = std::fs::File::create(dir.join(log)).unwrap();
            let mut cmd = Command::new("spin");
            cmd.current_dir(repo_root())
                .args(["up", "-f", "spin.toml"])
                .arg("--state-dir")
                .arg(dir.join("state"))
                .arg("--runtime-config-file")
                .arg(&runtime_config)
                // The settings scripts/up gives its processes, and the tests' rate limit.
                .env("SPIN_VARIABLE_REDIS_URL", first.redis.url())
                .env("SPIN_VARIABLE_RATE_LIMIT_MAX", "1000000")
                .env("SPIN_MAX_INSTANCE_MEMORY", "268435456")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            cmd
        };
        let mut http = spin_up("http.log");
        http.arg("--listen").arg(format!("127.0.0.1:{port}"));
        for component in http_components() {
            http.arg("-c").arg(component);
        }
        let mut worker = spin_up("worker.log");
        worker.args(["-c", "job-worker"]);
        let node = SecondNode {
            base: format!("http://127.0.0.1:{port}"),
            processes: vec![spawn_group(&mut http), spawn_group(&mut worker)],
            dir,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .redirects(0)
                .build(),
        };
        let health = format!("{}/api/health", node.base);
        let up = wait_for(Duration::from_secs(60), || {
            node.agent.get(&health).call().is_ok()
        });
        assert!(up, "node 2 did not answer /api/health:\n{}", node.log());
        node
    }

    fn log(&self) -> String {
        ["http.log", "worker.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- worker ---\n")
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let req = self
            .agent
            .request(method, &format!("{}{}", self.base, path))
            .set("content-type", "application/json");
        let result = match body {
            Some(b) => req.send_string(&b.to_string()),
            None => req.call(),
        };
        match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => Reply::read(r),
            Err(e) => panic!("node 2: {method} {path}: {e}\n{}", self.log()),
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    fn submit(&self, tool: &str, params: Value) -> String {
        let r = self.request(
            "POST",
            "/api/run",
            Some(&json!({"tool": tool, "params": params})),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.json()["dispatch"], "worker", "{}", r.text());
        r.json()["job_id"].as_str().unwrap().to_string()
    }

    /// Kills every process of the node with SIGKILL, as a machine that dies would:
    /// no process gets to finish its job, release its claim or say goodbye.
    fn kill(&mut self) {
        self.kill_processes();
        let gone = wait_for(Duration::from_secs(10), || self.spin_pids().is_empty());
        assert!(gone, "node 2 still has processes: {:?}", self.spin_pids());
    }

    fn kill_processes(&mut self) {
        for child in &self.processes {
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
        }
        for child in &mut self.processes {
            let _ = child.wait();
        }
        // `spin up` runs each trigger in a child process; make sure none outlived it.
        for pid in self.spin_pids() {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }

    /// The node's Spin processes, found by its directory on their command lines.
    fn spin_pids(&self) -> Vec<u32> {
        spin_pids_under(&self.dir)
    }
}

impl Drop for SecondNode {
    fn drop(&mut self) {
        self.kill_processes();
    }
}

/// The components spin.toml's HTTP triggers run: what scripts/up starts with `-c`.
fn http_components() -> BTreeSet<String> {
    spin_manifest()["trigger"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["component"].as_str().unwrap().to_string())
        .collect()
}

fn toml_string(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

/// The ids of every job a node lists, newest first.
fn listed_ids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect()
}

/// How many times each job got `event` among `events`.
fn count_events(events: &[Value], event: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events.iter().filter(|e| e["event"] == event) {
        *counts
            .entry(e["job_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

#[test]
fn jobs_submitted_to_either_node_run_exactly_once_and_both_nodes_see_them() {
    let app = TestApp::start();
    let node2 = SecondNode::start(&app);
    app.wait_for_workers(2);
    let sub = Subscriber::new(&app.redis.url());

    // The database is new: the first job of each node, sent at the same moment, makes
    // both nodes create the schema at once. Both must be accepted.
    let barrier = Barrier::new(2);
    let (first, second) = std::thread::scope(|s| {
        let on_node1 = s.spawn(|| {
            barrier.wait();
            app.submit("build_graph", example_params("build_graph")).0
        });
        let on_node2 = s.spawn(|| {
            barrier.wait();
            node2.submit("build_graph", example_params("build_graph"))
        });
        (on_node1.join().unwrap(), on_node2.join().unwrap())
    });
    let mut ids = vec![first, second];
    // Then alternately, one node after the other.
    for n in 0..10 {
        ids.push(if n % 2 == 0 {
            app.submit("build_graph", example_params("build_graph")).0
        } else {
            node2.submit("build_graph", example_params("build_graph"))
        });
    }

    for id in &ids {
        assert_eq!(app.wait_final(id, FINISH)["status"], "completed", "{id}");
    }
    let events = sub.drain(Duration::from_secs(2));
    let started = count_events(&events, "job_started");
    let completed = count_events(&events, "job_completed");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            started.get(id),
            Some(&1),
            "job {id} started {:?} times",
            started.get(id)
        );
        assert_eq!(
            completed.get(id),
            Some(&1),
            "job {id} completed {:?} times",
            completed.get(id)
        );
        // Both nodes read the same row: one claim recorded, one result.
        let on_node1 = app.get(&format!("/api/jobs/{id}")).json();
        let on_node2 = node2.get(&format!("/api/jobs/{id}")).json();
        for status in [&on_node1, &on_node2] {
            assert_eq!(status["status"], "completed", "{status}");
            assert_eq!(status["attempts"], 1, "{status}");
        }
        assert_eq!(on_node1["finished_at"], on_node2["finished_at"]);
        // The output is in the shared database: the node that did not take the job
        // serves it too.
        let other = if n % 2 == 0 {
            node2.get(&format!("/api/jobs/{id}/outputs/graph.json"))
        } else {
            app.get(&format!("/api/jobs/{id}/outputs/graph.json"))
        };
        assert_eq!(other.status, 200, "{id}: {}", other.text());
        other.json();
    }

    // Both nodes list the same jobs, in the same order, and exactly the ones submitted.
    let listed_by_node1 = listed_ids(&app.get("/api/jobs?limit=500"));
    let listed_by_node2 = listed_ids(&node2.get("/api/jobs?limit=500"));
    assert_eq!(listed_by_node1, listed_by_node2);
    assert_eq!(
        listed_by_node1.iter().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(listed_by_node1.len(), ids.len(), "a job is listed twice");
}

#[test]
fn killing_one_node_mid_job_leaves_no_job_unfinished() {
    let app = TestApp::start();
    let mut node2 = SecondNode::start(&app);
    app.wait_for_workers(2);
    let sub = Subscriber::new(&app.redis.url());

    // Slow jobs, submitted alternately to the two nodes.
    let ids: Vec<String> = (0..6)
        .map(|n| {
            if n % 2 == 0 {
                app.submit("build_graph", big_graph(20_000)).0
            } else {
                node2.submit("build_graph", big_graph(20_000))
            }
        })
        .collect();
    // A worker process runs one job at a time (Spin's Redis trigger is one lane per
    // process), and nothing else runs these jobs yet: two running at once means one of
    // them is on node 2's worker.
    let mut running = Vec::new();
    let both_busy = wait_for(FINISH, || {
        running = listed_ids(&app.get("/api/jobs?status=running"));
        running.len() >= 2
    });
    assert!(both_busy, "the two workers never ran a job each at once");
    let subscribed_before_kill = app.subscribers();
    node2.kill();
    assert!(
        node2
            .agent
            .get(&format!("{}/api/health", node2.base))
            .call()
            .is_err(),
        "node 2 still answers"
    );
    // Node 1's worker and this test's listener are left on the channel.
    wait_until(
        Duration::from_secs(5),
        "node 2's worker to drop off job_updates",
        || app.subscribers() == subscribed_before_kill - 1,
    );

    // Node 1 finishes everything: its own jobs, node 2's queued ones, and the one node
    // 2 was running once its lease (tool timeout + grace) has run out.
    let mut reruns = 0;
    for id in &ids {
        let status = app.wait_final(id, Duration::from_secs(90));
        assert_eq!(status["status"], "completed", "{status}");
        let attempts = status["attempts"].as_u64().unwrap();
        assert!((1..=2).contains(&attempts), "{status}");
        reruns += attempts - 1;
    }
    assert!(
        reruns >= 1,
        "no job was re-run, so none was running on node 2 when it died (running then: {running:?})"
    );
    let events = sub.drain(Duration::from_secs(2));
    let completed = count_events(&events, "job_completed");
    for id in &ids {
        assert_eq!(
            completed.get(id),
            Some(&1),
            "job {id} completed {:?} times",
            completed.get(id)
        );
    }
    let listed = listed_ids(&app.get("/api/jobs?status=completed&limit=500"));
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>()
    );
    // Nothing is left behind in any other state.
    assert_eq!(listed_ids(&app.get("/api/jobs?limit=500")).len(), ids.len());
}

#[test]
fn a_node_refuses_a_database_whose_schema_is_newer_than_it_knows() {
    // A database that a newer data20 migrated: its schema version is past every
    // migration this build has, and its tables are not the ones this build knows.
    let dir = std::env::temp_dir().join(format!("data20-newer-schema-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let newer = dir.join("newer-schema.sql");
    std::fs::write(
        &newer,
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);\n\
         INSERT INTO schema_version (version, applied_at) VALUES (99, 0);\n",
    )
    .unwrap();
    let app = TestApp::start_with(Options {
        http_args: vec!["--sqlite".into(), format!("@{}", newer.display())],
        ..Options::default()
    });
    let _ = std::fs::remove_dir_all(&dir);

    let refusal = |r: Reply| {
        let body = r.assert_error(503, "unavailable");
        let message = body["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("version 99") && message.contains("newer"),
            "{message}"
        );
    };
    refusal(app.get("/api/jobs"));
    refusal(app.post_json(
        "/api/run",
        &json!({"tool": "build_graph", "params": example_params("build_graph")}),
    ));
    // It wrote nothing: the list still finds no table of this build's, and refuses again.
    refusal(app.get("/api/jobs"));
    // The routes that need no job database keep answering.
    assert_eq!(app.get("/api/tools").status, 200);
}

/// A database made by an older data20 (schema version 2) with one finished job in it:
/// the job, its output and its events, as that version stored them.
fn version_2_database_with_a_job(job_id: &str, output: &str) -> String {
    let mut sql = String::new();
    for file in ["0001_init.sql", "0002_duration_index.sql"] {
        sql.push_str(&std::fs::read_to_string(repo_root().join("migrations").join(file)).unwrap());
        sql.push('\n');
    }
    // Finished a minute ago: recent enough that retention keeps it.
    let finished_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 60_000;
    let (created_ms, started_ms) = (finished_ms - 50, finished_ms - 40);
    let event = |kind: &str, status: &str| {
        json!({"event": kind, "job_id": job_id, "tool": "build_graph", "status": status,
               "timestamp": "2026-01-01T00:00:00.000Z", "source": "worker"})
        .to_string()
    };
    sql.push_str(&format!(
        "INSERT INTO jobs (id, tool, params, status, created_ms, started_ms, finished_ms, \
           duration_ms, attempts, runner, dispatch) \
         VALUES ('{job_id}', 'build_graph', '{{}}', 'completed', {created_ms}, {started_ms}, \
           {finished_ms}, 40, 1, 'worker:old', 'worker');\n\
         INSERT INTO job_outputs (job_id, name, content_type, size, content) \
         VALUES ('{job_id}', 'graph.json', 'application/json', {size}, '{output}');\n\
         INSERT INTO job_events (job_id, event, at_ms, payload) VALUES \
           ('{job_id}', 'job_created', {created_ms}, '{created}'), \
           ('{job_id}', 'job_started', {started_ms}, '{started}'), \
           ('{job_id}', 'job_completed', {finished_ms}, '{completed}');\n",
        size = output.len(),
        created = event("job_created", "queued"),
        started = event("job_started", "running"),
        completed = event("job_completed", "completed"),
    ));
    sql
}

#[test]
fn two_nodes_upgrading_an_older_database_at_once_keep_every_job_output_and_event() {
    let job_id = "0192f0c1-7b52-7cc0-8f3e-6f1c2a3b4c5d";
    let output = r#"{"nodes":3,"edges":2}"#;
    let dir = std::env::temp_dir().join(format!("data20-old-schema-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = dir.join("version-2.sql");
    std::fs::write(&old, version_2_database_with_a_job(job_id, output)).unwrap();
    let app = TestApp::start_with(Options {
        http_args: vec!["--sqlite".into(), format!("@{}", old.display())],
        ..Options::default()
    });
    let _ = std::fs::remove_dir_all(&dir);
    let node2 = SecondNode::start(&app);
    app.wait_for_workers(2);

    // Reading the job needs the newer columns: both nodes migrate, at the same moment.
    let barrier = Barrier::new(2);
    let path = format!("/api/jobs/{job_id}");
    let (on_node1, on_node2) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            barrier.wait();
            app.get(&path)
        });
        let b = s.spawn(|| {
            barrier.wait();
            node2.get(&path)
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    for reply in [&on_node1, &on_node2] {
        assert_eq!(reply.status, 200, "{}", reply.text());
        let status = reply.json();
        assert_eq!(status["status"], "completed", "{status}");
        // The rebuilt jobs table kept the rows that point at it.
        assert_eq!(
            status["output_files"][0]["name"], "graph.json",
            "the job lost its output in the upgrade: {status}"
        );
    }
    let downloaded = node2.get(&format!("/api/jobs/{job_id}/outputs/graph.json"));
    assert_eq!(downloaded.status, 200, "{}", downloaded.text());
    assert_eq!(downloaded.text(), output);
    let events = app.get(&format!("/api/jobs/{job_id}/events"));
    assert_eq!(
        events.sse_events(),
        ["job_created", "job_started", "job_completed"],
        "{}",
        events.text()
    );

    // The upgraded database takes new jobs on both nodes.
    let new_on_node1 = app.submit("build_graph", example_params("build_graph")).0;
    let new_on_node2 = node2.submit("build_graph", example_params("build_graph"));
    for id in [&new_on_node1, &new_on_node2] {
        assert_eq!(app.wait_final(id, FINISH)["status"], "completed");
    }
    assert_eq!(listed_ids(&node2.get("/api/jobs?limit=500")).len(), 3);
}
