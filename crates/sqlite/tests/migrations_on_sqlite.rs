//! The real migration files on a real SQLite, applied one statement at a time as
//! Spin's SQLite runs them.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use data20_sqlite::migrations::{latest, statements, MIGRATIONS};
use rusqlite::Connection;

fn migrated() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    apply(&conn, ..);
    conn
}

/// The migrations whose versions are in `versions`, applied to `conn` in order.
fn apply(conn: &Connection, versions: impl std::ops::RangeBounds<u32>) {
    for m in MIGRATIONS.iter().filter(|m| versions.contains(&m.version)) {
        for statement in statements(m.sql) {
            conn.execute(&statement, [])
                .unwrap_or_else(|e| panic!("migration {}: {e}\n{statement}", m.version));
        }
    }
}

/// Queues `id`, a job of `tool` with `params`, created at `created_ms`.
fn queued_job(conn: &Connection, id: &str, tool: &str, params: &str, created_ms: i64) {
    conn.execute(
        "INSERT INTO job_submissions (id, tool, params, created_ms, dispatch, event, event_payload) \
         VALUES (?, ?, ?, ?, 'worker', 'job_created', '{}')",
        rusqlite::params![id, tool, params, created_ms],
    )
    .unwrap();
}

/// The single number `sql` answers (a `COUNT(*)`).
fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn every_migration_applies_and_records_its_version() {
    let conn = migrated();
    let version: u32 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, latest(MIGRATIONS));
}

const SUBMIT: &str =
    "INSERT INTO job_submissions (id, tool, params, created_ms, dispatch, event, event_payload) \
                      VALUES (?, 'text_stats', '{}', 42, 'worker', 'job_created', ?)";

#[test]
fn one_insert_into_the_submission_view_writes_the_job_and_its_event() {
    let conn = migrated();
    let n = conn
        .execute(
            SUBMIT,
            rusqlite::params!["job-1", r#"{"event":"job_created"}"#],
        )
        .unwrap();
    assert_eq!(
        n, 0,
        "an INSTEAD OF trigger reports no rows of the view itself"
    );
    let (status, created, dispatch): (String, i64, String) = conn
        .query_row(
            "SELECT status, created_ms, dispatch FROM jobs WHERE id = 'job-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (status.as_str(), created, dispatch.as_str()),
        ("queued", 42, "worker")
    );
    let (event, at, payload): (String, i64, String) = conn
        .query_row(
            "SELECT event, at_ms, payload FROM job_events WHERE job_id = 'job-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(event, "job_created");
    assert_eq!(at, 42);
    assert_eq!(payload, r#"{"event":"job_created"}"#);
}

#[test]
fn one_multi_row_submission_writes_every_job_and_event_or_none() {
    use data20_sqlite::jobs::submissions_sql;
    let conn = migrated();
    let row = |id: &str| {
        vec![
            id.to_string(),
            "text_stats".into(),
            "{}".into(),
            "42".into(),
            "worker".into(),
            "owner-1".into(),
            "job_created".into(),
            format!("created {id}"),
        ]
    };
    let params: Vec<String> = ["a", "b", "c"].iter().flat_map(|id| row(id)).collect();
    conn.execute(&submissions_sql(3), rusqlite::params_from_iter(&params))
        .unwrap();
    let jobs: Vec<(String, String)> = conn
        .prepare("SELECT id, owner FROM jobs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        jobs,
        [("a", "owner-1"), ("b", "owner-1"), ("c", "owner-1")]
            .map(|(i, o)| (i.to_string(), o.to_string()))
    );
    let events: Vec<(String, String)> = conn
        .prepare("SELECT job_id, payload FROM job_events ORDER BY job_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1], ("b".to_string(), "created b".to_string()));
    // A batch with one id already taken: none of its rows stay, events included.
    let params: Vec<String> = ["d", "a", "e"].iter().flat_map(|id| row(id)).collect();
    assert!(conn
        .execute(&submissions_sql(3), rusqlite::params_from_iter(&params))
        .is_err());
    let (jobs, events): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM job_events)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((jobs, events), (3, 3));
}

#[test]
fn a_submission_that_fails_leaves_neither_row() {
    let conn = migrated();
    conn.execute(SUBMIT, rusqlite::params!["job-1", "first"])
        .unwrap();
    // The same id again: the job's INSERT fails, and the event's must not stay.
    assert!(conn
        .execute(SUBMIT, rusqlite::params!["job-1", "second"])
        .is_err());
    let events = count(
        &conn,
        "SELECT COUNT(*) FROM job_events WHERE job_id = 'job-1'",
    );
    assert_eq!(events, 1);
}

// The worker's batch statements (`data20_sqlite::batch`), with the parameters in the
// order the module documents.
mod batch {
    use super::*;
    use data20_sqlite::batch::{
        claim_sql, events_sql, finish_sql, outputs_sql, start_sql, REQUEUE_ALL_SQL,
        REQUEUE_WAITING_SQL,
    };
    use rusqlite::params;

    fn queued(conn: &Connection, ids: &[&str]) {
        for (i, id) in ids.iter().enumerate() {
            conn.execute(
                SUBMIT.replace("42", &(100 + i).to_string()).as_str(),
                params![id, "{}"],
            )
            .unwrap();
        }
    }

    fn status(conn: &Connection, id: &str) -> (String, Option<String>, Option<i64>, i64) {
        conn.query_row(
            "SELECT status, runner, deadline_ms, attempts FROM jobs WHERE id = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    }

    /// Claims for `runner` with `text_stats` as the one quick tool (parameters up to
    /// 64 bytes, 100 bytes a claim); answers the ids claimed, sorted.
    fn claim(conn: &Connection, runner: &str, limit: i64) -> Vec<String> {
        let mut stmt = conn.prepare(&claim_sql()).unwrap();
        let mut ids: Vec<String> = stmt
            .query_map(
                params![31_000, runner, r#"["text_stats"]"#, 64, 2, limit, 100],
                |r| r.get("id"),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        ids.sort();
        ids
    }

    #[test]
    fn a_claim_takes_quick_jobs_up_to_the_first_slow_one_which_goes_alone() {
        let conn = migrated();
        let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(64));
        queued_job(&conn, "a", "text_stats", "{}", 1);
        queued_job(&conn, "b", "text_stats", "{}", 2);
        queued_job(&conn, "c", "json_query", "{}", 3);
        queued_job(&conn, "d", "text_stats", "{}", 4);
        queued_job(&conn, "e", "text_stats", &big, 5);
        queued_job(&conn, "f", "text_stats", "{}", 6);
        queued_job(&conn, "g", "text_stats", "{}", 7);
        assert_eq!(claim(&conn, "worker:1:r", 10), ["a", "b"], "stops before c");
        assert_eq!(
            claim(&conn, "worker:1:r", 10),
            ["c"],
            "a tool that is not quick goes alone"
        );
        assert_eq!(claim(&conn, "worker:1:r", 10), ["d"], "stops before e");
        assert_eq!(
            claim(&conn, "worker:1:r", 10),
            ["e"],
            "parameters too big go alone"
        );
        assert_eq!(claim(&conn, "worker:1:r", 1), ["f"], "the limit holds");
        assert_eq!(claim(&conn, "worker:1:r", 10), ["g"]);
        assert!(claim(&conn, "worker:1:r", 10).is_empty());
    }

    #[test]
    fn a_claim_of_quick_jobs_stops_at_its_parameter_bytes() {
        let conn = migrated();
        // 40 bytes each: two fit in a claim's 100, a third does not.
        let forty = format!(r#"{{"text":"{}"}}"#, "x".repeat(29));
        assert_eq!(forty.len(), 40);
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            queued_job(&conn, id, "text_stats", &forty, i as i64);
        }
        assert_eq!(claim(&conn, "worker:1:r", 10), ["a", "b"]);
        assert_eq!(claim(&conn, "worker:1:r", 10), ["c", "d"]);
        assert_eq!(claim(&conn, "worker:1:r", 10), ["e"]);
    }

    #[test]
    fn a_claim_takes_the_oldest_queued_jobs_once() {
        let conn = migrated();
        queued(&conn, &["a", "b", "c"]);
        assert_eq!(claim(&conn, "worker:1:r", 2), ["a", "b"]);
        assert_eq!(claim(&conn, "worker:2:r", 2), ["c"], "a and b are taken");
        assert!(claim(&conn, "worker:2:r", 2).is_empty());
        let (s, runner, deadline, attempts) = status(&conn, "a");
        assert_eq!(
            (s.as_str(), runner.as_deref(), deadline, attempts),
            ("running", Some("worker:1:r"), None, 0),
            "claimed, not started: no attempt counted yet"
        );
    }

    /// Starts `ids` (deadline 9 000, lease 14 000, at 2 000) and ends the runs of
    /// `ended` (waiting lease 31 000) in one statement; answers the rows it touched.
    fn start_all(
        conn: &Connection,
        ids: &[&str],
        ended: &[&str],
        runner: &str,
    ) -> Vec<(String, i64)> {
        let mut values: Vec<rusqlite::types::Value> = vec![2_000.into()];
        for id in ids {
            values.extend([
                id.to_string().into(),
                9_000.into(),
                14_000.into(),
                1.into(),
                format!("started {id}").into(),
            ]);
        }
        for id in ended {
            values.extend([
                id.to_string().into(),
                rusqlite::types::Value::Null,
                31_000.into(),
                0.into(),
                rusqlite::types::Value::Null,
            ]);
        }
        values.push(runner.to_string().into());
        let mut stmt = conn.prepare(&start_sql(ids.len(), ended.len())).unwrap();
        let mut touched: Vec<(String, i64)> = stmt
            .query_map(rusqlite::params_from_iter(values), |r| {
                Ok((r.get("id")?, r.get("cancel_requested")?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        touched.sort();
        touched
    }

    fn start(conn: &Connection, id: &str, previous: &str, runner: &str) -> Vec<(String, i64)> {
        let ended: &[&str] = if previous == id { &[] } else { &[previous] };
        start_all(conn, &[id], ended, runner)
    }

    /// The `job_started` events of `id`: (at, payload), oldest first.
    fn started(conn: &Connection, id: &str) -> Vec<(i64, String)> {
        conn.prepare(
            "SELECT at_ms, payload FROM job_events WHERE job_id = ? AND event = 'job_started' ORDER BY seq",
        )
        .unwrap()
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[test]
    fn quick_jobs_start_together_and_end_the_run_before_them() {
        let conn = migrated();
        queued(&conn, &["a", "b", "c", "d"]);
        claim(&conn, "worker:1:r", 4);
        start(&conn, "a", "a", "worker:1:r");
        conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = 'd'", [])
            .unwrap();
        let touched = start_all(&conn, &["b", "c", "d"], &["a"], "worker:1:r");
        assert_eq!(
            touched,
            [
                ("a".to_string(), 0),
                ("b".to_string(), 0),
                ("c".to_string(), 0),
                ("d".to_string(), 1)
            ]
        );
        assert_eq!(status(&conn, "a").2, None, "a's run is over");
        for id in ["b", "c"] {
            assert_eq!(
                status(&conn, id).2,
                Some(9_000),
                "{id} runs until its deadline"
            );
            assert_eq!(status(&conn, id).3, 1, "{id}'s attempt counts");
            assert_eq!(started(&conn, id), [(2_000, format!("started {id}"))]);
        }
        assert_eq!(status(&conn, "d").3, 0, "a cancelled start is no attempt");
        assert!(started(&conn, "d").is_empty(), "and records no job_started");
        assert_eq!(
            started(&conn, "a").len(),
            1,
            "ending a's run records nothing"
        );
        assert!(
            start_all(&conn, &["b", "c"], &[], "worker:2:r").is_empty(),
            "not worker 2's jobs"
        );
    }

    #[test]
    fn a_dead_instance_s_group_goes_back_to_the_queue_with_its_attempts() {
        let conn = migrated();
        queued(&conn, &["a", "b", "c"]);
        claim(&conn, "worker:1:r", 3);
        start_all(&conn, &["a", "b"], &[], "worker:1:r");
        conn.execute("UPDATE jobs SET attempts = 2 WHERE id = 'b'", [])
            .unwrap();
        let mut stmt = conn.prepare(REQUEUE_ALL_SQL).unwrap();
        let mut back: Vec<String> = stmt
            .query_map(params!["worker:1:", "worker:1:", 2], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        back.sort();
        assert_eq!(back, ["a", "c"], "b is out of attempts, left to fail");
        assert_eq!(status(&conn, "a"), ("queued".into(), None, None, 1));
        assert_eq!(status(&conn, "c"), ("queued".into(), None, None, 0));
        assert_eq!(status(&conn, "b").0, "running");
    }

    #[test]
    fn starting_a_job_ends_the_previous_run_and_only_for_its_runner() {
        let conn = migrated();
        queued(&conn, &["a", "b"]);
        claim(&conn, "worker:1:r", 2);
        assert_eq!(start(&conn, "a", "a", "worker:1:r"), [("a".to_string(), 0)]);
        assert_eq!(
            status(&conn, "a").2,
            Some(9_000),
            "a runs until its deadline"
        );
        assert_eq!(status(&conn, "a").3, 1, "its attempt counts once it starts");
        let touched = start(&conn, "b", "a", "worker:1:r");
        assert_eq!(touched.len(), 2);
        assert_eq!(status(&conn, "a").2, None, "a's run is over");
        assert_eq!(status(&conn, "b").2, Some(9_000));
        assert!(
            start(&conn, "b", "b", "worker:2:r").is_empty(),
            "not worker 2's job"
        );
        // Each start recorded its job_started, with its payload and start time, in the
        // same statement; ending a's run recorded nothing more for a.
        assert_eq!(started(&conn, "a"), [(2_000, "started a".to_string())]);
        assert_eq!(started(&conn, "b"), [(2_000, "started b".to_string())]);
        let pending = count(
            &conn,
            "SELECT COUNT(*) FROM jobs WHERE started_event IS NOT NULL",
        );
        assert_eq!(pending, 0, "the trigger clears the column");
        conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = 'b'", [])
            .unwrap();
        assert_eq!(start(&conn, "b", "b", "worker:1:r"), [("b".to_string(), 1)]);
        assert_eq!(
            status(&conn, "b").3,
            1,
            "a cancelled start is no new attempt"
        );
        assert_eq!(started(&conn, "b").len(), 1, "and records no job_started");
    }

    #[test]
    fn a_batch_of_endings_is_recorded_in_one_statement_each() {
        let conn = migrated();
        queued(&conn, &["a", "b", "c", "d"]);
        claim(&conn, "worker:1:r", 3);
        start(&conn, "a", "a", "worker:1:r");
        start(&conn, "b", "a", "worker:1:r");
        let mut stmt = conn.prepare(&finish_sql(3)).unwrap();
        let done: Vec<(String, String, Option<i64>, Option<String>)> = stmt
            .query_map(
                params![
                    5_000,
                    5_000,
                    "a",
                    "completed",
                    7,
                    None::<String>,
                    "b",
                    "failed",
                    None::<i64>,
                    "boom",
                    "d",
                    "cancelled",
                    None::<i64>,
                    None::<String>,
                    "worker:1:r"
                ],
                |r| {
                    Ok((
                        r.get("id")?,
                        r.get("status")?,
                        r.get("duration_ms")?,
                        r.get("error")?,
                    ))
                },
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut done = done;
        done.sort();
        assert_eq!(
            done,
            [
                ("a".into(), "completed".into(), Some(7), None),
                (
                    "b".into(),
                    "failed".into(),
                    Some(3_000),
                    Some("boom".into())
                ),
            ],
            "d was never claimed, so it is not this runner's to end"
        );
        assert_eq!(status(&conn, "c").0, "running");
        assert_eq!(status(&conn, "d").0, "queued");
        conn.execute(
            &outputs_sql(2),
            params![
                "a",
                "x.json",
                "application/json",
                2,
                b"{}".to_vec(),
                "a",
                "y.txt",
                "text/plain",
                1,
                b"y".to_vec()
            ],
        )
        .unwrap();
        conn.execute(
            &events_sql(2),
            params![
                "a",
                "job_completed",
                5_000,
                "{}",
                "b",
                "job_failed",
                5_000,
                "{}"
            ],
        )
        .unwrap();
        let outputs = count(&conn, "SELECT COUNT(*) FROM job_outputs WHERE job_id = 'a'");
        assert_eq!(outputs, 2);
    }

    #[test]
    fn a_dead_instance_s_waiting_jobs_go_back_to_the_queue() {
        let conn = migrated();
        queued(&conn, &["a", "b", "c"]);
        claim(&conn, "worker:1:r", 3);
        start(&conn, "a", "a", "worker:1:r");
        start(&conn, "b", "a", "worker:1:r");
        conn.execute("UPDATE jobs SET attempts = 2 WHERE id = 'c'", [])
            .unwrap();
        let mut stmt = conn.prepare(REQUEUE_WAITING_SQL).unwrap();
        let back: Vec<String> = stmt
            .query_map(params!["worker:1:", "worker:1:", 2], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, ["a"], "b was running; c is out of attempts");
        assert_eq!(
            status(&conn, "a"),
            ("queued".into(), None, None, 1),
            "a ran once"
        );
        assert_eq!(status(&conn, "b").0, "running");
    }
}

fn events(conn: &Connection) -> Vec<(i64, String, String)> {
    let mut stmt = conn
        .prepare("SELECT seq, job_id, event FROM job_events ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn the_lean_indexes_migration_keeps_every_event_and_the_triggers_that_write_them() {
    let conn = Connection::open_in_memory().unwrap();
    apply(&conn, ..=7);
    for id in ["job-1", "job-2"] {
        conn.execute(SUBMIT, rusqlite::params![id, "{}"]).unwrap();
    }
    conn.execute(
        "UPDATE jobs SET started_ms = 50, started_event = '{}' WHERE id = 'job-1'",
        [],
    )
    .unwrap();
    let before = events(&conn);
    assert_eq!(before.len(), 3);

    apply(&conn, 8..);
    assert_eq!(events(&conn), before, "the events and their numbers stay");
    // Both triggers are back: a submission and a start each write their event, numbered
    // after the last one.
    conn.execute(SUBMIT, rusqlite::params!["job-3", "{}"])
        .unwrap();
    conn.execute(
        "UPDATE jobs SET started_ms = 60, started_event = '{}' WHERE id = 'job-2'",
        [],
    )
    .unwrap();
    let after = events(&conn);
    let last = before.last().unwrap().0;
    assert_eq!(
        after[before.len()..],
        [
            (last + 1, "job-3".to_string(), "job_created".to_string()),
            (last + 2, "job-2".to_string(), "job_started".to_string()),
        ]
    );
    let sequence_rows = count(
        &conn,
        "SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'job_events'",
    );
    assert_eq!(
        sequence_rows, 0,
        "no AUTOINCREMENT counter is kept any more"
    );
}

/// SQLite's plan for `sql`, its detail lines joined.
fn plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let mut rows = stmt.raw_query();
    let mut lines = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        lines.push(row.get::<_, String>(3).unwrap());
    }
    lines.join("; ")
}

#[test]
fn the_list_and_the_claim_read_an_index_in_their_order() {
    use data20_domain::{Cursor, JobId, JobStatus, ListFilter, ToolName};
    let conn = migrated();
    let cursor = || {
        Some(Cursor {
            created_ms: 42,
            id: JobId::new(),
        })
    };
    let tool = || Some(ToolName::parse("text_stats").unwrap());
    let filter = |status, tool, cursor| ListFilter {
        status,
        tool,
        limit: 50,
        cursor,
    };
    let lists = [
        (filter(None, None, None), None),
        (filter(None, None, cursor()), None),
        (filter(Some(JobStatus::Queued), None, cursor()), None),
        (filter(None, tool(), None), None),
        (filter(None, tool(), None), Some("key-1")),
        (filter(None, None, cursor()), Some("key-1")),
    ];
    for (filter, owner) in &lists {
        let (sql, _) = data20_sqlite::jobs::list_sql(filter, *owner);
        let plan = plan(&conn, &sql);
        assert!(
            plan.contains("USING INDEX") && !plan.contains("TEMP B-TREE"),
            "{filter:?} {owner:?}: {plan}"
        );
    }
    let claim = plan(&conn, &data20_sqlite::batch::claim_sql());
    assert!(claim.contains("INDEX jobs_by_status_created"), "{claim}");
    for sql in [
        data20_sqlite::stats::DURATION_SUMMARY_SQL,
        data20_sqlite::stats::DURATION_AT_OFFSET_SQL,
    ] {
        let plan = plan(&conn, sql);
        assert!(plan.contains("COVERING INDEX jobs_by_duration"), "{plan}");
    }
}

/// WAL frames (pages) one single-job submission commits, on a file with `jobs` jobs.
fn frames_per_submission(jobs: usize) -> f64 {
    let path = std::env::temp_dir().join(format!(
        "data20-pages-{}-{}.db",
        std::process::id(),
        JOB_FILE_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    apply(&conn, ..);
    let submit = |i: usize| {
        // Ids grow with time, as UUID v7 ids do.
        conn.execute(
            "INSERT INTO job_submissions (id, tool, params, created_ms, dispatch, event, event_payload) \
             VALUES (?, 'text_stats', '{\"text\":\"hello\"}', ?, 'worker', 'job_created', '{}')",
            rusqlite::params![format!("{i:012}-7000-8000-000000000000"), 1_000_000 + i as i64],
        )
        .unwrap();
    };
    (0..jobs).for_each(submit);
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let wal = path.with_extension("db-wal");
    let before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    (jobs..jobs + 100).for_each(submit);
    let after = std::fs::metadata(&wal).unwrap().len();
    drop(conn);
    for suffix in ["db", "db-wal", "db-shm"] {
        let _ = std::fs::remove_file(path.with_extension(suffix));
    }
    let header = if before == 0 { 32 } else { 0 };
    (after - before - header) as f64 / (4096.0 + 24.0) / 100.0
}

static JOB_FILE_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn a_submission_commits_at_most_seven_pages() {
    // Thirteen before the lean indexes (migration 8: three descending indexes
    // rebalanced at their left edge, two full indexes a new job does not need, and
    // sqlite_sequence); eight before ids in creation order (migration 9).
    let frames = frames_per_submission(5_000);
    assert!(frames <= 7.5, "{frames:.2} pages a submission");
}

/// `sql` with data20's parameters on rusqlite: the ids of the rows it answers.
fn ids_of(conn: &Connection, sql: &str, params: &[data20_sqlite::Value]) -> Vec<String> {
    use data20_sqlite::Value;
    let params: Vec<rusqlite::types::Value> = params
        .iter()
        .map(|p| match p {
            Value::Integer(i) => rusqlite::types::Value::Integer(*i),
            Value::Real(f) => rusqlite::types::Value::Real(*f),
            Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
            Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
            Value::Null => rusqlite::types::Value::Null,
        })
        .collect();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            r.get::<_, String>("id")
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn the_list_of_all_jobs_by_id_pages_in_created_order_as_the_filtered_lists_do() {
    use data20_domain::{Cursor, JobId, JobStatus, ListFilter};
    let conn = migrated();
    // Jobs created at a few instants, several in the same millisecond, inserted out of
    // order (instances commit in any order).
    let mut jobs: Vec<(i64, JobId)> = [5, 3, 3, 9, 1, 3, 7, 7, 2, 9, 9, 4]
        .iter()
        .map(|&ms| {
            (
                1_764_000_000_000 + ms,
                JobId::created_at(1_764_000_000_000 + ms),
            )
        })
        .collect();
    for (created_ms, id) in &jobs {
        queued_job(&conn, &id.to_string(), "text_stats", "{}", *created_ms);
    }
    jobs.sort_by_key(|(ms, id)| (std::cmp::Reverse(*ms), std::cmp::Reverse(id.to_string())));
    let newest_first: Vec<String> = jobs.iter().map(|(_, id)| id.to_string()).collect();

    // Pages of 5, each from the cursor of the last job of the page before.
    let page_through = |status: Option<JobStatus>| {
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let filter = ListFilter {
                status,
                tool: None,
                limit: 5,
                cursor,
            };
            let (sql, params) = data20_sqlite::jobs::list_sql(&filter, None);
            let mut page = ids_of(&conn, &sql, &params);
            let more = page.len() > 5;
            page.truncate(5);
            seen.extend(page.iter().cloned());
            if !more {
                return seen;
            }
            let last = JobId::parse(page.last().unwrap()).unwrap();
            let (created_ms, _) = jobs.iter().find(|(_, id)| *id == last).unwrap();
            cursor = Some(Cursor {
                created_ms: *created_ms,
                id: last,
            });
        }
    };
    let (all_sql, _) = data20_sqlite::jobs::list_sql(
        &ListFilter {
            status: None,
            tool: None,
            limit: 5,
            cursor: None,
        },
        None,
    );
    assert!(plan(&conn, &all_sql).contains("sqlite_autoindex_jobs_1"));
    assert_eq!(page_through(None), newest_first, "all jobs, by id");
    assert_eq!(
        page_through(Some(JobStatus::Queued)),
        newest_first,
        "queued jobs, by (created_ms, id)"
    );
}

#[test]
fn a_database_at_version_8_is_migrated_by_its_first_claim() {
    let conn = Connection::open_in_memory().unwrap();
    apply(&conn, ..=8);
    let err = conn
        .prepare(&data20_sqlite::batch::claim_sql())
        .expect_err("the claim names an index version 8 does not have");
    assert!(
        matches!(
            data20_sqlite::classify(&err.to_string()),
            data20_sqlite::DbError::Schema(_)
        ),
        "{err}"
    );
    apply(&conn, 9..);
    conn.prepare(&data20_sqlite::batch::claim_sql()).unwrap();
    let created_index = count(
        &conn,
        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'jobs_by_created_asc'",
    );
    assert_eq!(created_index, 0);
}
