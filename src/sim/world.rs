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
