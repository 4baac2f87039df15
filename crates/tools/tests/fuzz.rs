//! Property tests of every tool's input handling: arbitrary JSON parameters, and
//! arbitrary text in each tool's main input, give outputs or a clear `ToolError`,
//! never a panic (a panic would abort the WebAssembly instance and leave the job to
//! recovery). Run longer with `PROPTEST_CASES=20000 cargo test -p data20-tools --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_tools::{Deadline, TOOLS};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

fn deadline() -> Deadline<'static> {
    Deadline::after(Duration::from_secs(5))
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::hash_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_params_never_panic(params in arb_json(), tool in proptest::sample::select(TOOLS)) {
        let _ = data20_tools::run(tool, &params, &deadline());
    }

    #[test]
    fn graph_csv_text(text in "[a-z0-9,;\"\\n ]{0,300}") {
        let _ = data20_tools::run("build_graph", &json!({"edges_csv": format!("source,target\n{text}")}), &deadline());
        let _ = data20_tools::run("build_graph", &json!({"edges_csv": text}), &deadline());
    }

    #[test]
    fn graph_edges(edges in proptest::collection::vec(("[a-c]{0,2}", "[a-c]{1,2}", proptest::option::of(-2.0f64..5.0)), 0..20)) {
        let edges: Vec<Value> = edges.into_iter().map(|(s, t, w)| {
            let mut e = json!({"source": s, "target": t});
            if let Some(w) = w { e["weight"] = json!(w); }
            e
        }).collect();
        if let Ok(out) = data20_tools::run("build_graph", &json!({"edges": edges, "directed": true}), &deadline()) {
            let stats: Value = serde_json::from_slice(&out[1].bytes).unwrap();
            let total: f64 = stats["nodes"].as_array().unwrap().iter().map(|n| n["pagerank"].as_f64().unwrap()).sum();
            prop_assert!((total - 1.0).abs() < 1e-3, "pagerank sums to {}", total);
        }
    }

    #[test]
    fn csv_text(text in "\\PC{0,400}", delimiter in proptest::sample::select(vec![",", ";", "|", "\t"])) {
        let _ = data20_tools::run("csv_profile", &json!({"csv": text, "delimiter": delimiter}), &deadline());
    }

    #[test]
    fn free_text(text in "\\PC{0,400}") {
        let out = data20_tools::run("text_stats", &json!({"text": text}), &deadline()).unwrap();
        let stats: Value = serde_json::from_slice(&out[0].bytes).unwrap();
        prop_assert!(stats["unique_words"].as_u64() <= stats["words"].as_u64());
        data20_tools::run("markdown_render", &json!({"markdown": text}), &deadline()).unwrap();
    }

    #[test]
    fn jq_filters(filter in "[.\\[\\]a-z|0-9 ()\"+,:{}-]{1,40}", input in arb_json()) {
        let _ = data20_tools::run("json_query", &json!({"filter": filter, "input": input}), &deadline());
    }

    #[test]
    fn markdown_never_keeps_scripts(text in "\\PC{0,100}") {
        let md = format!("{text}<script>alert(1)</script>{text}<img src=x onerror=alert(2)>");
        let html = data20_tools::markdown_render::render(&md);
        prop_assert!(!html.contains("<script"), "{}", html);
        // `onerror` may survive as escaped text; it must not survive inside a tag.
        let in_tags = html.split('<').skip(1).any(|tag| tag.split('>').next().unwrap_or("").contains("onerror"));
        prop_assert!(!in_tags, "{}", html);
    }
}
