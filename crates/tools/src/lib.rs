//! data20's tools: pure Rust, run inside the WebAssembly components on the job's
//! parameters. Each tool validates its own input beyond the JSON Schema (sizes, shapes
//! the schema cannot express) and answers a clear [`ToolError`], never a panic.

pub mod build_graph;
mod deadline;
mod html;
pub mod schema;

pub use deadline::Deadline;

use serde_json::Value;

/// A file a tool wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Output {
    pub fn new(name: &str, bytes: impl Into<Vec<u8>>) -> Output {
        Output {
            name: name.to_string(),
            bytes: bytes.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// The input is well-formed JSON but not data the tool can use.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The input is larger than the tool's limits.
    #[error("input too large: {0}")]
    TooLarge(String),
    /// The tool ran past its timeout.
    #[error("timeout: the tool ran longer than {0} s")]
    Timeout(u64),
    #[error("no tool named {0:?} is built into this runner")]
    Unknown(String),
}

/// The tools this build knows, by registry name.
pub const TOOLS: &[&str] = &["build_graph"];

/// Runs tool `name` on `params` (already checked against its JSON Schema).
pub fn run(name: &str, params: &Value, deadline: &Deadline) -> Result<Vec<Output>, ToolError> {
    match name {
        "build_graph" => build_graph::run(params, deadline),
        other => Err(ToolError::Unknown(other.to_string())),
    }
}
