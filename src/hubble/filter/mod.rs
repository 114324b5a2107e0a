//! Flow filters, one implementation for every consumer: `hubble observe` flag parsing into
//! whitelist/blacklist [`FlowFilter`]s ([`flags`]), the server-side matcher the relay runs
//! ([`CompiledFilter`], also used by the simulated relay and by the TUI on buffered flows), and
//! the compact `/` prompt syntax of the Flows pane ([`query`]).
//!
//! Semantics follow cilium `pkg/hubble/filters` (v1.16): fields inside one `FlowFilter` are ANDed,
//! values inside one field are ORed, a request matches when any whitelist filter matches (or the
//! whitelist is empty) and no blacklist filter matches.

pub mod flags;
pub mod labels;
pub mod query;

use std::net::IpAddr;
use std::str::FromStr;

use regex::Regex;

use crate::hubble::names;
use crate::hubble::proto::flow::{
    self, Endpoint, EventTypeFilter, Flow, FlowFilter, NetworkInterface, TcpFlags, Verdict, Workload, layer4, layer7,
};

pub use flags::{FILTER_FLAGS, FilterArgs, FilterBuilder, FilterFlagSpec, FilterToken};
pub use labels::Selector;
pub use query::{CompiledQuery, QueryError};

/// An invalid filter (bad value in a flag, a FlowFilter field the relay would reject, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("invalid IP address in filter: {0:?}")]
    InvalidIp(String),
    #[error("invalid CIDR in filter: {0:?}")]
    InvalidCidr(String),
    #[error("invalid filter, must be [namespace/][<name>], got {0:?}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidLabel(String),
    #[error("invalid port {0:?}: expected a number 0-65535")]
    InvalidPort(String),
    #[error("unknown protocol: {0:?} (expected tcp, udp, sctp, icmp, icmpv4, icmpv6, http, dns or kafka)")]
    UnknownProtocol(String),
    #[error("invalid {field} regular expression {value:?}: {reason}")]
    InvalidRegex { field: &'static str, value: String, reason: String },
    #[error("invalid status code prefix: {0:?} (expected e.g. 404 or 4+)")]
    InvalidHttpStatus(String),
    #[error("invalid {field} pattern {value:?}: {reason}")]
    InvalidPattern { field: &'static str, value: String, reason: String },
    #[error("filtering by {0} requires the event type filter to only match 'l7' events")]
    NeedsL7(&'static str),
    #[error("invalid --{flag} value {value:?}: {reason}")]
    InvalidValue { flag: String, value: String, reason: String },
    #[error("unknown filter flag --{0}")]
    UnknownFlag(String),
    #[error("filters --{0} and --{1} cannot be combined")]
    Conflict(String, String),
    #[error("namespace conflict: {0:?} does not contain {1:?}")]
    NamespaceConflict(String, String),
    #[error("{0} are not supported")]
    Unsupported(&'static str),
    #[error("consecutive --not statements")]
    ConsecutiveNot,
    #[error("--not must be followed by a filter flag")]
    TrailingNot,
}

/// One precompiled `FlowFilter` (regexes, CIDRs, selectors parsed once). Matching allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter {
    uuid: Vec<String>,
    source_ip: Option<IpMatcher>,
    source_ip_xlated: Option<IpMatcher>,
    destination_ip: Option<IpMatcher>,
    source_pod: Vec<NameFilter>,
    destination_pod: Vec<NameFilter>,
    source_service: Vec<NameFilter>,
    destination_service: Vec<NameFilter>,
    source_fqdn: Option<Regex>,
    destination_fqdn: Option<Regex>,
    source_label: Vec<Selector>,
    destination_label: Vec<Selector>,
    node_labels: Vec<Selector>,
    source_workload: Vec<Workload>,
    destination_workload: Vec<Workload>,
    traffic_direction: Vec<i32>,
    verdict: Vec<i32>,
    drop_reason_desc: Vec<i32>,
    interface: Vec<NetworkInterface>,
    event_type: Vec<EventTypeFilter>,
    http_status: Option<HttpStatusFilter>,
    protocol: u16,
    source_port: Vec<u16>,
    destination_port: Vec<u16>,
    reply: Vec<bool>,
    dns_query: Vec<Regex>,
    source_identity: Vec<u32>,
    destination_identity: Vec<u32>,
    http_method: Vec<String>,
    http_path: Vec<Regex>,
    http_url: Vec<Regex>,
    http_header: Vec<(String, String)>,
    tcp_flags: Vec<TcpFlags>,
    node_name: Vec<NodePattern>,
    ip_version: Vec<i32>,
    trace_id: Vec<String>,
}

/// A compiled request: whitelist and blacklist.
#[derive(Debug, Clone, Default)]
pub struct CompiledRequest {
    pub whitelist: Vec<CompiledFilter>,
    pub blacklist: Vec<CompiledFilter>,
}

impl CompiledRequest {
    /// Compiles both lists; the first invalid filter is the error.
    pub fn new(whitelist: &[FlowFilter], blacklist: &[FlowFilter]) -> Result<CompiledRequest, FilterError> {
        Ok(CompiledRequest {
            whitelist: whitelist.iter().map(CompiledFilter::new).collect::<Result<_, _>>()?,
            blacklist: blacklist.iter().map(CompiledFilter::new).collect::<Result<_, _>>()?,
        })
    }

    /// any(whitelist, or true when empty) && !any(blacklist).
    pub fn matches(&self, flow: &Flow) -> bool {
        (self.whitelist.is_empty() || self.whitelist.iter().any(|f| f.matches(flow)))
            && !self.blacklist.iter().any(|f| f.matches(flow))
    }

    /// Whether this request lets everything through.
    pub fn is_empty(&self) -> bool {
        self.whitelist.is_empty() && self.blacklist.is_empty()
    }
}

/// Matches one filter against one flow, compiling it first (convenient, allocates; use
/// [`CompiledFilter`] on hot paths). An invalid filter matches nothing.
pub fn matches(filter: &FlowFilter, flow: &Flow) -> bool {
    CompiledFilter::new(filter).is_ok_and(|f| f.matches(flow))
}

/// The relay's request semantics: any(whitelist or empty) && !any(blacklist). Compiles on every
/// call (use [`CompiledRequest`] on hot paths); an invalid filter makes the request match nothing.
pub fn request_matches(whitelist: &[FlowFilter], blacklist: &[FlowFilter], flow: &Flow) -> bool {
    CompiledRequest::new(whitelist, blacklist).is_ok_and(|r| r.matches(flow))
}

// Protocol bits.
const P_TCP: u16 = 1;
const P_UDP: u16 = 2;
const P_SCTP: u16 = 4;
const P_ICMPV4: u16 = 8;
const P_ICMPV6: u16 = 16;
const P_DNS: u16 = 32;
const P_HTTP: u16 = 64;
const P_KAFKA: u16 = 128;

impl CompiledFilter {
    /// Compiles a FlowFilter, validating it as the relay does.
    pub fn new(ff: &FlowFilter) -> Result<CompiledFilter, FilterError> {
        let http_ok = ff.event_type.is_empty() || ff.event_type.iter().any(|t| t.r#type == names::MSG_ACCESS_LOG);
        let need_l7 =
            |field: &'static str, set: bool| if set && !http_ok { Err(FilterError::NeedsL7(field)) } else { Ok(()) };
        need_l7("http status code", !ff.http_status_code.is_empty())?;
        need_l7("http method", !ff.http_method.is_empty())?;
        need_l7("http path", !ff.http_path.is_empty())?;
        need_l7("http url", !ff.http_url.is_empty())?;
        need_l7("http header", !ff.http_header.is_empty())?;
        if ff.experimental.as_ref().is_some_and(|x| !x.cel_expression.is_empty()) {
            return Err(FilterError::Unsupported("CEL expressions (experimental.cel_expression)"));
        }

        let regexes = |field: &'static str, pats: &[String]| -> Result<Vec<Regex>, FilterError> {
            pats.iter()
                .map(|p| {
                    Regex::new(p).map_err(|e| FilterError::InvalidRegex {
                        field,
                        value: p.clone(),
                        reason: e.to_string().lines().last().unwrap_or_default().trim().to_string(),
                    })
                })
                .collect()
        };

        Ok(CompiledFilter {
            uuid: ff.uuid.clone(),
            source_ip: IpMatcher::new(&ff.source_ip)?,
            source_ip_xlated: IpMatcher::new(&ff.source_ip_xlated)?,
            destination_ip: IpMatcher::new(&ff.destination_ip)?,
            source_pod: NameFilter::parse_all(&ff.source_pod)?,
            destination_pod: NameFilter::parse_all(&ff.destination_pod)?,
            source_service: NameFilter::parse_all(&ff.source_service)?,
            destination_service: NameFilter::parse_all(&ff.destination_service)?,
            source_fqdn: fqdn_regex("fqdn", &ff.source_fqdn)?,
            destination_fqdn: fqdn_regex("fqdn", &ff.destination_fqdn)?,
            source_label: selectors(&ff.source_label)?,
            destination_label: selectors(&ff.destination_label)?,
            node_labels: selectors(&ff.node_labels)?,
            source_workload: ff.source_workload.clone(),
            destination_workload: ff.destination_workload.clone(),
            traffic_direction: ff.traffic_direction.clone(),
            verdict: ff.verdict.clone(),
            drop_reason_desc: ff.drop_reason_desc.clone(),
            interface: ff.interface.clone(),
            event_type: ff.event_type.clone(),
            http_status: HttpStatusFilter::new(&ff.http_status_code)?,
            protocol: protocols(&ff.protocol)?,
            source_port: ports(&ff.source_port)?,
            destination_port: ports(&ff.destination_port)?,
            reply: ff.reply.clone(),
            dns_query: regexes("dns query", &ff.dns_query)?,
            source_identity: ff.source_identity.clone(),
            destination_identity: ff.destination_identity.clone(),
            http_method: ff.http_method.clone(),
            http_path: regexes("http path", &ff.http_path)?,
            http_url: regexes("http url", &ff.http_url)?,
            http_header: ff.http_header.iter().map(|h| (h.key.clone(), h.value.clone())).collect(),
            tcp_flags: ff.tcp_flags.clone(),
            node_name: ff.node_name.iter().map(|p| NodePattern::new(p)).collect::<Result<_, _>>()?,
            ip_version: ff.ip_version.clone(),
            trace_id: ff.trace_id.clone(),
        })
    }

    /// Whether every set field of the filter matches the flow.
    pub fn matches(&self, f: &Flow) -> bool {
        let src = f.source.as_ref();
        let dst = f.destination.as_ref();
        let ip = f.ip.as_ref();
        (self.uuid.is_empty() || self.uuid.contains(&f.uuid))
            && self.source_ip.as_ref().is_none_or(|m| m.matches(ip.map_or("", |i| &i.source)))
            && self.source_ip_xlated.as_ref().is_none_or(|m| m.matches(ip.map_or("", |i| &i.source_xlated)))
            && self.destination_ip.as_ref().is_none_or(|m| m.matches(ip.map_or("", |i| &i.destination)))
            && names_match(&self.source_pod, src.map_or(("", ""), |e| (&e.namespace, &e.pod_name)))
            && names_match(&self.destination_pod, dst.map_or(("", ""), |e| (&e.namespace, &e.pod_name)))
            && names_match(&self.source_service, f.source_service.as_ref().map_or(("", ""), |s| (&s.namespace, &s.name)))
            && names_match(
                &self.destination_service,
                f.destination_service.as_ref().map_or(("", ""), |s| (&s.namespace, &s.name)),
            )
            && self.source_fqdn.as_ref().is_none_or(|re| f.source_names.iter().any(|n| re.is_match(n)))
            && self.destination_fqdn.as_ref().is_none_or(|re| f.destination_names.iter().any(|n| re.is_match(n)))
            && selectors_match(&self.source_label, src)
            && selectors_match(&self.destination_label, dst)
            && (self.node_labels.is_empty() || self.node_labels.iter().any(|s| s.matches(&f.node_labels)))
            && workloads_match(&self.source_workload, src)
            && workloads_match(&self.destination_workload, dst)
            && (self.traffic_direction.is_empty() || self.traffic_direction.contains(&f.traffic_direction))
            && (self.verdict.is_empty() || self.verdict.contains(&f.verdict))
            && (self.drop_reason_desc.is_empty() || self.drop_reason_desc.contains(&f.drop_reason_desc))
            && self.interface_matches(f)
            && self.event_type_matches(f)
            && self.http_status.as_ref().is_none_or(|h| h.matches(f))
            && (self.protocol == 0 || protocol_bits(f) & self.protocol != 0)
            && ports_match(&self.source_port, f, true)
            && ports_match(&self.destination_port, f, false)
            && self.reply_matches(f)
            && (self.dns_query.is_empty()
                || dns(f).is_some_and(|d| self.dns_query.iter().any(|re| re.is_match(&d.query))))
            && (self.source_identity.is_empty() || self.source_identity.contains(&src.map_or(0, |e| e.identity)))
            && (self.destination_identity.is_empty()
                || self.destination_identity.contains(&dst.map_or(0, |e| e.identity)))
            && (self.http_method.is_empty()
                || http(f).is_some_and(|h| {
                    !h.method.is_empty() && self.http_method.iter().any(|m| m.eq_ignore_ascii_case(&h.method))
                }))
            && (self.http_path.is_empty()
                || http(f).and_then(|h| request_uri_path(&h.url)).is_some_and(|p| self.http_path.iter().any(|re| re.is_match(p))))
            && (self.http_url.is_empty()
                || http(f).is_some_and(|h| !h.url.is_empty() && self.http_url.iter().any(|re| re.is_match(&h.url))))
            && (self.http_header.is_empty()
                || http(f).is_some_and(|h| {
                    self.http_header.iter().any(|(k, v)| h.headers.iter().any(|fh| &fh.key == k && &fh.value == v))
                }))
            && self.tcp_flags_match(f)
            && (self.node_name.is_empty() || node_name_matches(&self.node_name, &f.node_name))
            && (self.ip_version.is_empty() || self.ip_version.contains(&ip.map_or(0, |i| i.ip_version)))
            // The proto subset has no trace_context: a trace id filter never matches.
            && self.trace_id.is_empty()
    }

    fn interface_matches(&self, f: &Flow) -> bool {
        if self.interface.is_empty() {
            return true;
        }
        let Some(iface) = f.interface.as_ref() else { return false };
        self.interface
            .iter()
            .any(|w| (w.index == 0 || w.index == iface.index) && (w.name.is_empty() || w.name == iface.name))
    }

    fn event_type_matches(&self, f: &Flow) -> bool {
        if self.event_type.is_empty() {
            return true;
        }
        let Some(ev) = f.event_type.as_ref() else { return false };
        self.event_type
            .iter()
            .any(|t| (t.r#type == 0 || t.r#type == ev.r#type) && (!t.match_sub_type || t.sub_type == ev.sub_type))
    }

    fn reply_matches(&self, f: &Flow) -> bool {
        if self.reply.is_empty() {
            return true;
        }
        // Like the relay: unknown direction never matches, except drops (treated as not-reply for
        // clients that still use the deprecated `reply` field).
        if f.is_reply.is_none() && f.verdict != Verdict::Dropped as i32 {
            return false;
        }
        let reply = f.is_reply.as_ref().is_some_and(|b| b.value);
        self.reply.contains(&reply)
    }

    fn tcp_flags_match(&self, f: &Flow) -> bool {
        if self.tcp_flags.is_empty() {
            return true;
        }
        let Some(have) = tcp(f).and_then(|t| t.flags.as_ref()) else { return false };
        self.tcp_flags.iter().any(|want| {
            !(want.fin && !have.fin
                || want.syn && !have.syn
                || want.rst && !have.rst
                || want.psh && !have.psh
                || want.ack && !have.ack
                || want.urg && !have.urg
                || want.ece && !have.ece
                || want.cwr && !have.cwr
                || want.ns && !have.ns)
        })
    }
}

fn tcp(f: &Flow) -> Option<&flow::Tcp> {
    match f.l4.as_ref()?.protocol.as_ref()? {
        layer4::Protocol::Tcp(t) => Some(t),
        _ => None,
    }
}

fn http(f: &Flow) -> Option<&flow::Http> {
    match f.l7.as_ref()?.record.as_ref()? {
        layer7::Record::Http(h) => Some(h),
        _ => None,
    }
}

fn dns(f: &Flow) -> Option<&flow::Dns> {
    match f.l7.as_ref()?.record.as_ref()? {
        layer7::Record::Dns(d) => Some(d),
        _ => None,
    }
}

fn protocol_bits(f: &Flow) -> u16 {
    let l4 = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(_)) => P_TCP,
        Some(layer4::Protocol::Udp(_)) => P_UDP,
        Some(layer4::Protocol::Sctp(_)) => P_SCTP,
        Some(layer4::Protocol::IcmPv4(_)) => P_ICMPV4,
        Some(layer4::Protocol::IcmPv6(_)) => P_ICMPV6,
        None => 0,
    };
    let l7 = match f.l7.as_ref().and_then(|l| l.record.as_ref()) {
        Some(layer7::Record::Dns(_)) => P_DNS,
        Some(layer7::Record::Http(_)) => P_HTTP,
        None => 0,
    };
    l4 | l7
}

fn protocols(list: &[String]) -> Result<u16, FilterError> {
    let mut bits = 0;
    for p in list {
        bits |= match p.to_ascii_lowercase().as_str() {
            "tcp" => P_TCP,
            "udp" => P_UDP,
            "sctp" => P_SCTP,
            "icmp" => P_ICMPV4 | P_ICMPV6,
            "icmpv4" => P_ICMPV4,
            "icmpv6" => P_ICMPV6,
            "dns" => P_DNS,
            "http" => P_HTTP,
            "kafka" => P_KAFKA,
            _ => return Err(FilterError::UnknownProtocol(p.clone())),
        };
    }
    Ok(bits)
}

fn ports(list: &[String]) -> Result<Vec<u16>, FilterError> {
    list.iter().map(|p| p.parse::<u16>().map_err(|_| FilterError::InvalidPort(p.clone()))).collect()
}

fn ports_match(want: &[u16], f: &Flow, source: bool) -> bool {
    if want.is_empty() {
        return true;
    }
    let port = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(t)) => Some(if source { t.source_port } else { t.destination_port }),
        Some(layer4::Protocol::Udp(u)) => Some(if source { u.source_port } else { u.destination_port }),
        Some(layer4::Protocol::Sctp(s)) => Some(if source { s.source_port } else { s.destination_port }),
        _ => None,
    };
    // The relay truncates the port to 16 bits before comparing.
    port.is_some_and(|p| want.contains(&(p as u16)))
}

fn selectors(list: &[String]) -> Result<Vec<Selector>, FilterError> {
    list.iter().map(|s| Selector::parse(s).map_err(|e| FilterError::InvalidLabel(e.0))).collect()
}

fn selectors_match(sels: &[Selector], ep: Option<&Endpoint>) -> bool {
    if sels.is_empty() {
        return true;
    }
    let labels: &[String] = ep.map_or(&[], |e| &e.labels);
    sels.iter().any(|s| s.matches(labels))
}

fn workloads_match(want: &[Workload], ep: Option<&Endpoint>) -> bool {
    if want.is_empty() {
        return true;
    }
    let Some(ep) = ep else { return false };
    ep.workloads.iter().any(|w| {
        want.iter().any(|f| {
            (f.kind.is_empty() || f.kind.eq_ignore_ascii_case(&w.kind)) && (f.name.is_empty() || f.name == w.name)
        })
    })
}

/// `[namespace/][name-prefix]` as the relay parses it: no slash = namespace `default`, an empty
/// namespace (`/name`) = any namespace, an empty name (`ns/`) = the whole namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NameFilter {
    namespace: String,
    prefix: String,
}

impl NameFilter {
    fn parse_all(list: &[String]) -> Result<Vec<NameFilter>, FilterError> {
        list.iter()
            .map(|s| {
                let mut parts = s.split('/');
                let first = parts.next().unwrap_or_default();
                let (namespace, prefix) = match parts.next() {
                    Some(name) => (first, name),
                    None if first.is_empty() => ("", ""),
                    None => ("default", first),
                };
                if namespace.is_empty() && prefix.is_empty() {
                    return Err(FilterError::InvalidName(s.clone()));
                }
                Ok(NameFilter { namespace: namespace.to_string(), prefix: prefix.to_string() })
            })
            .collect()
    }
}

fn names_match(filters: &[NameFilter], (ns, name): (&str, &str)) -> bool {
    if filters.is_empty() {
        return true;
    }
    if ns.is_empty() && name.is_empty() {
        return false;
    }
    filters
        .iter()
        .any(|f| (f.prefix.is_empty() || name.starts_with(&f.prefix)) && (f.namespace.is_empty() || f.namespace == ns))
}

/// Exact addresses (compared as text, like the relay) and CIDRs.
#[derive(Debug, Clone, Default)]
struct IpMatcher {
    exact: Vec<String>,
    cidrs: Vec<(IpAddr, u8)>,
}

impl IpMatcher {
    fn new(list: &[String]) -> Result<Option<IpMatcher>, FilterError> {
        if list.is_empty() {
            return Ok(None);
        }
        let mut m = IpMatcher::default();
        for s in list {
            if let Some((addr, len)) = s.split_once('/') {
                let addr = IpAddr::from_str(addr).map_err(|_| FilterError::InvalidCidr(s.clone()))?;
                let len: u8 = len.parse().map_err(|_| FilterError::InvalidCidr(s.clone()))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if len > max {
                    return Err(FilterError::InvalidCidr(s.clone()));
                }
                m.cidrs.push((addr, len));
            } else {
                IpAddr::from_str(s).map_err(|_| FilterError::InvalidIp(s.clone()))?;
                m.exact.push(s.clone());
            }
        }
        Ok(Some(m))
    }

    fn matches(&self, ip: &str) -> bool {
        if ip.is_empty() {
            return false;
        }
        if self.exact.iter().any(|e| e == ip) {
            return true;
        }
        if self.cidrs.is_empty() {
            return false;
        }
        let Ok(addr) = IpAddr::from_str(ip) else { return false };
        self.cidrs.iter().any(|(net, len)| cidr_contains(*net, *len, addr))
    }
}

fn cidr_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        // Go's IPNet.Contains matches IPv4 addresses against IPv4-mapped IPv6 nets and back.
        (IpAddr::V6(n), IpAddr::V4(i)) => {
            n.to_ipv4_mapped().is_some_and(|n4| len >= 96 && cidr_contains(IpAddr::V4(n4), len - 96, IpAddr::V4(i)))
        }
        (IpAddr::V4(n), IpAddr::V6(i)) => {
            i.to_ipv4_mapped().is_some_and(|i4| cidr_contains(IpAddr::V4(n), len, IpAddr::V4(i4)))
        }
    }
}

/// `404` (exact) and `4+` / `40+` (prefix) status filters.
#[derive(Debug, Clone, Default)]
struct HttpStatusFilter {
    full: Vec<u32>,
    /// (prefix digits as text, compared against the zero-padded code)
    prefix: Vec<String>,
}

impl HttpStatusFilter {
    fn new(list: &[String]) -> Result<Option<HttpStatusFilter>, FilterError> {
        if list.is_empty() {
            return Ok(None);
        }
        let mut h = HttpStatusFilter::default();
        for s in list {
            let b = s.as_bytes();
            let digit = |c: u8| c.is_ascii_digit();
            if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && digit(b[1]) && digit(b[2]) {
                h.full.push(s.parse().map_err(|_| FilterError::InvalidHttpStatus(s.clone()))?);
            } else if (b.len() == 2 || b.len() == 3)
                && (b'1'..=b'5').contains(&b[0])
                && b[b.len() - 1] == b'+'
                && (b.len() == 2 || digit(b[1]))
            {
                h.prefix.push(s[..s.len() - 1].to_string());
            } else {
                return Err(FilterError::InvalidHttpStatus(s.clone()));
            }
        }
        Ok(Some(h))
    }

    fn matches(&self, f: &Flow) -> bool {
        let Some(h) = http(f) else { return false };
        if h.code == 0 {
            return false;
        }
        if self.full.contains(&h.code) {
            return true;
        }
        // "%03d" of the code, then a prefix test, without allocating.
        let mut digits = [0u8; 10];
        let mut n = h.code;
        let mut i = digits.len();
        while n > 0 {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        while digits.len() - i < 3 {
            i -= 1;
            digits[i] = b'0';
        }
        let text = &digits[i..];
        self.prefix.iter().any(|p| text.starts_with(p.as_bytes()))
    }
}

/// The path of a request URI like Go's `url.ParseRequestURI` (absolute URL or absolute path).
fn request_uri_path(url: &str) -> Option<&str> {
    if url.is_empty() {
        return None;
    }
    let cut = |s: &str| -> usize { s.find('?').unwrap_or(s.len()) };
    if url.starts_with('/') {
        return Some(&url[..cut(url)]);
    }
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c)) {
        return None;
    }
    let rest = &rest[..cut(rest)];
    Some(rest.find('/').map_or("", |i| &rest[i..]))
}

/// FQDN patterns (`*.example.com`) compiled as the relay does: lower case, one trailing dot
/// ignored, `*` = `[-.0-9a-z]*`, anchored.
fn fqdn_regex(field: &'static str, patterns: &[String]) -> Result<Option<Regex>, FilterError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut re = String::from(r"\A(?:");
    for (i, p) in patterns.iter().enumerate() {
        if i > 0 {
            re.push('|');
        }
        append_fqdn_pattern(&mut re, p).map_err(|reason| FilterError::InvalidPattern {
            field,
            value: p.clone(),
            reason,
        })?;
    }
    re.push_str(r")\z");
    Regex::new(&re).map(Some).map_err(|e| FilterError::InvalidPattern {
        field,
        value: patterns.join(","),
        reason: e.to_string(),
    })
}

const FQDN_RE: &str = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)";

fn append_fqdn_pattern(re: &mut String, pattern: &str) -> Result<(), String> {
    let p = pattern.trim();
    let p = p.strip_suffix('.').unwrap_or(p).to_ascii_lowercase();
    if p.is_empty() {
        return Err("empty pattern".into());
    }
    if p.ends_with('.') {
        return Err("multiple trailing dots in pattern".into());
    }
    for c in p.chars() {
        match c {
            '.' => re.push_str(r"\."),
            '*' => re.push_str("[-.0-9a-z]*"),
            '-' | '_' | '0'..='9' | 'a'..='z' => re.push(c),
            _ => return Err(format!("{c:?}: invalid rune in pattern")),
        }
    }
    Ok(())
}

/// A node name pattern `[cluster/]node`, each element an FQDN pattern; no cluster = any cluster.
#[derive(Debug, Clone)]
struct NodePattern {
    cluster: Regex,
    node: Regex,
}

impl NodePattern {
    fn new(pattern: &str) -> Result<NodePattern, FilterError> {
        let err =
            |reason: String| FilterError::InvalidPattern { field: "node name", value: pattern.to_string(), reason };
        if pattern.is_empty() {
            return Err(err("empty pattern".into()));
        }
        let elems: Vec<&str> = pattern.split('/').collect();
        let (cluster, node) = match elems.as_slice() {
            [n] => ("", *n),
            [c, n] => (*c, *n),
            _ => return Err(err("too many slashes in pattern".into())),
        };
        let element = |e: &str| -> Result<Regex, FilterError> {
            let mut re = String::from(r"\A");
            if e.is_empty() {
                re.push_str(FQDN_RE);
            } else {
                append_fqdn_pattern(&mut re, e).map_err(err)?;
            }
            re.push_str(r"\z");
            Regex::new(&re).map_err(|e| err(e.to_string()))
        };
        Ok(NodePattern { cluster: element(cluster)?, node: element(node)? })
    }
}

fn node_name_matches(patterns: &[NodePattern], node_name: &str) -> bool {
    if node_name.is_empty() {
        return false;
    }
    // Names without a cluster belong to the `default` cluster.
    let (cluster, node) = node_name.split_once('/').unwrap_or(("default", node_name));
    patterns.iter().any(|p| p.cluster.is_match(cluster) && p.node.is_match(node))
}

#[cfg(test)]
mod tests;
