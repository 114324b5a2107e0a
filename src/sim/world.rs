//! The simulated homelab's contents and controllers. STUB: being written.
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{SimError, SimShared};

/// A scenario: the starting state of the cluster.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
}

impl Scenario {
    /// Loads a built-in scenario by name, or a scenario file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario, SimError> {
        Ok(Scenario { name: name_or_path.to_string() })
    }
}

/// Seeds the store from the scenario and starts the controllers.
pub fn start(shared: Arc<SimShared>, scenario: &Scenario) -> Result<Vec<JoinHandle<()>>, SimError> {
    let _ = (shared, scenario);
    Ok(Vec::new())
}

/// What an operator does on a node over SSH, accepted by the sim through the `/simulator` hook
/// (and the library) so that a per-node cutover can be rehearsed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum NodeOp {
    /// Replace `/etc/rancher/k3s/config.yaml` on the node (YAML text, k3s config keys).
    WriteK3sConfig { config: String },
    /// `systemctl restart k3s` (servers) or `k3s-agent` (agents).
    RestartK3s,
    /// Reboot the node (also clears flannel/kube-proxy leftovers).
    Reboot,
}

/// Applies a node operation; returns a human-readable result line.
pub fn node_op(shared: &SimShared, node: &str, op: &NodeOp) -> Result<String, SimError> {
    let _ = (shared, node, op);
    Err(SimError::Other("node operations are not implemented yet".into()))
}
