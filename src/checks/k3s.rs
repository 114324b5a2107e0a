//! Reading k3s' configuration from Node objects: the `k3s.io/node-args` annotation (the merged
//! process arguments), server/agent roles, and the flannel annotations. k3s runs flannel,
//! kube-proxy and the network-policy controller inside its own process, so these annotations are
//! the only API-side evidence of them (k3s-cni-cutover.md §1–2).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

pub const NODE_ARGS: &str = "k3s.io/node-args";
pub const FLANNEL_PREFIX: &str = "flannel.alpha.coreos.com/";

/// k3s process arguments parsed from `k3s.io/node-args`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeArgs {
    /// `server` or `agent` (the first element).
    pub role: String,
    /// Flag (without `--`) → values in order (repeatable flags such as `--disable`).
    pub flags: BTreeMap<String, Vec<String>>,
}

impl NodeArgs {
    /// Parses the annotation: a JSON array of strings; `--flag=value` split in two; bare booleans
    /// stay one element; config-file booleans appear as `"--flag","true"`.
    pub fn parse(json: &str) -> Result<NodeArgs, String> {
        let items: Vec<String> =
            serde_json::from_str(json).map_err(|e| format!("{NODE_ARGS} is not a JSON array of strings: {e}"))?;
        let mut args = NodeArgs::default();
        let mut it = items.into_iter().peekable();
        if let Some(first) = it.peek()
            && !first.starts_with('-')
        {
            args.role = first.clone();
            it.next();
        }
        while let Some(item) = it.next() {
            let Some(flag) = item.strip_prefix("--").or_else(|| item.strip_prefix('-')) else { continue };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let takes_next = it.peek().is_some_and(|n| !n.starts_with('-'));
                    let v = if takes_next { it.next().unwrap_or_default() } else { String::new() };
                    (flag.to_string(), v)
                }
            };
            args.flags.entry(name).or_default().push(value);
        }
        Ok(args)
    }

    /// Last value of a flag (bare booleans give "").
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.flags.get(flag).and_then(|v| v.last()).map(String::as_str)
    }

    /// A boolean flag: bare or `true` → true; `false` → false; absent → false.
    pub fn bool(&self, flag: &str) -> bool {
        matches!(self.value(flag), Some("" | "true"))
    }

    /// Effective flannel backend (`vxlan` when not given).
    pub fn flannel_backend(&self) -> String {
        self.value("flannel-backend").unwrap_or("vxlan").to_string()
    }

    pub fn flannel_enabled(&self) -> bool {
        self.flannel_backend() != "none"
    }
}

/// Server (control-plane) node: by node-args role, else by k3s' role labels.
pub fn is_server(node: &Node) -> bool {
    if let Some(Ok(args)) = node_args(node)
        && !args.role.is_empty()
    {
        return args.role == "server";
    }
    let labels = node.metadata.labels.as_ref();
    ["node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"]
        .iter()
        .any(|l| labels.and_then(|m| m.get(*l)).is_some_and(|v| v == "true"))
}

pub fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("<unnamed>")
}

/// Parsed `k3s.io/node-args`, if the annotation is there.
pub fn node_args(node: &Node) -> Option<Result<NodeArgs, String>> {
    node.metadata.annotations.as_ref().and_then(|a| a.get(NODE_ARGS)).map(|s| NodeArgs::parse(s))
}

/// The node's `flannel.alpha.coreos.com/*` annotations (name without prefix → value).
pub fn flannel_annotations(node: &Node) -> BTreeMap<String, String> {
    node.metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, v)| k.strip_prefix(FLANNEL_PREFIX).map(|s| (s.to_string(), v.clone())))
        .collect()
}

/// Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready and not cordoned: a new pod can land here.
pub fn is_schedulable(node: &Node) -> bool {
    is_ready(node) && !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_k3d_annotation() {
        // From kdash-rs/kdash test_data/nodes.yaml (tests/fixtures/SOURCES.md).
        let a = NodeArgs::parse(r#"["server","--tls-san","0.0.0.0"]"#).expect("parses");
        assert_eq!(a.role, "server");
        assert_eq!(a.value("tls-san"), Some("0.0.0.0"));
        assert!(a.flannel_enabled());
    }

    #[test]
    fn parses_split_and_bare_flags() {
        let a = NodeArgs::parse(
            r#"["server","--flannel-backend","none","--disable-network-policy","--disable-kube-proxy","true","--disable","traefik","--disable","servicelb","--token","********"]"#,
        )
        .expect("parses");
        assert_eq!(a.flannel_backend(), "none");
        assert!(!a.flannel_enabled());
        assert!(a.bool("disable-network-policy"));
        assert!(a.bool("disable-kube-proxy"));
        assert_eq!(a.flags.get("disable").map(Vec::len), Some(2));
        let b = NodeArgs::parse(r#"["agent","--disable-kube-proxy=false"]"#).expect("parses");
        assert_eq!(b.role, "agent");
        assert!(!b.bool("disable-kube-proxy"));
        assert!(NodeArgs::parse("not json").is_err());
    }
}
