//! The two manifests stay in step: `spin.cloud.toml` is `spin.toml` minus the Redis
//! trigger and the worker, with the same HTTP routes, components and variables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_e2e::repo_root;
use toml::Value;

fn manifest(name: &str) -> Value {
    toml::from_str(&std::fs::read_to_string(repo_root().join(name)).unwrap()).unwrap()
}

#[test]
fn cloud_manifest_matches_the_local_one_without_the_worker() {
    let local = manifest("spin.toml");
    let cloud = manifest("spin.cloud.toml");
    assert_eq!(local["variables"], cloud["variables"]);
    assert_eq!(local["trigger"]["http"], cloud["trigger"]["http"]);
    assert!(
        cloud["trigger"].get("redis").is_none(),
        "Fermyon Cloud runs no Redis trigger"
    );
    assert_eq!(
        local["trigger"]["redis"][0]["channel"].as_str(),
        Some("job_queue")
    );
    let mut local_components = local["component"].as_table().unwrap().clone();
    assert!(local_components.remove("job-worker").is_some());
    local_components.retain(|name, _| !name.starts_with("job-worker-loop"));
    for (name, component) in cloud["component"].as_table().unwrap() {
        let mine = &local_components[name];
        // The same component on the compatibility line (spin-sdk 5.2), built into its own
        // target dir from the same crate.
        assert_eq!(
            component["source"].as_str().map(str::to_string),
            mine["source"]
                .as_str()
                .map(|s| s.replace("target/", "target/compat/")),
            "component {name}: source"
        );
        assert_eq!(
            component["build"]["command"].as_str().map(str::to_string),
            mine["build"]["command"].as_str().map(|c| format!(
                "{c} --no-default-features --features sdk5 --target-dir target/compat"
            )),
            "component {name}: build command"
        );
        for key in [
            "files",
            "allowed_outbound_hosts",
            "sqlite_databases",
            "key_value_stores",
            "variables",
        ] {
            assert_eq!(
                mine.get(key),
                component.get(key),
                "component {name}, key {key}"
            );
        }
    }
    assert_eq!(
        local_components.len(),
        cloud["component"].as_table().unwrap().len()
    );
}

/// Each extra subscription loop is the worker again (same source, files, hosts,
/// database and variables, plus its `worker_loop`), on both channels, at an address of
/// its own on the same Redis: Spin runs one loop per distinct address.
#[test]
fn every_worker_loop_is_the_worker_on_an_address_of_its_own() {
    let local = manifest("spin.toml");
    let components = local["component"].as_table().unwrap();
    let worker = &components["job-worker"];
    let triggers = local["trigger"]["redis"].as_array().unwrap();
    let mut addresses = std::collections::BTreeSet::new();
    for n in 1..=4 {
        let name = match n {
            1 => "job-worker".to_string(),
            n => format!("job-worker-loop{n}"),
        };
        let component = &components[&name];
        for key in [
            "source",
            "files",
            "allowed_outbound_hosts",
            "sqlite_databases",
        ] {
            assert_eq!(component.get(key), worker.get(key), "{name}: {key}");
        }
        let mut vars = component["variables"].as_table().unwrap().clone();
        if n > 1 {
            assert_eq!(
                vars.remove("worker_loop")
                    .and_then(|v| v.as_str().map(str::to_string)),
                Some(n.to_string()),
                "{name}"
            );
        }
        assert_eq!(
            &Value::Table(vars),
            &worker["variables"],
            "{name}: variables"
        );
        let mine: Vec<&Value> = triggers
            .iter()
            .filter(|t| t["component"].as_str() == Some(&name))
            .collect();
        let channels: Vec<&str> = mine.iter().filter_map(|t| t["channel"].as_str()).collect();
        assert_eq!(channels, ["job_queue", "job_wakeups"], "{name}");
        let address = mine[0]["address"].as_str().unwrap();
        assert!(
            mine.iter().all(|t| t["address"].as_str() == Some(address)),
            "{name}"
        );
        assert!(address.starts_with("{{ redis_url }}"), "{name}: {address}");
        assert!(
            addresses.insert(address.to_string()),
            "{name} shares {address}"
        );
    }
}

#[test]
fn every_component_reads_redis_url_from_the_variable() {
    // The dashboard serves files and talks to nothing.
    for (name, c) in manifest("spin.toml")["component"]
        .as_table()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n != "dashboard")
    {
        assert_eq!(
            c["allowed_outbound_hosts"],
            Value::Array(vec!["{{ redis_url }}".into()]),
            "{name}"
        );
        assert_eq!(
            c["variables"]["redis_url"].as_str(),
            Some("{{ redis_url }}"),
            "{name}"
        );
        // Hot reads use the instance's kept outbound connection: Spin's key-value store
        // on Redis hangs its callers while Redis is away (SPEC §7).
        assert!(c.get("key_value_stores").is_none(), "{name}");
    }
}
