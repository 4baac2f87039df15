//! Who may see what (closed mode, `api_token` set), end to end through `scripts/up`:
//! keys with scopes made and revoked over the API, jobs owned by the key that made
//! them, limits per key. Real Spin, real Redis, real SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_e2e::{wait_until, Options, Reply, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BOOTSTRAP: &str = "bootstrap-admin-token-0123456789";
const FINISH: Duration = Duration::from_secs(60);

fn closed(workers: usize, extra: &[(&str, &str)]) -> TestApp {
    let mut variables = vec![("api_token".to_string(), BOOTSTRAP.to_string())];
    variables.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestApp::start_with(Options {
        workers,
        variables,
        ..Options::default()
    })
}

/// A client holding one key.
struct Client<'a> {
    app: &'a TestApp,
    auth: String,
}

impl<'a> Client<'a> {
    fn new(app: &'a TestApp, key: &str) -> Client<'a> {
        Client {
            app,
            auth: format!("Bearer {key}"),
        }
    }

    fn admin(app: &'a TestApp) -> Client<'a> {
        Client::new(app, BOOTSTRAP)
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        let mut headers = vec![("authorization", self.auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.app
            .request(method, path, &headers, body.as_deref().map(str::as_bytes))
    }

    fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None)
    }

    /// Makes a key (this client must be admin); answers its id and secret.
    fn make_key(
        &self,
        name: &str,
        scopes: &[&str],
        rate_limit_max: Option<u64>,
    ) -> (String, String) {
        let token = self.auth.trim_start_matches("Bearer ");
        self.app.make_key(token, name, scopes, rate_limit_max)
    }

    fn submit(&self, tool: &str, params: Value) -> String {
        let r = self.send(
            "POST",
            "/api/run",
            Some(&json!({"tool": tool, "params": params})),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["job_id"].as_str().unwrap().to_string()
    }

    fn wait_final(&self, id: &str) -> Value {
        let mut last = Value::Null;
        wait_until(FINISH, &format!("job {id} to end"), || {
            let r = self.get(&format!("/api/jobs/{id}"));
            assert_eq!(r.status, 200, "{}", r.text());
            last = r.json();
            matches!(
                last["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        });
        last
    }

    fn listed(&self, query: &str) -> Vec<String> {
        let r = self.get(&format!("/api/jobs{query}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn two_keys_never_see_each_other_s_jobs_on_any_route() {
    let app = closed(1, &[]);
    let admin = Client::admin(&app);
    let (alice_id, alice_key) = admin.make_key("alice", &["read", "run"], None);
    let (_, bob_key) = admin.make_key("bob", &["read", "run"], None);
    let (alice, bob) = (Client::new(&app, &alice_key), Client::new(&app, &bob_key));

    let done = alice.submit("text_stats", json!({"text": "alice's words"}));
    let doc = alice.wait_final(&done);
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(doc["owner"], alice_id.as_str());
    // Read again: now from the cache (HIT), which must not serve it to bob either.
    let hit = alice.get(&format!("/api/jobs/{done}"));
    assert_eq!(hit.header("x-cache"), Some("HIT"), "{}", hit.text());
    let failed = alice.submit("build_graph", json!({"edges_csv": "no,header\n"}));
    assert_eq!(alice.wait_final(&failed)["status"], "failed");
    let output = doc["output_files"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(alice.get(&output).status, 200);
    assert_eq!(alice.get(&format!("/api/jobs/{done}/events")).status, 200);

    // Bob: every route answers exactly what a missing job gets.
    let missing = "0192f0c1-7b52-7cc0-8f3e-6f1c2a3b4c5d";
    for id in [done.as_str(), failed.as_str(), missing] {
        for (method, path) in [
            ("GET", format!("/api/jobs/{id}")),
            ("GET", format!("/api/jobs/{id}/events")),
            ("POST", format!("/api/jobs/{id}/cancel")),
            ("POST", format!("/api/jobs/{id}/retry")),
        ] {
            let r = bob.send(method, &path, (method == "POST").then_some(&json!({})));
            let body = r.assert_error(404, "not_found");
            assert_eq!(
                body["error"]["message"],
                format!("no job with id {id}"),
                "{method} {path}"
            );
        }
    }
    bob.get(&output).assert_error(404, "not_found");
    assert!(bob.listed("").is_empty(), "bob lists none of alice's jobs");
    bob.get(&format!("/api/jobs?owner={alice_id}"))
        .assert_error(403, "forbidden");

    // Alice's retry is hers; bob's own job is his alone.
    let retry = alice.send(
        "POST",
        &format!("/api/jobs/{failed}/retry"),
        Some(&json!({})),
    );
    assert_eq!(retry.status, 202, "{}", retry.text());
    let retried = retry.json()["job_id"].as_str().unwrap().to_string();
    bob.get(&format!("/api/jobs/{retried}"))
        .assert_error(404, "not_found");
    let bobs = bob.submit("text_stats", json!({"text": "bob's"}));
    bob.wait_final(&bobs);
    alice
        .get(&format!("/api/jobs/{bobs}"))
        .assert_error(404, "not_found");
    assert_eq!(bob.listed(""), std::slice::from_ref(&bobs));
    let mut alices = alice.listed("");
    alices.sort();
    let mut expected = vec![done.clone(), failed.clone(), retried.clone()];
    expected.sort();
    assert_eq!(alices, expected);
    // Admin sees all, and one owner's on asking.
    assert_eq!(admin.listed("").len(), 4);
    assert_eq!(admin.listed(&format!("?owner={alice_id}")).len(), 3);
    assert_eq!(admin.get(&format!("/api/jobs/{bobs}")).status, 200);

    // One Idempotency-Key, one body, two keys: two jobs.
    let post = |c: &Client| {
        let r = app.request(
            "POST",
            "/api/run",
            &[
                ("authorization", c.auth.as_str()),
                ("content-type", "application/json"),
                ("idempotency-key", "same-key"),
            ],
            Some(br#"{"tool": "text_stats", "params": {"text": "same"}}"#),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["job_id"].as_str().unwrap().to_string()
    };
    let (a1, b1, a2) = (post(&alice), post(&bob), post(&alice));
    assert_ne!(a1, b1, "idempotency keys are per API key");
    assert_eq!(a1, a2, "and replay within one key");
}

#[test]
fn scopes_decide_what_a_key_may_do() {
    let app = closed(0, &[]);
    let admin = Client::admin(&app);
    let (_, reader) = admin.make_key("reader", &["read"], None);
    let (_, runner) = admin.make_key("runner", &["run"], None);
    let (_, second_admin) = admin.make_key("ops", &["admin"], None);
    let (reader, runner, ops) = (
        Client::new(&app, &reader),
        Client::new(&app, &runner),
        Client::new(&app, &second_admin),
    );
    assert_eq!(reader.get("/api/tools").status, 200);
    assert_eq!(reader.get("/api/jobs").status, 200);
    reader
        .send(
            "POST",
            "/api/run",
            Some(&json!({"tool": "text_stats", "params": {"text": "x"}})),
        )
        .assert_error(403, "forbidden");
    runner.submit("text_stats", json!({"text": "x"}));
    runner.get("/api/tools").assert_error(403, "forbidden");
    for c in [&reader, &runner] {
        c.send(
            "POST",
            "/api/keys",
            Some(&json!({"name": "mine", "scopes": ["admin"]})),
        )
        .assert_error(403, "forbidden");
        c.get("/api/keys").assert_error(403, "forbidden");
        c.get("/api/stats").assert_error(403, "forbidden");
    }
    // An admin key made over the API is an admin: it makes keys and reads the stats.
    ops.make_key("from-ops", &["read"], Some(10));
    assert_eq!(ops.get("/api/stats").status, 200);
    let listed = ops.get("/api/keys").json();
    assert_eq!(listed["count"], 4, "{listed}");
    for k in listed["keys"].as_array().unwrap() {
        assert!(k.get("key").is_none() && k.get("digest").is_none(), "{k}");
    }
    // Bad key requests are 4xx with the JSON error shape.
    admin
        .send(
            "POST",
            "/api/keys",
            Some(&json!({"name": "", "scopes": ["read"]})),
        )
        .assert_error(422, "validation_failed");
    admin
        .send(
            "POST",
            "/api/keys",
            Some(&json!({"name": "x", "scopes": ["root"]})),
        )
        .assert_error(422, "validation_failed");
    admin
        .send("DELETE", "/api/keys/nope", None)
        .assert_error(404, "not_found");
    // Public routes need no key; the rest answer 401 with a Bearer challenge.
    for open in ["/api/health", "/api/openapi.json", "/api/docs"] {
        assert_eq!(app.get(open).status, 200, "{open}");
    }
    let r = app.get("/api/jobs");
    r.assert_error(401, "unauthorized");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
}

#[test]
fn a_revoked_key_fails_at_once_even_on_a_status_it_just_read_from_the_cache() {
    let app = closed(1, &[]);
    let admin = Client::admin(&app);
    let (id, key) = admin.make_key("soon-gone", &["read", "run"], None);
    let client = Client::new(&app, &key);
    let job = client.submit("text_stats", json!({"text": "x"}));
    client.wait_final(&job);
    let hit = client.get(&format!("/api/jobs/{job}"));
    assert_eq!(hit.header("x-cache"), Some("HIT"));

    assert_eq!(
        admin
            .send("DELETE", &format!("/api/keys/{id}"), None)
            .status,
        204
    );
    let revoked_at = Instant::now();
    let r = client.get(&format!("/api/jobs/{job}"));
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    r.assert_error(401, "unauthorized");
    client.get("/api/tools").assert_error(401, "unauthorized");
    // Revoking twice: nothing left to revoke. The list shows when it went.
    admin
        .send("DELETE", &format!("/api/keys/{id}"), None)
        .assert_error(404, "not_found");
    let listed = admin.get("/api/keys").json();
    assert!(listed["keys"][0]["revoked_at"].is_string(), "{listed}");
    // The job itself is still there for an admin.
    assert_eq!(admin.get(&format!("/api/jobs/{job}")).status, 200);
}

#[test]
fn a_key_is_never_stored_or_logged_in_clear() {
    let app = closed(1, &[]);
    let admin = Client::admin(&app);
    let (id, key) = admin.make_key("secretive", &["read", "run"], None);
    let client = Client::new(&app, &key);
    let job = client.submit("text_stats", json!({"text": "x"}));
    client.wait_final(&job);
    let secret = &key[key.len() - 64..];
    // SQLite: the database file and its write-ahead log, as bytes.
    let state = app.sqlite_path().parent().unwrap().to_path_buf();
    let mut seen = Vec::new();
    for entry in walk(&state) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            seen.push(entry.display().to_string());
        }
    }
    assert!(seen.is_empty(), "the key in clear in {seen:?}");
    assert!(!app.log().contains(secret), "the key in scripts/up's log");
    // Redis: every key and every string value.
    let mut conn = app.redis_conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    for k in keys {
        assert!(!k.contains(secret), "{k}");
        if let Ok(v) = redis::cmd("GET").arg(&k).query::<Option<String>>(&mut conn) {
            assert!(!v.unwrap_or_default().contains(secret), "{k}");
        }
    }
    // What is stored is the digest.
    let db = rusqlite::Connection::open(app.sqlite_path()).unwrap();
    let digest: String = db
        .query_row("SELECT digest FROM api_keys WHERE id = ?", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(digest, data20_domain::access::digest(&key));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `key` with its last character changed: the same shape, another secret. (Always
/// writing `0` there gave the key itself back when it already ended in `0`.)
fn other_last_character(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

#[test]
fn hostile_authorization_headers_get_400_or_401_never_5xx() {
    let app = closed(0, &[]);
    let (_, key) = Client::admin(&app).make_key("real", &["read"], None);
    let mut one_missing = key.clone();
    one_missing.pop();
    let long = format!("Bearer {}", "k".repeat(8 * 1024));
    let basic = format!("Basic {}", "YWxhZGRpbjpvcGVuc2VzYW1l");
    // (Bytes that are not UTF-8 never reach a component: Spin 4.0.2's HTTP trigger
    // answers them with an empty 500 itself, see README "Spin runtime".)
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("bearer without key", b"Bearer ".to_vec()),
        ("non-ASCII", "Bearer cl\u{e9}-\u{1f511}".as_bytes().to_vec()),
        ("8 KB", long.into_bytes()),
        ("Basic", basic.into_bytes()),
        (
            "one character missing",
            format!("Bearer {one_missing}").into_bytes(),
        ),
        (
            "a key's shape, another secret",
            format!("Bearer {}", other_last_character(&key)).into_bytes(),
        ),
    ];
    for (what, value) in cases {
        let mut req =
            b"GET /api/jobs HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: ".to_vec();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n\r\n");
        let (status, text) = app.raw(&req);
        assert!(
            matches!(status, 400 | 401 | 431),
            "{what}: {status}\n{text}"
        );
        if status != 431 {
            assert!(
                text.contains("\"error\""),
                "{what}: the JSON error shape\n{text}"
            );
        }
    }
    // The real key still works.
    assert_eq!(Client::new(&app, &key).get("/api/jobs").status, 200);
}

#[test]
fn each_key_has_its_own_limit_and_guessing_keys_is_limited_too() {
    let app = closed(0, &[("rate_limit_max", "1000")]);
    let admin = Client::admin(&app);
    let (_, tight) = admin.make_key("tight", &["read"], Some(5));
    let (_, other) = admin.make_key("other", &["read"], None);
    let (tight, other) = (Client::new(&app, &tight), Client::new(&app, &other));
    for i in 1..=5 {
        let r = tight.get("/api/tools");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
    }
    let sixth = tight.get("/api/tools");
    sixth.assert_error(429, "rate_limited");
    assert!(sixth.header("retry-after").is_some());
    let r = other.get("/api/tools");
    assert_eq!(r.status, 200, "another key goes on: {}", r.text());
    assert_eq!(r.header("x-ratelimit-limit"), Some("1000"));

    // Wrong keys from one IP: 401s, then 429s; a valid key is not held up by them.
    let statuses: Vec<u16> = (0..30)
        .map(|i| {
            app.request(
                "GET",
                "/api/tools",
                &[("authorization", &format!("Bearer guess-{i}"))],
                None,
            )
            .status
        })
        .collect();
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(other.get("/api/tools").status, 200);
}

#[test]
fn with_redis_down_keys_are_still_checked_and_nothing_is_let_in() {
    let mut app = closed(1, &[]);
    let admin = Client::admin(&app);
    let (id, key) = admin.make_key("steady", &["read", "run"], None);
    let (_, gone) = admin.make_key("gone", &["read"], None);
    let job = Client::new(&app, &key).submit("text_stats", json!({"text": "x"}));
    Client::new(&app, &key).wait_final(&job);
    let gone_id = admin.get("/api/keys").json()["keys"][1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.stop_redis();
    // Revoked while Redis is down: SQLite says so at once.
    assert_eq!(
        Client::admin(&app)
            .send("DELETE", &format!("/api/keys/{gone_id}"), None)
            .status,
        204
    );
    let client = Client::new(&app, &key);
    let r = client.get(&format!("/api/jobs/{job}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
    assert_eq!(r.json()["owner"], id.as_str());
    Client::new(&app, &gone)
        .get(&format!("/api/jobs/{job}"))
        .assert_error(401, "unauthorized");
    app.get(&format!("/api/jobs/{job}"))
        .assert_error(401, "unauthorized");
    let posted = client.send(
        "POST",
        "/api/run",
        Some(&json!({"tool": "text_stats", "params": {"text": "y"}})),
    );
    assert_eq!(posted.status, 202, "{}", posted.text());
    let id = posted.json()["job_id"].as_str().unwrap().to_string();
    app.restart_redis();
    assert_eq!(
        Client::new(&app, &key).wait_final(&id)["status"],
        "completed"
    );
}
