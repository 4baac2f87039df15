//! The tool registry: data files (one JSON file per tool) validated at load.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::Path;

/// A tool's name: lower-case ASCII letters, digits and `_`, starting with a letter,
/// at most 64 characters. Safe to put in a Redis key, a SQL parameter or a log line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ToolName(String);

impl ToolName {
    pub fn parse(raw: &str) -> Result<ToolName, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(ToolName(raw.to_string()))
        } else {
            Err(format!(
                "invalid tool name {:?}: use 1-64 of a-z, 0-9 and _, starting with a letter",
                truncate(raw, 80)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ToolName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ToolName::parse(&value)
    }
}

impl From<ToolName> for String {
    fn from(value: ToolName) -> Self {
        value.0
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One output file a tool writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolOutput {
    pub name: String,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A worked example: parameters that run successfully.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolExample {
    pub title: String,
    pub params: Value,
}

/// A tool's metadata, as stored in `registry/<name>.json` and served by `/api/tools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    pub name: ToolName,
    pub title: String,
    pub description: String,
    pub category: String,
    pub version: String,
    /// The parameter JSON Schema (draft-07, see the registry test for why).
    pub params: Value,
    pub outputs: Vec<ToolOutput>,
    pub timeout_s: u64,
    /// Its run time is bounded by its input's size: it runs no program taken from the
    /// request (a jq filter is one), so a small job of it ends within milliseconds. A
    /// worker starts such small jobs together ([`ToolSpec::runs_quickly`]).
    #[serde(default)]
    pub bounded: bool,
    pub examples: Vec<ToolExample>,
}

/// Where the registry folder is mounted inside the components (see `spin.toml`).
pub const REGISTRY_DIR: &str = "/registry";

/// Longest timeout a tool may declare. Fermyon Cloud stops a request after 30 s, and a
/// job may run inline in a request there.
pub const MAX_TIMEOUT_S: u64 = 30;

/// Parameters up to this size (their JSON) make a small job of a bounded tool.
pub const QUICK_PARAMS_BYTES: usize = 16 * 1024;

impl ToolSpec {
    /// Whether a job of this tool with these parameters (`params_json`) ends within
    /// milliseconds for sure: the tool is [`bounded`](ToolSpec::bounded) and the input
    /// small. A worker may start several such jobs in one statement, since none of them
    /// can hold its run long enough for its start to matter to the hard limit.
    pub fn runs_quickly(&self, params_json: &str) -> bool {
        self.bounded && params_json.len() <= QUICK_PARAMS_BYTES
    }

    /// Structural checks that serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        if self.title.trim().is_empty() || self.description.trim().is_empty() {
            return Err("title and description must not be empty".into());
        }
        parse_category(&self.category)?;
        if self.params.get("type").and_then(Value::as_str) != Some("object") {
            return Err("params must be a JSON Schema with \"type\": \"object\"".into());
        }
        if !(1..=MAX_TIMEOUT_S).contains(&self.timeout_s) {
            return Err(format!("timeout_s must be 1..={MAX_TIMEOUT_S}"));
        }
        if self.outputs.is_empty() {
            return Err("a tool must declare at least one output".into());
        }
        for (i, out) in self.outputs.iter().enumerate() {
            if !is_safe_file_name(&out.name) {
                return Err(format!(
                    "output name {:?} must be a plain file name (a-z, 0-9, ., -, _)",
                    out.name
                ));
            }
            if out.content_type.trim().is_empty() {
                return Err(format!("output {:?} needs a content_type", out.name));
            }
            if self.outputs[..i].iter().any(|o| o.name == out.name) {
                return Err(format!("output {:?} is declared twice", out.name));
            }
        }
        if self.examples.is_empty() {
            return Err("a tool needs at least one example".into());
        }
        Ok(())
    }

    pub fn output(&self, name: &str) -> Option<&ToolOutput> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// A plain file name: no separators, no traversal, no hidden files.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("cannot read registry {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("registry file {file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("registry is empty: no *.json tool files in {0}")]
    Empty(String),
}

/// The whole catalogue, sorted by tool name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub tools: Vec<ToolSpec>,
}

impl Registry {
    /// Parses and checks one tool file's contents.
    pub fn parse_tool(file: &str, bytes: &[u8]) -> Result<ToolSpec, RegistryError> {
        let invalid = |reason: String| RegistryError::Invalid {
            file: file.to_string(),
            reason,
        };
        let spec: ToolSpec = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        spec.check().map_err(invalid)?;
        let stem = file
            .rsplit('/')
            .next()
            .unwrap_or(file)
            .trim_end_matches(".json");
        if stem != spec.name.as_str() {
            return Err(invalid(format!(
                "file must be named after its tool: expected {}.json",
                spec.name
            )));
        }
        Ok(spec)
    }

    /// Builds a registry from `(file name, contents)` pairs.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Registry, RegistryError> {
        let mut tools = files
            .into_iter()
            .map(|(file, bytes)| Registry::parse_tool(file, bytes))
            .collect::<Result<Vec<_>, _>>()?;
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Registry { tools })
    }

    /// Loads every `*.json` file in `dir` (the folder mounted into the component).
    pub fn load_dir(dir: &Path) -> Result<Registry, RegistryError> {
        let io = |e: std::io::Error| RegistryError::Io {
            path: dir.display().to_string(),
            reason: e.to_string(),
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("json") {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                files.push((name, std::fs::read(&path).map_err(io)?));
            }
        }
        if files.is_empty() {
            return Err(RegistryError::Empty(dir.display().to_string()));
        }
        Registry::from_files(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
    }

    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|t| t.name.as_str() == name)
    }

    /// The names of its [`bounded`](ToolSpec::bounded) tools, as a JSON array: with
    /// [`QUICK_PARAMS_BYTES`], what SQL needs to tell the jobs that
    /// [run quickly](ToolSpec::runs_quickly).
    pub fn bounded_tools_json(&self) -> String {
        let names: Vec<&str> = self
            .tools
            .iter()
            .filter(|t| t.bounded)
            .map(|t| t.name.as_str())
            .collect();
        serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
    }

    /// The tools in `category`, or all of them.
    pub fn filtered(&self, category: Option<&str>) -> Registry {
        Registry {
            tools: self
                .tools
                .iter()
                .filter(|t| category.is_none_or(|c| t.category == c))
                .cloned()
                .collect(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A category name as used in `?category=`: 1-64 of a-z, 0-9, - and _.
pub fn parse_category(raw: &str) -> Result<&str, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(raw)
    } else {
        Err("category must be 1-64 of a-z, 0-9, - and _".into())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str) -> Value {
        json!({
            "name": name, "title": "T", "description": "D", "category": "graphs",
            "version": "1.0.0",
            "params": {"type": "object", "properties": {}},
            "outputs": [{"name": "graph.html", "content_type": "text/html"}],
            "timeout_s": 10,
            "examples": [{"title": "e", "params": {}}]
        })
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn tool_names_are_validated() {
        assert!(ToolName::parse("build_graph").is_ok());
        for bad in ["", "Build", "1x", "a-b", "a/b", "a b", &"x".repeat(65)] {
            assert!(ToolName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loads_sorted_and_filters_by_category() {
        let (a, mut b) = (tool("zeta"), tool("alpha"));
        b["category"] = json!("text");
        let (ab, bb) = (bytes(&a), bytes(&b));
        let reg =
            Registry::from_files([("zeta.json", ab.as_slice()), ("alpha.json", &bb)]).unwrap();
        assert_eq!(reg.tools[0].name.as_str(), "alpha");
        assert_eq!(reg.filtered(Some("text")).tools.len(), 1);
        assert_eq!(reg.filtered(Some("none")).tools.len(), 0);
        assert_eq!(reg.filtered(None).tools.len(), 2);
        assert!(reg.get("zeta").is_some() && reg.get("nope").is_none());
    }

    #[test]
    fn broken_files_are_clear_errors() {
        let err = Registry::parse_tool("x.json", b"{not json").unwrap_err();
        assert!(matches!(err, RegistryError::Invalid { ref file, .. } if file == "x.json"));

        let mut missing = tool("x");
        missing.as_object_mut().unwrap().remove("outputs");
        let err = Registry::parse_tool("x.json", &bytes(&missing)).unwrap_err();
        assert!(err.to_string().contains("outputs"), "{err}");

        let mut traversal = tool("x");
        traversal["outputs"][0]["name"] = json!("../etc/passwd");
        assert!(Registry::parse_tool("x.json", &bytes(&traversal)).is_err());

        let mut no_schema = tool("x");
        no_schema["params"] = json!({"type": "string"});
        assert!(Registry::parse_tool("x.json", &bytes(&no_schema)).is_err());

        let mut slow = tool("x");
        slow["timeout_s"] = json!(3600);
        assert!(Registry::parse_tool("x.json", &bytes(&slow)).is_err());

        let misnamed = Registry::parse_tool("y.json", &bytes(&tool("x"))).unwrap_err();
        assert!(misnamed.to_string().contains("x.json"));
    }

    #[test]
    fn categories_are_validated() {
        assert_eq!(parse_category("graphs"), Ok("graphs"));
        for bad in ["", "Graphs", "a b", "a/b", &"a".repeat(65)] {
            assert!(parse_category(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn safe_file_names() {
        assert!(is_safe_file_name("graph.html"));
        for bad in ["", "..", "../x", "a/b", ".env", "a\\b", "a%2fb"] {
            assert!(!is_safe_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_shipped_registry_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../registry");
        let reg = Registry::load_dir(&dir).unwrap();
        assert!(reg.get("build_graph").is_some());
        // A jq filter is a program from the request: it may loop, so its jobs always
        // start one at a time, under the hard limit.
        let jq = reg.get("json_query").unwrap();
        assert!(!jq.bounded && !jq.runs_quickly("{}"));
        assert!(reg.get("text_stats").unwrap().bounded);
        let bounded: Vec<String> = serde_json::from_str(&reg.bounded_tools_json()).unwrap();
        assert_eq!(
            bounded,
            [
                "build_graph",
                "csv_profile",
                "markdown_render",
                "text_stats"
            ],
            "every tool but json_query, for the worker's claim"
        );
    }

    #[test]
    fn only_small_jobs_of_bounded_tools_run_quickly() {
        let mut spec: ToolSpec = serde_json::from_value(tool("text_stats")).unwrap();
        assert!(!spec.bounded, "a tool is not bounded unless it says so");
        assert!(!spec.runs_quickly("{}"));
        spec.bounded = true;
        assert!(spec.runs_quickly("{}"));
        assert!(spec.runs_quickly(&"x".repeat(QUICK_PARAMS_BYTES)));
        assert!(!spec.runs_quickly(&"x".repeat(QUICK_PARAMS_BYTES + 1)));
    }
}
