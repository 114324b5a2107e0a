//! The cockpit's state, its events and update function, and the keymap.
pub mod action;
pub mod flowview;
pub mod keymap;
pub mod migration;
pub mod model;
pub mod readiness;
pub mod state;
pub mod update;
