//! Streaming request bodies in with a size cap, and responses out through Spin's
//! `ResponseOutparam` (for components that stream, like Server-Sent Events).

use data20_domain::ApiError;
use futures::{SinkExt, StreamExt};
use spin_sdk::http::{IncomingRequest, OutgoingResponse, Request, Response, ResponseOutparam};

/// Reads `req` into a [`Request`], refusing a body over `cap` bytes before buffering
/// it: a `Content-Length` over the cap is refused at once, and a chunked body is cut
/// off as soon as it passes the cap. The request comes back either way (without its
/// body on error) so the caller can log it.
pub async fn read_capped(req: IncomingRequest, cap: usize) -> (Request, Result<(), ApiError>) {
    let mut request = Request::builder()
        .method(req.method())
        .uri(req.uri())
        .headers(req.headers())
        .build();
    let too_large = ApiError::PayloadTooLarge { limit: cap };
    let declared = request
        .header("content-length")
        .and_then(|v| v.as_str())
        .map(|v| v.trim().parse::<u64>());
    match declared {
        Some(Ok(n)) if n > cap as u64 => return (request, Err(too_large)),
        Some(Err(_)) => {
            return (
                request,
                Err(ApiError::BadRequest(
                    "content-length is not a number".into(),
                )),
            )
        }
        _ => {}
    }
    let mut body = Vec::new();
    let mut stream = req.into_body_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if body.len() + bytes.len() > cap {
                    return (request, Err(too_large));
                }
                body.extend_from_slice(&bytes);
            }
            Err(e) => {
                return (
                    request,
                    Err(ApiError::BadRequest(format!(
                        "could not read the request body: {}",
                        e.to_debug_string()
                    ))),
                )
            }
        }
    }
    *request.body_mut() = body;
    (request, Ok(()))
}

/// Sends a buffered [`Response`] through the out-parameter, then runs the work the
/// request left for after its response ([`crate::deferred`]).
pub async fn send(out: ResponseOutparam, resp: Response) {
    send_only(out, resp).await;
    crate::deferred::run_queued();
}

async fn send_only(out: ResponseOutparam, resp: Response) {
    let body = resp.body().to_vec();
    match OutgoingResponse::try_from(resp) {
        Ok(og) => {
            if let Err(e) = out.set_with_body(og, body).await {
                crate::log_warn(&format!("client went away while sending: {e:?}"));
            }
        }
        Err(e) => crate::log_warn(&format!("cannot build the response: {e}")),
    }
}

/// A body sink for a streamed answer: headers go out now, chunks as they come.
pub struct Stream {
    sink: std::pin::Pin<Box<dyn futures::Sink<Vec<u8>, Error = ()>>>,
}

impl Stream {
    pub fn start(out: ResponseOutparam, head: Response) -> Option<Stream> {
        let og = match OutgoingResponse::try_from(head) {
            Ok(og) => og,
            Err(e) => {
                crate::log_warn(&format!("cannot build the response: {e}"));
                return None;
            }
        };
        let sink = Box::pin(og.take_body().sink_map_err(|_| ()));
        out.set(og);
        Some(Stream { sink })
    }

    /// False once the client has gone away.
    pub async fn write(&mut self, chunk: Vec<u8>) -> bool {
        self.sink.send(chunk).await.is_ok()
    }
}
