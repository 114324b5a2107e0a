//! Kubernetes as a data source: connecting (kubeconfig/context), the read-only request layer,
//! and the watchers that turn the cluster into cockpit events.
pub mod client;
pub mod watch;
