//! Connecting to a cluster like kubectl does (kubeconfig, `$KUBECONFIG`, `--context`), and the
//! request layer that enforces read-only mode.
//!
//! Read-only mode is enforced here, on every HTTP request the client sends, not by hiding keys:
//! a request that could change the cluster never leaves the process. The decision is by
//! Kubernetes verb and resource ([`request_info`]), not by HTTP method: `pods/exec`, `pods/attach`
//! and `*/proxy` are GETs too.
//!
//! Every request carries `User-Agent: cutover/<version> (<os>/<arch>)`, as kubectl identifies
//! itself, so that audit logs and API priority rules can tell the cockpit's requests apart.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tower::{BoxError, Layer, Service};

use super::request_info::{self, RequestInfo};
use crate::cli::GlobalArgs;

/// Errors connecting to the cluster. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read kubeconfig {path}: {message}")]
    ReadKubeconfig { path: PathBuf, message: String },
    #[error("no kubeconfig found (tried $KUBECONFIG and ~/.kube/config); pass --kubeconfig")]
    NoKubeconfig,
    #[error("unknown context {wanted:?}; the kubeconfig has: {available}")]
    UnknownContext { wanted: String, available: String },
    #[error("the kubeconfig has no current-context; pass --context (available: {available})")]
    NoCurrentContext { available: String },
    #[error("invalid kubeconfig for context {context:?}: {message}")]
    Config { context: String, message: String },
}

/// A request refused by read-only mode. The path is kept, the query is not (an exec's query holds
/// the command line).
#[derive(Debug, thiserror::Error)]
#[error("read-only mode: refused {verb} {target} ({method} {path}); only reads and port-forward are sent")]
pub struct ReadOnlyRefused {
    /// The Kubernetes verb (`create`, `get` for a GET on `pods/exec`, …), `unknown` when the path
    /// has no request info.
    pub verb: String,
    /// `pods/exec`, `deployments.apps`, `non-resource path`, or why there is no request info.
    pub target: String,
    pub method: Method,
    pub path: String,
}

impl ReadOnlyRefused {
    fn new(method: &Method, path: &str, info: Result<&RequestInfo, &request_info::RequestInfoError>) -> Self {
        let (verb, target) = match info {
            Ok(i) => (i.verb.to_string(), i.target()),
            Err(e) => ("unknown".to_string(), e.to_string()),
        };
        ReadOnlyRefused { verb, target, method: method.clone(), path: path.to_string() }
    }
}

/// What the client says it is: `cutover/0.1.0 (linux/x86_64)`.
pub fn user_agent() -> String {
    format!("cutover/{} ({}/{})", env!("CARGO_PKG_VERSION"), std::env::consts::OS, std::env::consts::ARCH)
}

/// A connected cluster.
///
/// `client` is read-only whatever the mode: watchers, pre-flight, previews, status, flows and the
/// relay port-forward all read through it. Only [`super::write::WriteClient::new`] can make a
/// client that writes, and only from an armed connection (`write_config` is `None` otherwise).
#[derive(Clone)]
pub struct ClusterConn {
    pub client: kube::Client,
    pub context: String,
    pub cluster: String,
    /// API server URL (no credentials).
    pub server: String,
    pub read_only: bool,
    write_config: Option<kube::Config>,
}

impl std::fmt::Debug for ClusterConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConn")
            .field("context", &self.context)
            .field("cluster", &self.cluster)
            .field("server", &self.server)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// Reads the kubeconfig the way kubectl does: `--kubeconfig`, else every file in `$KUBECONFIG`
/// (merged, first wins), else `~/.kube/config`.
pub fn load_kubeconfig(global: &GlobalArgs) -> Result<Kubeconfig, ConnectError> {
    let paths: Vec<PathBuf> = match &global.kubeconfig {
        // clap fills this from $KUBECONFIG too, which may hold several paths.
        Some(p) => std::env::split_paths(p.as_os_str()).filter(|p| !p.as_os_str().is_empty()).collect(),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).ok_or(ConnectError::NoKubeconfig)?;
            vec![home.join(".kube").join("config")]
        }
    };
    let mut merged: Option<Kubeconfig> = None;
    for path in paths {
        if global.kubeconfig.is_none() && !path.exists() {
            return Err(ConnectError::NoKubeconfig);
        }
        let kc = Kubeconfig::read_from(&path)
            .map_err(|e| ConnectError::ReadKubeconfig { path: path.clone(), message: redact(&e.to_string()) })?;
        merged = Some(match merged {
            None => kc,
            Some(m) => m
                .merge(kc)
                .map_err(|e| ConnectError::ReadKubeconfig { path: path.clone(), message: redact(&e.to_string()) })?,
        });
    }
    merged.ok_or(ConnectError::NoKubeconfig)
}

/// The cluster name of the context chosen by `--context` (or the current one), without
/// connecting: it names the journal file.
pub fn cluster_name(global: &GlobalArgs) -> Result<String, ConnectError> {
    let kubeconfig = load_kubeconfig(global)?;
    let available = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let ctx_name = match global.context.as_deref() {
        Some(c) => c.to_string(),
        None => {
            kubeconfig.current_context.clone().ok_or(ConnectError::NoCurrentContext { available: available.clone() })?
        }
    };
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or(ConnectError::UnknownContext { wanted: ctx_name, available })
}

/// Connects to the context chosen by `--context` (or the current one). `read_only_for_context`
/// says whether the settings file marks that context read-only; `--read-only` always wins.
pub async fn connect(
    global: &GlobalArgs,
    read_only_for_context: impl Fn(&str) -> bool,
) -> Result<ClusterConn, ConnectError> {
    let kubeconfig = load_kubeconfig(global)?;
    connect_with(kubeconfig, global.context.as_deref(), global.read_only, read_only_for_context).await
}

/// Like [`connect`], from an already loaded kubeconfig.
pub async fn connect_with(
    kubeconfig: Kubeconfig,
    context: Option<&str>,
    read_only_flag: bool,
    read_only_for_context: impl Fn(&str) -> bool,
) -> Result<ClusterConn, ConnectError> {
    let available = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let ctx_name = match context {
        Some(c) => {
            if !kubeconfig.contexts.iter().any(|n| n.name == c) {
                return Err(ConnectError::UnknownContext { wanted: c.to_string(), available });
            }
            c.to_string()
        }
        None => kubeconfig.current_context.clone().ok_or(ConnectError::NoCurrentContext { available })?,
    };
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let opts = KubeConfigOptions { context: Some(ctx_name.clone()), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &opts)
        .await
        .map_err(|e| ConnectError::Config { context: ctx_name.clone(), message: redact(&e.to_string()) })?;
    let mut config = config;
    // kube-rs retries 429/503/504 for minutes by default; the cockpit shows them at once (a
    // PDB-blocked eviction, an API outage) and retries on its own terms.
    config.default_retry = false;
    let server = config.cluster_url.to_string();
    let read_only = read_only_flag || read_only_for_context(&ctx_name);
    let write_config = (!read_only).then(|| config.clone());
    let client =
        build_read_client(config).map_err(|message| ConnectError::Config { context: ctx_name.clone(), message })?;
    Ok(ClusterConn { client, context: ctx_name, cluster, server, read_only, write_config })
}

impl ClusterConn {
    /// The configuration a write client is built from; `None` when read-only.
    pub(crate) fn write_config(&self) -> Option<kube::Config> {
        self.write_config.clone()
    }
}

/// kube's default service stack (what `ClientBuilder::try_from(Config)` builds), naming itself.
pub(crate) type BaseService = UserAgent<
    tower::util::BoxService<Request<kube::client::Body>, http::Response<Box<kube::client::DynBody>>, BoxError>,
>;

/// The client builder every client starts from: kube's stack with the [`UserAgentLayer`], so
/// the cluster's audit log can tell cutover's requests apart, read or write.
pub(crate) fn builder(config: kube::Config) -> Result<kube::client::ClientBuilder<BaseService>, String> {
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| redact(&e.to_string()))?;
    let ua = HeaderValue::try_from(user_agent()).map_err(|e| format!("invalid User-Agent: {e}"))?;
    Ok(builder.with_layer(&UserAgentLayer(ua)))
}

/// Builds a client that can only read: every request goes through [`ReadOnlyLayer`].
pub fn build_read_client(config: kube::Config) -> Result<kube::Client, String> {
    Ok(builder(config)?.with_layer(&ReadOnlyLayer).build())
}

/// Whether read-only mode lets a request through, by its Kubernetes verb and resource (see
/// [`request_info::read_only_allows`]): reads, access reviews and pod port-forward.
pub fn is_read_request(method: &Method, path: &str, query: Option<&str>) -> bool {
    request_info::is_read_request(method, path, query)
}

/// Tower layer setting `User-Agent` (see [`user_agent`]) on requests that have none.
#[derive(Debug, Clone)]
pub struct UserAgentLayer(pub HeaderValue);

impl<S> Layer<S> for UserAgentLayer {
    type Service = UserAgent<S>;
    fn layer(&self, inner: S) -> UserAgent<S> {
        UserAgent { inner, value: self.0.clone() }
    }
}

/// See [`UserAgentLayer`].
#[derive(Debug, Clone)]
pub struct UserAgent<S> {
    inner: S,
    value: HeaderValue,
}

impl<S, B> Service<Request<B>> for UserAgent<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.headers_mut().entry(http::header::USER_AGENT).or_insert_with(|| self.value.clone());
        self.inner.call(req)
    }
}

/// Tower layer refusing, before it is sent, every request read-only mode does not allow.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOnlyLayer;

impl<S> Layer<S> for ReadOnlyLayer {
    type Service = ReadOnly<S>;
    fn layer(&self, inner: S) -> ReadOnly<S> {
        ReadOnly { inner }
    }
}

/// See [`ReadOnlyLayer`].
#[derive(Debug, Clone)]
pub struct ReadOnly<S> {
    inner: S,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, B> Service<Request<B>> for ReadOnly<S>
where
    S: Service<Request<B>>,
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
        let (method, path) = (req.method(), req.uri().path());
        let info = request_info::parse(method, path, req.uri().query());
        if !info.as_ref().is_ok_and(request_info::read_only_allows) {
            let err = ReadOnlyRefused::new(method, path, info.as_ref());
            tracing::warn!(verb = %err.verb, target = %err.target, %method, %path, "read-only mode refused a request");
            return Box::pin(async move { Err(Box::new(err) as BoxError) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// Removes anything that looks like a credential from an error message (tokens, keys).
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_inclusive(char::is_whitespace) {
        let w = word.trim_end();
        let secretish = w.len() >= 24
            && w.chars().filter(|c| c.is_ascii_alphanumeric()).count() * 10 >= w.len() * 8
            && !w.contains('/');
        if secretish {
            out.push_str("<redacted>");
            out.push_str(&word[w.len()..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

/// Whether a kube error is a 403 / 404 from the API (for "forbidden" / "not installed" states).
pub fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether a kube error came from read-only mode.
pub fn is_read_only_refusal(err: &kube::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = src {
        if e.is::<ReadOnlyRefused>() {
            return true;
        }
        src = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_requests() {
        assert!(is_read_request(&Method::GET, "/api/v1/pods", None));
        assert!(is_read_request(&Method::POST, "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", None));
        assert!(is_read_request(&Method::GET, "/api/v1/namespaces/a/pods/b/portforward", Some("ports=4245")));
        assert!(!is_read_request(&Method::POST, "/api/v1/namespaces/a/pods/b/eviction", None));
        assert!(!is_read_request(&Method::GET, "/api/v1/namespaces/a/pods/b/exec", Some("command=true")));
        assert!(!is_read_request(&Method::GET, "/api/v1/namespaces/a/services/s/proxy/", None));
        assert!(!is_read_request(&Method::PATCH, "/api/v1/nodes/n", None));
        assert!(!is_read_request(&Method::DELETE, "/api/v1/namespaces/a/pods/b", None));
        assert!(!is_read_request(&Method::PUT, "/api/v1/nodes/n", None));
    }

    #[test]
    fn user_agent_names_the_tool() {
        let ua = user_agent();
        assert!(ua.starts_with(&format!("cutover/{} (", env!("CARGO_PKG_VERSION"))), "{ua}");
        assert!(ua.ends_with(&format!("{}/{})", std::env::consts::OS, std::env::consts::ARCH)), "{ua}");
        assert!(HeaderValue::try_from(ua).is_ok());
    }

    #[tokio::test]
    async fn user_agent_is_set_unless_present() {
        let inner = tower::service_fn(|req: Request<()>| async move {
            Ok::<_, BoxError>(
                req.headers().get_all(http::header::USER_AGENT).iter().count().to_string()
                    + " "
                    + req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
            )
        });
        let mut svc = UserAgentLayer(HeaderValue::from_static("cutover/test")).layer(inner);
        let plain = Request::get("/api/v1/nodes").body(()).unwrap_or_default();
        assert_eq!(svc.call(plain).await.ok().as_deref(), Some("1 cutover/test"));
        let own = Request::get("/api").header("user-agent", "mine/1").body(()).unwrap_or_default();
        assert_eq!(svc.call(own).await.ok().as_deref(), Some("1 mine/1"));
    }

    #[test]
    fn redacts_tokens() {
        let m = redact("401 for token sim-admin.0123456789abcdef0123456789abcdef at http://127.0.0.1:1/api");
        assert!(!m.contains("0123456789abcdef"), "{m}");
        assert!(m.contains("http://127.0.0.1:1/api"));
    }

    #[tokio::test]
    async fn layer_refuses_writes_without_sending() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let sent = Arc::new(AtomicUsize::new(0));
        let s2 = sent.clone();
        let inner = tower::service_fn(move |_req: Request<()>| {
            s2.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(()) }
        });
        let mut svc = ReadOnlyLayer.layer(inner);
        let get = Request::get("/api/v1/nodes").body(()).unwrap_or_default();
        assert!(svc.call(get).await.is_ok());
        let patch = Request::patch("/api/v1/nodes/a").body(()).unwrap_or_default();
        let err = svc.call(patch).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("read-only"), "{err}");
        let exec = Request::get("/api/v1/namespaces/a/pods/b/exec?command=cat&command=%2Fetc%2Fshadow&stdout=true")
            .body(())
            .unwrap_or_default();
        let err = svc.call(exec).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("refused get pods/exec (GET /api/v1/namespaces/a/pods/b/exec)"), "{err}");
        assert!(!err.contains("shadow"), "the query stays out of the message: {err}");
        let proxy = Request::get("/api/v1/nodes/n/proxy/configz").body(()).unwrap_or_default();
        let err = svc.call(proxy).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("refused get nodes/proxy (GET /api/v1/nodes/n/proxy/configz)"), "{err}");
        let pf = Request::post("/api/v1/namespaces/kube-system/pods/r/portforward").body(()).unwrap_or_default();
        assert!(svc.call(pf).await.is_ok());
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }
}
