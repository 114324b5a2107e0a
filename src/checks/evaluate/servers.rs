//! The server nodes and their parsed `k3s.io/node-args`: k3s keeps its flags there, so the k3s flag
//! checks and the CIDR checks read the servers' configuration from one place.

use std::collections::BTreeSet;

use super::{Check, Status, check, unread};
use crate::checks::k3s::{self, NodeArgs, is_server, node_name};
use crate::checks::snapshot::{ClusterSnapshot, FetchError};

/// Server name and its parsed `k3s.io/node-args` (None: annotation missing).
type ServerArgs = (String, Option<Result<NodeArgs, String>>);

/// The server nodes and their parsed `k3s.io/node-args`.
pub(super) struct ServerView {
    /// Err when nodes could not be read.
    servers: Result<Vec<ServerArgs>, FetchError>,
}

impl ServerView {
    pub(super) fn new(snap: &ClusterSnapshot) -> Self {
        let servers = snap.nodes.as_ref().map_err(Clone::clone).map(|nodes| {
            nodes.iter().filter(|n| is_server(n)).map(|n| (node_name(n).to_string(), k3s::node_args(n))).collect()
        });
        ServerView { servers }
    }

    /// (server name, args) for servers whose node-args parsed; evidence lines for the others.
    pub(super) fn parsed(&self) -> (Vec<(&str, &NodeArgs)>, Vec<String>) {
        let mut ok = Vec::new();
        let mut notes = Vec::new();
        if let Ok(servers) = &self.servers {
            for (name, args) in servers {
                match args {
                    Some(Ok(a)) => ok.push((name.as_str(), a)),
                    Some(Err(e)) => notes.push(format!("{name}: {e}")),
                    None => notes.push(format!("{name}: no {} annotation (not a k3s node?)", k3s::NODE_ARGS)),
                }
            }
        }
        (ok, notes)
    }

    /// Unknown check when server args cannot be used.
    pub(super) fn unusable(&self, id: &str, title: &str) -> Option<Check> {
        match &self.servers {
            Err(e) => Some(unread(id, title, e)),
            Ok(s) if s.is_empty() => Some(check(
                id,
                title,
                Status::Unknown,
                vec!["no server node found (no node-args role `server`, no control-plane label)".into()],
                "check that this is the k3s cluster",
            )),
            Ok(_) => {
                let (ok, notes) = self.parsed();
                ok.is_empty()
                    .then(|| check(id, title, Status::Unknown, notes, "check the k3s.io/node-args annotations"))
            }
        }
    }

    /// Per-server value of a setting, and whether all servers agree.
    pub(super) fn values<F: Fn(&NodeArgs) -> String>(&self, f: F) -> (Vec<String>, BTreeSet<String>) {
        let (ok, _) = self.parsed();
        let lines = ok.iter().map(|(n, a)| format!("{n}: {}", f(a))).collect();
        let distinct = ok.iter().map(|(_, a)| f(a)).collect();
        (lines, distinct)
    }
}
