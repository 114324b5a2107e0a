//! cutover: a terminal cockpit for moving a k3s cluster from flannel to Cilium under Argo CD.
pub mod cli;
pub mod hubble;
pub mod manifests;
pub mod sim;
