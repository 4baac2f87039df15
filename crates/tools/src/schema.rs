//! Parameter validation against a tool's JSON Schema, with every violation listed.

use serde::Serialize;
use serde_json::Value;

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
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| Err(format!("schema does not compile: {e}")))?;
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
    fn broken_schemas_are_reported_not_panicked() {
        assert!(matches!(
            validate(&json!({"type": 5}), &json!({})),
            Err(Err(_))
        ));
        assert!(compiles(&json!({"type": "object"})).is_ok());
    }
}
