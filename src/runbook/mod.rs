//! The runbook: the operations that change the cluster and the executor that runs them.
pub mod executor;
pub mod journal;
pub mod lease;
pub mod runner;
