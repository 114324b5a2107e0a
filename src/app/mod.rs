//! The cockpit's state, its events and update function, and the keymap.
pub mod action;
pub mod eventlog;
pub mod flowview;
pub mod keymap;
pub mod lists;
pub mod migration;
pub mod model;
pub mod readiness;
pub mod runbook;
pub mod state;
pub mod update;
