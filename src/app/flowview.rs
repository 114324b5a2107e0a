//! The Flows pane's view over the buffer: the `/` filter and the node follow. The filter is
//! applied to buffered flows at draw time only for the visible rows, so typing a filter never
//! loses flows and clearing it shows everything again.

use crate::hubble::proto::flow::{Flow, Verdict};

/// A compiled `/` filter.
#[derive(Debug, Clone)]
pub struct ViewFilter {
    terms: Vec<(bool, Term)>,
}

#[derive(Debug, Clone)]
enum Term {
    Namespace(String),
    Pod(String),
    Verdict(i32),
    Node(String),
    Port(u32),
    Proto(String),
    Text(String),
}

impl ViewFilter {
    /// Parses `ns:media verdict:dropped node:w1 port:53 proto:udp pod:jelly !ns:kube-system text`.
    pub fn parse(text: &str) -> Result<ViewFilter, String> {
        let mut terms = Vec::new();
        for word in text.split_whitespace() {
            let (neg, word) = match word.strip_prefix('!') {
                Some(w) => (true, w),
                None => (false, word),
            };
            let term = match word.split_once(':') {
                Some(("ns" | "namespace", v)) => Term::Namespace(v.to_string()),
                Some(("pod", v)) => Term::Pod(v.to_string()),
                Some(("node", v)) => Term::Node(v.to_string()),
                Some(("verdict", v)) => {
                    Term::Verdict(Verdict::from_str_name(&v.to_ascii_uppercase()).ok_or_else(|| {
                        format!(
                            "unknown verdict {v:?} (forwarded, dropped, error, audit, redirected, traced, translated)"
                        )
                    })? as i32)
                }
                Some(("port", v)) => Term::Port(v.parse().map_err(|_| format!("port {v:?} is not a number"))?),
                Some(("proto", v)) => Term::Proto(v.to_ascii_lowercase()),
                Some((k, _)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic()) => {
                    return Err(format!("unknown filter key {k:?} (ns, pod, verdict, node, port, proto)"));
                }
                _ => Term::Text(word.to_ascii_lowercase()),
            };
            terms.push((neg, term));
        }
        Ok(ViewFilter { terms })
    }

    /// All terms must hold (a negated term must not).
    pub fn matches(&self, f: &Flow) -> bool {
        self.terms.iter().all(|(neg, t)| term_matches(t, f) != *neg)
    }
}

fn endpoints(f: &Flow) -> impl Iterator<Item = &crate::hubble::proto::flow::Endpoint> {
    f.source.iter().chain(f.destination.iter())
}

fn ports(f: &Flow) -> [u32; 2] {
    use crate::hubble::proto::flow::layer4::Protocol;
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => [t.source_port, t.destination_port],
        Some(Protocol::Udp(u)) => [u.source_port, u.destination_port],
        Some(Protocol::Sctp(s)) => [s.source_port, s.destination_port],
        _ => [0, 0],
    }
}

fn proto_name(f: &Flow) -> &'static str {
    use crate::hubble::proto::flow::layer4::Protocol;
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(_)) => "tcp",
        Some(Protocol::Udp(_)) => "udp",
        Some(Protocol::IcmPv4(_)) => "icmpv4",
        Some(Protocol::IcmPv6(_)) => "icmpv6",
        Some(Protocol::Sctp(_)) => "sctp",
        None => "",
    }
}

fn term_matches(t: &Term, f: &Flow) -> bool {
    match t {
        Term::Namespace(ns) => endpoints(f).any(|e| &e.namespace == ns),
        Term::Pod(p) => endpoints(f).any(|e| e.pod_name.starts_with(p.as_str())),
        Term::Verdict(v) => f.verdict == *v,
        Term::Node(n) => crate::app::state::strip_cluster_prefix(&f.node_name) == n || f.node_name == *n,
        Term::Port(p) => ports(f).contains(p),
        Term::Proto(p) => {
            proto_name(f) == p || (p == "dns" && ports(f).contains(&53)) || (p == "http" && f.l7.is_some())
        }
        Term::Text(s) => {
            endpoints(f).any(|e| e.pod_name.contains(s.as_str()) || e.namespace.contains(s.as_str()))
                || f.ip.as_ref().is_some_and(|ip| ip.source.contains(s.as_str()) || ip.destination.contains(s.as_str()))
                || f.summary.to_ascii_lowercase().contains(s.as_str())
        }
    }
}
