//! What the `node-cutover` step is doing to which node, as a typed event from the runner
//! ([`super::runner::RunEvent::Node`]) for the cockpit's Nodes pane (`▶` and the phase).

use std::time::Duration;

/// The node in work and its phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeWork {
    pub node: String,
    pub phase: NodePhase,
}

/// The sub-steps of one node, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePhase {
    Gates,
    Cordoning,
    /// Pods evicted and gone so far, of the drain's total.
    Draining {
        gone: usize,
        total: usize,
    },
    WritingDropin,
    RemovingDropin,
    Restarting,
    Rebooting,
    /// Waiting for the restart to show, then for Ready with the new flags.
    WaitingReady,
    /// Ready; waiting for the cilium agent on it and its taint to go.
    WaitingAgent,
    /// Waiting until the pods newly started there have CiliumEndpoints.
    WaitingEndpoints {
        have: usize,
        want: usize,
    },
    /// Stage 1: pods still on the old network evicted and gone so far, of those to re-create.
    Recreating {
        gone: usize,
        total: usize,
    },
    Uncordoning,
    Soaking {
        elapsed: Duration,
        total: Duration,
        flows: u64,
        drops: u64,
    },
}

impl std::fmt::Display for NodePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mmss = super::soak::mmss;
        match self {
            NodePhase::Gates => f.write_str("checking gates"),
            NodePhase::Cordoning => f.write_str("cordoning"),
            NodePhase::Draining { gone, total } => write!(f, "draining {gone}/{total}"),
            NodePhase::WritingDropin => f.write_str("writing drop-in"),
            NodePhase::RemovingDropin => f.write_str("removing drop-in"),
            NodePhase::Restarting => f.write_str("restarting"),
            NodePhase::Rebooting => f.write_str("rebooting"),
            NodePhase::WaitingReady => f.write_str("waiting for Ready"),
            NodePhase::WaitingAgent => f.write_str("waiting for agent"),
            NodePhase::WaitingEndpoints { have, want } => write!(f, "waiting for endpoints {have}/{want}"),
            NodePhase::Recreating { gone, total } => write!(f, "re-creating pods on Cilium {gone}/{total}"),
            NodePhase::Uncordoning => f.write_str("uncordoning"),
            NodePhase::Soaking { elapsed, total, flows, drops } => {
                write!(f, "soaking {} of {}, {flows} flows, {drops} drops", mmss(*elapsed), mmss(*total))?;
                let secs = elapsed.as_secs_f64();
                if *drops > 0 && secs >= 1.0 {
                    write!(f, " ({:.1}/s)", *drops as f64 / secs)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_read_as_the_operator_expects() {
        assert_eq!(NodePhase::Draining { gone: 3, total: 7 }.to_string(), "draining 3/7");
        let s = NodePhase::Soaking {
            elapsed: Duration::from_secs(80),
            total: Duration::from_secs(120),
            flows: 412,
            drops: 8,
        };
        assert_eq!(s.to_string(), "soaking 1:20 of 2:00, 412 flows, 8 drops (0.1/s)");
    }
}
