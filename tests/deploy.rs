//! The files in `deploy/` stay true to `spin.toml`: the SpinKube manifests run exactly
//! the app's components, bind only variables the app declares, probe routes the app
//! serves and load a runtime config that configures every store their components open;
//! the runtime-config template renders to what the example Secret holds, and Spin 4.0.2
//! itself accepts the rendered file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unsafe_code)] // setpgid, prctl(PR_SET_PDEATHSIG) and kill for the Spin process group.

use data20_e2e::{free_port, repo_root, require, spawn_group, wait_for};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use toml::Value as Toml;

fn spin_manifest() -> Toml {
    let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

/// Every document of a multi-document YAML file, as JSON values.
fn yaml_documents(path: &str) -> Vec<Json> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Json::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn spin_apps() -> Vec<Json> {
    let docs = yaml_documents("deploy/spinkube/data20.yaml");
    for doc in &docs {
        assert_eq!(doc["kind"], "SpinApp", "{doc}");
        assert_eq!(doc["apiVersion"], "core.spinkube.dev/v1alpha1", "{doc}");
    }
    assert_eq!(docs.len(), 2, "the HTTP app and the worker");
    docs
}

fn spin_app(name: &str) -> Json {
    spin_apps()
        .into_iter()
        .find(|app| app["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no SpinApp named {name}"))
}

fn example_secrets() -> Vec<Json> {
    let docs = yaml_documents("deploy/spinkube/secrets.example.yaml");
    for doc in &docs {
        assert_eq!(doc["kind"], "Secret", "{doc}");
    }
    docs
}

/// The value under `key` of the example Secret `name`.
fn example_secret(name: &str, key: &str) -> String {
    example_secrets()
        .iter()
        .find(|s| s["metadata"]["name"] == name)
        .and_then(|s| s["stringData"][key].as_str())
        .unwrap_or_else(|| panic!("the example Secrets have no {name}/{key}"))
        .to_string()
}

fn strings(v: &Json) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Components that a trigger of this kind (`http`, `redis`) runs in spin.toml.
fn triggered_components(manifest: &Toml, kind: &str) -> BTreeSet<String> {
    manifest["trigger"][kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["component"].as_str().unwrap().to_string())
        .collect()
}

/// The component spin.toml routes `path` to, the way Spin's router picks: an exact
/// route first, then the wildcard (`/prefix/...`) with the longest prefix.
fn routed_component(manifest: &Toml, path: &str) -> Option<String> {
    let routes = manifest["trigger"]["http"].as_array().unwrap();
    let exact = routes.iter().find(|t| t["route"].as_str() == Some(path));
    let wildcard = || {
        routes
            .iter()
            .filter_map(|t| {
                let prefix = t["route"].as_str()?.strip_suffix("/...")?;
                let matches = path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'));
                matches.then_some((prefix.len(), t))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, t)| t)
    };
    exact
        .or_else(wildcard)
        .map(|t| t["component"].as_str().unwrap().to_string())
}

#[test]
fn the_http_spinapp_runs_every_http_component_and_the_worker_spinapp_the_redis_trigger() {
    let manifest = spin_manifest();
    let declared: BTreeSet<String> = manifest["component"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let http = strings(&spin_app("data20")["spec"]["components"]);
    let worker = strings(&spin_app("data20-worker")["spec"]["components"]);
    for name in http.iter().chain(&worker) {
        assert!(
            declared.contains(name),
            "{name} is not a component of spin.toml"
        );
    }
    assert_eq!(http, triggered_components(&manifest, "http"));
    // The worker's two loops, and the component of its liveness check (the hard limit).
    assert_eq!(
        worker,
        BTreeSet::from([
            "job-worker".to_string(),
            "job-worker-loop2".to_string(),
            "stats".to_string()
        ])
    );
    let loops: BTreeSet<String> = worker.iter().filter(|c| *c != "stats").cloned().collect();
    assert!(loops.is_subset(&triggered_components(&manifest, "redis")));
    assert_eq!(
        routed_component(&manifest, "/api/health/worker").as_deref(),
        Some("stats")
    );
    // Between them, every component of the app is deployed (but the extra worker loops
    // a pod does not run: scripts/up's DATA20_WORKER_LOOPS 3 and 4); only stats runs in
    // both.
    assert_eq!(&http & &worker, BTreeSet::from(["stats".to_string()]));
    let deployable: BTreeSet<String> = declared
        .iter()
        .filter(|c| !matches!(c.as_str(), "job-worker-loop3" | "job-worker-loop4"))
        .cloned()
        .collect();
    assert_eq!(&http | &worker, deployable);

    for app in spin_apps() {
        let spec = &app["spec"];
        assert_eq!(spec["executor"], "containerd-shim-spin", "{app}");
        assert!(spec["replicas"].as_u64().is_some_and(|n| n >= 1), "{app}");
        // The same image for both: one `spin registry push` deploys both halves.
        assert_eq!(spec["image"], "ghcr.io/YOUR-ORG/data20:0.1.0", "{app}");
        // scripts/up's per-instance memory cap, carried over.
        assert_eq!(spec["invocationLimits"]["memory"], "256Mi", "{app}");
    }
}

#[test]
fn spinapp_variables_are_declared_in_spin_toml_used_by_their_components_and_secret_when_secret() {
    let manifest = spin_manifest();
    let declared = manifest["variables"].as_table().unwrap();
    for app in spin_apps() {
        let name = app["metadata"]["name"].as_str().unwrap();
        let components = strings(&app["spec"]["components"]);
        // What the app's components read: their variable templates, and the Redis
        // trigger's address.
        let mut read = String::new();
        for c in &components {
            if let Some(vars) = manifest["component"][c.as_str()].get("variables") {
                read.push_str(&vars.to_string());
            }
        }
        for t in manifest["trigger"]["redis"].as_array().unwrap() {
            if components.contains(t["component"].as_str().unwrap()) {
                read.push_str(t["address"].as_str().unwrap());
            }
        }
        // The pooled hot-read path is gone, and its switch with it.
        assert!(
            !app["spec"]["variables"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "redis_reads"),
            "{name} sets redis_reads, which the app no longer has"
        );
        let mut bound = BTreeSet::new();
        for var in app["spec"]["variables"].as_array().unwrap() {
            let var_name = var["name"].as_str().unwrap();
            assert!(bound.insert(var_name), "{name}: {var_name} is bound twice");
            let spec = declared
                .get(var_name)
                .unwrap_or_else(|| panic!("{name}: {var_name} is not in spin.toml [variables]"));
            assert!(
                read.contains(&format!("{{{{ {var_name} }}}}")),
                "{name}: none of {components:?} reads {var_name}"
            );
            let from_secret = &var["valueFrom"]["secretKeyRef"];
            if spec.get("secret").and_then(Toml::as_bool) == Some(true) {
                assert!(
                    from_secret.is_object() && var.get("value").is_none(),
                    "{name}: {var_name} is a secret: take it from a Secret, not a literal"
                );
            }
            if var["valueFrom"]["fieldRef"].is_object() {
                // The pod's own name: only a worker's id comes from there.
                assert_eq!(var_name, "worker_id", "{name}: {var}");
                assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
            } else if from_secret.is_object() {
                // The example Secrets define every key a SpinApp reads.
                example_secret(
                    from_secret["name"].as_str().unwrap(),
                    from_secret["key"].as_str().unwrap(),
                );
            } else {
                assert!(var["value"].is_string(), "{name}: {var}");
            }
        }
        // The default redis_url is the developer's localhost: every pod must be told.
        assert!(bound.contains("redis_url"), "{name} does not set redis_url");
    }
    // POST routes stay protected on the cluster.
    let http_vars = spin_app("data20")["spec"]["variables"].clone();
    assert!(http_vars
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "api_token"));
}

#[test]
fn the_http_spinapp_probes_routes_its_own_components_serve() {
    let manifest = spin_manifest();
    let app = spin_app("data20");
    let components = strings(&app["spec"]["components"]);
    for probe in ["readiness", "liveness"] {
        let path = app["spec"]["checks"][probe]["httpGet"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no {probe} probe"));
        let component = routed_component(&manifest, path)
            .unwrap_or_else(|| panic!("no route in spin.toml serves {probe} probe {path}"));
        assert!(
            components.contains(&component),
            "{probe} probe {path} goes to {component}, which the SpinApp does not run"
        );
    }
    // Readiness asks the database; liveness must not, or a database outage restarts
    // every pod.
    assert_eq!(
        routed_component(&manifest, "/api/health").as_deref(),
        Some("stats")
    );
    assert_eq!(
        app["spec"]["checks"]["readiness"]["httpGet"]["path"],
        "/api/health"
    );
    assert_eq!(
        routed_component(&manifest, "/").as_deref(),
        Some("dashboard")
    );
    assert_ne!(
        app["spec"]["checks"]["liveness"]["httpGet"]["path"],
        "/api/health"
    );
    // The matcher itself: a wildcard beats the catch-all, an exact route beats both.
    assert_eq!(
        routed_component(&manifest, "/api/jobs/x/events").as_deref(),
        Some("jobs")
    );
    assert_eq!(
        routed_component(&manifest, "/api/toolsx").as_deref(),
        Some("dashboard")
    );
}

/// The worker's liveness check is its hard limit: it must reach the worker's own
/// process (a component the worker SpinApp runs), probe every second, restart on the
/// first failure, and the worker must have an id to find its jobs by.
#[test]
fn the_worker_spinapp_checks_its_hard_limit_every_second() {
    let manifest = spin_manifest();
    let app = spin_app("data20-worker");
    let liveness = &app["spec"]["checks"]["liveness"];
    let path = liveness["httpGet"]["path"].as_str().unwrap();
    assert_eq!(path, "/api/health/worker");
    let component = routed_component(&manifest, path).unwrap();
    assert!(strings(&app["spec"]["components"]).contains(&component));
    assert_eq!(liveness["periodSeconds"], 1);
    assert_eq!(liveness["failureThreshold"], 1);
    let vars = app["spec"]["variables"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["name"] == "worker_id"));
    // The HTTP pods never run tool code.
    let http_vars = spin_app("data20")["spec"]["variables"].clone();
    assert!(http_vars
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "inline_runs" && v["value"] == "false"));
}

#[test]
fn the_spinapps_runtime_config_configures_every_store_their_components_open() {
    let manifest = spin_manifest();
    for app in spin_apps() {
        let name = app["metadata"]["name"].as_str().unwrap();
        let secret = app["spec"]["runtimeConfig"]["loadFromSecret"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} loads no runtime config Secret"));
        // SpinKube mounts this one key as the runtime config file.
        let config: Toml = toml::from_str(&example_secret(secret, "runtime-config.toml"))
            .unwrap_or_else(|e| panic!("{secret}/runtime-config.toml: {e}"));
        assert_eq!(
            config["sqlite_database"]["default"]["type"].as_str(),
            Some("libsql")
        );
        // Components reach Redis over outbound connections, not Spin's key-value store.
        assert!(
            config.get("key_value_store").is_none(),
            "{secret}/runtime-config.toml configures a key-value store"
        );
        for c in strings(&app["spec"]["components"]) {
            let component = &manifest["component"][c.as_str()];
            for (uses, section) in [
                ("sqlite_databases", "sqlite_database"),
                ("key_value_stores", "key_value_store"),
            ] {
                for label in component
                    .get(uses)
                    .and_then(Toml::as_array)
                    .into_iter()
                    .flatten()
                {
                    let label = label.as_str().unwrap();
                    assert!(
                        config.get(section).and_then(|s| s.get(label)).is_some(),
                        "{name}: {c} opens {uses} {label:?}, which the runtime config leaves \
                         on the pod's local disk"
                    );
                }
            }
        }
    }
}

fn kill_group(child: &mut Child) {
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

fn render(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(repo_root().join("deploy/render-runtime-config"));
    cmd.env_remove("DATA20_LIBSQL_URL")
        .env_remove("DATA20_LIBSQL_TOKEN")
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

#[test]
fn the_template_renders_to_what_the_example_secret_holds() {
    let example: Toml = toml::from_str(&example_secret(
        "data20-runtime-config",
        "runtime-config.toml",
    ))
    .unwrap();
    let sqlite = &example["sqlite_database"]["default"];
    let out = render(&[
        ("DATA20_LIBSQL_URL", sqlite["url"].as_str().unwrap()),
        ("DATA20_LIBSQL_TOKEN", sqlite["token"].as_str().unwrap()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Toml = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(rendered, example);

    // The template itself is TOML, with one placeholder per secret value.
    let template = std::fs::read_to_string(repo_root().join("deploy/runtime-config.toml")).unwrap();
    let template: Toml = toml::from_str(&template).unwrap();
    assert_eq!(
        template["sqlite_database"]["default"]["url"].as_str(),
        Some("${DATA20_LIBSQL_URL}")
    );
}

#[test]
fn rendering_refuses_missing_and_unsafe_values() {
    let good = [
        ("DATA20_LIBSQL_URL", "https://db.example.turso.io"),
        ("DATA20_LIBSQL_TOKEN", "eyJhbGciOiJFZERTQSJ9.e30.s&ig"),
    ];
    let out = render(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Toml = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    // Values arrive verbatim: `&` is not bash 5.2's "the match" in a replacement.
    assert_eq!(
        rendered["sqlite_database"]["default"]["token"].as_str(),
        Some("eyJhbGciOiJFZERTQSJ9.e30.s&ig")
    );
    // Only the libSQL database: no key-value store, no Redis URL to ask for.
    assert!(rendered.get("key_value_store").is_none(), "{rendered}");

    let refused = |env: &[(&str, &str)], says: &str| {
        let out = render(env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted {env:?}");
        assert!(out.stdout.is_empty(), "half a config printed for {env:?}");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
    };
    refused(&good[1..], "DATA20_LIBSQL_URL is not set");
    refused(
        &[good[0], ("DATA20_LIBSQL_TOKEN", "to\"ken")],
        "DATA20_LIBSQL_TOKEN contains a quote",
    );
    // Turso prints libsql:// URLs; Spin speaks HTTP(S) to libSQL only.
    refused(
        &[
            ("DATA20_LIBSQL_URL", "libsql://db.example.turso.io"),
            good[1],
        ],
        "must start with https://",
    );

    // A placeholder the script does not fill (an old template's Redis URL) is refused,
    // not printed for Spin to read as a literal.
    let old = std::env::temp_dir().join(format!(
        "data20-old-runtime-config-{}-{}.toml",
        std::process::id(),
        free_port()
    ));
    std::fs::write(
        &old,
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"${DATA20_REDIS_URL}\"\n",
    )
    .unwrap();
    let out = Command::new(repo_root().join("deploy/render-runtime-config"))
        .arg(&old)
        .env_remove("DATA20_REDIS_URL")
        .envs(good.iter().copied())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&old);
    assert!(!out.status.success(), "rendered an unknown placeholder");
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a placeholder this script does not know"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Spin 4.0.2 loads the rendered runtime config, and the app's `default` database is
/// then libSQL, not a file: with no libSQL server at the URL, the health route reports
/// the database down and no SQLite file appears in the state directory.
#[test]
fn spin_accepts_the_rendered_runtime_config_and_the_app_uses_libsql() {
    require(
        "spin",
        "install Spin (scripts/setup uses the official installer; see README, 'Spin runtime')",
    );
    let dir = std::env::temp_dir().join(format!(
        "data20-deploy-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let nothing_listens = format!("http://127.0.0.1:{}", free_port());
    let out = render(&[
        ("DATA20_LIBSQL_URL", &nothing_listens),
        ("DATA20_LIBSQL_TOKEN", "not-a-real-token"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.join("runtime-config.toml");
    std::fs::write(&config, &out.stdout).unwrap();

    let port = free_port();
    let log = std::fs::File::create(dir.join("spin.log")).unwrap();
    let mut spin = spawn_group(
        Command::new("spin")
            .current_dir(repo_root())
            .args(["up", "-f", "spin.toml", "-c", "stats", "-c", "dashboard"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--runtime-config-file")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let base = format!("http://127.0.0.1:{port}");
    let started = wait_for(Duration::from_secs(60), || {
        agent.get(&format!("{base}/")).call().is_ok()
    });
    let spin_log = || std::fs::read_to_string(dir.join("spin.log")).unwrap_or_default();
    let health = started.then(|| match agent.get(&format!("{base}/api/health")).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            (r.status(), r.into_json::<Json>().unwrap_or_default())
        }
        Err(e) => panic!("GET /api/health: {e}"),
    });
    kill_group(&mut spin);
    let log = spin_log();
    assert!(
        started,
        "spin up refused the rendered runtime config:\n{log}"
    );
    assert!(log.contains("[sqlite_database.default: libsql]"), "{log}");
    assert!(!log.contains("[key_value_store.default: redis]"), "{log}");
    let (status, body) = health.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["sqlite"], "down", "{body}");
    assert!(
        !dir.join("state/sqlite_db.db").exists(),
        "the app opened a local SQLite file instead of libSQL"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
