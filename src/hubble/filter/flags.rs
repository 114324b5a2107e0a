//! `hubble observe` filter flags → whitelist/blacklist `FlowFilter`s, exactly as the hubble CLI
//! builds them: every flag lands in a "left" (source side) and a "right" (destination side)
//! filter; `--pod x`, `--ip`, `--label`, `--fqdn`, `--port`, `--service`, `--identity`,
//! `--workload` and `--namespace` put the source condition left and the destination condition
//! right (→ two filters, ORed), every other flag goes into both. `--not` sends the next flag to
//! the blacklist. `--namespace` is applied at the end to pod/service filters without a namespace.

use crate::hubble::names;
use crate::hubble::proto::flow::{
    DropReason, EventTypeFilter, FlowFilter, HttpHeader, IpVersion, TcpFlags, TrafficDirection, Verdict, Workload,
};

use super::FilterError;

/// A filter flag as the CLI and the TUI know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterFlagSpec {
    pub name: &'static str,
    pub short: Option<char>,
    /// false for switches (`--ipv4`, `--ipv6`).
    pub takes_value: bool,
    pub help: &'static str,
}

const fn flag(name: &'static str, short: Option<char>, help: &'static str) -> FilterFlagSpec {
    FilterFlagSpec { name, short, takes_value: true, help }
}

/// Every filter flag of `cutover flows` (hubble observe names).
pub const FILTER_FLAGS: &[FilterFlagSpec] = &[
    flag("namespace", Some('n'), "Flows from or to pods/services in this namespace"),
    flag("from-namespace", None, "Flows from pods/services in this namespace"),
    flag("to-namespace", None, "Flows to pods/services in this namespace"),
    flag("pod", None, "Flows from or to pods with this name prefix ([namespace/]<pod>, default namespace 'default')"),
    flag("from-pod", None, "Flows from pods with this name prefix"),
    flag("to-pod", None, "Flows to pods with this name prefix"),
    flag("label", Some('l'), "Flows from or to endpoints matching this label selector (k8s:app=web)"),
    flag("from-label", None, "Flows from endpoints matching this label selector"),
    flag("to-label", None, "Flows to endpoints matching this label selector"),
    flag("service", None, "Flows from or to this service ([namespace/]<service>)"),
    flag("from-service", None, "Flows from this service"),
    flag("to-service", None, "Flows to this service"),
    flag("ip", None, "Flows from or to this IP address or CIDR"),
    flag("from-ip", None, "Flows from this IP address or CIDR"),
    flag("to-ip", None, "Flows to this IP address or CIDR"),
    FilterFlagSpec { name: "ipv4", short: None, takes_value: false, help: "Only IPv4 flows" },
    FilterFlagSpec { name: "ipv6", short: None, takes_value: false, help: "Only IPv6 flows" },
    flag("ip-version", None, "Only flows of this IP version (4 or 6)"),
    flag("fqdn", None, "Flows from or to this FQDN pattern (*.example.com)"),
    flag("from-fqdn", None, "Flows from this FQDN pattern"),
    flag("to-fqdn", None, "Flows to this FQDN pattern"),
    flag("port", None, "Flows with this source or destination port"),
    flag("from-port", None, "Flows with this source port"),
    flag("to-port", None, "Flows with this destination port"),
    flag("identity", None, "Flows from or to this security identity (number or reserved name)"),
    flag("from-identity", None, "Flows from this security identity"),
    flag("to-identity", None, "Flows to this security identity"),
    flag("workload", None, "Flows from or to this workload ([kind/]name)"),
    flag("from-workload", None, "Flows from this workload"),
    flag("to-workload", None, "Flows to this workload"),
    flag("verdict", None, "Flows with this verdict (FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED)"),
    flag("drop-reason-desc", None, "Drops with this reason (POLICY_DENIED, …)"),
    flag("type", Some('t'), "Event type: trace, drop, l7, policy-verdict, trace:to-endpoint, …"),
    flag("protocol", None, "Protocol: tcp, udp, sctp, icmp, icmpv4, icmpv6, http, dns, kafka"),
    flag("http-status", None, "HTTP status code (404) or prefix (4+)"),
    flag("http-method", None, "HTTP method"),
    flag("http-path", None, "HTTP path regular expression"),
    flag("http-url", None, "HTTP URL regular expression"),
    flag("http-header", None, "HTTP header as key:value"),
    flag("node-name", None, "Flows observed on this node (pattern, [cluster/]node, * wildcards)"),
    flag("node-label", None, "Flows observed on nodes matching this label selector"),
    flag("tcp-flags", None, "TCP flags, comma separated (SYN,ACK)"),
    flag("traffic-direction", None, "ingress or egress"),
    flag("uuid", None, "Flow UUID"),
];

/// Extra keys accepted by [`FilterBuilder::set`] that `hubble observe` has no flag for (the TUI
/// prompt uses them): `dns-query` (RE2) and `reply` (true/false).
pub const EXTRA_KEYS: &[&str] = &["dns-query", "reply"];

/// One filter argument in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterToken {
    /// `--not`: the next filter goes to the blacklist.
    Not,
    /// `--<flag> <value>` (value empty for switches).
    Set { flag: String, value: String },
}

/// Flags that conflict (hubble's conflict groups).
const CONFLICTS: &[&[&str]] = &[
    &["from-fqdn", "from-ip", "ip", "fqdn", "from-namespace", "namespace"],
    &["from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"],
    &["to-fqdn", "to-ip", "ip", "fqdn", "to-namespace", "namespace"],
    &["to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"],
    &["to-pod", "namespace"],
    &["from-pod", "namespace"],
    &["to-service", "namespace"],
    &["from-service", "namespace"],
    &["label", "from-label"],
    &["label", "to-label"],
    &["service", "from-service"],
    &["service", "to-service"],
    &["port", "to-port"],
    &["port", "from-port"],
    &["identity", "to-identity"],
    &["identity", "from-identity"],
    &["workload", "to-workload"],
    &["workload", "from-workload"],
];

#[derive(Debug, Clone, Default)]
struct Tracker {
    left: Option<FlowFilter>,
    right: Option<FlowFilter>,
    ns: Vec<String>,
    src_ns: Vec<String>,
    dst_ns: Vec<String>,
    changed: Vec<String>,
}

impl Tracker {
    fn left(&mut self, f: impl FnOnce(&mut FlowFilter)) {
        f(self.left.get_or_insert_with(FlowFilter::default));
    }
    fn right(&mut self, f: impl FnOnce(&mut FlowFilter)) {
        f(self.right.get_or_insert_with(FlowFilter::default));
    }
    fn both(&mut self, f: impl Fn(&mut FlowFilter)) {
        self.left(&f);
        self.right(&f);
    }

    fn check_conflicts(&self) -> Result<(), FilterError> {
        for group in CONFLICTS {
            for a in group.iter().filter(|a| self.changed.iter().any(|c| c == *a)) {
                if let Some(b) = group.iter().find(|b| *b != a && self.changed.iter().any(|c| c == *b)) {
                    return Err(FilterError::Conflict(a.to_string(), b.to_string()));
                }
            }
        }
        Ok(())
    }

    fn check_namespace_conflicts(&self) -> Result<(), FilterError> {
        for ff in [&self.left, &self.right].into_iter().flatten() {
            let check = |nss: &[String], names: &[String]| -> Result<(), FilterError> {
                for ns in nss {
                    for name in names {
                        if let Some((n, _)) = name.split_once('/')
                            && !n.is_empty()
                            && n != ns
                        {
                            return Err(FilterError::NamespaceConflict(ns.clone(), name.clone()));
                        }
                    }
                }
                Ok(())
            };
            check(&self.ns, &ff.source_pod)?;
            check(&self.ns, &ff.source_service)?;
            check(&self.ns, &ff.destination_pod)?;
            check(&self.ns, &ff.destination_service)?;
            check(&self.src_ns, &ff.source_pod)?;
            check(&self.src_ns, &ff.source_service)?;
            check(&self.dst_ns, &ff.destination_pod)?;
            check(&self.dst_ns, &ff.destination_service)?;
        }
        Ok(())
    }

    fn into_filters(self) -> Vec<FlowFilter> {
        if self.left.is_none()
            && self.right.is_none()
            && self.ns.is_empty()
            && self.src_ns.is_empty()
            && self.dst_ns.is_empty()
        {
            return Vec::new();
        }
        let mut left = self.left.unwrap_or_default();
        let mut right = self.right.unwrap_or_default();
        if !self.dst_ns.is_empty() {
            apply_dest(&self.dst_ns, &mut left);
            apply_dest(&self.dst_ns, &mut right);
        }
        if !self.src_ns.is_empty() {
            apply_src(&self.src_ns, &mut left);
            apply_src(&self.src_ns, &mut right);
        }
        if !self.ns.is_empty() {
            apply_src(&self.ns, &mut left);
            apply_dest(&self.ns, &mut right);
        }
        if left == right { vec![left] } else { vec![left, right] }
    }
}

fn apply_src(ns: &[String], ff: &mut FlowFilter) {
    if ff.source_pod.is_empty() && ff.source_service.is_empty() {
        ff.source_pod = vec![String::new()];
    }
    ff.source_pod = add_namespaces(&ff.source_pod, ns);
    ff.source_service = add_namespaces(&ff.source_service, ns);
}

fn apply_dest(ns: &[String], ff: &mut FlowFilter) {
    if ff.destination_pod.is_empty() && ff.destination_service.is_empty() {
        ff.destination_pod = vec![String::new()];
    }
    ff.destination_pod = add_namespaces(&ff.destination_pod, ns);
    ff.destination_service = add_namespaces(&ff.destination_service, ns);
}

fn add_namespaces(filter: &[String], ns: &[String]) -> Vec<String> {
    if ns.is_empty() || filter.is_empty() {
        return filter.to_vec();
    }
    let mut out = Vec::new();
    for f in filter {
        if f.contains('/') {
            out.push(f.clone());
        } else {
            out.extend(ns.iter().map(|n| format!("{n}/{f}")));
        }
    }
    out
}

/// Builds whitelist/blacklist filters from hubble flags in order.
#[derive(Debug, Clone, Default)]
pub struct FilterBuilder {
    whitelist: Option<Tracker>,
    blacklist: Option<Tracker>,
    blacklisting: bool,
}

impl FilterBuilder {
    pub fn new() -> FilterBuilder {
        FilterBuilder::default()
    }

    /// Builds from tokens in command-line order.
    pub fn from_tokens(tokens: &[FilterToken]) -> Result<FilterBuilder, FilterError> {
        let mut b = FilterBuilder::new();
        for t in tokens {
            match t {
                FilterToken::Not => b.not()?,
                FilterToken::Set { flag, value } => b.set(flag, value)?,
            }
        }
        Ok(b)
    }

    /// `--not`: the next filter goes to the blacklist.
    pub fn not(&mut self) -> Result<(), FilterError> {
        if self.blacklisting {
            return Err(FilterError::ConsecutiveNot);
        }
        self.blacklisting = true;
        Ok(())
    }

    /// Applies `--<flag> <value>` (flag without dashes, value empty for `--ipv4`/`--ipv6`).
    pub fn set(&mut self, flag: &str, value: &str) -> Result<(), FilterError> {
        let tracker = if std::mem::take(&mut self.blacklisting) {
            self.blacklist.get_or_insert_with(Tracker::default)
        } else {
            self.whitelist.get_or_insert_with(Tracker::default)
        };
        if !FILTER_FLAGS.iter().any(|f| f.name == flag) && !EXTRA_KEYS.contains(&flag) {
            return Err(FilterError::UnknownFlag(flag.to_string()));
        }
        if !tracker.changed.iter().any(|c| c == flag) {
            tracker.changed.push(flag.to_string());
        }
        tracker.check_conflicts()?;
        apply(tracker, flag, value)?;
        tracker.check_namespace_conflicts()
    }

    /// The resulting (whitelist, blacklist).
    pub fn build(self) -> Result<(Vec<FlowFilter>, Vec<FlowFilter>), FilterError> {
        if self.blacklisting {
            return Err(FilterError::TrailingNot);
        }
        Ok((
            self.whitelist.map(Tracker::into_filters).unwrap_or_default(),
            self.blacklist.map(Tracker::into_filters).unwrap_or_default(),
        ))
    }
}

fn invalid(flag: &str, value: &str, reason: impl Into<String>) -> FilterError {
    FilterError::InvalidValue { flag: flag.to_string(), value: value.to_string(), reason: reason.into() }
}

fn apply(t: &mut Tracker, flag: &str, value: &str) -> Result<(), FilterError> {
    let v = value.to_string();
    match flag {
        "uuid" => t.both(|f| f.uuid.push(v.clone())),
        "fqdn" => {
            t.left(|f| f.source_fqdn.push(v.clone()));
            t.right(|f| f.destination_fqdn.push(v.clone()));
        }
        "from-fqdn" => t.both(|f| f.source_fqdn.push(v.clone())),
        "to-fqdn" => t.both(|f| f.destination_fqdn.push(v.clone())),
        "pod" => {
            t.left(|f| f.source_pod.push(v.clone()));
            t.right(|f| f.destination_pod.push(v.clone()));
        }
        "from-pod" => t.both(|f| f.source_pod.push(v.clone())),
        "to-pod" => t.both(|f| f.destination_pod.push(v.clone())),
        "ip" => {
            t.left(|f| f.source_ip.push(v.clone()));
            t.right(|f| f.destination_ip.push(v.clone()));
        }
        "from-ip" => t.both(|f| f.source_ip.push(v.clone())),
        "to-ip" => t.both(|f| f.destination_ip.push(v.clone())),
        "ipv4" => t.both(|f| f.ip_version.push(IpVersion::IPv4 as i32)),
        "ipv6" => t.both(|f| f.ip_version.push(IpVersion::IPv6 as i32)),
        "ip-version" => {
            let ver = match value.to_ascii_lowercase().as_str() {
                "4" | "v4" | "ipv4" | "ip4" => IpVersion::IPv4,
                "6" | "v6" | "ipv6" | "ip6" => IpVersion::IPv6,
                _ => IpVersion::IpNotUsed,
            };
            t.both(|f| f.ip_version.push(ver as i32));
        }
        "label" => {
            t.left(|f| f.source_label.push(v.clone()));
            t.right(|f| f.destination_label.push(v.clone()));
        }
        "from-label" => t.both(|f| f.source_label.push(v.clone())),
        "to-label" => t.both(|f| f.destination_label.push(v.clone())),
        "node-label" => t.both(|f| f.node_labels.push(v.clone())),
        "namespace" => t.ns.push(v),
        "from-namespace" => t.src_ns.push(v),
        "to-namespace" => t.dst_ns.push(v),
        "service" => {
            t.left(|f| f.source_service.push(v.clone()));
            t.right(|f| f.destination_service.push(v.clone()));
        }
        "from-service" => t.both(|f| f.source_service.push(v.clone())),
        "to-service" => t.both(|f| f.destination_service.push(v.clone())),
        "port" => {
            t.left(|f| f.source_port.push(v.clone()));
            t.right(|f| f.destination_port.push(v.clone()));
        }
        "from-port" => t.both(|f| f.source_port.push(v.clone())),
        "to-port" => t.both(|f| f.destination_port.push(v.clone())),
        "verdict" => {
            let verdict = Verdict::from_str_name(&value.to_ascii_uppercase()).ok_or_else(|| {
                invalid(flag, value, "expected FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED, TRACED or TRANSLATED")
            })?;
            t.both(|f| f.verdict.push(verdict as i32));
        }
        "drop-reason-desc" => {
            if value.is_empty() {
                return Err(invalid(flag, value, "empty value"));
            }
            let reason = DropReason::from_str_name(&value.to_ascii_uppercase())
                .ok_or_else(|| invalid(flag, value, "not a drop reason name (e.g. POLICY_DENIED)"))?;
            t.both(|f| f.drop_reason_desc.push(reason as i32));
        }
        "http-status" => t.both(|f| f.http_status_code.push(v.clone())),
        "http-method" => t.both(|f| f.http_method.push(v.clone())),
        "http-path" => t.both(|f| f.http_path.push(v.clone())),
        "http-url" => t.both(|f| f.http_url.push(v.clone())),
        "http-header" => {
            let Some((key, val)) = value.split_once(':') else {
                return Err(invalid(flag, value, "expected key:value"));
            };
            let h = HttpHeader { key: key.to_string(), value: val.to_string() };
            t.both(|f| f.http_header.push(h.clone()));
        }
        "type" => {
            let tf = parse_event_type(value)?;
            t.both(|f| f.event_type.push(tf));
        }
        "protocol" => t.both(|f| f.protocol.push(v.clone())),
        "workload" => {
            let w = parse_workload(value);
            t.left(|f| f.source_workload.push(w.clone()));
            t.right(|f| f.destination_workload.push(w.clone()));
        }
        "from-workload" => {
            let w = parse_workload(value);
            t.both(|f| f.source_workload.push(w.clone()));
        }
        "to-workload" => {
            let w = parse_workload(value);
            t.both(|f| f.destination_workload.push(w.clone()));
        }
        "identity" | "from-identity" | "to-identity" => {
            let id = parse_identity(value).ok_or_else(|| {
                invalid(
                    flag,
                    value,
                    format!(
                        "invalid security identity, expected one of {} or a numeric value",
                        names::reserved_identity_names().join(", ")
                    ),
                )
            })?;
            match flag {
                "identity" => {
                    t.left(|f| f.source_identity.push(id));
                    t.right(|f| f.destination_identity.push(id));
                }
                "from-identity" => t.both(|f| f.source_identity.push(id)),
                _ => t.both(|f| f.destination_identity.push(id)),
            }
        }
        "node-name" => t.both(|f| f.node_name.push(v.clone())),
        "tcp-flags" => {
            let flags =
                parse_tcp_flags(value).map_err(|bad| invalid(flag, value, format!("unknown tcp flag: {bad}")))?;
            t.both(|f| f.tcp_flags.push(flags));
        }
        "traffic-direction" => {
            let dir = match value.to_ascii_lowercase().as_str() {
                "ingress" => TrafficDirection::Ingress,
                "egress" => TrafficDirection::Egress,
                _ => return Err(invalid(flag, value, "invalid traffic direction, expected ingress or egress")),
            };
            t.both(|f| f.traffic_direction.push(dir as i32));
        }
        "dns-query" => t.both(|f| f.dns_query.push(v.clone())),
        "reply" => {
            let r = match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => true,
                "false" | "no" | "0" => false,
                _ => return Err(invalid(flag, value, "expected true or false")),
            };
            t.both(|f| f.reply.push(r));
        }
        other => return Err(FilterError::UnknownFlag(other.to_string())),
    }
    Ok(())
}

/// `--type` value: `trace`, `drop`, `l7`, `policy-verdict`, a number, optionally `:subtype`
/// (`trace:to-endpoint`, `drop:133`).
pub fn parse_event_type(value: &str) -> Result<EventTypeFilter, FilterError> {
    let (ty, sub) = match value.split_once(':') {
        Some((t, s)) => (t, Some(s)),
        None => (value, None),
    };
    let type_num = match names::message_type_by_name(ty) {
        Some(t) => t,
        None => ty.parse::<u32>().ok().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| {
            invalid(
                "type",
                value,
                format!("unable to parse type '{ty}', not a known type name and unable to parse as numeric value"),
            )
        })?,
    };
    let mut f = EventTypeFilter { r#type: type_num, match_sub_type: false, sub_type: 0 };
    if let Some(sub) = sub {
        if type_num == names::MSG_TRACE
            && let Some(s) = names::trace_point_by_name(sub)
        {
            f.match_sub_type = true;
            f.sub_type = s;
        }
        if !f.match_sub_type {
            let n = sub.parse::<u32>().ok().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| {
                invalid(
                    "type",
                    value,
                    format!("unable to parse event sub-type '{sub}', not a known sub-type name and unable to parse as numeric value"),
                )
            })?;
            f.match_sub_type = true;
            f.sub_type = n;
        }
    }
    Ok(f)
}

fn parse_workload(s: &str) -> Workload {
    match s.split_once('/') {
        Some((kind, name)) => Workload { kind: kind.to_string(), name: name.to_string() },
        None => Workload { kind: String::new(), name: s.to_string() },
    }
}

fn parse_identity(s: &str) -> Option<u32> {
    names::reserved_identity_by_name(s).or_else(|| s.parse().ok())
}

/// `SYN,ACK` → TCPFlags; the unknown flag on error.
pub fn parse_tcp_flags(s: &str) -> Result<TcpFlags, String> {
    let mut f = TcpFlags::default();
    for part in s.split(',') {
        match part.trim().to_ascii_uppercase().as_str() {
            "SYN" => f.syn = true,
            "FIN" => f.fin = true,
            "RST" => f.rst = true,
            "PSH" => f.psh = true,
            "ACK" => f.ack = true,
            "URG" => f.urg = true,
            "ECE" => f.ece = true,
            "CWR" => f.cwr = true,
            "NS" => f.ns = true,
            _ => return Err(part.to_string()),
        }
    }
    Ok(f)
}

/// The filter flags of `cutover flows` as a clap argument group, keeping their order (needed for
/// `--not`, which applies to the next filter only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterArgs {
    pub tokens: Vec<FilterToken>,
}

impl FilterArgs {
    /// The (whitelist, blacklist) these flags describe.
    pub fn build(&self) -> Result<(Vec<FlowFilter>, Vec<FlowFilter>), FilterError> {
        FilterBuilder::from_tokens(&self.tokens)?.build()
    }
}

impl clap::FromArgMatches for FilterArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut indexed: Vec<(usize, FilterToken)> = Vec::new();
        if let Some(idx) = m.indices_of("not") {
            indexed.extend(idx.map(|i| (i, FilterToken::Not)));
        }
        for spec in FILTER_FLAGS {
            let Some(idx) = m.indices_of(spec.name) else { continue };
            if spec.takes_value {
                let values = m.get_many::<String>(spec.name).into_iter().flatten();
                for (i, v) in idx.zip(values) {
                    indexed.push((i, FilterToken::Set { flag: spec.name.to_string(), value: v.clone() }));
                }
            } else {
                for i in idx {
                    indexed.push((i, FilterToken::Set { flag: spec.name.to_string(), value: String::new() }));
                }
            }
        }
        indexed.sort_by_key(|(i, _)| *i);
        Ok(FilterArgs { tokens: indexed.into_iter().map(|(_, t)| t).collect() })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for FilterArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let mut cmd = cmd.arg(
            clap::Arg::new("not")
                .long("not")
                .action(clap::ArgAction::Append)
                .num_args(0)
                .default_missing_value("true")
                .help("Reverse the next filter (it goes to the blacklist)")
                .help_heading("Filters"),
        );
        for spec in FILTER_FLAGS {
            let mut arg = clap::Arg::new(spec.name).long(spec.name).help(spec.help).help_heading("Filters");
            if let Some(s) = spec.short {
                arg = arg.short(s);
            }
            arg = if spec.takes_value {
                arg.action(clap::ArgAction::Append).value_name("filter").allow_hyphen_values(false)
            } else {
                // A zero-argument "value" flag: every occurrence is recorded with its index
                // (Count/SetTrue flags report the index of their default value instead).
                arg.action(clap::ArgAction::Append).num_args(0).default_missing_value("true")
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches, Parser};

    fn build(tokens: &[(&str, &str)]) -> Result<(Vec<FlowFilter>, Vec<FlowFilter>), FilterError> {
        let mut b = FilterBuilder::new();
        for (f, v) in tokens {
            if *f == "not" {
                b.not()?;
            } else {
                b.set(f, v)?;
            }
        }
        b.build()
    }

    #[test]
    fn pod_is_source_or_destination() {
        let (wl, bl) = build(&[("pod", "deathstar"), ("verdict", "DROPPED")]).unwrap();
        assert!(bl.is_empty());
        assert_eq!(wl.len(), 2);
        assert_eq!(wl[0].source_pod, vec!["deathstar"]);
        assert!(wl[0].destination_pod.is_empty());
        assert_eq!(wl[1].destination_pod, vec!["deathstar"]);
        assert_eq!(wl[0].verdict, vec![Verdict::Dropped as i32]);
        assert_eq!(wl[1].verdict, vec![Verdict::Dropped as i32]);
    }

    #[test]
    fn from_flags_make_one_filter() {
        let (wl, _) = build(&[("from-pod", "a"), ("to-pod", "b"), ("protocol", "tcp")]).unwrap();
        assert_eq!(wl.len(), 1);
        assert_eq!(wl[0].source_pod, vec!["a"]);
        assert_eq!(wl[0].destination_pod, vec!["b"]);
    }

    #[test]
    fn namespace_modifier() {
        let (wl, _) = build(&[("namespace", "media")]).unwrap();
        assert_eq!(wl.len(), 2);
        assert_eq!(wl[0].source_pod, vec!["media/"]);
        assert_eq!(wl[1].destination_pod, vec!["media/"]);
        let (wl, _) = build(&[("namespace", "media"), ("pod", "jellyfin")]).unwrap();
        assert_eq!(wl[0].source_pod, vec!["media/jellyfin"]);
        assert_eq!(wl[1].destination_pod, vec!["media/jellyfin"]);
        let (wl, _) = build(&[("from-namespace", "a"), ("to-namespace", "b")]).unwrap();
        assert_eq!(wl.len(), 1);
        assert_eq!(wl[0].source_pod, vec!["a/"]);
        assert_eq!(wl[0].destination_pod, vec!["b/"]);
        assert_eq!(
            build(&[("namespace", "a"), ("pod", "b/x")]).unwrap_err(),
            FilterError::NamespaceConflict("a".into(), "b/x".into())
        );
    }

    #[test]
    fn not_goes_to_blacklist() {
        let (wl, bl) = build(&[("verdict", "DROPPED"), ("not", ""), ("namespace", "kube-system")]).unwrap();
        assert_eq!(wl.len(), 1);
        assert_eq!(bl.len(), 2);
        assert_eq!(bl[0].source_pod, vec!["kube-system/"]);
        assert_eq!(bl[1].destination_pod, vec!["kube-system/"]);
        assert_eq!(build(&[("not", ""), ("not", "")]).unwrap_err(), FilterError::ConsecutiveNot);
        assert_eq!(build(&[("not", "")]).unwrap_err(), FilterError::TrailingNot);
    }

    #[test]
    fn conflicts_and_values() {
        assert_eq!(
            build(&[("label", "a"), ("from-label", "b")]).unwrap_err(),
            FilterError::Conflict("label".into(), "from-label".into())
        );
        assert!(matches!(build(&[("verdict", "NOPE")]), Err(FilterError::InvalidValue { .. })));
        assert!(matches!(build(&[("type", "bogus")]), Err(FilterError::InvalidValue { .. })));
        assert!(matches!(build(&[("tcp-flags", "SYN,XYZ")]), Err(FilterError::InvalidValue { .. })));
        assert!(matches!(build(&[("identity", "nobody")]), Err(FilterError::InvalidValue { .. })));
        assert!(matches!(build(&[("nope", "x")]), Err(FilterError::UnknownFlag(_))));
        let (wl, _) = build(&[("verdict", "dropped"), ("verdict", "FORWARDED")]).unwrap();
        assert_eq!(wl[0].verdict, vec![2, 1]);
        let (wl, _) = build(&[("identity", "world")]).unwrap();
        assert_eq!(wl[0].source_identity, vec![2]);
        assert_eq!(wl[1].destination_identity, vec![2]);
    }

    #[test]
    fn event_types() {
        let t = parse_event_type("trace:to-endpoint").unwrap();
        assert_eq!((t.r#type, t.match_sub_type, t.sub_type), (4, true, 0));
        let t = parse_event_type("drop").unwrap();
        assert_eq!((t.r#type, t.match_sub_type), (1, false));
        let t = parse_event_type("l7").unwrap();
        assert_eq!(t.r#type, 129);
        let t = parse_event_type("policy-verdict").unwrap();
        assert_eq!(t.r#type, 5);
        let t = parse_event_type("drop:133").unwrap();
        assert_eq!((t.r#type, t.sub_type), (1, 133));
        let t = parse_event_type("4:3").unwrap();
        assert_eq!((t.r#type, t.sub_type), (4, 3));
        assert!(parse_event_type("trace:nowhere").is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        filters: FilterArgs,
        #[arg(short = 'f', long)]
        follow: bool,
    }

    #[test]
    fn clap_keeps_order() {
        let cli = Cli::try_parse_from([
            "x",
            "--pod",
            "a",
            "--not",
            "-n",
            "kube-system",
            "-f",
            "--ipv4",
            "--not",
            "--verdict",
            "DROPPED",
            "-l",
            "k8s:app=web",
        ])
        .unwrap();
        assert!(cli.follow);
        let set = |f: &str, v: &str| FilterToken::Set { flag: f.into(), value: v.into() };
        assert_eq!(
            cli.filters.tokens,
            vec![
                set("pod", "a"),
                FilterToken::Not,
                set("namespace", "kube-system"),
                set("ipv4", ""),
                FilterToken::Not,
                set("verdict", "DROPPED"),
                set("label", "k8s:app=web"),
            ]
        );
        let (wl, bl) = cli.filters.build().unwrap();
        assert_eq!(wl.len(), 2);
        assert_eq!(bl.len(), 2);
        // Round trip through FromArgMatches on an empty command line.
        let m = <Cli as clap::CommandFactory>::command().get_matches_from(["x"]);
        assert!(FilterArgs::from_arg_matches(&m).unwrap().tokens.is_empty());
    }
}
