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
        Some("job_updates")
    );
    let mut local_components = local["component"].as_table().unwrap().clone();
    assert!(local_components.remove("job-worker").is_some());
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
