//! `pods/{name}/portforward`, in the three forms real clients use:
//!
//! - WebSocket `v4.channel.k8s.io` (kube-rs): ports in the query, one data and one error channel
//!   per port, each opened by a frame carrying the port;
//! - SPDY/3.1 after `Upgrade: SPDY/3.1` (`kubectl port-forward`, client-go): per local connection
//!   the client opens an `error` and a `data` stream sharing a `requestID` and naming the `port`;
//! - the same SPDY byte stream tunnelled in WebSocket binary messages, subprotocol
//!   `SPDY/3.1+portforward.k8s.io` (what kubectl tries first since 1.31).
//!
//! In the sim only the hubble-relay pod has something listening: its port 4245 (or a port it
//! declares) reaches the sim's relay; any other port is refused with the message kubelet gives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self as ws, protocol::Role};
use tracing::debug;

use crate::sim::registry::{self, Resource};

use super::error::ApiError;
use super::route::ObjectPath;
use super::spdy::{self, Frame, FrameReader, FrameWriter};
use super::{ApiState, Query};

const V4_PROTOCOL: &str = "v4.channel.k8s.io";
const SPDY_UPGRADE: &str = "SPDY/3.1";
const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long kubelet waits for the second stream of a pair.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// Stream pairs waiting for their partner, per connection, before new requests are refused.
const MAX_PENDING_PAIRS: usize = 256;
/// Largest DATA frame sent.
const CHUNK: usize = 32 * 1024;

fn pods_res() -> Result<&'static Resource, ApiError> {
    registry::find("pods").ok_or_else(|| ApiError::internal("pods resource missing"))
}

/// Which of a pod's ports reach something in the sim.
#[derive(Clone)]
struct Ports {
    relay: Option<SocketAddr>,
    declared: Vec<u16>,
    uid: String,
}

impl Ports {
    fn of(state: &ApiState, pod: &Value) -> Self {
        let is_relay = pod.pointer("/metadata/labels/k8s-app").and_then(Value::as_str) == Some("hubble-relay");
        let declared = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c.get("ports").and_then(Value::as_array).into_iter().flatten())
            .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        let relay = if is_relay { state.shared.relay_addr.get().copied() } else { None };
        let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
        Self { relay, declared, uid }
    }

    fn target(&self, port: u16) -> Option<SocketAddr> {
        self.relay.filter(|_| port == 4245 || self.declared.contains(&port))
    }

    async fn connect(&self, port: u16) -> Result<TcpStream, String> {
        let refused = || {
            format!(
                "error forwarding port {port} to pod {}, uid : failed to connect to localhost:{port} inside the pod network namespace: connect: connection refused",
                self.uid
            )
        };
        match self.target(port) {
            Some(a) => TcpStream::connect(a).await.map_err(|_| refused()),
            None => Err(refused()),
        }
    }
}

/// GET/POST pods/{name}/portforward: upgrades to one of the three protocols.
pub async fn portforward(
    state: &Arc<ApiState>,
    mut req: Request<Incoming>,
    p: &ObjectPath,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let pods = pods_res()?;
    let name = p.name.as_deref().unwrap_or("");
    let pod = state.shared.store.get(pods, p.ns(), name).map_err(|e| ApiError::from_store(pods, e))?;
    let h = req.headers();
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let upgrade = header("upgrade").to_ascii_lowercase();
    // A header that may repeat and hold a comma-separated list.
    let list = |n: &str| -> Vec<String> {
        h.get_all(n)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_string())
            .collect()
    };
    let offered = list("sec-websocket-protocol");
    let stream_versions = list("x-stream-protocol-version");
    let ws_key = header("sec-websocket-key");
    enum Mode {
        V4,
        Tunnel,
        Spdy,
    }
    let mode = if upgrade == "websocket" {
        // kube-apiserver prefers the tunnelling protocol when a client offers it.
        if offered.iter().any(|p| p == TUNNEL_PROTOCOL) {
            Mode::Tunnel
        } else if offered.iter().any(|p| p == V4_PROTOCOL) {
            Mode::V4
        } else {
            return Err(ApiError::bad_request(format!(
                "unable to upgrade connection: none of the requested subprotocols ({}) is supported; use {V4_PROTOCOL} or {TUNNEL_PROTOCOL}",
                offered.join(", ")
            )));
        }
    } else if upgrade.split(',').any(|u| u.trim().eq_ignore_ascii_case(SPDY_UPGRADE)) {
        if !stream_versions.is_empty() && !stream_versions.iter().any(|v| v == SPDY_PROTOCOL) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {stream_versions:?}, server supports [{SPDY_PROTOCOL:?}]"
                ),
            ));
        }
        Mode::Spdy
    } else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let mut ports = Vec::new();
    // `ports=80,443` (PodPortForwardOptions, kube-rs) or repeated `port=`; SPDY names them per stream.
    for v in q.all("ports").chain(q.all("port")).flat_map(|v| v.split(',')) {
        let port = v.trim().parse::<u16>().ok().filter(|p| *p > 0);
        ports.push(port.ok_or_else(|| ApiError::bad_request(format!("unable to parse {v:?} as a port")))?);
    }
    if ports.is_empty() && matches!(mode, Mode::V4) {
        return Err(ApiError::bad_request("at least 1 port is required"));
    }
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return Err(ApiError::bad_request(format!("unable to upgrade connection: pod {name} is not running")));
    }
    if !matches!(mode, Mode::Spdy) && ws_key.is_empty() {
        return Err(ApiError::bad_request("unable to upgrade connection: missing Sec-WebSocket-Key"));
    }
    let target = Ports::of(state, &pod);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = state.shutdown.clone();
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hm = resp.headers_mut();
    hm.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match mode {
        Mode::Spdy => {
            hm.insert(http::header::UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
            hm.insert("x-stream-protocol-version", HeaderValue::from_static(SPDY_PROTOCOL));
        }
        Mode::V4 | Mode::Tunnel => {
            let proto = if matches!(mode, Mode::V4) { V4_PROTOCOL } else { TUNNEL_PROTOCOL };
            let accept = ws::handshake::derive_accept_key(ws_key.as_bytes());
            hm.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            hm.insert(http::header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(proto));
            hm.insert(
                http::header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).map_err(|_| ApiError::internal("bad accept key"))?,
            );
        }
    }
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                debug!(error = %e, "portforward upgrade failed");
                return;
            }
        };
        match mode {
            Mode::V4 => {
                let socket = WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await;
                let backends = ports.iter().map(|&p| (p, target.clone())).collect();
                forward_v4(socket, backends, shutdown).await;
            }
            Mode::Tunnel => {
                let socket = WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await;
                spdy_session(ws_tunnel(socket), target, shutdown).await;
            }
            Mode::Spdy => spdy_session(upgraded, target, shutdown).await,
        }
    });
    Ok(resp)
}

enum FromPod {
    Data(u8, Vec<u8>),
    Closed,
}

/// Runs one `v4.channel.k8s.io` session: per port a data channel `2i` and an error channel
/// `2i+1`, each opened with a frame carrying the port (little-endian).
async fn forward_v4<S>(
    socket: WebSocketStream<S>,
    backends: Vec<(u16, Ports)>,
    mut shutdown: tokio::sync::watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<FromPod>(32);
    let mut readers = JoinSet::new();
    let mut writers: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
    let mut open = 0usize;
    for (i, (port, target)) in backends.iter().enumerate() {
        let data_ch = (2 * i) as u8;
        let [lo, hi] = port.to_le_bytes();
        for ch in [data_ch, data_ch + 1] {
            if sink.send(ws::Message::binary(vec![ch, lo, hi])).await.is_err() {
                return;
            }
        }
        match target.connect(*port).await {
            Ok(tcp) => {
                let (mut r, w) = tcp.into_split();
                writers.push(Some(w));
                open += 1;
                let tx = tx.clone();
                readers.spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send(FromPod::Data(data_ch, buf[..n].to_vec())).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = tx.send(FromPod::Closed).await;
                });
            }
            Err(msg) => {
                writers.push(None);
                let mut frame = vec![data_ch + 1];
                frame.extend_from_slice(msg.as_bytes());
                if sink.send(ws::Message::binary(frame)).await.is_err() {
                    return;
                }
            }
        }
    }
    drop(tx);
    if open == 0 {
        let _ = sink.send(ws::Message::Close(None)).await;
        return;
    }
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(FromPod::Data(ch, bytes)) => {
                    let mut frame = Vec::with_capacity(bytes.len() + 1);
                    frame.push(ch);
                    frame.extend_from_slice(&bytes);
                    if sink.send(ws::Message::binary(frame)).await.is_err() {
                        return;
                    }
                }
                Some(FromPod::Closed) => {
                    open = open.saturating_sub(1);
                    if open == 0 {
                        let _ = sink.send(ws::Message::Close(None)).await;
                        return;
                    }
                }
                None => return,
            },
            frame = stream.next() => match frame {
                Some(Ok(ws::Message::Binary(b))) if !b.is_empty() => {
                    let ch = b[0] as usize;
                    if ch.is_multiple_of(2)
                        && let Some(Some(w)) = writers.get_mut(ch / 2)
                        && w.write_all(&b[1..]).await.is_err()
                    {
                        writers[ch / 2] = None;
                    }
                }
                Some(Ok(ws::Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// A byte stream carried in WebSocket binary messages, as client-go's tunnelling connection
/// sends it: message boundaries mean nothing, a close message ends the stream.
fn ws_tunnel<S>(socket: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut stream) = socket.split();
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(Ok(ws::Message::Binary(b))) => {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(ws::Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => {
                        let _ = sink.send(ws::Message::Close(None)).await;
                        break;
                    }
                    Ok(n) => {
                        if sink.send(ws::Message::binary(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
    });
    ours
}

/// Client bytes for one data stream, in order.
enum ToPod {
    Data(Bytes),
    /// The client half-closed the stream.
    Fin,
}

/// Streams of one request waiting for their partner.
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<(u32, mpsc::Receiver<ToPod>)>,
    since: Instant,
}

fn fin(stream: u32) -> Frame {
    Frame::Data { stream, flags: spdy::FLAG_FIN, data: Bytes::new() }
}

/// Serves one SPDY port-forward connection as kubelet does: replies to every stream, pairs an
/// `error` and a `data` stream by `requestID`, connects the pair to the pod's port, answers pings.
async fn spdy_session<S>(io: S, target: Ports, mut shutdown: tokio::sync::watch::Receiver<()>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    let (out, mut out_rx) = mpsc::channel::<Frame>(256);
    // One writer owns the socket and the header compressor: frames leave in the order queued.
    let writer = tokio::spawn(async move {
        let mut enc = FrameWriter::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(f) = out_rx.recv().await {
            buf.clear();
            let mut next = Some(f);
            while let Some(f) = next.take() {
                if let Err(e) = enc.encode(&f, &mut buf) {
                    debug!(error = %e, "spdy: frame not encodable");
                }
                if buf.len() < 256 * 1024 {
                    next = out_rx.try_recv().ok();
                }
            }
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    // Reading a frame is not cancel-safe: a task of its own feeds whole frames to the loop below.
    let (frames_tx, mut frames) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        let mut r = FrameReader::new(rd);
        loop {
            let f = r.next().await;
            let end = !matches!(f, Ok(Some(_)));
            if frames_tx.send(f).await.is_err() || end {
                return;
            }
        }
    });
    let mut last_stream = 0u32;
    let mut data_streams: HashMap<u32, mpsc::Sender<ToPod>> = HashMap::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwarders = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        let frame = tokio::select! {
            f = frames.recv() => f,
            _ = sweep.tick() => {
                let expired: Vec<String> =
                    pairs.iter().filter(|(_, p)| p.since.elapsed() >= PAIR_TIMEOUT).map(|(k, _)| k.clone()).collect();
                for id in expired {
                    let Some(p) = pairs.remove(&id) else { continue };
                    if let Some(e) = p.error {
                        let msg = format!("(request={id}) timed out waiting for streams");
                        let _ = out.send(Frame::Data { stream: e, flags: 0, data: Bytes::from(msg) }).await;
                        let _ = out.send(fin(e)).await;
                    }
                    if let Some((d, _)) = p.data {
                        data_streams.remove(&d);
                        let _ = out.send(Frame::RstStream { stream: d, status: spdy::RST_CANCEL }).await;
                    }
                }
                continue;
            }
            Some(_) = forwarders.join_next(), if !forwarders.is_empty() => continue,
            _ = shutdown.changed() => None,
        };
        let frame = match frame {
            Some(Ok(Some(f))) => f,
            Some(Err(e)) => {
                debug!(error = %e, "spdy: bad frame, closing the connection");
                let _ = out.send(Frame::GoAway { last_good: last_stream, status: 1 }).await;
                break;
            }
            Some(Ok(None)) | None => break,
        };
        match frame {
            Frame::SynStream { stream, headers, flags, .. } => {
                if stream.is_multiple_of(2) || stream <= last_stream {
                    let _ = out.send(Frame::RstStream { stream, status: spdy::RST_PROTOCOL_ERROR }).await;
                    continue;
                }
                last_stream = stream;
                let kind = spdy::header(&headers, "streamtype").unwrap_or("");
                let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
                let (Some(port), "error" | "data") = (port, kind) else {
                    debug!(stream, kind, "spdy: stream without a valid port or streamType refused");
                    let _ = out.send(Frame::RstStream { stream, status: spdy::RST_CANCEL }).await;
                    continue;
                };
                // Old clients send no requestID: kubelet pairs a data stream with the error stream
                // opened just before it.
                let request = match spdy::header(&headers, "requestid") {
                    Some(r) => r.to_string(),
                    None if kind == "error" => stream.to_string(),
                    None => stream.saturating_sub(2).to_string(),
                };
                if !pairs.contains_key(&request) && pairs.len() >= MAX_PENDING_PAIRS {
                    let _ = out.send(Frame::RstStream { stream, status: spdy::RST_REFUSED_STREAM }).await;
                    continue;
                }
                let pair = pairs.entry(request.clone()).or_insert_with(|| Pair {
                    port,
                    error: None,
                    data: None,
                    since: Instant::now(),
                });
                let taken = if kind == "error" { pair.error.is_some() } else { pair.data.is_some() };
                if taken {
                    let _ = out.send(Frame::RstStream { stream, status: spdy::RST_REFUSED_STREAM }).await;
                    continue;
                }
                let _ = out.send(Frame::SynReply { stream, flags: 0, headers: Vec::new() }).await;
                if kind == "error" {
                    pair.error = Some(stream);
                } else {
                    let (tx, rx) = mpsc::channel(64);
                    if flags & spdy::FLAG_FIN != 0 {
                        let _ = tx.try_send(ToPod::Fin);
                    }
                    data_streams.insert(stream, tx);
                    pair.port = port;
                    pair.data = Some((stream, rx));
                }
                if pair.error.is_some() && pair.data.is_some() {
                    let Some(Pair { port, error: Some(error), data: Some((data, rx)), .. }) = pairs.remove(&request)
                    else {
                        continue;
                    };
                    forwarders.spawn(forward_pair(target.clone(), port, data, error, rx, out.clone()));
                }
            }
            Frame::Data { stream, flags, data } => {
                let Some(tx) = data_streams.get(&stream) else { continue };
                let mut ok = data.is_empty() || tx.send(ToPod::Data(data)).await.is_ok();
                if ok && flags & spdy::FLAG_FIN != 0 {
                    ok = tx.send(ToPod::Fin).await.is_ok();
                }
                if !ok {
                    data_streams.remove(&stream);
                }
            }
            Frame::RstStream { stream, .. } => {
                // Dropping the sender tells the forwarder to hang up on the pod.
                data_streams.remove(&stream);
                pairs.retain(|_, p| p.error != Some(stream) && p.data.as_ref().map(|d| d.0) != Some(stream));
            }
            Frame::Ping { id } if id % 2 == 1 => {
                let _ = out.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    reader.abort();
    drop(data_streams);
    forwarders.abort_all();
    drop(out);
    let _ = writer.await;
}

/// Connects one stream pair to the pod's port and copies both ways until either side ends.
async fn forward_pair(
    target: Ports,
    port: u16,
    data: u32,
    error: u32,
    mut rx: mpsc::Receiver<ToPod>,
    out: mpsc::Sender<Frame>,
) {
    let tcp = match target.connect(port).await {
        Ok(t) => t,
        Err(msg) => {
            let _ = out.send(Frame::Data { stream: error, flags: 0, data: Bytes::from(msg) }).await;
            let _ = out.send(fin(error)).await;
            let _ = out.send(fin(data)).await;
            return;
        }
    };
    let (mut r, mut w) = tcp.into_split();
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = Frame::Data { stream: data, flags: 0, data: Bytes::copy_from_slice(&buf[..n]) };
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
            },
            m = rx.recv() => match m {
                Some(ToPod::Data(b)) => {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(ToPod::Fin) => {
                    let _ = w.shutdown().await;
                }
                // Reset by the client, or the connection is gone: hang up, say nothing.
                None => return,
            },
        }
    }
    let _ = out.send(fin(data)).await;
    let _ = out.send(fin(error)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server standing in for the pod's process.
    async fn echo() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        addr
    }

    struct Client {
        r: FrameReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
        w: tokio::io::WriteHalf<tokio::io::DuplexStream>,
        enc: FrameWriter,
    }

    impl Client {
        async fn send(&mut self, f: Frame) {
            let mut buf = Vec::new();
            self.enc.encode(&f, &mut buf).expect("encode");
            self.w.write_all(&buf).await.expect("write");
        }

        /// Reads frames until `want` matches one; returns it.
        async fn until(&mut self, what: &str, want: impl Fn(&Frame) -> bool) -> Frame {
            loop {
                let f = tokio::time::timeout(Duration::from_secs(10), self.r.next())
                    .await
                    .unwrap_or_else(|_| panic!("no {what}"))
                    .expect("frame")
                    .unwrap_or_else(|| panic!("connection closed before {what}"));
                if want(&f) {
                    return f;
                }
            }
        }
    }

    fn syn(stream: u32, pairs: &[(&str, &str)]) -> Frame {
        let headers = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Frame::SynStream { stream, associated: 0, priority: 0, flags: 0, headers }
    }

    #[tokio::test]
    async fn serves_spdy_port_forward_as_kubelet_does() {
        let target = Ports { relay: Some(echo().await), declared: vec![], uid: "uid-1".into() };
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (_keep, shutdown) = tokio::sync::watch::channel(());
        tokio::spawn(spdy_session(theirs, target, shutdown));
        let (r, w) = tokio::io::split(ours);
        let mut c = Client { r: FrameReader::new(r), w, enc: FrameWriter::new() };

        c.send(Frame::Ping { id: 1 }).await;
        c.until("ping echo", |f| *f == Frame::Ping { id: 1 }).await;

        // An old client: no requestID, the data stream right after its error stream.
        c.send(syn(1, &[("streamtype", "error"), ("port", "4245")])).await;
        c.send(syn(3, &[("streamtype", "data"), ("port", "4245")])).await;
        c.until("reply to 1", |f| matches!(f, Frame::SynReply { stream: 1, .. })).await;
        c.until("reply to 3", |f| matches!(f, Frame::SynReply { stream: 3, .. })).await;
        c.send(Frame::Data { stream: 3, flags: 0, data: Bytes::from_static(b"hello") }).await;
        let got = c.until("echo", |f| matches!(f, Frame::Data { stream: 3, .. })).await;
        assert_eq!(got, Frame::Data { stream: 3, flags: 0, data: Bytes::from_static(b"hello") });

        // A port nothing listens on: kubelet's message on the error stream, then both closed.
        c.send(syn(5, &[("streamtype", "error"), ("port", "80"), ("requestid", "1")])).await;
        c.send(syn(7, &[("streamtype", "data"), ("port", "80"), ("requestid", "1")])).await;
        let msg =
            c.until("error message", |f| matches!(f, Frame::Data { stream: 5, data, .. } if !data.is_empty())).await;
        let Frame::Data { data, .. } = msg else { unreachable!() };
        let text = String::from_utf8_lossy(&data);
        assert!(
            text.contains("error forwarding port 80 to pod uid-1") && text.contains("connection refused"),
            "{text}"
        );
        c.until("FIN on 7", |f| *f == fin(7)).await;

        // Refused: no port, a second data stream for a request, a stream id going backwards.
        c.send(syn(9, &[("streamtype", "data"), ("requestid", "2")])).await;
        c.until("RST 9", |f| matches!(f, Frame::RstStream { stream: 9, .. })).await;
        c.send(syn(11, &[("streamtype", "data"), ("port", "4245"), ("requestid", "3")])).await;
        c.send(syn(13, &[("streamtype", "data"), ("port", "4245"), ("requestid", "3")])).await;
        c.until("RST 13", |f| matches!(f, Frame::RstStream { stream: 13, status: spdy::RST_REFUSED_STREAM })).await;
        c.send(syn(3, &[("streamtype", "error"), ("port", "4245"), ("requestid", "4")])).await;
        c.until("RST 3", |f| matches!(f, Frame::RstStream { stream: 3, status: spdy::RST_PROTOCOL_ERROR })).await;

        // Half-close: the pod side sees EOF, answers with its own, and both streams finish.
        c.send(Frame::Data { stream: 3, flags: spdy::FLAG_FIN, data: Bytes::new() }).await;
        c.until("FIN on 3", |f| *f == fin(3)).await;
        c.until("FIN on 1", |f| *f == fin(1)).await;

        // GOAWAY ends the session.
        c.send(Frame::GoAway { last_good: 0, status: 0 }).await;
        assert!(
            tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = c.r.next().await {} })
                .await
                .is_ok(),
            "the server closes after GOAWAY"
        );
    }
}
