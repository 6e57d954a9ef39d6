//! HTTP/1 over hyper on the server's own thread and runtime: the event pipeline never waits
//! for it. Reads of the history run on the runtime's blocking pool, a few at a time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::api::{self, ViewQuery};
use crate::guard::{self, COOKIE_NAME, Refusal};

/// Connections open at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Bytes of a request's line and headers (more: 431).
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// Characters of a request's path and query (more: 414).
pub const MAX_URI: usize = 2048;
/// Characters of the search text.
const MAX_SEARCH: usize = 256;
/// Time to send a request's head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// A connection's whole life (keep-alive included).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);
/// History reads at once (each holds a blocking thread).
pub const CONCURRENT_QUERIES: usize = 2;
/// Time a query waits for its turn, then runs at most.
const QUERY_WAIT: Duration = Duration::from_secs(10);
const QUERY_DEADLINE: Duration = Duration::from_secs(30);

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

pub struct State {
    pub bound: SocketAddr,
    pub token: String,
    pub history_dir: PathBuf,
    pub queries: Arc<Semaphore>,
}

pub async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: do not spin.
                tracing::debug!(error = %e, "web accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(respond(&state, &req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_DEADLINE)
                .max_header_size(MAX_HEAD_BYTES)
                .max_headers(64)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
            drop(permit);
        });
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (name, value) in [
        ("content-type", content_type),
        ("content-security-policy", "default-src 'self'"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_str(value).expect("static header"));
    }
    r
}

fn text(status: StatusCode, message: &str) -> Answer {
    answer(
        status,
        "text/plain; charset=utf-8",
        format!("{message}\n").into_bytes(),
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Answer {
    answer(status, "application/json", value.to_string().into_bytes())
}

/// `%XX` decoded (what `encodeURIComponent` makes); None if not UTF-8 or malformed.
pub fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A query parameter, decoded; the error is the 400's message.
fn param(query: Option<&str>, name: &str) -> Result<Option<String>, String> {
    match guard::query_param(query, name) {
        None => Ok(None),
        Some(raw) => decode_component(raw)
            .map(Some)
            .ok_or_else(|| format!("parameter {name}: bad percent-encoding")),
    }
}

fn millis(query: Option<&str>, name: &str) -> Result<Option<i64>, String> {
    match param(query, name)? {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("parameter {name}: {v:?} is not milliseconds since the epoch")),
    }
}

async fn respond(state: &State, req: &Request<Incoming>) -> Answer {
    let query = req.uri().query();
    let query_token = guard::query_param(query, "token");
    if let Err(refused) = guard::check(req.headers(), state.bound, &state.token, query_token) {
        return match refused {
            Refusal::Host => text(
                StatusCode::MISDIRECTED_REQUEST,
                "Host must name this server by IP address or localhost",
            ),
            Refusal::Origin => text(StatusCode::FORBIDDEN, "cross-origin request refused"),
            Refusal::Token => text(
                StatusCode::UNAUTHORIZED,
                "token required: open the URL `vigil history web-url` prints",
            ),
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: GET and HEAD only",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "no request body is read here",
        );
    }
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI {
        return text(StatusCode::URI_TOO_LONG, "request URI too long");
    }
    match req.uri().path() {
        "/" if query_token.is_some() => {
            // The token leaves the URL (history, screen) for a cookie scripts cannot read
            // and other sites' requests do not carry.
            let mut r = text(StatusCode::SEE_OTHER, "see /");
            let cookie = format!(
                "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict",
                state.token
            );
            let h = r.headers_mut();
            h.insert(header::LOCATION, HeaderValue::from_static("/"));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                h.insert(header::SET_COOKIE, v);
            }
            r
        }
        "/" => answer(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => answer(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        "/app.css" => answer(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        "/api/view" => {
            let q = match view_query(query) {
                Ok(q) => q,
                Err(message) => return text(StatusCode::BAD_REQUEST, &message),
            };
            let dir = state.history_dir.clone();
            read(state, move || api::view(&dir, &q).map(Some)).await
        }
        "/api/process" => {
            let exec_id = match param(query, "exec_id") {
                Ok(Some(id)) if !id.is_empty() && id.len() <= 256 => id,
                Ok(_) => return text(StatusCode::BAD_REQUEST, "parameter exec_id: required"),
                Err(message) => return text(StatusCode::BAD_REQUEST, &message),
            };
            let dir = state.history_dir.clone();
            read(state, move || api::process(&dir, &exec_id)).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn view_query(query: Option<&str>) -> Result<ViewQuery, String> {
    let search = param(query, "q")?.unwrap_or_default();
    if search.chars().count() > MAX_SEARCH {
        return Err(format!("parameter q: longer than {MAX_SEARCH} characters"));
    }
    Ok(ViewQuery {
        since_ms: millis(query, "since")?,
        until_ms: millis(query, "until")?,
        search,
    })
}

/// Runs a history read on the blocking pool, a few at a time, within deadlines.
async fn read(
    state: &State,
    work: impl FnOnce() -> Result<Option<serde_json::Value>, vigil_history::HistoryError>
    + Send
    + 'static,
) -> Answer {
    let queries = Arc::clone(&state.queries);
    let permit = match tokio::time::timeout(QUERY_WAIT, queries.acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => return text(StatusCode::SERVICE_UNAVAILABLE, "busy: try again"),
    };
    // The permit goes with the work: a read that outlives its deadline still counts.
    let task = tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    });
    let result = tokio::time::timeout(QUERY_DEADLINE, task).await;
    match result {
        Ok(Ok(Ok(Some(v)))) => json(StatusCode::OK, &v),
        Ok(Ok(Ok(None))) => text(StatusCode::NOT_FOUND, "no such process in the history"),
        Ok(Ok(Err(e))) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "error": e.to_string() }),
        ),
        Ok(Err(_)) => text(StatusCode::INTERNAL_SERVER_ERROR, "the query failed"),
        Err(_) => text(StatusCode::GATEWAY_TIMEOUT, "the query took too long"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode_component("a%2Bb%3D%3D").as_deref(), Some("a+b=="));
        assert_eq!(decode_component("%C3%A9").as_deref(), Some("é"));
        assert_eq!(decode_component("%zz"), None);
        assert_eq!(decode_component("%4"), None);
        assert_eq!(decode_component("%FF"), None);
    }
}
