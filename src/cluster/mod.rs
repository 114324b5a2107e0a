//! Kubernetes as a data source: connecting (kubeconfig/context), the read-only request layer
//! (deciding by Kubernetes verb, see [`request_info`]), the watchers that turn the cluster into
//! cockpit events, and the one client that can write (held by the runner's executor only).
pub mod client;
pub mod request_info;
pub mod watch;
pub mod write;
