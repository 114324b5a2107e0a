//! Kubernetes as a data source: connecting (kubeconfig/context), the read-only request layer
//! (deciding by Kubernetes verb, see [`request_info`]), the watchers that turn the cluster into
//! cockpit events, one-line error text ([`error_text`]), and the one client that can write (held
//! by the runner's executor only).
pub mod client;
pub mod error_text;
pub mod request_info;
pub mod watch;
pub mod write;
