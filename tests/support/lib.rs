//! `TestApp`: one data20 deployment for a test, made of real parts.
//!
//! - a `redis-server` on a free loopback port, with no persistence, stoppable and
//!   restartable on the same port;
//! - `scripts/up`, the shipped launcher: the HTTP components under one `spin up` on a
//!   free loopback port, the job worker(s) under another, with their own state dir
//!   (so their own SQLite file).
//!
//! Every process is started in its own process group and asked to die with the test
//! process, and `Drop` kills the groups, so nothing outlives a failing test.
#![cfg(not(target_arch = "wasm32"))]
#![allow(unsafe_code)] // prctl(PR_SET_PDEATHSIG) in pre_exec; see `spawn_group`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support

use serde_json::Value;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The pids of the Spin processes (`spin up` and its `spin trigger` children) whose
/// command lines name `dir` (their state directory).
pub fn spin_pids_under(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("spin") && cmdline.contains(dir.as_ref())).then_some(pid)
        })
        .collect()
}

/// `spin.toml`, parsed.
pub fn spin_manifest() -> toml::Value {
    let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails with an install hint when a tool the end-to-end tests need is missing.
pub fn require(tool: &str, hint: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} is not on PATH: {hint}");
}

/// Spawns `cmd` as the leader of a new process group that receives SIGTERM when this
/// test process dies, however it dies.
pub fn spawn_group(cmd: &mut Command) -> Child {
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Stops `child`'s process group: SIGTERM, up to 5 s, then SIGKILL.
pub fn kill_group(child: &mut Child) {
    let pgid = child.id() as i32;
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
}

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    pub fn start(dir: &Path) -> RedisServer {
        require(
            "redis-server",
            "run scripts/setup (it installs the redis-server package)",
        );
        let mut r = RedisServer {
            port: free_port(),
            child: None,
            dir: dir.to_path_buf(),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it (again) on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = spawn_group(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                ])
                .current_dir(&self.dir)
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        self.child = Some(child);
        wait_until(Duration::from_secs(10), "redis to answer PING", || {
            self.conn_opt()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
                .is_some()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }

    fn conn_opt(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()
    }

    pub fn conn(&self) -> redis::Connection {
        self.conn_opt().expect("redis connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Options for [`TestApp::start_with`].
#[derive(Clone)]
pub struct Options {
    pub workers: usize,
    pub variables: Vec<(String, String)>,
    /// Run `spin.cloud.toml` (HTTP components only, as on Fermyon Cloud) with a plain
    /// `spin up` instead of `scripts/up`.
    pub cloud_manifest: bool,
    /// Extra arguments for the HTTP `spin up` (e.g. `--sqlite @file`).
    pub http_args: Vec<String>,
    /// Subscription loops per worker process (`DATA20_WORKER_LOOPS`); `None`: the default.
    pub worker_loops: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 1,
            variables: Vec::new(),
            cloud_manifest: false,
            http_args: Vec::new(),
            worker_loops: None,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub redis: RedisServer,
    pub dir: PathBuf,
    up: Option<Child>,
    options: Options,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer …` by [`TestApp::request`] when a request names
    /// no `authorization` of its own (closed mode; see [`TestApp::use_key`]).
    bearer: std::sync::Mutex<Option<String>>,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Reads a whole answer (any status) into a `Reply`.
    pub fn read(resp: ureq::Response) -> Reply {
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
            .collect();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `event:` names of a Server-Sent Events body, in order.
    pub fn sse_events(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("event: ").map(str::to_string))
            .collect()
    }

    /// Asserts the SPEC's error shape with the given status and code.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(self
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"));
        v
    }
}

impl TestApp {
    pub fn start() -> TestApp {
        TestApp::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> TestApp {
        require(
            "spin",
            "install Spin (scripts/setup uses the official installer; see README, 'Spin runtime')",
        );
        let root = repo_root();
        // spin.cloud.toml runs the compatibility build (spin-sdk 5.2) from target/compat.
        let (target, build) = if options.cloud_manifest {
            ("target/compat", "spin build -f spin.cloud.toml")
        } else {
            ("target", "spin build")
        };
        for wasm in ["tools", "run", "jobs", "stats", "dashboard", "job_worker"] {
            if options.cloud_manifest && wasm == "job_worker" {
                continue;
            }
            let p = root.join(format!("{target}/wasm32-wasip2/release/{wasm}.wasm"));
            assert!(
                p.exists(),
                "{} is missing: run `{build}` first (the test command does)",
                p.display()
            );
        }
        let dir =
            std::env::temp_dir().join(format!("data20-e2e-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let redis = RedisServer::start(&dir);
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .redirects(0)
            .build();
        let mut app = TestApp {
            base: String::new(),
            redis,
            dir,
            up: None,
            options,
            agent,
            bearer: std::sync::Mutex::new(None),
        };
        app.start_up();
        app
    }

    fn start_up(&mut self) {
        let port = free_port();
        self.base = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(self.dir.join("up.log")).unwrap();
        let mut cmd = if self.options.cloud_manifest {
            let mut c = Command::new("spin");
            c.current_dir(repo_root())
                .arg("up")
                .arg("-f")
                .arg("spin.cloud.toml");
            c.arg("--listen").arg(format!("127.0.0.1:{port}"));
            c.arg("--state-dir").arg(self.dir.join("state"));
            c
        } else {
            Command::new(repo_root().join("scripts/up"))
        };
        cmd.args(&self.options.http_args);
        cmd.env("DATA20_LISTEN", format!("127.0.0.1:{port}"))
            .env("DATA20_STATE_DIR", self.dir.join("state"))
            .env("DATA20_WORKERS", self.options.workers.to_string())
            .env("SPIN_VARIABLE_REDIS_URL", self.redis.url())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(loops) = self.options.worker_loops {
            cmd.env("DATA20_WORKER_LOOPS", loops.to_string());
        }
        // Tests poll hard; a test about rate limiting sets its own limit.
        cmd.env("SPIN_VARIABLE_RATE_LIMIT_MAX", "1000000");
        for (k, v) in &self.options.variables {
            cmd.env(format!("SPIN_VARIABLE_{}", k.to_uppercase()), v);
        }
        self.up = Some(spawn_group(&mut cmd));
        let health = format!("{}/api/health", self.base);
        wait_until(
            Duration::from_secs(60),
            "the HTTP app to answer /api/health",
            || self.agent.get(&health).call().is_ok(),
        );
        if self.options.workers > 0 && !self.options.cloud_manifest {
            self.wait_for_workers(self.options.workers);
        }
    }

    /// Waits until `n` worker loops are subscribed to `job_queue`.
    pub fn wait_for_workers(&self, n: usize) {
        wait_until(
            Duration::from_secs(60),
            &format!("{n} worker(s) to subscribe"),
            || self.subscribers() >= n,
        );
    }

    pub fn subscribers(&self) -> usize {
        let mut c = self.redis.conn();
        let v: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("job_queue")
            .query(&mut c)
            .unwrap_or_default();
        match v.get(1) {
            Some(redis::Value::Int(n)) => *n as usize,
            _ => 0,
        }
    }

    /// Kills worker `n` (1-based) with SIGKILL: its `spin up` and the `spin trigger
    /// redis` process that `spin up` runs the component in, as a crash would.
    pub fn kill_worker(&self, n: usize) {
        let pid = self.worker_pids()[n - 1];
        let children = Command::new("pgrep")
            .arg("-P")
            .arg(pid.to_string())
            .output()
            .unwrap();
        let mut pids: Vec<i32> = String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert!(
            !pids.is_empty(),
            "worker {n} (pid {pid}) has no trigger process"
        );
        pids.push(pid);
        for p in pids {
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
    }

    /// PIDs of the worker `spin up` processes, as `scripts/up` recorded them.
    pub fn worker_pids(&self) -> Vec<i32> {
        (1..=self.options.workers)
            .filter_map(|n| {
                std::fs::read_to_string(self.dir.join(format!("state/worker-{n}.pid"))).ok()
            })
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.join("state/sqlite_db.db")
    }

    /// What a component wrote to stderr (Spin keeps it under the state dir).
    pub fn component_stderr(&self, component: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("state/logs/{component}_stderr.txt")))
            .unwrap_or_default()
    }

    /// The pids of this app's Spin processes (`spin up` and its `spin trigger` children),
    /// found by the state directory on their command lines.
    pub fn spin_pids(&self) -> Vec<u32> {
        spin_pids_under(&self.dir.join("state"))
    }

    /// The largest peak resident set (VmHWM, KiB) among this app's Spin processes.
    pub fn spin_peak_rss_kib(&self) -> u64 {
        self.spin_pids()
            .into_iter()
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .max()
            .unwrap_or(0)
    }

    /// Sends SIGTERM to `scripts/up` alone, as Ctrl-C or a service manager would, and
    /// waits for it to exit: stopping its Spin processes is its job.
    pub fn terminate_up(&mut self) {
        let mut up = self.up.take().expect("the app is running");
        unsafe {
            libc::kill(up.id() as i32, libc::SIGTERM);
        }
        let exited = wait_for(Duration::from_secs(10), || {
            matches!(up.try_wait(), Ok(Some(_)))
        });
        if !exited {
            kill_group(&mut up);
        }
        assert!(exited, "scripts/up did not exit within 10 s of SIGTERM");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("up.log")).unwrap_or_default()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut req = self
            .agent
            .request(method, &format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let bearer = self.bearer.lock().unwrap().clone();
        if let Some(key) = bearer.filter(|_| {
            !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        }) {
            req = req.set("authorization", &format!("Bearer {key}"));
        }
        let result = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => Reply::read(r),
            Err(e) => panic!("{method} {path}: {e}\n--- app log ---\n{}", self.log()),
        }
    }

    /// Sends raw bytes (for headers no HTTP client library will send) and answers the
    /// status and body.
    pub fn raw(&self, request: &[u8]) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    /// From now on every helper request carries this key (closed mode).
    pub fn use_key(&self, key: &str) {
        *self.bearer.lock().unwrap() = Some(key.to_string());
    }

    /// Makes an API key (the app in closed mode with `admin_token`); answers its id
    /// and its secret.
    pub fn make_key(
        &self,
        admin_token: &str,
        name: &str,
        scopes: &[&str],
        rate_limit_max: Option<u64>,
    ) -> (String, String) {
        let body =
            serde_json::json!({"name": name, "scopes": scopes, "rate_limit_max": rate_limit_max})
                .to_string();
        let auth = format!("Bearer {admin_token}");
        let r = self.request(
            "POST",
            "/api/keys",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        assert_eq!(v["name"], name);
        assert_eq!(v["scopes"].as_array().unwrap().len(), scopes.len());
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }

    /// Submits a job and answers its id.
    pub fn submit(&self, tool: &str, params: Value) -> (String, Reply) {
        let r = self.post_json(
            "/api/run",
            &serde_json::json!({"tool": tool, "params": params}),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        (r.json()["job_id"].as_str().unwrap().to_string(), r)
    }

    /// Polls the job until it is final; answers its status document.
    pub fn wait_final(&self, job_id: &str, within: Duration) -> Value {
        let mut last = Value::Null;
        let done = wait_for(within, || {
            let r = self.get(&format!("/api/jobs/{job_id}"));
            assert_eq!(r.status, 200, "{}", r.text());
            last = r.json();
            matches!(
                last["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        });
        assert!(
            done,
            "job {job_id} did not finish within {within:?}: {last}\n--- app log ---\n{}",
            self.log()
        );
        last
    }

    pub fn redis_conn(&self) -> redis::Connection {
        self.redis.conn()
    }

    /// Stops Redis and waits until the API reports it (`/api/health` degraded).
    pub fn stop_redis(&mut self) {
        self.redis.stop();
        self.wait_health("degraded");
    }

    /// Starts Redis again (same port, empty) and waits until the API says `ok`.
    pub fn restart_redis(&mut self) {
        self.redis.restart();
        self.wait_health("ok");
    }

    fn wait_health(&self, want: &str) {
        self.wait_answer("/api/health", &format!("to say {want}"), |_, body| {
            body["status"] == want
        });
    }

    /// Polls GET `path` (2 s per try, network errors tolerated: the app may be
    /// switching read paths) until `ok(status, body)`, for up to 30 s.
    pub fn wait_answer(&self, path: &str, what: &str, ok: impl Fn(u16, &Value) -> bool) {
        let quick = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let url = format!("{}{path}", self.base);
        wait_until(
            Duration::from_secs(30),
            &format!("{path} {what}"),
            || match quick.get(&url).call() {
                Ok(r) | Err(ureq::Error::Status(_, r)) => {
                    let status = r.status();
                    let body = r.into_json::<Value>().unwrap_or(Value::Null);
                    ok(status, &body)
                }
                Err(_) => false,
            },
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut c) = self.up.take() {
            kill_group(&mut c);
        }
        // Whatever outlived its process group (a test that stopped scripts/up itself).
        for pid in self.spin_pids() {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        self.redis.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("test state kept in {}", self.dir.display());
        }
    }
}

/// Polls `f` until true or the time is up; answers whether it became true.
pub fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_until(within: Duration, what: &str, f: impl FnMut() -> bool) {
    assert!(
        wait_for(within, f),
        "timed out after {within:?} waiting for {what}"
    );
}

/// A subscriber on `job_updates`, collecting events in the background.
pub struct Subscriber {
    rx: std::sync::mpsc::Receiver<Value>,
}

impl Subscriber {
    pub fn new(redis_url: &str) -> Subscriber {
        Subscriber::on(redis_url, "job_updates")
    }

    /// A subscriber on `channel` (`job_queue`: one the API counts as a worker).
    pub fn on(redis_url: &str, channel: &'static str) -> Subscriber {
        let client = redis::Client::open(redis_url).unwrap();
        let mut conn = client.get_connection().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe(channel).unwrap();
            pubsub
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let _ = ready_tx.send(());
            loop {
                match pubsub.get_message() {
                    Ok(msg) => {
                        let payload: String = msg.get_payload().unwrap_or_default();
                        let v = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.is_timeout() => continue,
                    Err(_) => return,
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        Subscriber { rx }
    }

    /// Events for `job_id` until one with a final status, within `within`.
    pub fn events_for(&self, job_id: &str, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            if let Ok(v) = self.rx.recv_timeout(Duration::from_millis(100)) {
                if v["job_id"] == job_id {
                    let done = matches!(
                        v["event"].as_str(),
                        Some("job_completed" | "job_failed" | "job_cancelled")
                    );
                    out.push(v);
                    if done {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Waits for `job_id`'s `event`, within `within`; answers whether it came.
    pub fn wait_for_event(&self, job_id: &str, event: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(v) = self.rx.recv_timeout(Duration::from_millis(100)) {
                if v["job_id"] == job_id && v["event"] == event {
                    return true;
                }
            }
        }
        false
    }

    /// Every event received within `within`.
    pub fn drain(&self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            if let Ok(v) = self.rx.recv_timeout(Duration::from_millis(100)) {
                out.push(v);
            }
        }
        out
    }
}

/// The example parameters of a registry tool, read from the registry file.
pub fn example_params(tool: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(format!("registry/{tool}.json"))).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["examples"][0]["params"].clone()
}

/// A `build_graph` job on a graph of `edges` edges among 5 000 nodes: big enough at
/// 20 000 that the tool runs for a few seconds inside WebAssembly (reporting progress).
pub fn big_graph(edges: usize) -> Value {
    let edges: Vec<Value> = (0..edges)
        .map(|i| serde_json::json!({"source": format!("n{}", i % 5000), "target": format!("n{}", (i * 7919 + 13) % 5000)}))
        .collect();
    serde_json::json!({"edges": edges, "title": "big"})
}
