//! Schema migrations: the SQL files in `migrations/`, embedded at build time.

pub struct Migration {
    pub version: u32,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../../../migrations/0002_duration_index.sql"),
    },
];

/// Splits a migration file into statements: Spin's SQLite runs one statement per call.
/// Comment lines are dropped; statements end with `;` at the end of a line.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let code = match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        };
        if code.trim().is_empty() {
            continue;
        }
        current.push_str(code.trim_end());
        current.push('\n');
        if code.trim_end().ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_drops_comments() {
        let sql = "-- a comment\nCREATE TABLE t (\n  a INTEGER, -- trailing\n  b TEXT\n);\n\nINSERT INTO t VALUES (1, 'x');\n";
        let stmts = statements(sql);
        assert_eq!(stmts.len(), 2);
        assert!(stmts[0].starts_with("CREATE TABLE t"));
        assert!(!stmts[0].contains("trailing"));
        assert_eq!(stmts[1], "INSERT INTO t VALUES (1, 'x')");
    }

    #[test]
    fn versions_increase_and_every_file_has_statements() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for m in MIGRATIONS {
            let stmts = statements(m.sql);
            assert!(!stmts.is_empty());
            assert!(
                stmts
                    .iter()
                    .any(|s| s.contains("schema_version") && s.contains("INSERT")),
                "migration {} must record its version",
                m.version
            );
        }
    }
}
