//! data20's tools: pure Rust, run inside the WebAssembly components on the job's
//! parameters. Each tool validates its own input beyond the JSON Schema (sizes, shapes
//! the schema cannot express) and answers a clear [`ToolError`], never a panic.

pub mod build_graph;
pub mod csv_profile;
mod deadline;
mod html;
pub mod json_query;
pub mod markdown_render;
pub mod schema;
pub mod text_stats;

pub use deadline::{Deadline, Supervisor};

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
    /// The job was cancelled while the tool ran.
    #[error("cancelled while running")]
    Cancelled,
    #[error("no tool named {0:?} is built into this runner")]
    Unknown(String),
}

/// The tools this build knows, by registry name.
pub const TOOLS: &[&str] = &[
    "build_graph",
    "csv_profile",
    "json_query",
    "markdown_render",
    "text_stats",
];

/// Deserialises a tool's parameters; shape errors the schema let through (or that
/// arrive without it, in unit tests) become [`ToolError::InvalidInput`].
pub(crate) fn params<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T, ToolError> {
    T::deserialize(params).map_err(|e| ToolError::InvalidInput(e.to_string()))
}

/// Runs tool `name` on `params` (already checked against its JSON Schema).
pub fn run(name: &str, params: &Value, deadline: &Deadline) -> Result<Vec<Output>, ToolError> {
    match name {
        "build_graph" => build_graph::run(params, deadline),
        "csv_profile" => csv_profile::run(params, deadline),
        "json_query" => json_query::run(params, deadline),
        "markdown_render" => markdown_render::run(params, deadline),
        "text_stats" => text_stats::run(params, deadline),
        other => Err(ToolError::Unknown(other.to_string())),
    }
}
