//! HTTP for the components: data20's own request and response types, a router, and the
//! export macros that bind a handler to the chosen SDK.
//!
//! A handler is `async fn(Request) -> Response`. The request's body is read before the
//! handler runs, up to a cap the component names: a body over it never reaches memory.
//! A response carries its body whole or as a stream (Server-Sent Events), and may carry
//! work to run once it is sent ([`Response::then`]): that work belongs to its request,
//! never to the instance.

use futures::Stream;
use std::future::Future;
use std::pin::Pin;

/// A header value as it came: bytes, readable as text when it is UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValue(Vec<u8>);

impl HeaderValue {
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Why a request's body was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Declared or sent past the cap.
    TooLarge { limit: usize },
    /// `Content-Length` is not a number.
    BadLength,
    /// The client's stream broke.
    Read(String),
}

/// An incoming request, its body read (or refused: [`Request::body_error`]).
#[derive(Debug, Clone, Default)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, HeaderValue)>,
    body: Vec<u8>,
    body_error: Option<BodyError>,
}

impl Request {
    /// A request from its parts (`path_and_query` as in the request line).
    pub fn new(method: &str, path_and_query: &str, headers: Vec<(String, Vec<u8>)>) -> Request {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query: query.to_string(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), HeaderValue(v)))
                .collect(),
            body: Vec::new(),
            body_error: None,
        }
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query string, without the `?`.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The first header of that name (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn body_error(&self) -> Option<&BodyError> {
        self.body_error.as_ref()
    }

    #[cfg_attr(not(any(feature = "sdk5", feature = "sdk6")), allow(dead_code))]
    /// The declared `Content-Length` checked against `cap`, before any byte is read.
    fn check_declared_length(&self, cap: usize) -> Result<(), BodyError> {
        match self.header("content-length").and_then(|v| v.as_str()) {
            None => Ok(()),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > cap as u64 => Err(BodyError::TooLarge { limit: cap }),
                Ok(_) => Ok(()),
                Err(_) => Err(BodyError::BadLength),
            },
        }
    }

    /// Whether the request says it carries a body: a non-zero `Content-Length` or a
    /// `Transfer-Encoding`.
    pub fn may_have_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .and_then(|v| v.as_str())
                .is_some_and(|v| v.trim() != "0")
    }

    /// Fills in the body with `read(cap)`, unless the declared length is over `cap` or
    /// the request declares none (no length and no transfer coding: no body, RFC 9112
    /// §6.3, and nothing to ask the host for). Either SDK's glue passes its reader.
    #[cfg_attr(not(any(feature = "sdk5", feature = "sdk6")), allow(dead_code))]
    async fn read_body<F>(&mut self, cap: usize, read: impl FnOnce(usize) -> F)
    where
        F: Future<Output = Result<Vec<u8>, BodyError>>,
    {
        let outcome = match self.check_declared_length(cap) {
            Err(e) => Err(e),
            Ok(()) if !self.may_have_body() => return,
            Ok(()) => read(cap).await,
        };
        match outcome {
            Ok(bytes) => self.body = bytes,
            Err(e) => self.body_error = Some(e),
        }
    }
}

/// Work a response leaves for after it is sent.
pub type After = Pin<Box<dyn Future<Output = ()>>>;

/// A response body.
pub enum Body {
    Full(Vec<u8>),
    /// Chunks sent as they come; the stream is dropped once the client goes away.
    Stream(Pin<Box<dyn Stream<Item = Vec<u8>>>>),
}

/// An answer.
pub struct Response {
    status: u16,
    headers: Vec<(String, HeaderValue)>,
    body: Body,
    after: Vec<After>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Full(body.into()),
            after: Vec::new(),
        }
    }

    /// An empty body (a 204 or a 304).
    pub fn empty(status: u16) -> Response {
        Response::new(status, Vec::new())
    }

    /// A streamed body.
    pub fn stream(status: u16, chunks: impl Stream<Item = Vec<u8>> + 'static) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Stream(Box::pin(chunks)),
            after: Vec::new(),
        }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// Sets a header, replacing any of that name.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != name);
        self.headers
            .push((name, HeaderValue(value.into().into_bytes())));
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.set_header(name, value);
        self
    }

    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))
    }

    /// The whole body, when it is not streamed.
    pub fn body(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Full(b) => Some(b),
            Body::Stream(_) => None,
        }
    }

    /// Queues `work` to run once this response has been sent, after any queued before.
    /// Spin lets a component run on after its answer; a failure there is only logged,
    /// so work that may trap or run long (a job run inline) cannot spoil the answer.
    pub fn then(mut self, work: impl Future<Output = ()> + 'static) -> Response {
        self.after.push(Box::pin(work));
        self
    }

    #[cfg_attr(not(any(feature = "sdk5", feature = "sdk6")), allow(dead_code))]
    fn into_parts(self) -> (u16, Vec<(String, HeaderValue)>, Body, Vec<After>) {
        (self.status, self.headers, self.body, self.after)
    }
}

/// A route's captured parameters.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Routes to values of `T` (a component's own route enum), by method and path pattern
/// (`/api/jobs/:id`, `*` for the rest of the path).
pub struct Router<T> {
    routes: Vec<(Option<&'static str>, routefinder::Router<T>)>,
}

/// What a path matched.
pub enum Routed<T> {
    Found(T, Params),
    /// The path is known, not for this method.
    MethodNotAllowed,
    NotFound,
}

impl<T: Clone> Router<T> {
    pub fn new() -> Router<T> {
        Router { routes: Vec::new() }
    }

    /// Adds `pattern` for `method` (`None`: any method). Earlier additions win over
    /// later ones for the same path; within one, the most specific pattern wins.
    pub fn add(mut self, method: Option<&'static str>, pattern: &str, to: T) -> Router<T> {
        let mut router = routefinder::Router::new();
        // A pattern is a constant in the component; a bad one is caught by its tests.
        if router.add(pattern, to).is_ok() {
            self.routes.push((method, router));
        }
        self
    }

    pub fn route(&self, method: &str, path: &str) -> Routed<T> {
        let mut known_path = false;
        for (m, router) in &self.routes {
            if let Some(found) = router.best_match(path) {
                if m.is_none_or(|m| m.eq_ignore_ascii_case(method)) {
                    let params = found
                        .captures()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    return Routed::Found(found.handler().clone(), Params(params));
                }
                known_path = true;
            }
        }
        if known_path {
            Routed::MethodNotAllowed
        } else {
            Routed::NotFound
        }
    }
}

impl<T: Clone> Default for Router<T> {
    fn default() -> Self {
        Router::new()
    }
}

/// Binds `async fn handler(Request) -> Response` to the calling component's SDK (its
/// `sdk6` or `sdk5` feature, evaluated in the component), reading bodies up to
/// `cap(method)` bytes. The component's crate root must bring the SDK in as `spin_sdk`
/// (`extern crate sdk6 as spin_sdk;` under its `sdk6` feature, `sdk5` likewise).
#[macro_export]
macro_rules! http_export {
    ($handler:path, $cap:expr) => {
        #[cfg(feature = "sdk6")]
        #[::spin_sdk::http_service]
        async fn __data20_http_entry(
            req: ::spin_sdk::http::Request,
        ) -> $crate::http::sdk6_glue::Reply {
            $crate::http::sdk6_glue::serve(req, $cap, $handler).await
        }

        #[cfg(all(feature = "sdk5", not(feature = "sdk6")))]
        #[::spin_sdk::http_component]
        async fn __data20_http_entry(
            req: ::spin_sdk::http::IncomingRequest,
            out: ::spin_sdk::http::ResponseOutparam,
        ) {
            $crate::http::sdk5_glue::serve(req, out, $cap, $handler).await
        }
    };
}

/// Binds `async fn handler(Vec<u8>) -> Result<(), String>` to the Redis trigger of the
/// calling component's SDK (as for [`http_export`]).
#[macro_export]
macro_rules! redis_export {
    ($handler:path) => {
        #[cfg(feature = "sdk6")]
        #[::spin_sdk::redis_subscriber]
        async fn __data20_redis_entry(message: Vec<u8>) -> Result<(), String> {
            $handler(message).await
        }

        #[cfg(all(feature = "sdk5", not(feature = "sdk6")))]
        #[::spin_sdk::redis_component]
        async fn __data20_redis_entry(message: Vec<u8>) -> Result<(), String> {
            $handler(message).await
        }
    };
}

#[cfg(feature = "sdk6")]
#[doc(hidden)]
pub mod sdk6_glue {
    use super::{Body, BodyError, Request, Response};
    use bytes::Bytes;
    use futures::Stream;
    use http_body::Frame;
    use http_body_util::BodyExt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// The body handed to Spin: whole, or polled chunk by chunk as the client reads.
    pub enum ReplyBody {
        Full(Option<Bytes>),
        Stream(Pin<Box<dyn Stream<Item = Vec<u8>>>>),
    }

    impl http_body::Body for ReplyBody {
        type Data = Bytes;
        type Error = anyhow::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, anyhow::Error>>> {
            match self.get_mut() {
                ReplyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
                ReplyBody::Stream(chunks) => chunks
                    .as_mut()
                    .poll_next(cx)
                    .map(|c| c.map(|c| Ok(Frame::data(Bytes::from(c))))),
            }
        }

        // A whole body says its length: the answer goes out with `Content-Length`
        // instead of chunked.
        fn is_end_stream(&self) -> bool {
            matches!(self, ReplyBody::Full(None))
        }

        fn size_hint(&self) -> http_body::SizeHint {
            match self {
                ReplyBody::Full(Some(b)) => http_body::SizeHint::with_exact(b.len() as u64),
                ReplyBody::Full(None) => http_body::SizeHint::with_exact(0),
                ReplyBody::Stream(_) => http_body::SizeHint::default(),
            }
        }
    }

    pub type Reply = hyperium::Response<ReplyBody>;

    thread_local! {
        /// Requests this instance is serving now (for the log batching in `crate::log`).
        static IN_FLIGHT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    pub async fn serve<F, Fut>(
        req: sdk6::http::Request,
        cap: fn(&str) -> usize,
        handler: F,
    ) -> Reply
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        IN_FLIGHT.with(|n| n.set(n.get() + 1));
        let reply = serve_one(req, cap, handler).await;
        let still = IN_FLIGHT.with(|n| {
            n.set(n.get().saturating_sub(1));
            n.get()
        });
        crate::log::request_ended(still);
        reply
    }

    async fn serve_one<F, Fut>(
        req: sdk6::http::Request,
        cap: fn(&str) -> usize,
        handler: F,
    ) -> Reply
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let (parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        let mut request = Request::new(parts.method.as_str(), &path_and_query, headers);
        request
            .read_body(cap(request.method()), |cap| read_capped(body, cap))
            .await;
        let (status, headers, body, after) = handler(request).await.into_parts();
        if !after.is_empty() {
            sdk6::wasip3::spawn(async move {
                for work in after {
                    work.await;
                }
                // The log lines it wrote leave now if nothing else is in flight (else
                // with the last request to end).
                crate::log::request_ended(IN_FLIGHT.with(std::cell::Cell::get));
            });
        }
        let body = match body {
            Body::Full(bytes) => ReplyBody::Full(Some(Bytes::from(bytes))),
            Body::Stream(chunks) => ReplyBody::Stream(chunks),
        };
        let mut builder = hyperium::Response::builder().status(status);
        for (k, v) in &headers {
            builder = builder.header(k.as_str(), v.as_bytes());
        }
        builder.body(body).unwrap_or_else(|e| {
            let msg = format!("{{\"error\":\"cannot build the response: {e}\"}}");
            let mut r = hyperium::Response::new(ReplyBody::Full(Some(Bytes::from(msg))));
            *r.status_mut() = hyperium::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }

    async fn read_capped<B>(mut body: B, cap: usize) -> Result<Vec<u8>, BodyError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > cap {
                    return Err(BodyError::TooLarge { limit: cap });
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }
}

#[cfg(feature = "sdk5")]
#[doc(hidden)]
pub mod sdk5_glue {
    use super::{Body, BodyError, Request, Response};
    use futures::{SinkExt, StreamExt};
    use sdk5::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
    use std::future::Future;

    pub async fn serve<F, Fut>(
        req: IncomingRequest,
        out: ResponseOutparam,
        cap: fn(&str) -> usize,
        handler: F,
    ) where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let path_and_query = req.path_with_query().unwrap_or_else(|| "/".into());
        let headers = req.headers().entries();
        let mut request = Request::new(&req.method().to_string(), &path_and_query, headers);
        request
            .read_body(cap(request.method()), |cap| read_capped(req, cap))
            .await;
        let (status, headers, body, after) = handler(request).await.into_parts();
        let fields: Vec<(String, Vec<u8>)> = headers
            .into_iter()
            .map(|(k, v)| (k, v.as_bytes().to_vec()))
            .collect();
        let og = match Fields::from_list(&fields) {
            Ok(f) => OutgoingResponse::new(f),
            Err(e) => {
                data20_log(&format!("cannot build the response headers: {e:?}"));
                OutgoingResponse::new(Fields::new())
            }
        };
        if og.set_status_code(status).is_err() {
            data20_log(&format!("invalid status code {status}"));
        }
        match body {
            Body::Full(bytes) => {
                if let Err(e) = out.set_with_body(og, bytes).await {
                    data20_log(&format!("client went away while sending: {e:?}"));
                }
            }
            Body::Stream(mut chunks) => {
                let mut sink = og.take_body();
                out.set(og);
                while let Some(chunk) = chunks.next().await {
                    if sink.send(chunk).await.is_err() {
                        break;
                    }
                }
            }
        }
        for work in after {
            work.await;
        }
    }

    async fn read_capped(req: IncomingRequest, cap: usize) -> Result<Vec<u8>, BodyError> {
        let mut body = Vec::new();
        let mut stream = req.into_body_stream();
        while let Some(chunk) = stream.next().await {
            let bytes = chunk.map_err(|e| BodyError::Read(e.to_debug_string()))?;
            if body.len() + bytes.len() > cap {
                return Err(BodyError::TooLarge { limit: cap });
            }
            body.extend_from_slice(&bytes);
        }
        Ok(body)
    }

    fn data20_log(msg: &str) {
        eprintln!("{{\"level\":\"warn\",\"msg\":{msg:?}}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    enum R {
        One,
        Rest,
    }

    #[test]
    fn routes_by_method_then_path() {
        let router =
            Router::new()
                .add(Some("GET"), "/api/jobs/:id", R::One)
                .add(None, "/api/*", R::Rest);
        match router.route("GET", "/api/jobs/abc") {
            Routed::Found(R::One, p) => assert_eq!(p.get("id"), Some("abc")),
            _ => panic!("GET /api/jobs/abc should route to One"),
        }
        assert!(matches!(
            router.route("POST", "/api/jobs/abc"),
            Routed::Found(R::Rest, _)
        ));
        let get_only = Router::new().add(Some("GET"), "/a", R::One);
        assert!(matches!(
            get_only.route("PUT", "/a"),
            Routed::MethodNotAllowed
        ));
        assert!(matches!(get_only.route("GET", "/b"), Routed::NotFound));
    }

    #[test]
    fn requests_split_path_and_query_and_fold_header_names() {
        let req = Request::new(
            "get",
            "/api/tools?category=x",
            vec![("X-Cache".into(), b"HIT".to_vec())],
        );
        assert_eq!(req.method(), "GET");
        assert_eq!(req.path(), "/api/tools");
        assert_eq!(req.query(), "category=x");
        assert_eq!(req.header("x-cache").and_then(|v| v.as_str()), Some("HIT"));
    }

    #[test]
    fn declared_lengths_over_the_cap_are_refused_unread() {
        let req = |len: &str| {
            Request::new(
                "POST",
                "/",
                vec![("content-length".into(), len.as_bytes().to_vec())],
            )
        };
        assert_eq!(req("10").check_declared_length(10), Ok(()));
        assert_eq!(
            req("11").check_declared_length(10),
            Err(BodyError::TooLarge { limit: 10 })
        );
        assert_eq!(
            req("ten").check_declared_length(10),
            Err(BodyError::BadLength)
        );
    }

    #[test]
    fn only_a_length_or_a_transfer_coding_means_a_body() {
        let req = |h: &[(&str, &str)]| {
            Request::new(
                "GET",
                "/",
                h.iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            )
        };
        assert!(!req(&[]).may_have_body());
        assert!(!req(&[("content-length", "0")]).may_have_body());
        assert!(req(&[("content-length", "5")]).may_have_body());
        assert!(req(&[("transfer-encoding", "chunked")]).may_have_body());
    }

    #[test]
    fn set_header_replaces() {
        let mut r = Response::new(200, "x");
        r.set_header("ETag", "a");
        r.set_header("etag", "b");
        assert_eq!(r.headers().count(), 1);
        assert_eq!(r.header("etag").and_then(|v| v.as_str()), Some("b"));
    }
}
