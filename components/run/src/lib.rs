//! The run component: POST /api/run.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

// The build's SDK, as the export macros name it (SPEC §7): WASIp3 by default, the
// 5.2 line for the compatibility build.
#[cfg(feature = "sdk5")]
extern crate sdk5 as spin_sdk;
#[cfg(feature = "sdk6")]
extern crate sdk6 as spin_sdk;

use data20_domain::access::{Caller, Scope};
use data20_domain::idempotency::{self, IdempotencyKey};
use data20_domain::ToolSpec;
use data20_domain::{ApiError, Settings};
use data20_host::group::GroupCommit;
use data20_http::gate::{Cached, Need};
use data20_http::{error, header, io, Ctx, Request, Response};
use data20_jobs::{Created, Dispatch, Jobs, Submission, Submitted};
use data20_redis::gate::CacheRead;
use data20_redis::{keys, Redis};
use data20_sqlite::Db;
use serde::Deserialize;
use serde_json::{json, Value};
use std::rc::Rc;

/// Old jobs purged per inline run (where no worker does it).
const PURGE_BATCH: u32 = 100;

/// Largest accepted request body (SPEC §2).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

fn body_cap(method: &str) -> usize {
    if method == "POST" {
        MAX_BODY_BYTES
    } else {
        0
    }
}

data20_host::http_export!(handle, body_cap);

async fn handle(request: Request) -> Response {
    let ctx = Ctx::new("run", &request);
    let resp = if request.path() != "/api/run" {
        data20_http::not_found(&request)
    } else if request.method() != "POST" {
        let mut r = error(&ApiError::MethodNotAllowed(request.method().to_string()));
        r.set_header("allow", "POST");
        r
    } else {
        let settings = data20_http::settings().await;
        let redis = data20_http::redis(&settings);
        // The registry rides on the gate's round trip (not tallied: the hit/miss
        // counters are the tools route's).
        let registry = CacheRead {
            key: keys::TOOL_REGISTRY,
            counter: "",
        };
        data20_http::gate::gated(
            &request,
            &settings,
            &redis,
            Some(registry),
            Need::Scope(Scope::Run),
            async |cached, caller| match run(&request, &settings, &redis, cached, &caller).await {
                Ok(resp) => resp,
                Err(e) => error(&e),
            },
        )
        .await
    };
    ctx.finish(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    tool: String,
    #[serde(default = "empty_object")]
    params: Value,
}

fn empty_object() -> Value {
    json!({})
}

async fn run(
    req: &Request,
    settings: &Settings,
    redis: &Redis,
    cached: Cached,
    caller: &Caller,
) -> Result<Response, ApiError> {
    if let Some(ct) = header(req, "content-type")? {
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Err(ApiError::UnsupportedMediaType(
                ct.chars().take(100).collect(),
            ));
        }
    }
    let body: RunRequest = parse_body(io::body(req)?)?;
    let registry = data20_http::registry::from_cache(settings, redis, cached).await?;
    let spec = registry.get(&body.tool).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no tool named {:?}",
            body.tool.chars().take(64).collect::<String>()
        ))
    })?;
    if !body.params.is_object() {
        return Err(ApiError::Unprocessable {
            message: "params must be a JSON object".into(),
            details: vec![json!({"path": "", "message": "params must be a JSON object"})],
        });
    }
    match data20_tools::schema::validate(&spec.params, &body.params) {
        Ok(()) => {}
        Err(Ok(violations)) => {
            return Err(ApiError::Unprocessable {
                message: format!(
                    "params break the {} schema in {} place(s)",
                    spec.name,
                    violations.len()
                ),
                details: violations.iter().map(|v| json!(v)).collect(),
            })
        }
        Err(Err(msg)) => return Err(ApiError::Internal(msg)),
    }

    let key = header(req, "idempotency-key")?
        .map(IdempotencyKey::parse)
        .transpose()?;
    let Submitted {
        record,
        dispatch,
        replayed,
    } = match key {
        None => submit_grouped(settings, redis, spec, &body.params, caller).await?,
        Some(key) => {
            let scope =
                idempotency::scope(caller.owner(), &data20_http::gate::identity(req, settings)?);
            let fingerprint = idempotency::fingerprint(&body.tool, &body.params);
            // Its lookup and insert are a transaction: a connection of its own.
            let db = Db::open().await.map_err(data20_jobs::db_error)?;
            let jobs = api_jobs(&db, redis, settings);
            let stored_key = data20_sqlite::jobs::IdempotencyKey {
                scope: &scope,
                key: key.as_str(),
                body_hash: &fingerprint,
                valid_since_ms: data20_domain::time::now_ms() - data20_jobs::IDEMPOTENCY_WINDOW_MS,
            };
            jobs.submit(spec, &body.params, stored_key, caller.owner())
                .await?
        }
    };
    // The 202 goes out first: whatever the tool does (trap, loop) cannot cost the client
    // its answer, and the job is already in SQLite. With a worker subscribed the worker
    // runs it (and recovers lost runs as it drains): the POST does nothing more.
    let mut resp = data20_http::accepted(&record.view(), dispatch.as_str());
    if dispatch == Dispatch::Inline && !replayed {
        let (id, tool) = (record.id, record.tool.clone());
        resp = resp.then(async move {
            let settings = data20_http::settings().await;
            // A run is transactions: a connection of its own, not the shared one.
            let db = match Db::open().await {
                Ok(db) => db,
                Err(e) => {
                    // The job stays queued: the next read or a worker recovers it.
                    data20_http::log_warn(&format!("cannot run job {id} inline: {e}"));
                    return;
                }
            };
            Jobs::detached(db, settings, "api", async |jobs| {
                if let Err(e) = jobs.run(&registry, &id, &tool).await {
                    data20_http::log_warn(&format!("running job {id} inline failed: {e}"));
                }
                // Nobody else recovers lost runs or purges old jobs when there is no
                // worker.
                jobs.recover(&registry, 1).await;
                jobs.purge_expired(PURGE_BATCH).await;
            })
            .await
        });
    }
    if replayed {
        // The IETF draft leaves the marker to the server; Stripe's name for it.
        resp.set_header("idempotent-replayed", "true");
    }
    Ok(resp)
}

/// Submissions without an `Idempotency-Key` that reach this instance together share
/// one commit and one Redis round trip (`data20_host::group`). At 64 a batch stays one
/// statement of 512 parameters and a few hundred microseconds of SQLite; the instance
/// serves 16 requests at once, so it is never the limit in practice.
const MAX_GROUP: usize = 64;

type Submissions = GroupCommit<Submission, Result<Submitted, ApiError>>;

thread_local! {
    /// The instance's queue of submissions waiting for a commit: it holds only requests
    /// still in flight, each until its own answer is back.
    static SUBMISSIONS: Rc<Submissions> = Rc::new(GroupCommit::new(MAX_GROUP));
}

/// Creates the job in a group commit: one multi-row autocommit INSERT on the
/// instance's kept SQLite connection; then, while the next batch commits, one Lua call
/// for this batch's statuses, events and announcement.
async fn submit_grouped(
    settings: &Settings,
    redis: &Redis,
    spec: &ToolSpec,
    params: &Value,
    caller: &Caller,
) -> Result<Submitted, ApiError> {
    let submission = Submission {
        tool: spec.name.to_string(),
        params_json: params.to_string(),
        owner: caller.owner().map(str::to_string),
    };
    let queue = SUBMISSIONS.with(Rc::clone);
    let db = Db::open_shared().await.map_err(data20_jobs::db_error)?;
    let jobs = api_jobs(&db, redis, settings);
    let commit = async |batch: Vec<Submission>| match jobs.create_many(&batch).await {
        Ok(created) => created.into_iter().map(Ok).collect(),
        Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
    };
    let announce = async |committed: Vec<Result<Created, ApiError>>| {
        // A batch commits whole or not at all: all Ok or all the same error.
        let n = committed.len();
        let created: Result<Vec<Created>, ApiError> = committed.into_iter().collect();
        let announced = match created {
            Ok(created) => jobs.announce_created(created).await,
            Err(e) => Err(e),
        };
        match announced {
            Ok(all) => all.into_iter().map(Ok).collect(),
            Err(e) => vec![e; n].into_iter().map(Err).collect::<Vec<_>>(),
        }
    };
    queue
        .submit_then(submission, commit, announce)
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::Unavailable(format!(
                "{e}; the job may or may not have been created"
            )))
        })
}

/// The jobs as this API's requests act on them.
fn api_jobs<'a>(db: &'a Db, redis: &'a Redis, settings: &'a Settings) -> Jobs<'a> {
    Jobs {
        db,
        redis,
        settings,
        source: "api",
    }
}

/// Malformed JSON and wrong shapes are 400s with serde's explanation.
fn parse_body(bytes: &[u8]) -> Result<RunRequest, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "the body must be JSON: {\"tool\": \"...\", \"params\": {...}}".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
