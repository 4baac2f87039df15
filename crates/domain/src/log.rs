//! Structured log lines on stderr, which Spin keeps per component.
//!
//! Each line is rendered in memory and written with one `write_all`: Rust's stderr is
//! unbuffered, and `eprintln!("{}", json)` issues one WASI `fd_write` per formatting
//! fragment (dozens per line). Under load that alone cost about 30 % of a cached
//! route's requests per second (see docs/BENCHMARKS.md).

use serde::Serialize;
use std::io::Write;

/// Renders `entry` as one JSON line.
pub fn render(entry: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(entry).unwrap_or_else(|e| {
        format!(r#"{{"level":"error","msg":"unloggable entry: {e}"}}"#).into_bytes()
    });
    line.push(b'\n');
    line
}

/// Writes `entry` to stderr as one JSON line, in one write.
pub fn emit(entry: &impl Serialize) {
    // A log line that cannot be written is dropped: logging never fails a request.
    let _ = std::io::stderr().write_all(&render(entry));
}

pub fn warn(msg: &str) {
    emit(&serde_json::json!({"level": "warn", "msg": msg}));
}

pub fn info(msg: &str) {
    emit(&serde_json::json!({"level": "info", "msg": msg}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_and_one_newline() {
        let line = render(&serde_json::json!({"level": "warn", "msg": "a\nb \"quoted\""}));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let back: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(back["msg"], "a\nb \"quoted\"");
    }
}
