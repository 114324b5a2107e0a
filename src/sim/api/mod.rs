//! The simulated Kubernetes API server: plain HTTP/1.1 and h2c on loopback, serving the objects of
//! the sim's [`Store`](crate::sim::Store) with kube-apiserver's wire behaviour (discovery, list
//! paging, watch streams with bookmarks and 410s, patches, eviction, Status errors, RBAC-style
//! 403s, server-side Tables for kubectl, WebSocket port-forward) plus the faults of
//! [`ActiveFaults`](crate::sim::ActiveFaults) and a small `/simulator/v1` control surface.
//!
//! Everything here goes through real sockets; see docs/simulator.md for the differences from a
//! real API server.

mod authz;
mod control;
mod discovery;
mod error;
mod objects;
mod patch;
mod pods;
mod portforward;
mod proto;
mod route;
mod select;
mod spdy;
mod table;
pub mod tls;
mod watch;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

use super::{Identity, RequestRecord, SimShared};
pub use error::ApiError;
use route::Route;

/// Largest request body accepted (kube-apiserver's limit is 3 MiB too).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How often a watch that asked for bookmarks gets one.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// State shared by every connection of one server.
pub(crate) struct ApiState {
    pub shared: Arc<SimShared>,
    /// Seeded: decides which requests an `ErrorRate` fault fails.
    rng: Mutex<fastrand::Rng>,
    pub snapshots: Mutex<objects::Snapshots>,
    /// Closed when the server task ends: long-lived streams stop with it.
    pub shutdown: tokio::sync::watch::Receiver<()>,
}

/// Serves the Kubernetes API on `listener` until the task is aborted (which also ends every open
/// connection, watch stream and port-forward).
pub fn serve(listener: TcpListener, shared: Arc<SimShared>) -> JoinHandle<()> {
    // Made before the task starts, so that the CA is known as soon as `serve` returns.
    let tls = match tls::make() {
        Ok(t) => {
            let _ = shared.api_ca_pem.set(t.ca_pem.clone());
            Some(Arc::new(t.acceptor))
        }
        Err(e) => {
            warn!(error = %e, "sim api: TLS unavailable, serving plain HTTP only");
            None
        }
    };
    tokio::spawn(async move {
        let (_shutdown_tx, shutdown) = tokio::sync::watch::channel(());
        let seed = shared.seed ^ 0x00a9_1000;
        let state = Arc::new(ApiState {
            shared,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            snapshots: Mutex::new(objects::Snapshots::default()),
            shutdown,
        });
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        conns.spawn(serve_conn(stream, state.clone(), tls.clone()));
                    }
                    Err(e) => {
                        warn!(error = %e, "sim api: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

async fn serve_conn(stream: TcpStream, state: Arc<ApiState>, tls: Option<Arc<tokio_rustls::TlsAcceptor>>) {
    let _ = stream.set_nodelay(true);
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut first = [0u8; 1];
    let is_tls = matches!(stream.peek(&mut first).await, Ok(1) if first[0] == tls::HANDSHAKE);
    let result = match tls {
        Some(acceptor) if is_tls => match acceptor.accept(stream).await {
            Ok(s) => builder.serve_connection_with_upgrades(TokioIo::new(s), svc).await,
            Err(e) => {
                debug!(error = %e, "sim api: TLS handshake failed");
                return;
            }
        },
        _ => builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await,
    };
    if let Err(e) = result {
        debug!(error = %e, "sim api: connection ended with error");
    }
}

/// What gets recorded about a request while it is handled.
struct Rec {
    verb: &'static str,
    identity: Option<Identity>,
}

async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let user_agent =
        req.headers().get(http::header::USER_AGENT).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut rec = Rec { verb: "unknown", identity: None };
    let resp = match dispatch(&state, req, &mut rec).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let code = resp.status().as_u16();
    debug!(%method, %path, verb = rec.verb, code, "sim api request");
    state.shared.requests.push(RequestRecord {
        verb: rec.verb.to_string(),
        method,
        path,
        query,
        user_agent,
        identity: rec.identity,
        code,
    });
    resp
}

/// Decoded query string; repeated keys are kept (`port=1&port=2`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Result<Query, ApiError> {
        let Some(q) = q else { return Ok(Query::default()) };
        let uri: http::Uri = format!("/?{q}").parse().map_err(|_| ApiError::bad_request("malformed query string"))?;
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map(|v| Query(v.0))
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }

    /// Server-side dry run (`dryRun=All`).
    pub fn dry_run(&self) -> bool {
        self.all("dryRun").any(|v| v == "All")
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Reads a request body, at most [`MAX_BODY`] bytes (413 beyond).
pub(crate) async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("failed to read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    // Oversized bodies are read to the end (up to a bound) before answering, so that the client
    // sees the 413 instead of a broken pipe.
    if seen > MAX_BODY { Err(ApiError::too_large()) } else { Ok(buf.freeze()) }
}

/// How much of an oversized body is read and thrown away before the 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

async fn dispatch(state: &Arc<ApiState>, req: Request<Incoming>, rec: &mut Rec) -> Result<Response<Body>, ApiError> {
    let shared = &state.shared;
    let query = Query::parse(req.uri().query());
    let route = route::parse(req.uri().path(), &shared.store);
    let watching = query.as_ref().is_ok_and(|q| q.flag("watch"));
    rec.verb = match &route {
        Ok(Route::Object(p)) if p.res.group == "authorization.k8s.io" => "review",
        Ok(Route::Object(p)) => route::verb(req.method(), p, watching).unwrap_or("unknown"),
        Ok(Route::Simulator(_)) => "simulator",
        Ok(_) => "discovery",
        Err(_) => "unknown",
    };
    let control = matches!(route, Ok(Route::Simulator(_)));
    let faults = shared.faults.borrow().clone();
    // The control surface stays reachable so that a test can always clear faults.
    if !control {
        if faults.api_down() {
            return Err(ApiError::unavailable());
        }
        if !faults.slow.is_zero() {
            tokio::time::sleep(faults.slow).await;
        }
    }
    let identity = bearer(req.headers()).and_then(|t| shared.tokens.identify(t));
    rec.identity = identity;
    // Version and health are public, as with the system:public-info-viewer role.
    match route {
        Ok(Route::Version) => return Ok(discovery::version()),
        Ok(Route::Health) => return Ok(discovery::health()),
        _ => {}
    }
    let Some(identity) = identity else { return Err(ApiError::unauthorized()) };
    if !control && faults.error_percent > 0 {
        let roll = state.rng.lock().unwrap_or_else(|e| e.into_inner()).u8(0..100);
        if roll < faults.error_percent {
            return Err(ApiError::internal("simulated server error (ErrorRate fault)"));
        }
    }
    let query = query?;
    match route? {
        Route::Version | Route::Health => Err(ApiError::no_route()),
        Route::CoreVersions => Ok(discovery::core_versions(req.headers())),
        Route::Groups => Ok(discovery::groups(&shared.store)),
        Route::Group(g) => discovery::group(&shared.store, &g),
        Route::ResourceList { group, version } => discovery::resources(&shared.store, &group, &version),
        Route::OpenApi(rest) => discovery::openapi(&shared.store, &rest),
        Route::Simulator(rest) => control::handle(state, req, &rest, identity).await,
        Route::Object(p) => {
            let verb = route::verb(req.method(), &p, watching)?;
            authz::check(identity, verb, &p)?;
            if matches!(verb, "list" | "watch") {
                let qualified = error::qualified(p.res);
                let names = [p.res.id, p.res.plural, qualified.as_str()];
                if shared.faults.send_if_modified(|f| f.take_too_many_requests(&names)) {
                    return Err(ApiError::storage_initializing());
                }
            }
            objects::handle(state, req, p, verb, &query, identity).await
        }
    }
}
