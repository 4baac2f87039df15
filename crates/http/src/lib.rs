//! Shared HTTP plumbing: every component parses requests and renders answers the same
//! way, so this lives once here.

pub mod gate;
pub mod io;
pub mod query;
pub mod registry;

use data20_domain::{ApiError, Settings};
pub use data20_host::http::{Params, Request, Response, Routed, Router};
use serde::Serialize;

pub use query::Query;

/// The component's settings from Spin variables (kept per instance on WASIp3, read on
/// first use on WASIp2: [`data20_host::variables`]). A component only sees the
/// variables its manifest entry declares; missing ones take the defaults.
pub async fn settings() -> Settings {
    Settings::new(data20_host::variables::lookup(&data20_domain::settings::VARIABLES).await)
}

/// The request's Redis client.
pub fn redis(settings: &Settings) -> data20_redis::Redis {
    data20_redis::Redis::from_settings(settings)
}

pub use data20_domain::log::warn as log_warn;

/// Per-request context: request id, timing and the structured log line.
pub struct Ctx {
    pub component: &'static str,
    pub request_id: String,
    pub method: String,
    pub path: String,
    started_ns: u64,
}

impl Ctx {
    pub fn new(component: &'static str, req: &Request) -> Ctx {
        let request_id = req
            .header("x-request-id")
            .and_then(|v| v.as_str())
            .filter(|id| is_valid_request_id(id))
            .map(str::to_string)
            .unwrap_or_else(new_request_id);
        Ctx {
            component,
            request_id,
            method: req.method().to_string(),
            path: req.path().to_string(),
            started_ns: data20_host::time::monotonic_ns(),
        }
    }

    /// Stamps the common headers on `resp` and writes the request's log line.
    pub fn finish(&self, mut resp: Response) -> Response {
        resp.set_header("x-request-id", self.request_id.clone());
        let cache = resp
            .header("x-cache")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        data20_host::log::write_lines(data20_domain::log::render(&RequestLine {
            level: "info",
            component: self.component,
            request_id: &self.request_id,
            method: &self.method,
            route: &self.path,
            status: resp.status(),
            duration_us: data20_host::time::monotonic_ns().saturating_sub(self.started_ns) / 1_000,
            cache: cache.as_deref(),
        }));
        resp
    }
}

thread_local! {
    /// This instance's request-id prefix (random, drawn once) and its counter. Safe to
    /// keep: an id names a request, it carries nothing of one. A random draw per
    /// request was a host call per request; prefix and counter are as unique.
    static REQUEST_IDS: std::cell::Cell<(u64, u64)> = std::cell::Cell::new((
        uuid::Uuid::new_v4().as_u64_pair().0,
        0,
    ));
}

/// A new request id: 32 hex digits, the instance's prefix then its counter.
fn new_request_id() -> String {
    REQUEST_IDS.with(|ids| {
        let (prefix, n) = ids.get();
        ids.set((prefix, n.wrapping_add(1)));
        format!("{prefix:016x}{n:016x}")
    })
}

/// A request's log line (rendered without building a JSON map first).
#[derive(Serialize)]
struct RequestLine<'a> {
    cache: Option<&'a str>,
    component: &'a str,
    duration_us: u64,
    level: &'a str,
    method: &'a str,
    request_id: &'a str,
    route: &'a str,
    status: u16,
}

/// Request ids are echoed in headers and logs: accept only short, plain ones.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    Response::new(status, body).with_header("content-type", "application/json")
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(status, body),
        Err(e) => error(&ApiError::Internal(format!("cannot render JSON: {e}"))),
    }
}

/// The **202** for a new job (POST /api/run, a retry): `{job_id, status, dispatch,
/// links}` (and `retry_of` for a retry), with `Location` on the job.
pub fn accepted(view: &data20_domain::JobView, dispatch: &str) -> Response {
    let mut body = serde_json::json!({
        "job_id": view.job_id,
        "status": view.status,
        "dispatch": dispatch,
        "links": view.links,
    });
    if let Some(old) = view.retry_of {
        body["retry_of"] = serde_json::json!(old);
    }
    let mut resp = json(202, &body);
    resp.set_header("location", view.links.self_.clone());
    resp
}

pub fn error(err: &ApiError) -> Response {
    let mut resp = json_bytes(err.status(), err.to_json());
    match err {
        ApiError::TooManyRequests { retry_after_s } => {
            resp.set_header("retry-after", retry_after_s.to_string())
        }
        ApiError::Unauthorized(_) => resp.set_header("www-authenticate", "Bearer realm=\"data20\""),
        _ => {}
    }
    resp
}

/// A header's value as text; `Err` for a header that is not UTF-8 or is too long.
pub fn header<'a>(req: &'a Request, name: &str) -> Result<Option<&'a str>, ApiError> {
    match req.header(name) {
        None => Ok(None),
        Some(v) => match v.as_str() {
            Some(s) if s.len() <= 8192 => Ok(Some(s)),
            Some(_) => Err(ApiError::BadRequest(format!("header {name} is too long"))),
            None => Err(ApiError::BadRequest(format!(
                "header {name} is not valid UTF-8"
            ))),
        },
    }
}

/// The JSON answer for a route the component does not have.
pub fn not_found(req: &Request) -> Response {
    error(&ApiError::NotFound(format!("no route for {}", req.path())))
}

pub fn method_not_allowed(req: &Request) -> Response {
    let mut resp = error(&ApiError::MethodNotAllowed(req.method().to_string()));
    resp.set_header("allow", "GET, HEAD");
    resp
}

/// A component's GET routes, then the JSON fallbacks: 405 on those paths and on
/// `other_paths` for other methods, 404 anywhere else, so each path is named once.
/// Answers the route and its parameters, or the fallback answer.
pub fn route_get<T: Clone + 'static>(
    req: &Request,
    routes: &'static [(&'static str, T)],
    other_paths: &'static [&'static str],
) -> Result<(T, Params), Response> {
    let routed = ROUTERS.with(|kept| {
        let mut kept = kept.borrow_mut();
        let router = kept
            .entry(routes.as_ptr() as usize)
            .or_insert_with(|| {
                let mut router = Router::new();
                for (path, to) in routes {
                    router = router.add(Some("GET"), path, Some(to.clone()));
                }
                for path in other_paths {
                    router = router.add(None, path, None);
                }
                Box::new(router)
            })
            .downcast_ref::<Router<Option<T>>>()
            .map(|r| r.route(req.method(), req.path()));
        routed_or_not_found(router)
    });
    match routed {
        Routed::Found(Some(to), params) => Ok((to, params)),
        Routed::Found(None, _) | Routed::MethodNotAllowed => Err(method_not_allowed(req)),
        Routed::NotFound => Err(not_found(req)),
    }
}

thread_local! {
    /// Each component's routing table, built from its constant route list on first use
    /// (keyed by where the list lives). Safe to keep: it is the component's code.
    static ROUTERS: std::cell::RefCell<std::collections::HashMap<usize, Box<dyn std::any::Any>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

fn routed_or_not_found<T>(routed: Option<Routed<T>>) -> Routed<T> {
    routed.unwrap_or(Routed::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_get_paths_and_answers_405_and_404_in_json() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum R {
            List,
            One,
        }
        let route = |method: &str, path: &str| {
            let req = Request::new(method, path, Vec::new());
            route_get(
                &req,
                &[("/api/x", R::List), ("/api/x/:name", R::One)],
                &["/api/x/:name/go"],
            )
            .map(|(r, p)| (r, p.get("name").map(str::to_string)))
            .map_err(|resp| resp.status())
        };
        for _ in 0..2 {
            assert_eq!(route("GET", "/api/x"), Ok((R::List, None)));
            assert_eq!(route("GET", "/api/x/a"), Ok((R::One, Some("a".into()))));
            assert_eq!(route("POST", "/api/x"), Err(405));
            assert_eq!(route("GET", "/api/x/a/go"), Err(405));
            assert_eq!(route("GET", "/elsewhere"), Err(404));
        }
    }

    #[test]
    fn new_request_ids_are_distinct_and_valid() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!((a.len(), a[..16] == b[..16]), (32, true));
        assert!(is_valid_request_id(&a));
    }

    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(is_valid_request_id("abc-123_x.y:z"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("has space"));
        assert!(!is_valid_request_id("new\nline"));
        assert!(!is_valid_request_id(&"a".repeat(129)));
    }
}
