//! `csv_profile`: CSV text → per-column type, count, nulls, distinct, min/max/mean/
//! stddev and top values (`profile.json`), and a readable `profile.html`.

use crate::html::escape;
use crate::{Deadline, Output, ToolError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub const MAX_CSV_BYTES: usize = 5_000_000;
pub const MAX_COLUMNS: usize = 500;
pub const MAX_ROWS: usize = 200_000;
/// Distinct values tracked per column; past this `distinct` is a lower bound.
pub const MAX_DISTINCT_TRACKED: usize = 50_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    csv: String,
    #[serde(default = "comma")]
    delimiter: String,
    #[serde(default = "yes")]
    has_header: bool,
    #[serde(default = "five")]
    top: usize,
}

fn comma() -> String {
    ",".into()
}
fn yes() -> bool {
    true
}
fn five() -> usize {
    5
}

/// What a column's non-null values all are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    Integer,
    Float,
    Boolean,
    String,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Empty => "empty",
            Kind::Integer => "integer",
            Kind::Float => "float",
            Kind::Boolean => "boolean",
            Kind::String => "string",
        }
    }

    fn of(v: &str) -> Kind {
        if v.parse::<i64>().is_ok() {
            Kind::Integer
        } else if v.parse::<f64>().is_ok_and(f64::is_finite) {
            Kind::Float
        } else if matches!(v.to_ascii_lowercase().as_str(), "true" | "false") {
            Kind::Boolean
        } else {
            Kind::String
        }
    }

    fn merge(self, other: Kind) -> Kind {
        match (self, other) {
            (Kind::Empty, k) | (k, Kind::Empty) => k,
            (a, b) if a == b => a,
            (Kind::Integer, Kind::Float) | (Kind::Float, Kind::Integer) => Kind::Float,
            _ => Kind::String,
        }
    }
}

fn is_null(v: &str) -> bool {
    matches!(v, "" | "NA" | "N/A" | "null" | "NULL" | "None" | "NaN")
}

#[derive(Default)]
struct Column {
    kind: Option<Kind>,
    count: u64,
    nulls: u64,
    distinct: HashMap<String, u64>,
    distinct_overflow: bool,
    // Welford's running mean and variance over numeric values.
    n: u64,
    mean: f64,
    m2: f64,
    min: Option<f64>,
    max: Option<f64>,
    min_len: Option<usize>,
    max_len: Option<usize>,
}

impl Column {
    fn add(&mut self, raw: &str) {
        let v = raw.trim();
        if is_null(v) {
            self.nulls += 1;
            return;
        }
        self.count += 1;
        let kind = Kind::of(v);
        self.kind = Some(self.kind.unwrap_or(Kind::Empty).merge(kind));
        if let Some(n) = self.distinct.get_mut(v) {
            *n += 1;
        } else if self.distinct.len() < MAX_DISTINCT_TRACKED {
            self.distinct.insert(v.to_string(), 1);
        } else {
            self.distinct_overflow = true;
        }
        let chars = v.chars().count();
        self.min_len = Some(self.min_len.map_or(chars, |m| m.min(chars)));
        self.max_len = Some(self.max_len.map_or(chars, |m| m.max(chars)));
        if let Ok(x) = v.parse::<f64>() {
            if x.is_finite() {
                self.n += 1;
                let delta = x - self.mean;
                self.mean += delta / self.n as f64;
                self.m2 += delta * (x - self.mean);
                self.min = Some(self.min.map_or(x, |m| m.min(x)));
                self.max = Some(self.max.map_or(x, |m| m.max(x)));
            }
        }
    }

    fn profile(&self, name: &str, top: usize) -> Value {
        let kind = self.kind.unwrap_or(Kind::Empty);
        let numeric = matches!(kind, Kind::Integer | Kind::Float);
        let mut top_values: Vec<(&String, &u64)> = self.distinct.iter().collect();
        top_values.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let round = |x: f64| (x * 1e6).round() / 1e6;
        let mut p = json!({
            "name": name,
            "type": kind.name(),
            "count": self.count,
            "nulls": self.nulls,
            "distinct": self.distinct.len(),
            "distinct_is_lower_bound": self.distinct_overflow,
            "top_values": top_values.iter().take(top).map(|(v, c)| json!({"value": v, "count": c})).collect::<Vec<_>>(),
        });
        if numeric && self.n > 0 {
            p["min"] = json!(self.min);
            p["max"] = json!(self.max);
            p["mean"] = json!(round(self.mean));
            p["stddev"] = if self.n > 1 {
                json!(round((self.m2 / (self.n - 1) as f64).sqrt()))
            } else {
                Value::Null
            };
        } else if kind == Kind::String {
            p["min_length"] = json!(self.min_len);
            p["max_length"] = json!(self.max_len);
        }
        p
    }
}

pub fn profile(
    csv_text: &str,
    delimiter: u8,
    has_header: bool,
    top: usize,
    deadline: &Deadline,
) -> Result<Value, ToolError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(has_header)
        .flexible(false)
        .from_reader(csv_text.as_bytes());
    let bad = |e: csv::Error| ToolError::InvalidInput(format!("CSV: {e}"));
    let mut names: Vec<String> = if has_header {
        reader
            .headers()
            .map_err(bad)?
            .iter()
            .map(|h| h.trim().to_string())
            .collect()
    } else {
        Vec::new()
    };
    let mut columns: Vec<Column> = Vec::new();
    let mut rows = 0usize;
    for record in reader.records() {
        let record = record.map_err(bad)?;
        if rows == 0 && names.is_empty() {
            names = (1..=record.len()).map(|i| format!("column_{i}")).collect();
        }
        if names.len() > MAX_COLUMNS {
            return Err(ToolError::TooLarge(format!(
                "more than {MAX_COLUMNS} columns"
            )));
        }
        if columns.is_empty() {
            columns = (0..names.len()).map(|_| Column::default()).collect();
        }
        rows += 1;
        if rows > MAX_ROWS {
            return Err(ToolError::TooLarge(format!("more than {MAX_ROWS} rows")));
        }
        if rows.is_multiple_of(4096) {
            let read = record.position().map_or(0, |p| p.byte()) as f64;
            let fraction = 0.95 * read / csv_text.len().max(1) as f64;
            deadline.progress(fraction, &format!("profiling: {rows} rows read"))?;
        }
        for (col, field) in columns.iter_mut().zip(record.iter()) {
            col.add(field);
        }
    }
    if names.is_empty() {
        return Err(ToolError::InvalidInput("the CSV has no columns".into()));
    }
    if columns.is_empty() {
        columns = (0..names.len()).map(|_| Column::default()).collect();
    }
    for (i, n) in names.iter_mut().enumerate() {
        if n.is_empty() {
            *n = format!("column_{}", i + 1);
        }
    }
    Ok(json!({
        "rows": rows,
        "columns": names.len(),
        "profile": names.iter().zip(&columns).map(|(n, c)| c.profile(n, top)).collect::<Vec<_>>(),
    }))
}

fn render_html(profile: &Value) -> String {
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    };
    let mut rows = String::new();
    for c in profile["profile"].as_array().into_iter().flatten() {
        let tops: Vec<String> = c["top_values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| format!("{} ({})", cell(&t["value"]), t["count"]))
            .collect();
        rows.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            cell(&c["name"]), cell(&c["type"]), cell(&c["count"]), cell(&c["nulls"]), cell(&c["distinct"]),
            cell(&c["min"]), cell(&c["max"]), cell(&c["mean"]), cell(&c["stddev"]), tops.join(", ")
        ));
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CSV profile</title>
<style>body{{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}} table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}} thead th{{background:#f3f3f3}}</style>
</head><body>
<h1>CSV profile</h1>
<p>{rows_n} rows, {cols_n} columns.</p>
<table><thead><tr><th>column</th><th>type</th><th>count</th><th>nulls</th><th>distinct</th><th>min</th><th>max</th><th>mean</th><th>stddev</th><th>top values</th></tr></thead>
<tbody>
{rows}</tbody></table>
</body></html>
"#,
        rows_n = profile["rows"],
        cols_n = profile["columns"],
    )
}

pub fn run(params: &Value, deadline: &Deadline) -> Result<Vec<Output>, ToolError> {
    let p: Params = crate::params(params)?;
    if p.csv.len() > MAX_CSV_BYTES {
        return Err(ToolError::TooLarge(format!(
            "csv is over {MAX_CSV_BYTES} bytes"
        )));
    }
    let delimiter = match p.delimiter.as_str() {
        "," => b',',
        ";" => b';',
        "\t" => b'\t',
        "|" => b'|',
        other => {
            return Err(ToolError::InvalidInput(format!(
                "delimiter {other:?} must be one of , ; | or a tab"
            )))
        }
    };
    if !(1..=50).contains(&p.top) {
        return Err(ToolError::InvalidInput("top must be 1..=50".into()));
    }
    let profile = profile(&p.csv, delimiter, p.has_header, p.top, deadline)?;
    let json_bytes =
        serde_json::to_vec_pretty(&profile).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
    Ok(vec![
        Output::new("profile.json", json_bytes),
        Output::new("profile.html", render_html(&profile)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn d() -> Deadline<'static> {
        Deadline::after(Duration::from_secs(10))
    }

    fn col<'a>(p: &'a Value, name: &str) -> &'a Value {
        p["profile"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
    }

    #[test]
    fn profiles_types_and_statistics() {
        let csv = "id,price,name,flag,empty\n1,2.5,ada,true,\n2,3.5,alan,false,\n3,,ada,true,NA\n4,4,grace,true,\n";
        let p = profile(csv, b',', true, 5, &d()).unwrap();
        assert_eq!(p["rows"], 4);
        assert_eq!(p["columns"], 5);
        let id = col(&p, "id");
        assert_eq!(id["type"], "integer");
        assert_eq!(
            (id["min"].as_f64(), id["max"].as_f64(), id["mean"].as_f64()),
            (Some(1.0), Some(4.0), Some(2.5))
        );
        assert!((id["stddev"].as_f64().unwrap() - 1.290994).abs() < 1e-6);
        let price = col(&p, "price");
        assert_eq!(price["type"], "float");
        assert_eq!(price["nulls"], 1);
        assert_eq!(price["count"], 3);
        let name = col(&p, "name");
        assert_eq!(name["type"], "string");
        assert_eq!(name["distinct"], 3);
        assert_eq!(name["top_values"][0], json!({"value": "ada", "count": 2}));
        assert_eq!(col(&p, "flag")["type"], "boolean");
        assert_eq!(col(&p, "empty")["type"], "empty");
        assert_eq!(col(&p, "empty")["nulls"], 4);
    }

    #[test]
    fn headerless_and_other_delimiters() {
        let p = profile("1;x\n2;y\n", b';', false, 5, &d()).unwrap();
        assert_eq!(p["rows"], 2);
        assert_eq!(col(&p, "column_1")["type"], "integer");
    }

    #[test]
    fn ragged_rows_and_bad_params_are_errors() {
        assert!(matches!(
            profile("a,b\n1,2,3\n", b',', true, 5, &d()),
            Err(ToolError::InvalidInput(_))
        ));
        assert!(matches!(
            run(&json!({"csv": "a\n1\n", "delimiter": "x"}), &d()),
            Err(ToolError::InvalidInput(_))
        ));
        assert!(matches!(
            run(&json!({"csv": ""}), &d()),
            Err(ToolError::InvalidInput(_))
        ));
        let big = "a".repeat(MAX_CSV_BYTES + 1);
        assert!(matches!(
            run(&json!({"csv": big}), &d()),
            Err(ToolError::TooLarge(_))
        ));
    }

    #[test]
    fn html_escapes_values() {
        let out = run(&json!({"csv": "name\n<script>x</script>\n"}), &d()).unwrap();
        let html = String::from_utf8(out[1].bytes.clone()).unwrap();
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>x"));
    }
}
