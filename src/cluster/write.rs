//! The one client that can change the cluster. Only the runner's executor holds one, and only
//! when the cockpit is armed: [`WriteClient::new`] returns `None` for a read-only connection, and
//! every other part of the program gets [`super::client::ClusterConn::client`], which is built
//! with the read-only layer whatever the mode.
//!
//! Every mutating request a `WriteClient` sends is journaled first: the [`RequestJournal`] hook
//! writes (and fsyncs) a `request` entry before the request leaves the process, and a
//! `response` entry with its status code after. If the entry cannot be written the request is
//! refused: no change is ever made without its record.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower::{BoxError, Layer, Service};

use super::client::{ClusterConn, is_read_request};

/// Records mutating requests around their sending (implemented by the runner's journal).
pub trait RequestJournal: Send + Sync {
    /// Called before a mutating request is sent; an error refuses it. Returns a token for
    /// [`RequestJournal::after`].
    fn before(&self, verb: &str, path: &str) -> Result<u64, String>;
    /// Called with the response's status code (0 when the request failed without one).
    fn after(&self, token: u64, code: u16);
}

/// A request refused because its journal entry could not be written.
#[derive(Debug, thiserror::Error)]
#[error("refused {verb} {path}: {reason}")]
pub struct JournalRefused {
    pub verb: String,
    pub path: String,
    pub reason: String,
}

/// A kube client that can write, journaling each change. See the module docs.
#[derive(Clone)]
pub struct WriteClient {
    client: kube::Client,
}

impl std::fmt::Debug for WriteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteClient")
    }
}

impl WriteClient {
    /// The write client of an armed connection; `None` when the connection is read-only.
    pub fn new(conn: &ClusterConn, journal: Arc<dyn RequestJournal>) -> Option<Result<WriteClient, String>> {
        let config = conn.write_config()?;
        Some(
            super::client::builder(config)
                .map(|b| WriteClient { client: b.with_layer(&JournalLayer { journal }).build() }),
        )
    }

    /// The underlying client, for the executor's `Api` calls.
    pub fn kube(&self) -> &kube::Client {
        &self.client
    }
}

/// The HTTP verb as the journal names it (the API server's verb for the common cases).
fn verb_of(method: &http::Method, path: &str) -> &'static str {
    match *method {
        http::Method::POST if path.ends_with("/eviction") => "create eviction",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// Tower layer journaling every mutating request around its sending.
#[derive(Clone)]
struct JournalLayer {
    journal: Arc<dyn RequestJournal>,
}

impl<S> Layer<S> for JournalLayer {
    type Service = Journaled<S>;
    fn layer(&self, inner: S) -> Journaled<S> {
        Journaled { inner, journal: self.journal.clone() }
    }
}

#[derive(Clone)]
struct Journaled<S> {
    inner: S,
    journal: Arc<dyn RequestJournal>,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, B, RB> Service<Request<B>> for Journaled<S>
where
    S: Service<Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFut<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        if is_read_request(req.method(), &path, req.uri().query()) {
            let fut = self.inner.call(req);
            return Box::pin(async move { fut.await.map_err(Into::into) });
        }
        let verb = verb_of(req.method(), &path);
        // Written and fsynced here, before the inner service sees the request: a short blocking
        // write on the local disk, on purpose not deferred.
        let token = match self.journal.before(verb, &path) {
            Ok(t) => t,
            Err(reason) => {
                tracing::error!(%verb, %path, %reason, "request refused: journal entry not written");
                let err = JournalRefused { verb: verb.to_string(), path, reason };
                return Box::pin(async move { Err(Box::new(err) as BoxError) });
            }
        };
        let journal = self.journal.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await.map_err(Into::into);
            let code = res.as_ref().map_or(0, |r: &http::Response<RB>| r.status().as_u16());
            journal.after(token, code);
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log {
        lines: Mutex<Vec<String>>,
        fail: bool,
    }

    impl RequestJournal for Log {
        fn before(&self, verb: &str, path: &str) -> Result<u64, String> {
            if self.fail {
                return Err("disk full".into());
            }
            let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            l.push(format!("before {verb} {path}"));
            Ok(l.len() as u64)
        }
        fn after(&self, token: u64, code: u16) {
            self.lines.lock().unwrap_or_else(|e| e.into_inner()).push(format!("after {token} {code}"));
        }
    }

    type Inner = tower::util::BoxService<Request<()>, http::Response<()>, BoxError>;

    fn inner(sent: Arc<Mutex<Vec<String>>>) -> Inner {
        tower::util::BoxService::new(tower::service_fn(move |req: Request<()>| {
            sent.lock().unwrap_or_else(|e| e.into_inner()).push(req.uri().path().to_string());
            async { Ok::<_, BoxError>(http::Response::builder().status(201).body(()).unwrap_or_default()) }
        }))
    }

    #[tokio::test]
    async fn a_change_is_journaled_before_it_is_sent_and_its_code_after() {
        let log = Arc::new(Log::default());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut svc = JournalLayer { journal: log.clone() }.layer(inner(sent.clone()));
        let get = Request::get("/api/v1/nodes").body(()).unwrap_or_default();
        assert!(svc.call(get).await.is_ok());
        let evict = Request::post("/api/v1/namespaces/a/pods/b/eviction").body(()).unwrap_or_default();
        assert!(svc.call(evict).await.is_ok());
        let lines = log.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(lines, vec!["before create eviction /api/v1/namespaces/a/pods/b/eviction", "after 1 201"]);
        assert_eq!(sent.lock().unwrap_or_else(|e| e.into_inner()).len(), 2);
    }

    #[tokio::test]
    async fn a_change_whose_entry_cannot_be_written_is_never_sent() {
        let log = Arc::new(Log { fail: true, ..Default::default() });
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut svc = JournalLayer { journal: log }.layer(inner(sent.clone()));
        let patch = Request::patch("/api/v1/nodes/w1").body(()).unwrap_or_default();
        let err = svc.call(patch).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("disk full"), "{err}");
        assert!(sent.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
    }
}
