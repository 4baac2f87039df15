//! Schema migrations: the SQL files in `migrations/`, embedded at build time, and the
//! pure part of deciding which of them a database needs (applied by `Db::migrate`).

use crate::DbError;

#[derive(Debug)]
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
    Migration {
        version: 3,
        sql: include_str!("../../../migrations/0003_job_control.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../../../migrations/0004_hard_limits.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../../../migrations/0005_one_statement_submit.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../../../migrations/0006_api_keys.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../../../migrations/0007_start_event.sql"),
    },
    Migration {
        version: 8,
        sql: include_str!("../../../migrations/0008_lean_indexes.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("../../../migrations/0009_ids_in_creation_order.sql"),
    },
];

/// The newest schema version among `known` (0 when there is none).
pub fn latest(known: &[Migration]) -> u32 {
    known.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The migrations a database at schema version `current` still needs, oldest first:
/// those of `known` (sorted by version) above `current`. A database newer than every
/// known migration was migrated by a newer data20, and this build must not write to it.
pub fn pending(known: &[Migration], current: u32) -> Result<&[Migration], DbError> {
    let newest = latest(known);
    if current > newest {
        return Err(DbError::SchemaTooNew {
            found: current,
            known: newest,
        });
    }
    let first_pending = known.partition_point(|m| m.version <= current);
    Ok(&known[first_pending..])
}

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
        // A trigger's body holds statements of its own: it ends at its `END;` (a
        // `DROP TRIGGER` has no body).
        let words: Vec<&str> = current.split_whitespace().take(3).collect();
        let in_trigger = words.iter().any(|w| w.eq_ignore_ascii_case("TRIGGER"))
            && words
                .first()
                .is_some_and(|w| w.eq_ignore_ascii_case("CREATE"));
        let ends = if in_trigger {
            code.trim_end()
                .trim_end_matches(';')
                .trim_end()
                .to_ascii_uppercase()
                .ends_with("END")
                && code.trim_end().ends_with(';')
        } else {
            code.trim_end().ends_with(';')
        };
        if ends {
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
    fn dropping_a_trigger_is_a_statement_of_its_own() {
        let sql = "DROP TRIGGER t;\nDROP VIEW v;\nCREATE TRIGGER t AFTER INSERT ON a\nBEGIN\n  INSERT INTO b VALUES (1);\nEND;\n";
        assert_eq!(
            statements(sql),
            [
                "DROP TRIGGER t",
                "DROP VIEW v",
                "CREATE TRIGGER t AFTER INSERT ON a\nBEGIN\n  INSERT INTO b VALUES (1);\nEND"
            ]
        );
    }

    #[test]
    fn a_trigger_is_one_statement() {
        let sql = "CREATE TRIGGER t INSTEAD OF INSERT ON v\nBEGIN\n  INSERT INTO a VALUES (1);\n  INSERT INTO b VALUES (2);\nEND;\nINSERT INTO c VALUES (3);\n";
        let stmts = statements(sql);
        assert_eq!(stmts.len(), 2, "{stmts:?}");
        assert!(stmts[0].starts_with("CREATE TRIGGER t"));
        assert!(stmts[0].ends_with("END"), "{}", stmts[0]);
        assert!(stmts[0].contains("INSERT INTO b VALUES (2);"));
        assert_eq!(stmts[1], "INSERT INTO c VALUES (3)");
    }

    const KNOWN: &[Migration] = &[
        Migration {
            version: 1,
            sql: "",
        },
        Migration {
            version: 2,
            sql: "",
        },
        Migration {
            version: 3,
            sql: "",
        },
    ];

    fn versions(migrations: &[Migration]) -> Vec<u32> {
        migrations.iter().map(|m| m.version).collect()
    }

    #[test]
    fn an_empty_database_needs_every_migration_in_order() {
        assert_eq!(versions(pending(KNOWN, 0).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn a_database_part_way_needs_only_the_later_migrations() {
        assert_eq!(versions(pending(KNOWN, 1).unwrap()), [2, 3]);
        assert_eq!(versions(pending(KNOWN, 2).unwrap()), [3]);
    }

    #[test]
    fn a_database_at_the_latest_version_needs_nothing() {
        // The recheck under the write lock relies on this: a node that waited while
        // another migrated finds nothing left to apply.
        assert!(pending(KNOWN, 3).unwrap().is_empty());
        assert!(pending(MIGRATIONS, latest(MIGRATIONS)).unwrap().is_empty());
    }

    #[test]
    fn a_database_newer_than_this_build_is_refused() {
        let refused = pending(KNOWN, 4).unwrap_err();
        assert_eq!(refused, DbError::SchemaTooNew { found: 4, known: 3 });
        let message = refused.to_string();
        assert!(
            message.contains("version 4") && message.contains("version 3"),
            "{message}"
        );
        assert!(matches!(
            pending(MIGRATIONS, latest(MIGRATIONS) + 1),
            Err(DbError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn no_known_migrations_means_version_zero() {
        assert_eq!(latest(&[]), 0);
        assert!(pending(&[], 0).unwrap().is_empty());
        assert!(pending(&[], 1).is_err());
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
