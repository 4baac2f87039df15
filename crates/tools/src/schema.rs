//! Parameter validation against a tool's JSON Schema, with every violation listed.

use serde::Serialize;
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// Validators an instance compiled, by schema (a few tools, so a short list). Safe to
/// keep across requests: a validator is a pure function of its schema, and an edited
/// schema is a different key. Compiling one costs about 0.6 ms in WebAssembly
/// (`jsonschema` rebuilds its meta-schema validator each time, SPEC §7).
const KEPT_VALIDATORS: usize = 32;

thread_local! {
    static VALIDATORS: RefCell<Vec<(Value, Rc<jsonschema::Validator>)>> =
        const { RefCell::new(Vec::new()) };
}

/// The compiled validator for `schema`, from the instance's list or compiled now.
fn validator(schema: &Value) -> Result<Rc<jsonschema::Validator>, String> {
    if let Some(v) = VALIDATORS.with(|k| {
        k.borrow()
            .iter()
            .find(|(s, _)| s == schema)
            .map(|(_, v)| v.clone())
    }) {
        return Ok(v);
    }
    let compiled = Rc::new(
        jsonschema::validator_for(schema).map_err(|e| format!("schema does not compile: {e}"))?,
    );
    VALIDATORS.with(|k| {
        let mut k = k.borrow_mut();
        if k.len() >= KEPT_VALIDATORS {
            k.remove(0);
        }
        k.push((schema.clone(), compiled.clone()));
    });
    Ok(compiled)
}

/// One way the parameters break the schema: where (a JSON pointer into the params,
/// `""` for the whole object) and what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

/// Checks `params` against `schema`. `Err(Ok(violations))` when the params are invalid,
/// `Err(Err(msg))` when the schema itself does not compile (a registry bug).
pub fn validate(schema: &Value, params: &Value) -> Result<(), Result<Vec<Violation>, String>> {
    let validator = validator(schema).map_err(Err)?;
    let violations: Vec<Violation> = validator
        .iter_errors(params)
        .take(100)
        .map(|e| Violation {
            path: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Ok(violations))
    }
}

/// Whether a schema compiles; the registry self-check uses it.
pub fn compiles(schema: &Value) -> Result<(), String> {
    jsonschema::validator_for(schema)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object", "additionalProperties": false, "required": ["n"],
            "properties": {"n": {"type": "integer", "minimum": 1}, "s": {"type": "string", "maxLength": 3}}
        })
    }

    #[test]
    fn valid_params_pass() {
        assert_eq!(validate(&schema(), &json!({"n": 2, "s": "ab"})), Ok(()));
    }

    #[test]
    fn every_violation_is_listed_with_its_path() {
        let Err(Ok(v)) = validate(&schema(), &json!({"n": 0, "s": "abcd", "x": 1})) else {
            panic!("expected violations");
        };
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"/n"), "{v:?}");
        assert!(paths.contains(&"/s"), "{v:?}");
        assert!(v.len() >= 3, "{v:?}");
    }

    #[test]
    fn a_schema_is_compiled_once_and_an_edited_one_again() {
        let first = validator(&schema()).unwrap();
        assert!(Rc::ptr_eq(&first, &validator(&schema()).unwrap()));
        let mut edited = schema();
        edited["properties"]["n"]["minimum"] = json!(5);
        assert!(!Rc::ptr_eq(&first, &validator(&edited).unwrap()));
        assert!(matches!(validate(&edited, &json!({"n": 2})), Err(Ok(_))));
        assert_eq!(validate(&schema(), &json!({"n": 2})), Ok(()));
    }

    #[test]
    fn broken_schemas_are_reported_not_panicked() {
        assert!(matches!(
            validate(&json!({"type": 5}), &json!({})),
            Err(Err(_))
        ));
        assert!(compiles(&json!({"type": "object"})).is_ok());
    }
}
