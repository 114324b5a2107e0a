//! Hubble: the .proto subset, the relay client, flow filters and flow formatting. Shared by the
//! Flows pane, `cutover flows` and the simulated relay, so there is one implementation of each.
pub mod buf;
pub mod cli;
pub mod client;
pub mod filter;
pub mod format;
pub mod names;
pub mod proto;
pub mod time;
