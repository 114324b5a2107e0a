//! cutover: a terminal cockpit for moving a k3s cluster from flannel to Cilium under Argo CD.
pub mod app;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod duration;
pub mod hubble;
pub mod manifests;
pub mod node;
pub mod paths;
pub mod runbook;
pub mod settings;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod tempdir;
pub mod tui;
pub mod ui;
