//! Talking to hubble-relay: connecting (address or Kubernetes port-forward), typed errors, the
//! one-shot calls (`ServerStatus`, `GetNodes`, `GetNamespaces`, `GetFlows`), and the long-running
//! flow source the Flows pane uses ([`spawn_flow_source`]): follow with reconnect, capped
//! exponential backoff with jitter, resume from the last flow without duplicates, gaps surfaced,
//! relay status refreshed on the same connection, client-side drops counted.
//!
//! Split by seam: connecting by address and the unary calls in `connect.rs`, the Kubernetes
//! port-forward in `portforward.rs`, the flow source in `source.rs`. Everything public is
//! re-exported here, so callers keep naming `hubble::client::X`.

use tonic::transport::Channel;

use crate::hubble::filter::FilterError;

mod connect;
mod portforward;
mod source;

pub use connect::{
    FlowStream, Probe, classify_status, connect, get_flows, get_namespaces, get_nodes, probe, relay_uri, server_status,
};
pub use portforward::{
    RelayService, RelayServiceWatch, connect_via_kube, connect_via_kube_watched, find_relay_pod, pick_ready_pod,
    relay_pod_for, target_port, watch_relay_service,
};
pub use source::{
    FlowQuery, FlowSource, FlowSourceOptions, FlowSourceStats, FlowStatsSnapshot, HubbleEvent, spawn_flow_source,
    spawn_flow_source_with,
};

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
