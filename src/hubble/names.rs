//! Text tables shared by the formatter, the filters and the simulated relay: Cilium monitor
//! message types, trace observation points, drop reasons, policy match types and reserved
//! security identities (facts from cilium `pkg/monitor/api` and `pkg/identity`, v1.16).

/// Monitor message types (`CiliumEventType.type`).
pub const MSG_DROP: i32 = 1;
pub const MSG_DEBUG: i32 = 2;
pub const MSG_CAPTURE: i32 = 3;
pub const MSG_TRACE: i32 = 4;
pub const MSG_POLICY_VERDICT: i32 = 5;
pub const MSG_RECORDER: i32 = 6;
pub const MSG_TRACE_SOCK: i32 = 7;
pub const MSG_ACCESS_LOG: i32 = 129;
pub const MSG_AGENT: i32 = 130;

/// `--type` names accepted by `hubble observe`, with their message type number.
pub const MESSAGE_TYPE_NAMES: &[(&str, i32)] = &[
    ("drop", MSG_DROP),
    ("debug", MSG_DEBUG),
    ("capture", MSG_CAPTURE),
    ("trace", MSG_TRACE),
    ("policy-verdict", MSG_POLICY_VERDICT),
    ("recorder", MSG_RECORDER),
    ("trace-sock", MSG_TRACE_SOCK),
    ("l7", MSG_ACCESS_LOG),
    ("agent", MSG_AGENT),
];

/// Looks up a `--type` name.
pub fn message_type_by_name(name: &str) -> Option<i32> {
    MESSAGE_TYPE_NAMES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Trace observation points as monitor sub types (index = sub type).
pub const TRACE_POINTS: [&str; 12] = [
    "to-endpoint",
    "to-proxy",
    "to-host",
    "to-stack",
    "to-overlay",
    "from-endpoint",
    "from-proxy",
    "from-host",
    "from-stack",
    "from-overlay",
    "from-network",
    "to-network",
];

/// Text of a trace observation point sub type, `None` when unknown (hubble prints the number).
pub fn trace_point_text(sub_type: u8) -> Option<&'static str> {
    TRACE_POINTS.get(usize::from(sub_type)).copied()
}

/// Sub type of a trace observation point name (`to-endpoint` = 0).
pub fn trace_point_by_name(name: &str) -> Option<i32> {
    TRACE_POINTS.iter().position(|p| *p == name).and_then(|i| i32::try_from(i).ok())
}

/// Monitor sub type for a `flow.TraceObservationPoint` enum value (the enum numbers differ from
/// the datapath's: TO_ENDPOINT is 101 in the proto but 0 on the wire of the monitor).
pub fn trace_point_sub_type(proto_point: i32) -> i32 {
    match proto_point {
        101 => 0,
        p @ 1..=11 => p,
        _ => 0,
    }
}

/// Drop reason texts as `hubble observe` prints them (cilium `pkg/monitor/api/drop.go`).
pub fn drop_reason_text(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "Success",
        2 => "Invalid packet",
        3 => "Interface",
        4 => "Interface Decrypted",
        5 => "LB, sock cgroup: No backend slot entry found",
        6 => "LB, sock cgroup: No backend entry found",
        7 => "LB, sock cgroup: Reverse entry update failed",
        8 => "LB, sock cgroup: Reverse entry stale",
        9 => "Fragmented packet",
        10 => "Fragmented packet entry update failed",
        11 => "Missed tail call to custom program",
        130 => "Invalid source mac",
        131 => "Invalid destination mac",
        132 => "Invalid source ip",
        133 => "Policy denied",
        134 => "Invalid packet",
        135 => "CT: Truncated or invalid header",
        136 => "Fragmentation needed",
        137 => "CT: Unknown L4 protocol",
        138 => "CT: Can't create entry from packet",
        139 => "Unsupported L3 protocol",
        140 => "Missed tail call",
        141 => "Error writing to packet",
        142 => "Unknown L4 protocol",
        143 => "Unknown ICMPv4 code",
        144 => "Unknown ICMPv4 type",
        145 => "Unknown ICMPv6 code",
        146 => "Unknown ICMPv6 type",
        147 => "Error retrieving tunnel key",
        148 => "Error retrieving tunnel options",
        149 => "Invalid Geneve option",
        150 => "Unknown L3 target address",
        151 => "Stale or unroutable IP",
        152 => "No matching local container found",
        153 => "Error while correcting L3 checksum",
        154 => "Error while correcting L4 checksum",
        155 => "CT: Map insertion failed",
        156 => "Invalid IPv6 extension header",
        157 => "IP fragmentation not supported",
        158 => "Service backend not found",
        160 => "No tunnel/encapsulation endpoint (datapath BUG!)",
        161 => "NAT 46/64 not enabled",
        162 => "Reached EDT rate-limiting drop horizon",
        163 => "Unknown connection tracking state",
        164 => "Local host is unreachable",
        165 => "No configuration available to perform policy decision",
        166 => "Unsupported L2 protocol",
        167 => "No mapping for NAT masquerade",
        168 => "Unsupported protocol for NAT masquerade",
        169 => "FIB lookup failed",
        170 => "Encapsulation traffic is prohibited",
        171 => "Invalid identity",
        172 => "Unknown sender",
        173 => "NAT not needed",
        174 => "Is a ClusterIP",
        175 => "First logical datagram fragment not found",
        176 => "Forbidden ICMPv6 message",
        177 => "Denied by LB src range check",
        178 => "Socket lookup failed",
        179 => "Socket assign failed",
        180 => "Proxy redirection not supported for protocol",
        181 => "Policy denied by denylist",
        182 => "VLAN traffic disallowed by VLAN filter",
        183 => "Incorrect VNI from VTEP",
        184 => "Failed to update or lookup TC buffer",
        185 => "No SID was found for the IP address",
        186 => "SRv6 state was removed during tail call",
        187 => "L3 translation from IPv4 to IPv6 failed (NAT46)",
        188 => "L3 translation from IPv6 to IPv4 failed (NAT64)",
        189 => "Authentication required",
        190 => "No conntrack map found",
        191 => "No nat map found",
        192 => "Invalid ClusterID",
        193 => "Unsupported packet protocol for DSR encapsulation",
        194 => "No egress gateway found",
        195 => "Traffic is unencrypted",
        196 => "TTL exceeded",
        197 => "No node ID found",
        198 => "Rate limited",
        199 => "IGMP handled",
        200 => "IGMP subscribed",
        201 => "Multicast handled",
        202 => "Host datapath not ready",
        203 => "Endpoint policy program not available",
        204 => "No Egress IP configured",
        _ => return None,
    })
}

/// Policy match type text (`policy_match_type` of policy-verdict events).
pub fn policy_match_text(kind: u32) -> &'static str {
    match kind {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        5 => "L3-Proto",
        6 => "Proto-Only",
        _ => "unknown",
    }
}

/// Reserved security identity numbers.
pub const ID_UNKNOWN: u32 = 0;
pub const ID_HOST: u32 = 1;
pub const ID_WORLD: u32 = 2;
pub const ID_UNMANAGED: u32 = 3;
pub const ID_HEALTH: u32 = 4;
pub const ID_INIT: u32 = 5;
pub const ID_REMOTE_NODE: u32 = 6;
pub const ID_KUBE_APISERVER: u32 = 7;
pub const ID_INGRESS: u32 = 8;
pub const ID_WORLD_IPV4: u32 = 9;
pub const ID_WORLD_IPV6: u32 = 10;

const RESERVED_IDENTITIES: [&str; 11] = [
    "unknown",
    "host",
    "world",
    "unmanaged",
    "health",
    "init",
    "remote-node",
    "kube-apiserver",
    "ingress",
    "world-ipv4",
    "world-ipv6",
];

/// Name of a reserved identity (`host`, `world`, …), `None` for workload identities.
pub fn reserved_identity_name(id: u32) -> Option<&'static str> {
    RESERVED_IDENTITIES.get(usize::try_from(id).ok()?).copied()
}

/// Numeric identity for a reserved name (`--identity world`).
pub fn reserved_identity_by_name(name: &str) -> Option<u32> {
    RESERVED_IDENTITIES.iter().position(|n| *n == name).and_then(|i| u32::try_from(i).ok())
}

/// All reserved identity names, for error messages.
pub fn reserved_identity_names() -> &'static [&'static str] {
    &RESERVED_IDENTITIES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        assert_eq!(trace_point_text(0), Some("to-endpoint"));
        assert_eq!(trace_point_text(11), Some("to-network"));
        assert_eq!(trace_point_text(12), None);
        assert_eq!(trace_point_by_name("to-stack"), Some(3));
        assert_eq!(drop_reason_text(133), Some("Policy denied"));
        assert_eq!(drop_reason_text(181), Some("Policy denied by denylist"));
        assert_eq!(drop_reason_text(250), None);
        assert_eq!(reserved_identity_name(2), Some("world"));
        assert_eq!(reserved_identity_name(6), Some("remote-node"));
        assert_eq!(reserved_identity_name(256), None);
        assert_eq!(reserved_identity_by_name("host"), Some(1));
        assert_eq!(message_type_by_name("l7"), Some(129));
        assert_eq!(policy_match_text(3), "L4-Only");
        assert_eq!(trace_point_sub_type(101), 0);
    }
}
