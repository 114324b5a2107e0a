//! Connecting to a relay by address, recognising what answers when it is not a relay, and the
//! unary calls plus the `GetFlows` stream, with gRPC and transport errors mapped to
//! [`HubbleError`].

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::{DEFAULT_RELAY_PORT, HubbleError};
use crate::hubble::proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, Node,
    ServerStatusRequest, ServerStatusResponse, observer_client::ObserverClient,
};

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

pub(super) fn endpoint(uri: String) -> Result<Endpoint, HubbleError> {
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

pub(super) fn classify_transport(target: &str, e: &tonic::transport::Error) -> HubbleError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
