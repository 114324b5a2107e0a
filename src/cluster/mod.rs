//! Kubernetes as a data source: connecting (kubeconfig/context), the read-only request layer
//! (deciding by Kubernetes verb, see [`request_info`]), and the watchers that turn the cluster into cockpit events.
pub mod client;
pub mod request_info;
pub mod watch;
