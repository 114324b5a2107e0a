//! The runbook: the operations that change the cluster, the runner and executor that carry
//! them out, the cluster lock, the journal, and their headless commands.
pub mod cli;
pub mod executor;
pub mod journal;
pub mod lease;
pub mod node_work;
pub mod plan;
pub mod run_cli;
pub mod runner;
pub mod soak;
pub mod steps;
mod steps_git;
mod steps_node;
