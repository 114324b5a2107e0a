//! `hubble observe` compatible output of flows, node-status and lost events (`compact`, `json`,
//! `dict`), written into reusable buffers without per-flow allocation (compact/dict), plus the
//! structured [`FlowRow`] the Flows pane renders. Layouts follow hubble's printer (v1.16):
//!
//! ```text
//! May  4 13:23:47.852 [node]: default/xwing:42818 (ID:123) <> default/deathstar-c7:80 (ID:456) Policy denied DROPPED (TCP Flags: SYN)
//! ```
//!
//! Unknown enum numbers print as numbers, missing fields as hubble prints them (`N/A` time, empty
//! host), never a panic.

use crate::hubble::buf::TextBuf;
use crate::hubble::names;
use crate::hubble::proto::flow::{
    AuthType, DropReason, Flow, FlowType, IpVersion, L7FlowType, LostEvent, LostEventSource, TraceObservationPoint,
    TraceReason, TrafficDirection, Verdict, layer4, layer7,
};
use crate::hubble::proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use crate::hubble::proto::relay::{NodeState, NodeStatusEvent};
use crate::hubble::time::{TimeFormat, push_int, push_uint};

/// `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per flow (hubble's default).
    #[default]
    Compact,
    /// One GetFlowsResponse per line, proto3 JSON with proto field names (`jsonpb` is an alias).
    #[value(alias = "jsonpb")]
    Json,
    /// Key: value blocks separated by `------------`.
    Dict,
}

/// How flows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatOptions {
    pub output: OutputFormat,
    pub time_format: TimeFormat,
    /// `[node]` after the time (compact) / a NODE line (dict).
    pub print_node_name: bool,
    /// Pod/service/DNS names instead of IPs (hubble `--ip-translation`, default true).
    pub ip_translation: bool,
    /// The `(ID:n)` identity columns of compact output (hubble ≥ 0.11). `false` reproduces the
    /// older layout seen in the Cilium docs.
    pub identities: bool,
    /// Also print informational node-status events (node connected), like hubble `--debug`.
    pub debug: bool,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            output: OutputFormat::Compact,
            time_format: TimeFormat::StampMilli,
            print_node_name: false,
            ip_translation: true,
            identities: true,
            debug: false,
        }
    }
}

const DICT_SEPARATOR: &str = "------------\n";
const NODE_NAMES_CUT_OFF: usize = 50;

/// Formats a sequence of responses (dict output needs to know whether a separator is due).
#[derive(Debug, Clone)]
pub struct Formatter {
    pub opts: FormatOptions,
    lines: u64,
}

impl Formatter {
    pub fn new(opts: FormatOptions) -> Formatter {
        Formatter { opts, lines: 0 }
    }

    /// Appends the text hubble prints for `resp`: flows and lost events to `out` (stdout), node
    /// status events to `err` (stderr; informational ones only with `debug`).
    pub fn write_response(&mut self, resp: &GetFlowsResponse, out: &mut Vec<u8>, err: &mut Vec<u8>) {
        match &resp.response_types {
            Some(ResponseTypes::Flow(flow)) => {
                match self.opts.output {
                    OutputFormat::Compact => write_compact(out, flow, &self.opts),
                    OutputFormat::Json => write_json(out, resp),
                    OutputFormat::Dict => {
                        if self.lines != 0 {
                            out.push_str(DICT_SEPARATOR);
                        }
                        write_dict(out, flow, &self.opts);
                    }
                }
                self.lines += 1;
            }
            Some(ResponseTypes::NodeStatus(ns)) => {
                let informational = !matches!(
                    NodeState::try_from(ns.state_change),
                    Ok(NodeState::NodeError | NodeState::NodeUnavailable)
                );
                if informational && !self.opts.debug {
                    return;
                }
                match self.opts.output {
                    OutputFormat::Json => write_json(err, resp),
                    OutputFormat::Dict => {
                        if self.lines != 0 {
                            out.push_str(DICT_SEPARATOR);
                        } else {
                            self.lines += 1;
                        }
                        write_node_status_dict(err, resp, ns, &self.opts);
                    }
                    OutputFormat::Compact => write_node_status_compact(err, resp, ns, &self.opts),
                }
            }
            Some(ResponseTypes::LostEvents(lost)) => {
                match self.opts.output {
                    OutputFormat::Json => write_json(out, resp),
                    OutputFormat::Compact => write_lost_compact(out, lost),
                    OutputFormat::Dict => {
                        if self.lines != 0 {
                            out.push_str(DICT_SEPARATOR);
                        }
                        write_lost_dict(out, lost, &self.opts);
                    }
                }
                self.lines += 1;
            }
            None => {}
        }
    }
}

/// Writes one compact line (with the trailing newline).
pub fn write_compact<B: TextBuf + ?Sized>(out: &mut B, f: &Flow, opts: &FormatOptions) {
    opts.time_format.write(out, f.time.as_ref());
    if opts.print_node_name {
        out.push_str(" [");
        out.push_str(&f.node_name);
        out.push_byte(b']');
    }
    out.push_str(": ");
    let (first, second, arrow) = match f.is_reply.as_ref() {
        None => (Side::Src, Side::Dst, "<>"),
        Some(r) if r.value => (Side::Dst, Side::Src, "<-"),
        Some(_) => (Side::Src, Side::Dst, "->"),
    };
    write_host(out, f, first, opts.ip_translation);
    out.push_byte(b' ');
    if opts.identities {
        write_identity(out, identity(f, first));
        out.push_byte(b' ');
    }
    out.push_str(arrow);
    out.push_byte(b' ');
    write_host(out, f, second, opts.ip_translation);
    out.push_byte(b' ');
    if opts.identities {
        write_identity(out, identity(f, second));
        out.push_byte(b' ');
    }
    write_flow_type(out, f);
    out.push_byte(b' ');
    write_verdict(out, f);
    out.push_str(" (");
    write_summary(out, f);
    out.push_str(")\n");
}

/// Writes one dict block (no separator).
pub fn write_dict<B: TextBuf + ?Sized>(out: &mut B, f: &Flow, opts: &FormatOptions) {
    out.push_str("  TIMESTAMP: ");
    opts.time_format.write(out, f.time.as_ref());
    out.push_byte(b'\n');
    if opts.print_node_name {
        out.push_str("       NODE: ");
        out.push_str(&f.node_name);
        out.push_byte(b'\n');
    }
    out.push_str("     SOURCE: ");
    write_host(out, f, Side::Src, opts.ip_translation);
    out.push_str("\nDESTINATION: ");
    write_host(out, f, Side::Dst, opts.ip_translation);
    out.push_str("\n       TYPE: ");
    write_flow_type(out, f);
    out.push_str("\n    VERDICT: ");
    write_verdict(out, f);
    out.push_str("\n    SUMMARY: ");
    write_summary(out, f);
    out.push_byte(b'\n');
}

/// Writes one JSON line (`{"flow":{…},"node_name":…,"time":…}`), proto field names, enum names,
/// RFC 3339 times with `Z`. Unknown enum numbers are written as numbers (proto3 JSON rules).
pub fn write_json(out: &mut Vec<u8>, resp: &GetFlowsResponse) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, resp).is_err() {
        out.truncate(start);
        let value = json_with_unknown_enums(resp);
        if serde_json::to_writer(&mut *out, &value).is_err() {
            out.truncate(start);
            out.extend_from_slice(b"{}");
        }
    }
    utc_z(out, start);
    out.push(b'\n');
}

/// pbjson writes UTC times as `+00:00`; protojson (hubble) as `Z`. Rewrites every `"time"` value.
fn utc_z(out: &mut Vec<u8>, start: usize) {
    const KEY: &[u8] = b"\"time\":\"";
    let mut i = start;
    while let Some(pos) = find(&out[i..], KEY) {
        let value_start = i + pos + KEY.len();
        let Some(len) = out[value_start..].iter().position(|&c| c == b'"') else { return };
        let value_end = value_start + len;
        if out[value_start..value_end].ends_with(b"+00:00") {
            out.splice(value_end - 6..value_end, [b'Z']);
            i = value_end - 5;
        } else {
            i = value_end;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The slow path of [`write_json`] for responses carrying enum numbers the proto subset does not
/// name (newer relays): serialize with those fields zeroed, then put the numbers back.
fn json_with_unknown_enums(resp: &GetFlowsResponse) -> serde_json::Value {
    let mut copy = resp.clone();
    let mut patches: Vec<(Vec<&'static str>, i32)> = Vec::new();
    let mut fix = |valid: bool, field: &mut i32, path: &[&'static str]| {
        if !valid {
            patches.push((path.to_vec(), *field));
            *field = 0;
        }
    };
    // Times outside years 1-9999 cannot be written as RFC 3339: leave them out.
    let valid_time = |t: &Option<pbjson_types::Timestamp>| t.as_ref().is_none_or(crate::hubble::time::is_valid);
    if !valid_time(&copy.time) {
        copy.time = None;
    }
    match copy.response_types.as_mut() {
        Some(ResponseTypes::Flow(f)) => {
            if !valid_time(&f.time) {
                f.time = None;
            }
            fix(Verdict::try_from(f.verdict).is_ok(), &mut f.verdict, &["flow", "verdict"]);
            fix(
                DropReason::try_from(f.drop_reason_desc).is_ok(),
                &mut f.drop_reason_desc,
                &["flow", "drop_reason_desc"],
            );
            fix(AuthType::try_from(f.auth_type).is_ok(), &mut f.auth_type, &["flow", "auth_type"]);
            fix(FlowType::try_from(f.r#type).is_ok(), &mut f.r#type, &["flow", "Type"]);
            fix(
                TrafficDirection::try_from(f.traffic_direction).is_ok(),
                &mut f.traffic_direction,
                &["flow", "traffic_direction"],
            );
            fix(
                TraceObservationPoint::try_from(f.trace_observation_point).is_ok(),
                &mut f.trace_observation_point,
                &["flow", "trace_observation_point"],
            );
            fix(TraceReason::try_from(f.trace_reason).is_ok(), &mut f.trace_reason, &["flow", "trace_reason"]);
            if let Some(ip) = f.ip.as_mut() {
                fix(IpVersion::try_from(ip.ip_version).is_ok(), &mut ip.ip_version, &["flow", "IP", "ipVersion"]);
            }
            if let Some(l7) = f.l7.as_mut() {
                fix(L7FlowType::try_from(l7.r#type).is_ok(), &mut l7.r#type, &["flow", "l7", "type"]);
            }
        }
        Some(ResponseTypes::NodeStatus(ns)) => {
            fix(NodeState::try_from(ns.state_change).is_ok(), &mut ns.state_change, &["node_status", "state_change"]);
        }
        Some(ResponseTypes::LostEvents(l)) => {
            fix(LostEventSource::try_from(l.source).is_ok(), &mut l.source, &["lost_events", "source"]);
        }
        None => {}
    }
    let mut value = serde_json::to_value(&copy).unwrap_or(serde_json::Value::Null);
    for (path, number) in patches {
        let Some((last, parents)) = path.split_last() else { continue };
        let mut cur = Some(&mut value);
        for p in parents {
            cur = cur
                .and_then(|c| c.as_object_mut())
                .map(|obj| obj.entry(p.to_string()).or_insert_with(|| serde_json::Value::Object(Default::default())));
        }
        if let Some(obj) = cur.and_then(|c| c.as_object_mut()) {
            obj.insert(last.to_string(), serde_json::Value::from(number));
        }
    }
    value
}

/// `<time> [<node>]: Receiving flows from N nodes: a, b` (and the unavailable/gone/error forms).
pub fn write_node_status_compact<B: TextBuf + ?Sized>(
    out: &mut B,
    resp: &GetFlowsResponse,
    ns: &NodeStatusEvent,
    opts: &FormatOptions,
) {
    opts.time_format.write(out, resp.time.as_ref());
    out.push_str(" [");
    out.push_str(&resp.node_name);
    out.push_str("]: ");
    let n = ns.node_names.len() as u64;
    match NodeState::try_from(ns.state_change) {
        Ok(NodeState::NodeConnected) => {
            out.push_str("Receiving flows from ");
            push_uint(out, n);
            out.push_str(" nodes: ");
        }
        Ok(NodeState::NodeUnavailable) => {
            push_uint(out, n);
            out.push_str(" nodes are unavailable: ");
        }
        Ok(NodeState::NodeGone) => {
            push_uint(out, n);
            out.push_str(" nodes removed from cluster: ");
        }
        Ok(NodeState::NodeError) => {
            out.push_str("Error ");
            push_quoted(out, &ns.message);
            out.push_str(" on ");
            push_uint(out, n);
            out.push_str(" nodes: ");
        }
        _ => {
            out.push_str("unknown node status event: state_change:");
            push_int(out, i64::from(ns.state_change));
            out.push_str(" nodes: ");
        }
    }
    join_with_cut_off(out, &ns.node_names);
    out.push_byte(b'\n');
}

fn write_node_status_dict<B: TextBuf + ?Sized>(
    out: &mut B,
    resp: &GetFlowsResponse,
    ns: &NodeStatusEvent,
    opts: &FormatOptions,
) {
    out.push_str("  TIMESTAMP: ");
    opts.time_format.write(out, resp.time.as_ref());
    out.push_str("\n      STATE: ");
    push_enum(out, NodeState::try_from(ns.state_change).ok().map(|s| s.as_str_name()), ns.state_change);
    out.push_str("\n      NODES: ");
    join_with_cut_off(out, &ns.node_names);
    out.push_str("\n    MESSAGE: ");
    if ns.message.is_empty() {
        out.push_str("N/A");
    } else {
        push_quoted(out, &ns.message);
    }
    out.push_byte(b'\n');
}

/// `EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1`
pub fn write_lost_compact<B: TextBuf + ?Sized>(out: &mut B, lost: &LostEvent) {
    out.push_str("EVENTS LOST: ");
    push_enum(out, LostEventSource::try_from(lost.source).ok().map(|s| s.as_str_name()), lost.source);
    out.push_str(" CPU(");
    push_int(out, i64::from(lost.cpu.as_ref().map_or(0, |c| c.value)));
    out.push_str(") ");
    push_uint(out, lost.num_events_lost);
    out.push_byte(b'\n');
}

fn write_lost_dict<B: TextBuf + ?Sized>(out: &mut B, lost: &LostEvent, opts: &FormatOptions) {
    out.push_str("  TIMESTAMP: \n");
    if opts.print_node_name {
        out.push_str("       NODE: \n");
    }
    out.push_str("     SOURCE: ");
    push_enum(out, LostEventSource::try_from(lost.source).ok().map(|s| s.as_str_name()), lost.source);
    out.push_str("\n       TYPE: EVENTS LOST\n    VERDICT: \n    SUMMARY: CPU(");
    push_int(out, i64::from(lost.cpu.as_ref().map_or(0, |c| c.value)));
    out.push_str(") - ");
    push_uint(out, lost.num_events_lost);
    out.push_byte(b'\n');
}

/// Go's `%q` for the common case (printable text); control characters are escaped.
fn push_quoted<B: TextBuf + ?Sized>(out: &mut B, s: &str) {
    out.push_byte(b'"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                out.push_str("\\u");
                let mut buf = [0u8; 4];
                let v = c as u32;
                for (i, b) in buf.iter_mut().enumerate() {
                    let nib = (v >> (12 - 4 * i)) & 0xf;
                    *b = b"0123456789abcdef"[nib as usize];
                }
                out.push_ascii(&buf);
            }
            c => {
                let mut tmp = [0u8; 4];
                out.push_str(c.encode_utf8(&mut tmp));
            }
        }
    }
    out.push_byte(b'"');
}

/// hubble's joinWithCutOff(names, ", ", 50): stop adding names once 50 characters are passed.
fn join_with_cut_off<B: TextBuf + ?Sized>(out: &mut B, names: &[String]) {
    let mut len = 0usize;
    let mut end = names.len();
    for (i, n) in names.iter().enumerate() {
        len += n.len() + 2;
        if len > NODE_NAMES_CUT_OFF && i > 0 {
            end = i;
            break;
        }
    }
    for (i, n) in names[..end].iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(n);
    }
    if end < names.len() {
        out.push_str(" (and ");
        push_uint(out, (names.len() - end) as u64);
        out.push_str(" more)");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

fn identity(f: &Flow, side: Side) -> u32 {
    match side {
        Side::Src => f.source.as_ref().map_or(0, |e| e.identity),
        Side::Dst => f.destination.as_ref().map_or(0, |e| e.identity),
    }
}

/// `(ID:n)` or `(world)` for reserved identities.
pub fn write_identity<B: TextBuf + ?Sized>(out: &mut B, id: u32) {
    out.push_byte(b'(');
    match names::reserved_identity_name(id) {
        Some(n) => out.push_str(n),
        None => {
            out.push_str("ID:");
            push_uint(out, u64::from(id));
        }
    }
    out.push_byte(b')');
}

fn port(f: &Flow, side: Side) -> Option<u32> {
    let pick = |s: u32, d: u32| if side == Side::Src { s } else { d };
    match f.l4.as_ref()?.protocol.as_ref()? {
        layer4::Protocol::Tcp(t) => Some(pick(t.source_port, t.destination_port)),
        layer4::Protocol::Udp(u) => Some(pick(u.source_port, u.destination_port)),
        layer4::Protocol::Sctp(s) => Some(pick(s.source_port, s.destination_port)),
        _ => None,
    }
}

/// `ns/pod:port`, else `ns/service:port`, else DNS names, else the IP (bracketed with a port when
/// IPv6); MAC addresses when the flow has no IP layer.
fn write_host<B: TextBuf + ?Sized>(out: &mut B, f: &Flow, side: Side, translate: bool) {
    let Some(ip) = f.ip.as_ref() else {
        if let Some(eth) = f.ethernet.as_ref() {
            out.push_str(if side == Side::Src { &eth.source } else { &eth.destination });
        }
        return;
    };
    let (ep, svc, names, addr) = match side {
        Side::Src => (f.source.as_ref(), f.source_service.as_ref(), &f.source_names, ip.source.as_str()),
        Side::Dst => {
            (f.destination.as_ref(), f.destination_service.as_ref(), &f.destination_names, ip.destination.as_str())
        }
    };
    let mut ns = ep.map_or("", |e| e.namespace.as_str());
    let pod = ep.map_or("", |e| e.pod_name.as_str());
    let mut svc_name = "";
    if let Some(s) = svc {
        ns = &s.namespace;
        svc_name = &s.name;
    }
    let mut host_has_colon = addr.contains(':');
    let join = |out: &mut B, a: &str, b: &str| {
        if !a.is_empty() {
            out.push_str(a);
            out.push_byte(b'/');
        }
        out.push_str(b);
    };
    let port = port(f, side).filter(|p| *p != 0);
    // Bracket IPv6 literals when a port follows (net.JoinHostPort); decided before writing.
    let translated = translate && (!pod.is_empty() || !svc_name.is_empty() || !names.is_empty());
    if translated {
        host_has_colon = if !pod.is_empty() {
            ns.contains(':') || pod.contains(':')
        } else if !svc_name.is_empty() {
            ns.contains(':') || svc_name.contains(':')
        } else {
            names.iter().any(|n| n.contains(':'))
        };
    }
    let bracket = port.is_some() && host_has_colon;
    if bracket {
        out.push_byte(b'[');
    }
    if translate && !pod.is_empty() {
        join(out, ns, pod);
    } else if translate && !svc_name.is_empty() {
        join(out, ns, svc_name);
    } else if translate && !names.is_empty() {
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                out.push_byte(b',');
            }
            out.push_str(n);
        }
    } else {
        out.push_str(addr);
    }
    if bracket {
        out.push_byte(b']');
    }
    if let Some(p) = port {
        out.push_byte(b':');
        push_uint(out, u64::from(p));
    }
}

/// The type column: `to-endpoint`, `Policy denied`, `http-request`, `dns-response proxy`,
/// `policy-verdict:L3-L4 INGRESS`, … (`UNKNOWN` when nothing applies).
pub fn write_flow_type<B: TextBuf + ?Sized>(out: &mut B, f: &Flow) {
    if let Some(l7) = f.l7.as_ref() {
        let proto = match l7.record.as_ref() {
            Some(layer7::Record::Http(_)) => "http",
            Some(layer7::Record::Dns(_)) => "dns",
            None => "l7",
        };
        out.push_str(proto);
        out.push_byte(b'-');
        match L7FlowType::try_from(l7.r#type) {
            Ok(t) => {
                for c in t.as_str_name().bytes() {
                    out.push_byte(c.to_ascii_lowercase());
                }
            }
            Err(_) => push_int(out, i64::from(l7.r#type)),
        }
        if let Some(layer7::Record::Dns(d)) = l7.record.as_ref() {
            out.push_byte(b' ');
            out.push_str(&d.observation_source);
        }
        return;
    }
    let Some(ev) = f.event_type.as_ref() else {
        out.push_str("UNKNOWN");
        return;
    };
    // The datapath carries sub types as one byte.
    let sub = ev.sub_type as u8;
    match ev.r#type {
        names::MSG_TRACE => match names::trace_point_text(sub) {
            Some(t) => out.push_str(t),
            None => push_uint(out, u64::from(sub)),
        },
        names::MSG_DROP => write_drop_reason(out, sub),
        names::MSG_POLICY_VERDICT => {
            out.push_str("policy-verdict:");
            out.push_str(names::policy_match_text(f.policy_match_type));
            out.push_byte(b' ');
            push_enum(
                out,
                TrafficDirection::try_from(f.traffic_direction).ok().map(|d| d.as_str_name()),
                f.traffic_direction,
            );
        }
        names::MSG_CAPTURE => out.push_str("DBG_CAPTURE_POINT_UNKNOWN"),
        names::MSG_TRACE_SOCK => out.push_str("SOCK_XLATE_POINT_UNKNOWN"),
        _ => out.push_str("UNKNOWN"),
    }
}

/// Drop reason text; unknown codes as hubble prints them (`205, 0`).
fn write_drop_reason<B: TextBuf + ?Sized>(out: &mut B, code: u8) {
    match names::drop_reason_text(code) {
        Some(t) => out.push_str(t),
        None => {
            push_uint(out, u64::from(code));
            out.push_str(", 0");
        }
    }
}

/// The verdict column (`ALLOWED`/`DENIED`/`AUDITED` for policy-verdict events).
pub fn write_verdict<B: TextBuf + ?Sized>(out: &mut B, f: &Flow) {
    let policy = f.event_type.as_ref().is_some_and(|e| e.r#type == names::MSG_POLICY_VERDICT);
    match Verdict::try_from(f.verdict) {
        Ok(Verdict::Forwarded | Verdict::Redirected) if policy => out.push_str("ALLOWED"),
        Ok(Verdict::Dropped | Verdict::Error) if policy => out.push_str("DENIED"),
        Ok(Verdict::Audit) if policy => out.push_str("AUDITED"),
        Ok(v) => out.push_str(v.as_str_name()),
        Err(_) => push_int(out, i64::from(f.verdict)),
    }
}

/// The summary (`TCP Flags: SYN`), plus `; Auth: SPIRE` when mutual auth is on.
pub fn write_summary<B: TextBuf + ?Sized>(out: &mut B, f: &Flow) {
    out.push_str(&f.summary);
    if f.auth_type != AuthType::Disabled as i32 {
        out.push_str("; Auth: ");
        push_enum(out, AuthType::try_from(f.auth_type).ok().map(|a| a.as_str_name()), f.auth_type);
    }
}

fn push_enum<B: TextBuf + ?Sized>(out: &mut B, name: Option<&str>, value: i32) {
    match name {
        Some(n) => out.push_str(n),
        None => push_int(out, i64::from(value)),
    }
}

/// The node name without the `<cluster>/` prefix Hubble adds when `cluster.name` ≠ `default`.
pub fn strip_cluster_prefix(node: &str) -> &str {
    node.rsplit_once('/').map_or(node, |(_, n)| n)
}

/// How the TUI colours a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictKind {
    Forwarded,
    Dropped,
    Error,
    Audit,
    Redirected,
    Traced,
    Translated,
    Unknown,
}

/// A flow as table cells, already oriented like compact output (client on the left for replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    /// `Jan _2 15:04:05.000` (UTC).
    pub time: String,
    /// Node name without the cluster prefix.
    pub node: String,
    pub src: String,
    pub dst: String,
    /// `(ID:n)` / `(world)` text.
    pub src_identity: String,
    pub dst_identity: String,
    /// `->`, `<-` (reply) or `<>` (unknown direction).
    pub arrow: &'static str,
    /// Type column (`to-endpoint`, `Policy denied`, `dns-request proxy`, …).
    pub type_text: String,
    /// Verdict column as printed (`FORWARDED`, `DROPPED`, `ALLOWED`, …).
    pub verdict: String,
    pub verdict_kind: VerdictKind,
    pub summary: String,
    /// DROPPED or ERROR (including policy denials).
    pub is_drop: bool,
    pub is_reply: Option<bool>,
}

/// Builds the TUI row for a flow (allocates the cell strings; meant for visible rows).
pub fn flow_row(f: &Flow) -> FlowRow {
    let mut time = String::with_capacity(20);
    TimeFormat::StampMilli.write(&mut time, f.time.as_ref());
    let is_reply = f.is_reply.as_ref().map(|b| b.value);
    let (first, second, arrow) = match is_reply {
        None => (Side::Src, Side::Dst, "<>"),
        Some(true) => (Side::Dst, Side::Src, "<-"),
        Some(false) => (Side::Src, Side::Dst, "->"),
    };
    let text = |w: &dyn Fn(&mut String)| {
        let mut s = String::new();
        w(&mut s);
        s
    };
    let verdict_kind = match Verdict::try_from(f.verdict) {
        Ok(Verdict::Forwarded) => VerdictKind::Forwarded,
        Ok(Verdict::Dropped) => VerdictKind::Dropped,
        Ok(Verdict::Error) => VerdictKind::Error,
        Ok(Verdict::Audit) => VerdictKind::Audit,
        Ok(Verdict::Redirected) => VerdictKind::Redirected,
        Ok(Verdict::Traced) => VerdictKind::Traced,
        Ok(Verdict::Translated) => VerdictKind::Translated,
        _ => VerdictKind::Unknown,
    };
    FlowRow {
        time,
        node: strip_cluster_prefix(&f.node_name).to_string(),
        src: text(&|s| write_host(s, f, first, true)),
        dst: text(&|s| write_host(s, f, second, true)),
        src_identity: text(&|s| write_identity(s, identity(f, first))),
        dst_identity: text(&|s| write_identity(s, identity(f, second))),
        arrow,
        type_text: text(&|s| write_flow_type(s, f)),
        verdict: text(&|s| write_verdict(s, f)),
        verdict_kind,
        summary: text(&|s| write_summary(s, f)),
        is_drop: matches!(verdict_kind, VerdictKind::Dropped | VerdictKind::Error),
        is_reply,
    }
}

#[cfg(test)]
mod tests;
