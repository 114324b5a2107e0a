//! Talking to hubble-relay: connecting (address or Kubernetes port-forward), typed errors, the
//! one-shot calls (`ServerStatus`, `GetNodes`, `GetNamespaces`, `GetFlows`), and the long-running
//! flow source the Flows pane uses ([`spawn_flow_source`]): follow with reconnect, capped
//! exponential backoff with jitter, resume from the last flow without duplicates, gaps surfaced,
//! relay status refreshed on the same connection, client-side drops counted.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use pbjson_types::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::hubble::filter::{CompiledRequest, FilterError};
use crate::hubble::proto::flow::FlowFilter;
use crate::hubble::proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, Node,
    ServerStatusRequest, ServerStatusResponse, get_flows_response::ResponseTypes, observer_client::ObserverClient,
};
use crate::hubble::time::{rfc3339, timestamp_nanos};

/// Default hubble-relay port (`hubble observe --server localhost:4245`).
pub const DEFAULT_RELAY_PORT: u16 = 4245;
/// The Service Cilium's Helm chart creates for the relay.
pub const RELAY_SERVICE: &str = "hubble-relay";

/// Errors talking to hubble-relay. Messages are one line and name what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HubbleError {
    #[error("invalid hubble-relay address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },
    #[error("hubble-relay at {target} is unreachable: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("{target} is not a hubble-relay: {reason}")]
    NotARelay { target: String, reason: String },
    #[error("hubble-relay at {target} ended the flow stream: {reason}")]
    StreamEnded { target: String, reason: String },
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("hubble-relay at {target}: {message}")]
    Rpc { target: String, message: String },
    #[error("cannot port-forward to hubble-relay through the Kubernetes API: {0}")]
    Kube(String),
}

impl From<FilterError> for HubbleError {
    fn from(e: FilterError) -> Self {
        HubbleError::InvalidFilter(e.to_string())
    }
}

impl HubbleError {
    /// Whether retrying can help (the filter will not become valid by waiting).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, HubbleError::InvalidFilter(_) | HubbleError::InvalidAddress { .. })
    }
}

/// Where the relay is.
#[derive(Clone)]
pub enum RelayTarget {
    /// `host:port` or `http://host:port` (plaintext HTTP/2, as the relay's port 4245 / Service port 80).
    Address(String),
    /// Port-forward through the Kubernetes API to a Ready pod behind Service `hubble-relay` in
    /// `namespace` (usually `kube-system`).
    Kube { client: kube::Client, namespace: String },
    /// A channel the caller built (custom connector, tests).
    Channel { channel: Channel, label: String },
}

impl std::fmt::Debug for RelayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl RelayTarget {
    /// Short text for messages (`127.0.0.1:4245`, `port-forward kube-system/hubble-relay`).
    pub fn describe(&self) -> String {
        match self {
            RelayTarget::Address(a) => a.clone(),
            RelayTarget::Kube { namespace, .. } => format!("port-forward {namespace}/{RELAY_SERVICE}"),
            RelayTarget::Channel { label, .. } => label.clone(),
        }
    }

    /// Opens a channel to the relay.
    pub async fn connect(&self) -> Result<Channel, HubbleError> {
        match self {
            RelayTarget::Address(a) => connect(a).await,
            RelayTarget::Kube { client, namespace } => connect_via_kube(client.clone(), namespace).await,
            RelayTarget::Channel { channel, .. } => Ok(channel.clone()),
        }
    }
}

/// Normalizes `host:port` / `http://host[:port]` into a URI; `https://` is refused (no TLS support).
pub fn relay_uri(address: &str) -> Result<String, HubbleError> {
    let invalid =
        |reason: &str| HubbleError::InvalidAddress { address: address.to_string(), reason: reason.to_string() };
    let a = address.trim();
    if a.is_empty() {
        return Err(invalid("empty address"));
    }
    let rest = if let Some(r) = a.strip_prefix("http://") {
        r
    } else if a.starts_with("https://") || a.starts_with("tls://") {
        return Err(invalid("TLS to hubble-relay is not supported; use a plaintext address or the port-forward"));
    } else if a.contains("://") {
        return Err(invalid("expected host:port or http://host:port"));
    } else {
        a
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') {
        return Err(invalid("expected host:port or http://host:port"));
    }
    // Add the default port when none is given (a bare IPv6 literal needs brackets to carry one).
    let has_port = match hostport.rsplit_once(':') {
        Some((h, p)) => {
            !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']'))
        }
        None => false,
    };
    let uri = if has_port { format!("http://{hostport}") } else { format!("http://{hostport}:{DEFAULT_RELAY_PORT}") };
    uri.parse::<http::Uri>().map_err(|e| invalid(&e.to_string()))?;
    Ok(uri)
}

fn endpoint(uri: String) -> Result<Endpoint, HubbleError> {
    let e = Endpoint::from_shared(uri.clone())
        .and_then(|e| e.user_agent(crate::cluster::client::user_agent()))
        .map_err(|e| HubbleError::InvalidAddress { address: uri, reason: e.to_string() })?;
    Ok(e.connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// Connects to a relay by address.
pub async fn connect(address: &str) -> Result<Channel, HubbleError> {
    let ep = endpoint(relay_uri(address)?)?;
    match ep.connect().await {
        Ok(c) => Ok(c),
        Err(e) => Err(refine(address, classify_transport(address, &e)).await),
    }
}

/// What a server answers to an HTTP/2 client preface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It sent an HTTP/2 SETTINGS frame.
    Http2,
    /// It answered HTTP/1 (the status line).
    Http1(String),
    /// Something else (the first bytes, printable).
    Other(String),
    /// It closed the connection without a word.
    Silent,
    /// No TCP connection.
    Unreachable(String),
}

/// Opens a TCP connection to `address` and sends the HTTP/2 preface to see what answers.
pub async fn probe(address: &str) -> Probe {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(uri) = relay_uri(address) else { return Probe::Unreachable("invalid address".into()) };
    let hostport = uri.trim_start_matches("http://").to_string();
    let t = Duration::from_secs(3);
    let mut sock = match tokio::time::timeout(t, tokio::net::TcpStream::connect(hostport.as_str())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Probe::Unreachable(e.to_string()),
        Err(_) => return Probe::Unreachable("connect timed out".into()),
    };
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    if sock.write_all(&hello).await.is_err() {
        return Probe::Silent;
    }
    let mut buf = [0u8; 128];
    let mut n = 0;
    while n < 9 {
        match tokio::time::timeout(t, sock.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(k)) => n += k,
            Ok(Err(_)) => break,
        }
    }
    let got = &buf[..n];
    if n >= 9 && got[3] == 0x04 {
        Probe::Http2
    } else if got.starts_with(b"HTTP/") {
        let line = String::from_utf8_lossy(got).lines().next().unwrap_or_default().to_string();
        Probe::Http1(line)
    } else if n == 0 {
        Probe::Silent
    } else {
        Probe::Other(got.iter().map(|&c| if c.is_ascii_graphic() || c == b' ' { char::from(c) } else { '.' }).collect())
    }
}

/// Turns vague transport errors from a plain address into "not a relay" when the server there
/// does not speak HTTP/2 (an HTTP/1 server, a database, …).
async fn refine(target: &str, err: HubbleError) -> HubbleError {
    let vague = match &err {
        HubbleError::Unreachable { reason, .. } | HubbleError::StreamEnded { reason, .. } => reason.clone(),
        HubbleError::Rpc { message, .. } => message.clone(),
        _ => return err,
    };
    let v = vague.to_ascii_lowercase();
    if v.contains("refused")
        || !["broken pipe", "reset", "eof", "transport error", "connection error", "h2", "protocol", "closed"]
            .iter()
            .any(|p| v.contains(p))
    {
        return err;
    }
    if relay_uri(target).is_err() {
        return err;
    }
    let why = match probe(target).await {
        Probe::Http1(line) => format!("it answered HTTP/1 ({line})"),
        Probe::Other(bytes) => format!("it answered something else ({bytes:?})"),
        Probe::Silent => "it closed the connection without speaking HTTP/2".to_string(),
        Probe::Http2 | Probe::Unreachable(_) => return err,
    };
    HubbleError::NotARelay {
        target: target.to_string(),
        reason: format!("{why}; hubble-relay speaks gRPC over HTTP/2 (pod port 4245, Service port 80)"),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn classify_transport(target: &str, e: &tonic::transport::Error) -> HubbleError {
    let text = error_chain(e);
    if looks_like_wrong_protocol(&text) {
        HubbleError::NotARelay { target: target.to_string(), reason: protocol_reason(&text) }
    } else {
        HubbleError::Unreachable { target: target.to_string(), reason: text }
    }
}

fn looks_like_wrong_protocol(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "h2 protocol error",
        "http2 error",
        "frame with invalid size",
        "invalid http",
        "content-type",
        "content type",
        "preface",
        "protocol error",
        "invalid compression flag",
        "unexpected eof",
    ]
    .iter()
    .any(|p| t.contains(p))
}

fn protocol_reason(text: &str) -> String {
    format!(
        "it does not answer gRPC over HTTP/2 ({text}); check the address/port (hubble-relay listens on 4245, its Service on 80)"
    )
}

/// Maps a gRPC status from the relay to an error.
pub fn classify_status(target: &str, s: &tonic::Status) -> HubbleError {
    use tonic::Code;
    let msg = s.message().to_string();
    let source = std::error::Error::source(s).map(error_chain).unwrap_or_default();
    let text = if source.is_empty() { msg.clone() } else { format!("{msg}: {source}") };
    match s.code() {
        Code::Unimplemented => HubbleError::NotARelay {
            target: target.to_string(),
            reason: format!("the server does not implement observer.Observer ({msg})"),
        },
        Code::InvalidArgument => HubbleError::InvalidFilter(msg),
        _ if looks_like_wrong_protocol(&text) => {
            HubbleError::NotARelay { target: target.to_string(), reason: protocol_reason(&text) }
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            HubbleError::Unreachable { target: target.to_string(), reason: text }
        }
        _ => HubbleError::Rpc { target: target.to_string(), message: format!("{:?}: {text}", s.code()) },
    }
}

/// `ServerStatus` of the relay.
pub async fn server_status(channel: &Channel, target: &str) -> Result<ServerStatusResponse, HubbleError> {
    match ObserverClient::new(channel.clone()).server_status(ServerStatusRequest {}).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) => Err(refine(target, classify_status(target, &s)).await),
    }
}

/// `GetNodes` of the relay.
pub async fn get_nodes(channel: &Channel, target: &str) -> Result<Vec<Node>, HubbleError> {
    match ObserverClient::new(channel.clone()).get_nodes(GetNodesRequest {}).await {
        Ok(r) => Ok(r.into_inner().nodes),
        Err(s) => Err(refine(target, classify_status(target, &s)).await),
    }
}

/// `GetNamespaces` of the relay.
pub async fn get_namespaces(channel: &Channel, target: &str) -> Result<GetNamespacesResponse, HubbleError> {
    match ObserverClient::new(channel.clone()).get_namespaces(GetNamespacesRequest {}).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) => Err(refine(target, classify_status(target, &s)).await),
    }
}

/// A `GetFlows` stream.
pub struct FlowStream {
    inner: tonic::codec::Streaming<GetFlowsResponse>,
    target: String,
}

impl FlowStream {
    /// The next response; `Ok(None)` when the relay ended the stream normally.
    pub async fn message(&mut self) -> Result<Option<GetFlowsResponse>, HubbleError> {
        self.inner.message().await.map_err(|s| match classify_status(&self.target, &s) {
            HubbleError::Unreachable { target, reason } => HubbleError::StreamEnded { target, reason },
            other => other,
        })
    }
}

/// Starts `GetFlows`.
pub async fn get_flows(channel: &Channel, target: &str, req: GetFlowsRequest) -> Result<FlowStream, HubbleError> {
    let resp =
        match ObserverClient::new(channel.clone()).max_decoding_message_size(16 * 1024 * 1024).get_flows(req).await {
            Ok(r) => r,
            Err(s) => return Err(refine(target, classify_status(target, &s)).await),
        };
    Ok(FlowStream { inner: resp.into_inner(), target: target.to_string() })
}

// ---------------------------------------------------------------------------------------------
// Kubernetes port-forward

/// Finds a Ready pod behind Service `hubble-relay` and the pod port its Service targets.
pub async fn find_relay_pod(client: &kube::Client, namespace: &str) -> Result<(String, u16), HubbleError> {
    use kube::api::{Api, ListParams};
    let svcs: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = match svcs.get_opt(RELAY_SERVICE).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(HubbleError::Kube(format!(
                "no Service {RELAY_SERVICE} in namespace {namespace} (is Hubble Relay enabled? hubble.relay.enabled=true)"
            )));
        }
        Err(e) => return Err(HubbleError::Kube(format!("reading Service {namespace}/{RELAY_SERVICE}: {e}"))),
    };
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
        .map(|s| s.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        .unwrap_or_else(|| "k8s-app=hubble-relay".to_string());
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| HubbleError::Kube(format!("listing pods {selector} in {namespace}: {e}")))?;
    let pod = pick_ready_pod(&list.items).ok_or_else(|| {
        HubbleError::Kube(format!("no Ready pod behind Service {namespace}/{RELAY_SERVICE} (selector {selector})"))
    })?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    Ok((name, target_port(&svc, pod)))
}

/// The first Running, Ready, not terminating pod (by name, for stable choices).
pub fn pick_ready_pod(pods: &[Pod]) -> Option<&Pod> {
    let mut ready: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    ready.into_iter().next()
}

/// The pod port the Service forwards to (named target ports looked up in the pod; default 4245).
pub fn target_port(svc: &Service, pod: &Pod) -> u16 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let port = ports.and_then(|p| p.iter().find(|p| p.name.as_deref() == Some("grpc")).or_else(|| p.first()));
    let Some(port) = port else { return DEFAULT_RELAY_PORT };
    match &port.target_port {
        Some(IntOrString::Int(n)) => u16::try_from(*n).unwrap_or(DEFAULT_RELAY_PORT),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .unwrap_or(DEFAULT_RELAY_PORT),
        None => u16::try_from(port.port).unwrap_or(DEFAULT_RELAY_PORT),
    }
}

/// Opens a channel to hubble-relay over Kubernetes port-forward streams. Each HTTP/2 connection
/// the channel makes (including reconnects) finds a Ready relay pod again and opens a new
/// port-forward, so a restarted relay pod is picked up.
pub async fn connect_via_kube(client: kube::Client, namespace: &str) -> Result<Channel, HubbleError> {
    // Fail early with a clear message when there is no relay at all.
    find_relay_pod(&client, namespace).await?;
    let ns = namespace.to_string();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let (pod, port) = find_relay_pod(&client, &ns).await?;
            let api: kube::api::Api<Pod> = kube::api::Api::namespaced(client, &ns);
            let mut pf = api
                .portforward(&pod, &[port])
                .await
                .map_err(|e| HubbleError::Kube(format!("port-forward to {ns}/{pod}:{port}: {e}")))?;
            let stream = pf
                .take_stream(port)
                .ok_or_else(|| HubbleError::Kube(format!("port-forward to {ns}/{pod}:{port} gave no stream")))?;
            if let Some(err) = pf.take_error(port) {
                tokio::spawn(async move {
                    if let Some(msg) = err.await {
                        tracing::warn!(pod = %pod, port, error = %msg, "hubble-relay port-forward failed");
                    }
                });
            }
            Ok::<_, HubbleError>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let ep = endpoint(format!("http://{RELAY_SERVICE}.{namespace}.svc:80"))?;
    let label = format!("port-forward {namespace}/{RELAY_SERVICE}");
    ep.connect_with_connector(connector).await.map_err(|e| classify_transport(&label, &e))
}

// ---------------------------------------------------------------------------------------------
// Long-running flow source

/// What to ask the relay for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowQuery {
    /// Last N flows per node (0 with `follow` = only new flows).
    pub number: u64,
    /// Oldest N instead of newest.
    pub first: bool,
    pub follow: bool,
    pub whitelist: Vec<FlowFilter>,
    pub blacklist: Vec<FlowFilter>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl FlowQuery {
    /// The newest `n` flows per node, then follow.
    pub fn follow_last(n: u64) -> FlowQuery {
        FlowQuery { number: n, follow: true, ..Default::default() }
    }

    /// The request for this query.
    pub fn to_request(&self) -> GetFlowsRequest {
        GetFlowsRequest {
            number: self.number,
            first: self.first,
            follow: self.follow,
            blacklist: self.blacklist.clone(),
            whitelist: self.whitelist.clone(),
            since: self.since,
            until: self.until,
            field_mask: None,
            experimental: None,
        }
    }
}

/// Events of a flow source, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum HubbleEvent {
    /// The stream is established (`attempt` = failed attempts before this one).
    Connected { target: String, attempt: u32 },
    /// A flow (the whole response, so `node_name`/`time` come along).
    Flow(Box<GetFlowsResponse>),
    /// A relay node-status event (node connected / unavailable / gone / error).
    NodeStatus { state: i32, nodes: Vec<String>, message: String, node_name: String, time: Option<Timestamp> },
    /// The relay or an agent lost events (ring buffer overrun, perf buffer full).
    Lost { source: i32, count: u64, cpu: Option<i32>, node_name: String, time: Option<Timestamp> },
    /// After a reconnect, flows between `from` and `to` may be missing (the relay's buffer no longer
    /// holds them). `to` is `None` when the relay could not tell.
    Gap { from: Timestamp, to: Option<Timestamp>, reason: String },
    /// The consumer was too slow: `count` flows were dropped here since the last report
    /// (`total` since start).
    ClientDropped { count: u64, total: u64 },
    /// The connection or stream failed; the source retries in `retry_in`.
    Disconnected { error: String, attempt: u32, retry_in: Duration },
    /// `ServerStatus`, refreshed periodically.
    ServerStatus(ServerStatusResponse),
    /// `GetNodes`, refreshed periodically.
    Nodes(Vec<Node>),
    /// A non-follow query (or one with `until`) is complete; the source stopped.
    Ended,
    /// A permanent error (invalid filter or address); the source stopped.
    Failed { error: String },
}

/// Tuning of [`spawn_flow_source_with`].
#[derive(Debug, Clone)]
pub struct FlowSourceOptions {
    /// How often `ServerStatus` and `GetNodes` are refreshed.
    pub status_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Drop flows (and count them) when the channel is full instead of waiting. Waiting would stall
    /// the network read and make the relay drop them anyway, later and silently.
    pub drop_when_full: bool,
    /// How far before the last delivered flow a resume starts (catches slightly out-of-order flows;
    /// duplicates in that window are recognised and dropped).
    pub resume_overlap: Duration,
    /// Seed of the backoff jitter (None = random).
    pub jitter_seed: Option<u64>,
}

impl Default for FlowSourceOptions {
    fn default() -> Self {
        FlowSourceOptions {
            status_interval: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(15),
            drop_when_full: true,
            resume_overlap: Duration::from_secs(1),
            jitter_seed: None,
        }
    }
}

/// Counters of a flow source, readable at any time (the TUI shows them without waiting for events).
#[derive(Debug, Default)]
pub struct FlowSourceStats {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped_client: AtomicU64,
    pub duplicates: AtomicU64,
    pub lost_server: AtomicU64,
    pub reconnects: AtomicU64,
    pub connected: AtomicBool,
    /// Time of the newest delivered flow, Unix nanoseconds (0 = none yet).
    pub last_flow_unix_nanos: AtomicI64,
}

/// A copy of [`FlowSourceStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStatsSnapshot {
    pub received: u64,
    pub delivered: u64,
    pub dropped_client: u64,
    pub duplicates: u64,
    pub lost_server: u64,
    pub reconnects: u64,
    pub connected: bool,
    pub last_flow_unix_nanos: i64,
}

impl FlowSourceStats {
    pub fn snapshot(&self) -> FlowStatsSnapshot {
        FlowStatsSnapshot {
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped_client: self.dropped_client.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            lost_server: self.lost_server.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            last_flow_unix_nanos: self.last_flow_unix_nanos.load(Ordering::Relaxed),
        }
    }
}

/// A running flow source. Dropping it does not stop the task; call [`FlowSource::abort`] or drop
/// the receiver (the task ends when the channel closes).
pub struct FlowSource {
    pub task: JoinHandle<()>,
    pub stats: Arc<FlowSourceStats>,
}

impl FlowSource {
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts a background task that streams `query` from `target` into `tx` (see [`HubbleEvent`])
/// with default options. Flows use `try_send` (counted when dropped); other events wait for room.
/// The channel may carry any event type made from a `HubbleEvent` (the cockpit's own event type:
/// no forwarding task, no second channel hop per flow).
pub fn spawn_flow_source<E>(target: RelayTarget, query: FlowQuery, tx: mpsc::Sender<E>) -> FlowSource
where
    E: From<HubbleEvent> + Send + 'static,
{
    spawn_flow_source_with(target, query, tx, FlowSourceOptions::default())
}

/// [`spawn_flow_source`] with options.
pub fn spawn_flow_source_with<E>(
    target: RelayTarget,
    query: FlowQuery,
    tx: mpsc::Sender<E>,
    opts: FlowSourceOptions,
) -> FlowSource
where
    E: From<HubbleEvent> + Send + 'static,
{
    let stats = Arc::new(FlowSourceStats::default());
    let runner = Runner {
        target,
        query,
        tx: EventTx { inner: tx },
        rng: opts.jitter_seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
        opts,
        stats: stats.clone(),
        dedup: Dedup::default(),
        high_water: None,
        pending_dropped: 0,
        encode_buf: Vec::new(),
    };
    FlowSource { task: tokio::spawn(runner.run()), stats }
}

/// Keys of recently delivered flows, to drop the overlap a resume replays.
#[derive(Default)]
struct Dedup {
    set: HashSet<(i128, u64)>,
    order: VecDeque<(i128, u64)>,
}

const DEDUP_MAX: usize = 200_000;

impl Dedup {
    /// Records the key; false if it was already delivered.
    fn insert(&mut self, key: (i128, u64), keep_after: i128) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        while let Some(front) = self.order.front() {
            if front.0 < keep_after || self.order.len() > DEDUP_MAX {
                self.set.remove(front);
                self.order.pop_front();
            } else {
                break;
            }
        }
        true
    }
}

/// The source's end of the channel: converts each `HubbleEvent` into the consumer's event type.
struct EventTx<E> {
    inner: mpsc::Sender<E>,
}

impl<E: From<HubbleEvent>> EventTx<E> {
    async fn send(&self, ev: HubbleEvent) -> Result<(), mpsc::error::SendError<E>> {
        self.inner.send(E::from(ev)).await
    }

    fn try_send(&self, ev: HubbleEvent) -> Result<(), mpsc::error::TrySendError<E>> {
        self.inner.try_send(E::from(ev))
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    async fn closed(&self) {
        self.inner.closed().await;
    }
}

struct Runner<E> {
    target: RelayTarget,
    query: FlowQuery,
    tx: EventTx<E>,
    opts: FlowSourceOptions,
    rng: fastrand::Rng,
    stats: Arc<FlowSourceStats>,
    dedup: Dedup,
    /// Time of the newest delivered flow.
    high_water: Option<Timestamp>,
    pending_dropped: u64,
    encode_buf: Vec<u8>,
}

enum StreamOutcome {
    /// Stop: done or the receiver is gone.
    Stop,
    /// Reconnect after this error; `progressed` = something was received.
    Retry { error: HubbleError, progressed: bool },
}

impl<E: From<HubbleEvent> + Send + 'static> Runner<E> {
    async fn run(mut self) {
        // Validate the filters once: an invalid filter never becomes valid.
        if let Err(e) = CompiledRequest::new(&self.query.whitelist, &self.query.blacklist) {
            let _ = self.tx.send(HubbleEvent::Failed { error: HubbleError::from(e).to_string() }).await;
            return;
        }
        let mut attempt: u32 = 0;
        loop {
            if self.tx.is_closed() {
                return;
            }
            let outcome = match self.target.connect().await {
                Ok(channel) => self.stream_once(&channel, attempt).await,
                Err(error) => StreamOutcome::Retry { error, progressed: false },
            };
            self.stats.connected.store(false, Ordering::Relaxed);
            let (error, progressed) = match outcome {
                StreamOutcome::Stop => return,
                StreamOutcome::Retry { error, progressed } => (error, progressed),
            };
            if !error.is_retryable() {
                let _ = self.tx.send(HubbleEvent::Failed { error: error.to_string() }).await;
                return;
            }
            attempt = if progressed { 0 } else { attempt.saturating_add(1) };
            let retry_in = self.backoff(attempt);
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target = %self.target.describe(), error = %error, ?retry_in, "hubble flow stream disconnected");
            if self.tx.send(HubbleEvent::Disconnected { error: error.to_string(), attempt, retry_in }).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(retry_in) => {}
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Capped exponential backoff with jitter (50–100 % of the step).
    fn backoff(&mut self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        let base = self.opts.backoff_initial.saturating_mul(1u32 << exp).min(self.opts.backoff_max);
        base.mul_f64(0.5 + self.rng.f64() * 0.5)
    }

    fn request(&self) -> GetFlowsRequest {
        let mut req = self.query.to_request();
        if let Some(hw) = self.high_water {
            // Resume: everything from shortly before the last delivered flow; duplicates dropped.
            let overlap = i128::try_from(self.opts.resume_overlap.as_nanos()).unwrap_or(0);
            req.since = Some(crate::hubble::time::timestamp_from_nanos(timestamp_nanos(&hw) - overlap));
            req.number = 0;
            req.first = false;
        }
        req
    }

    async fn stream_once(&mut self, channel: &Channel, attempt: u32) -> StreamOutcome {
        let label = self.target.describe();
        let resuming = self.high_water;
        let req = self.request();
        let mut stream = match get_flows(channel, &label, req.clone()).await {
            Ok(s) => s,
            Err(error) => return StreamOutcome::Retry { error, progressed: false },
        };
        self.stats.connected.store(true, Ordering::Relaxed);
        if self.tx.send(HubbleEvent::Connected { target: label.clone(), attempt }).await.is_err() {
            return StreamOutcome::Stop;
        }
        if let Some(hw) = resuming {
            self.check_gap(channel, &label, hw).await;
        }
        let mut progressed = false;
        let mut ticker = tokio::time::interval(self.opts.status_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.tx.closed() => return StreamOutcome::Stop,
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        progressed = true;
                        if !self.handle(resp).await {
                            return StreamOutcome::Stop;
                        }
                    }
                    Ok(None) => {
                        if !self.query.follow || self.query.until.is_some() {
                            let _ = self.flush_dropped().await;
                            let _ = self.tx.send(HubbleEvent::Ended).await;
                            return StreamOutcome::Stop;
                        }
                        return StreamOutcome::Retry {
                            error: HubbleError::StreamEnded { target: label, reason: "the relay closed the stream".into() },
                            progressed,
                        };
                    }
                    Err(error) => return StreamOutcome::Retry { error, progressed },
                },
                _ = ticker.tick() => {
                    self.refresh_status(channel, &label).await;
                    if !self.flush_dropped().await {
                        return StreamOutcome::Stop;
                    }
                }
            }
        }
    }

    /// Asks the relay for the oldest flow it still has per node; a node whose oldest flow is newer
    /// than where we resume lost flows we never saw.
    async fn check_gap(&mut self, channel: &Channel, label: &str, high_water: Timestamp) {
        // Only nodes whose ring is full can have overwritten flows (when the relay says).
        let full: Option<Vec<String>> = match tokio::time::timeout(Duration::from_secs(5), get_nodes(channel, label))
            .await
        {
            Ok(Ok(nodes)) => Some(
                nodes.into_iter().filter(|n| n.max_flows > 0 && n.num_flows >= n.max_flows).map(|n| n.name).collect(),
            ),
            _ => None,
        };
        let probe = GetFlowsRequest { number: 1, first: true, ..Default::default() };
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(5), get_flows(channel, label, probe)).await else {
            return;
        };
        let hw_n = timestamp_nanos(&high_water);
        let mut oldest_after: Option<Timestamp> = None;
        while let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_secs(5), s.message()).await {
            if let Some(ResponseTypes::Flow(f)) = &r.response_types
                && full.as_ref().is_none_or(|full| full.contains(&f.node_name))
                && let Some(t) = f.time.or(r.time)
                && timestamp_nanos(&t) > hw_n
                && oldest_after.is_none_or(|o| timestamp_nanos(&t) > timestamp_nanos(&o))
            {
                oldest_after = Some(t);
            }
        }
        if let Some(to) = oldest_after {
            let _ = self
                .tx
                .send(HubbleEvent::Gap {
                    from: high_water,
                    to: Some(to),
                    reason: format!(
                        "flows between {} and {} may be missing: the relay's buffer no longer holds them",
                        rfc3339(&high_water),
                        rfc3339(&to)
                    ),
                })
                .await;
        }
    }

    async fn refresh_status(&mut self, channel: &Channel, label: &str) {
        let t = Duration::from_secs(5);
        if let Ok(Ok(s)) = tokio::time::timeout(t, server_status(channel, label)).await {
            let _ = self.tx.try_send(HubbleEvent::ServerStatus(s));
        }
        if let Ok(Ok(n)) = tokio::time::timeout(t, get_nodes(channel, label)).await {
            let _ = self.tx.try_send(HubbleEvent::Nodes(n));
        }
    }

    /// Reports client-side drops not yet reported; false if the receiver is gone.
    async fn flush_dropped(&mut self) -> bool {
        if self.pending_dropped == 0 {
            return true;
        }
        let ev = HubbleEvent::ClientDropped {
            count: self.pending_dropped,
            total: self.stats.dropped_client.load(Ordering::Relaxed),
        };
        match self.tx.try_send(ev) {
            Ok(()) => {
                self.pending_dropped = 0;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn flow_key(
        &mut self,
        resp: &GetFlowsResponse,
        flow: &crate::hubble::proto::flow::Flow,
        time: i128,
    ) -> (i128, u64) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        if flow.uuid.is_empty() {
            self.encode_buf.clear();
            if prost::Message::encode(resp, &mut self.encode_buf).is_ok() {
                self.encode_buf.hash(&mut h);
            }
        } else {
            flow.uuid.hash(&mut h);
        }
        (time, h.finish())
    }

    /// Handles one response; false if the receiver is gone.
    async fn handle(&mut self, resp: GetFlowsResponse) -> bool {
        match &resp.response_types {
            Some(ResponseTypes::Flow(flow)) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let Some(time) = flow.time.or(resp.time) else {
                    return self.deliver(resp).await;
                };
                let t = timestamp_nanos(&time);
                let overlap = i128::try_from(self.opts.resume_overlap.as_nanos()).unwrap_or(0);
                let hw = self.high_water.map_or(i128::MIN, |h| timestamp_nanos(&h));
                let key = self.flow_key(&resp, flow, t);
                if !self.dedup.insert(key, hw.max(t) - overlap) {
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                if t > hw {
                    self.high_water = Some(time);
                    let clamped = i64::try_from(t).unwrap_or(i64::MAX);
                    self.stats.last_flow_unix_nanos.store(clamped, Ordering::Relaxed);
                }
                self.deliver(resp).await
            }
            Some(ResponseTypes::NodeStatus(ns)) => self
                .tx
                .send(HubbleEvent::NodeStatus {
                    state: ns.state_change,
                    nodes: ns.node_names.clone(),
                    message: ns.message.clone(),
                    node_name: resp.node_name.clone(),
                    time: resp.time,
                })
                .await
                .is_ok(),
            Some(ResponseTypes::LostEvents(l)) => {
                self.stats.lost_server.fetch_add(l.num_events_lost, Ordering::Relaxed);
                self.tx
                    .send(HubbleEvent::Lost {
                        source: l.source,
                        count: l.num_events_lost,
                        cpu: l.cpu.as_ref().map(|c| c.value),
                        node_name: resp.node_name.clone(),
                        time: resp.time,
                    })
                    .await
                    .is_ok()
            }
            None => true,
        }
    }

    async fn deliver(&mut self, resp: GetFlowsResponse) -> bool {
        let ev = HubbleEvent::Flow(Box::new(resp));
        if self.opts.drop_when_full {
            match self.tx.try_send(ev) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    self.flush_dropped().await
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.stats.dropped_client.fetch_add(1, Ordering::Relaxed);
                    self.pending_dropped += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        } else {
            let ok = self.tx.send(ev).await.is_ok();
            if ok {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn relay_addresses() {
        assert_eq!(relay_uri("127.0.0.1:4245").unwrap(), "http://127.0.0.1:4245");
        assert_eq!(relay_uri("http://relay.example:80/").unwrap(), "http://relay.example:80");
        assert_eq!(relay_uri("localhost").unwrap(), "http://localhost:4245");
        assert_eq!(relay_uri("[::1]:4245").unwrap(), "http://[::1]:4245");
        assert_eq!(relay_uri("[::1]").unwrap(), "http://[::1]:4245");
        for bad in ["", "https://x:443", "ftp://x", "x:1/path", "a b:1"] {
            assert!(relay_uri(bad).is_err(), "{bad}");
        }
    }

    fn pod(name: &str, phase: &str, ready: bool, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting.then_some(Time(jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "hubble-relay".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("grpc".into()),
                        container_port: 4245,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn picks_a_ready_relay_pod() {
        let pods = vec![
            pod("hubble-relay-a", "Pending", false, false),
            pod("hubble-relay-b", "Running", false, false),
            pod("hubble-relay-c", "Running", true, true),
            pod("hubble-relay-e", "Running", true, false),
            pod("hubble-relay-d", "Running", true, false),
        ];
        assert_eq!(pick_ready_pod(&pods).and_then(|p| p.metadata.name.as_deref()), Some("hubble-relay-d"));
        assert!(pick_ready_pod(&pods[..3]).is_none());
    }

    #[test]
    fn resolves_target_ports() {
        let svc = |target: Option<IntOrString>| Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("grpc".into()),
                    port: 80,
                    target_port: target,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = pod("r", "Running", true, false);
        assert_eq!(target_port(&svc(Some(IntOrString::Int(4245))), &p), 4245);
        assert_eq!(target_port(&svc(Some(IntOrString::String("grpc".into()))), &p), 4245);
        assert_eq!(target_port(&svc(Some(IntOrString::String("nope".into()))), &p), 4245);
        assert_eq!(target_port(&svc(None), &p), 80);
        assert_eq!(target_port(&Service::default(), &p), 4245);
    }

    #[test]
    fn status_classification() {
        let t = "relay:4245";
        assert!(matches!(
            classify_status(t, &tonic::Status::unimplemented("unknown service")),
            HubbleError::NotARelay { .. }
        ));
        assert!(matches!(
            classify_status(t, &tonic::Status::unavailable("tcp connect error")),
            HubbleError::Unreachable { .. }
        ));
        assert!(matches!(classify_status(t, &tonic::Status::invalid_argument("bad")), HubbleError::InvalidFilter(_)));
        assert!(matches!(
            classify_status(
                t,
                &tonic::Status::internal("protocol error: received message with invalid compression flag")
            ),
            HubbleError::NotARelay { .. }
        ));
        assert!(matches!(classify_status(t, &tonic::Status::internal("boom")), HubbleError::Rpc { .. }));
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let (tx, _rx) = mpsc::channel::<HubbleEvent>(1);
        let mut r = Runner {
            target: RelayTarget::Address("x:1".into()),
            query: FlowQuery::default(),
            tx: EventTx { inner: tx },
            opts: FlowSourceOptions {
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
                ..Default::default()
            },
            rng: fastrand::Rng::with_seed(7),
            stats: Arc::default(),
            dedup: Dedup::default(),
            high_water: None,
            pending_dropped: 0,
            encode_buf: Vec::new(),
        };
        for attempt in 1..40 {
            let d = r.backoff(attempt);
            let step =
                Duration::from_millis(100).saturating_mul(1 << (attempt - 1).min(16)).min(Duration::from_secs(2));
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?} vs {step:?}");
        }
    }

    #[test]
    fn dedup_window() {
        let mut d = Dedup::default();
        assert!(d.insert((10, 1), 0));
        assert!(!d.insert((10, 1), 0));
        assert!(d.insert((10, 2), 0));
        assert!(d.insert((20, 1), 15));
        // (10, *) fell out of the window and would be accepted again.
        assert!(d.insert((10, 1), 15));
    }
}
