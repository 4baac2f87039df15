//! `json_query`: a jq filter over JSON input (`result.json`), run by jaq, a maintained
//! jq implementation, with jq's standard library.

use crate::{Deadline, Output, ToolError};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, RcIter};
use jaq_json::Val;
use serde::Deserialize;
use serde_json::{json, Value};

pub const MAX_FILTER_BYTES: usize = 10_000;
pub const MAX_INPUT_BYTES: usize = 5_000_000;
pub const MAX_RESULTS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    filter: String,
    input: Value,
    #[serde(default = "default_max")]
    max_results: usize,
}

fn default_max() -> usize {
    1000
}

/// Compiles and runs `filter` on `input`, collecting at most `max` results.
pub fn query(
    filter: &str,
    input: Value,
    max: usize,
    deadline: &Deadline,
) -> Result<Vec<Value>, ToolError> {
    let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: filter,
                path: (),
            },
        )
        .map_err(|errs| {
            let problems: Vec<String> = errs
                .iter()
                .flat_map(|(_, e)| describe_load_error(filter, e))
                .collect();
            ToolError::InvalidInput(format!(
                "the jq filter does not parse: {}",
                problems.join("; ")
            ))
        })?;
    let compiled = Compiler::default()
        .with_funs(jaq_std::funs().chain(jaq_json::funs()))
        .compile(modules)
        .map_err(|errs| {
            let problems: Vec<String> = errs
                .iter()
                .flat_map(|(_, undefined)| undefined.iter())
                .map(|(name, what)| describe_undefined(filter, name, what))
                .collect();
            ToolError::InvalidInput(format!(
                "the jq filter does not compile: {}",
                problems.join("; ")
            ))
        })?;
    let inputs = RcIter::new(core::iter::empty());
    let mut results = Vec::new();
    for item in compiled.run((Ctx::new([], &inputs), Val::from(input))) {
        deadline.check()?;
        let val = item.map_err(|e| ToolError::InvalidInput(format!("jq error: {e}")))?;
        // Display renders JSON; parsing it back avoids jaq's panicking conversions.
        let v: Value = serde_json::from_str(&val.to_string())
            .map_err(|e| ToolError::InvalidInput(format!("result is not JSON: {e}")))?;
        results.push(v);
        if results.len() > max {
            return Err(ToolError::TooLarge(format!(
                "the filter produced more than {max} results"
            )));
        }
    }
    Ok(results)
}

/// Where `part` (a slice of `code`, as jaq reports) starts: "line L, column C", or
/// "the end of the filter" for an empty slice at the end, or `None` when `part` is not
/// in `code` (jq's standard library).
fn position(code: &str, part: &str) -> Option<String> {
    let offset = (part.as_ptr() as usize).checked_sub(code.as_ptr() as usize)?;
    if offset > code.len() || !code.is_char_boundary(offset) {
        return None;
    }
    if offset == code.len() {
        return Some("the end of the filter".into());
    }
    let before = &code[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    Some(format!("line {line}, column {column}"))
}

/// The first few characters of what jaq found instead.
fn found(part: &str) -> String {
    let snippet: String = part.chars().take(20).collect();
    if snippet.is_empty() {
        "nothing".into()
    } else {
        format!("{snippet:?}")
    }
}

fn at(code: &str, part: &str) -> String {
    position(code, part).map_or_else(String::new, |p| format!(" at {p}"))
}

fn expected(code: &str, what: &str, part: &str) -> String {
    format!("expected {what}{}, found {}", at(code, part), found(part))
}

fn describe_load_error(code: &str, err: &jaq_core::load::Error<&str>) -> Vec<String> {
    use jaq_core::load::Error;
    match err {
        Error::Io(errs) => errs
            .iter()
            .map(|(path, msg)| format!("cannot load module {path:?}: {msg}"))
            .collect(),
        Error::Lex(errs) => errs
            .iter()
            .map(|(expect, part)| expected(code, expect.as_str(), part))
            .collect(),
        Error::Parse(errs) => errs
            .iter()
            .map(|(expect, part)| expected(code, expect.as_str(), part))
            .collect(),
    }
}

fn describe_undefined(code: &str, name: &str, what: &jaq_core::compile::Undefined) -> String {
    use jaq_core::compile::Undefined;
    let thing = match what {
        Undefined::Filter(arity) => format!("filter `{name}/{arity}`"),
        Undefined::Var => format!("variable `{name}`"),
        other => format!("{} `{name}`", other.as_str()),
    };
    format!("undefined {thing}{}", at(code, name))
}

pub fn run(params: &Value, deadline: &Deadline) -> Result<Vec<Output>, ToolError> {
    let p: Params = crate::params(params)?;
    if p.filter.len() > MAX_FILTER_BYTES {
        return Err(ToolError::TooLarge(format!(
            "filter is over {MAX_FILTER_BYTES} bytes"
        )));
    }
    if p.filter.trim().is_empty() {
        return Err(ToolError::InvalidInput("filter is empty".into()));
    }
    if !(1..=MAX_RESULTS).contains(&p.max_results) {
        return Err(ToolError::InvalidInput(format!(
            "max_results must be 1..={MAX_RESULTS}"
        )));
    }
    let size = serde_json::to_vec(&p.input).map(|v| v.len()).unwrap_or(0);
    if size > MAX_INPUT_BYTES {
        return Err(ToolError::TooLarge(format!(
            "input is over {MAX_INPUT_BYTES} bytes"
        )));
    }
    let results = query(&p.filter, p.input, p.max_results, deadline)?;
    let body = json!({"filter": p.filter, "count": results.len(), "results": results});
    let bytes =
        serde_json::to_vec_pretty(&body).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
    Ok(vec![Output::new("result.json", bytes)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn q(filter: &str, input: Value) -> Result<Vec<Value>, ToolError> {
        query(filter, input, 100, &Deadline::after(Duration::from_secs(5)))
    }

    #[test]
    fn runs_jq_filters_with_the_standard_library() {
        let input = json!({"users": [{"name": "ada", "age": 36}, {"name": "alan", "age": 41}]});
        assert_eq!(
            q(".users[].name", input.clone()).unwrap(),
            [json!("ada"), json!("alan")]
        );
        assert_eq!(
            q("[.users[] | select(.age > 40) | .name]", input.clone()).unwrap(),
            [json!(["alan"])]
        );
        assert_eq!(
            q(".users | map(.age) | add", input.clone()).unwrap(),
            [json!(77)]
        );
        assert_eq!(
            q(".users | sort_by(-.age) | .[0].name", input).unwrap(),
            [json!("alan")]
        );
        assert_eq!(q("[range(3)] | length", json!(null)).unwrap(), [json!(3)]);
    }

    #[test]
    fn errors_are_clear() {
        assert!(
            matches!(q(".[", json!(1)), Err(ToolError::InvalidInput(m)) if m.contains("parse"))
        );
        assert!(
            matches!(q("nosuchfunction(1)", json!(1)), Err(ToolError::InvalidInput(m)) if m.contains("compile"))
        );
        assert!(
            matches!(q(".a", json!([1])), Err(ToolError::InvalidInput(m)) if m.contains("jq error"))
        );
        assert!(matches!(
            q("error(\"boom\")", json!(1)),
            Err(ToolError::InvalidInput(_))
        ));
    }

    fn message(filter: &str) -> String {
        match q(filter, json!(1)) {
            Err(ToolError::InvalidInput(m)) => m,
            other => panic!("{filter}: {other:?}"),
        }
    }

    #[test]
    fn filter_errors_say_what_is_wrong_and_where() {
        // The case the issue reported: jq's $ENV, which jaq has not defined.
        assert_eq!(
            message("$ENV"),
            "the jq filter does not compile: undefined variable `$ENV` at line 1, column 1"
        );
        assert_eq!(
            message(".a | nosuch(1)"),
            "the jq filter does not compile: undefined filter `nosuch/1` at line 1, column 6"
        );
        assert_eq!(
            message(".a |\n  [1, 2"),
            "the jq filter does not parse: expected closing bracket at the end of the filter, found nothing"
        );
        let misplaced = message(".a |\n  {b: 1} }");
        assert!(misplaced.contains("at line 2, column 10"), "{misplaced}");
        for m in [message("$ENV"), message(".["), message("if . then 1")] {
            assert!(
                !m.contains("File {") && !m.contains("code:"),
                "no Debug dump: {m}"
            );
        }
    }

    #[test]
    fn result_count_is_capped() {
        assert!(matches!(
            q("range(1000)", json!(null)),
            Err(ToolError::TooLarge(_))
        ));
        assert!(matches!(
            q("repeat(1)", json!(null)),
            Err(ToolError::TooLarge(_))
        ));
    }

    #[test]
    fn run_writes_result_json() {
        let out = run(
            &json!({"filter": ".a", "input": {"a": 1}}),
            &Deadline::after(Duration::from_secs(5)),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out[0].bytes).unwrap();
        assert_eq!(v["results"], json!([1]));
        assert_eq!(v["count"], 1);
        let d = Deadline::after(Duration::from_secs(5));
        assert!(matches!(
            run(&json!({"filter": " ", "input": 1}), &d),
            Err(ToolError::InvalidInput(_))
        ));
        assert!(matches!(
            run(&json!({"filter": ".", "input": 1, "max_results": 0}), &d),
            Err(ToolError::InvalidInput(_))
        ));
    }
}
