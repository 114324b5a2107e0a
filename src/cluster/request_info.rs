//! What the API server sees in a request: its Kubernetes verb, group, version, resource,
//! subresource, namespace and name, derived from the method, path and query the same way
//! kube-apiserver's request-info filter derives them before authorization
//! (k8s.io/apiserver `RequestInfoFactory`).
//!
//! Read-only mode decides on this, not on the HTTP method: `pods/exec`, `pods/attach` and the
//! `*/proxy` subresources are GET upgrades that RBAC authorizes as `create`, and a proxied GET
//! can reach anything behind the proxy. The sim's request log classifies by the same rule, so the
//! read-only test would notice a request that slipped through.

use http::Method;

/// A Kubernetes API verb, as RBAC names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// The legacy `/api/v1/proxy/...` form.
    Proxy,
    /// Any other name: a non-resource request's lowercased method (`post`, `put`, `head`, …);
    /// empty for a resource request with a method the API server does not map.
    Other(String),
}

impl Verb {
    /// The verb of an RBAC name (`"deletecollection"` → [`Verb::DeleteCollection`]).
    pub fn from_name(name: &str) -> Verb {
        match name {
            "get" => Verb::Get,
            "list" => Verb::List,
            "watch" => Verb::Watch,
            "create" => Verb::Create,
            "update" => Verb::Update,
            "patch" => Verb::Patch,
            "delete" => Verb::Delete,
            "deletecollection" => Verb::DeleteCollection,
            "proxy" => Verb::Proxy,
            other => Verb::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Proxy => "proxy",
            Verb::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request info of one request. For a non-resource request (`/version`, `/api`, `/apis/g`,
/// `/healthz`, `/openapi/v3`, …) only `verb` and `path` are set, and `resource` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub verb: Verb,
    /// Whether the path names an API resource (`/api/v1/...` with at least a resource,
    /// `/apis/{group}/{version}/...`).
    pub is_resource: bool,
    /// The percent-decoded path (the API server authorizes the decoded form).
    pub path: String,
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    /// Plural resource name (`pods`).
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Path segments after the subresource (the proxied path of `*/proxy/...`).
    pub rest: Vec<String>,
}

impl RequestInfo {
    /// `pods`, `pods/exec`, `deployments.apps/scale`: what a refusal message names.
    pub fn target(&self) -> String {
        if !self.is_resource {
            return "non-resource path".to_string();
        }
        let mut t = self.resource.clone();
        if !self.group.is_empty() {
            t.push('.');
            t.push_str(&self.group);
        }
        if let Some(s) = &self.subresource {
            t.push('/');
            t.push_str(s);
        }
        t
    }
}

/// A request the API server could not make request info of either (it answers 400 or 404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestInfoError {
    #[error("invalid percent-encoding in the path")]
    Encoding,
    #[error("cannot determine kind and namespace from the path")]
    NoKind,
}

/// Subresources a GET only reads. A GET on any other (`exec`, `attach`, `proxy`, and whatever
/// connect subresource a later release adds) opens a stream into a pod, node or service.
const READ_SUBRESOURCES: &[&str] = &["status", "log", "scale"];

/// Maps a request to its request info, as kube-apiserver does. `query` is the raw query string
/// without `?`.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<RequestInfo, RequestInfoError> {
    let decoded = percent_decode(path, false).ok_or(RequestInfoError::Encoding)?;
    let mut info = RequestInfo {
        // Non-resource requests are authorized by lowercased method: `get`, `post`, `head`, …
        verb: Verb::from_name(&method.as_str().to_ascii_lowercase()),
        is_resource: false,
        path: decoded.clone(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: None,
        namespace: None,
        name: None,
        rest: Vec::new(),
    };
    let trimmed = decoded.trim_matches('/');
    let all: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
    let mut parts: &[&str] = &all;
    // At least prefix, version and resource (group too under /apis).
    let groupless = match parts.first() {
        Some(&"api") => true,
        Some(&"apis") => false,
        _ => return Ok(info),
    };
    if parts.len() < if groupless { 3 } else { 4 } {
        return Ok(info);
    }
    parts = &parts[1..];
    if !groupless {
        info.group = parts[0].to_string();
        parts = &parts[1..];
    }
    info.is_resource = true;
    info.version = parts[0].to_string();
    parts = &parts[1..];

    // `/watch/...` and `/proxy/...` put the verb in the path.
    let mut verb = match parts.first() {
        Some(&v @ ("watch" | "proxy")) => {
            if parts.len() < 2 {
                return Err(RequestInfoError::NoKind);
            }
            parts = &parts[1..];
            Verb::from_name(v)
        }
        _ => match *method {
            Method::POST => Verb::Create,
            Method::GET | Method::HEAD => Verb::Get,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            Method::DELETE => Verb::Delete,
            _ => Verb::Other(String::new()),
        },
    };

    if parts.first() == Some(&"namespaces")
        && let Some(ns) = parts.get(1)
    {
        info.namespace = Some(ns.to_string());
        // `namespaces/{ns}/status` and `/finalize` are the Namespace's own subresources;
        // anything else after the namespace is a namespaced resource.
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts = &parts[2..];
        }
    }

    // resource / name / subresource / rest; the legacy proxy verb has no subresource.
    if let Some(r) = parts.first() {
        info.resource = r.to_string();
    }
    if let Some(n) = parts.get(1) {
        info.name = Some(n.to_string());
    }
    let sub_at = if verb == Verb::Proxy { 2 } else { 3 };
    if verb != Verb::Proxy
        && let Some(s) = parts.get(2)
    {
        info.subresource = Some(s.to_string());
    }
    info.rest = parts.iter().skip(sub_at).map(|s| s.to_string()).collect();

    let query = parse_query(query.unwrap_or(""));
    if info.name.is_none() && verb == Verb::Get {
        // Any `watch` value but `0` / `false` turns it on, as the API server's bool conversion.
        let watch =
            query.iter().find(|(k, _)| k == "watch").is_some_and(|(_, v)| v != "0" && !v.eq_ignore_ascii_case("false"));
        verb = if watch { Verb::Watch } else { Verb::List };
        // A list or watch narrowed to one object names it (what RBAC `resourceNames` match).
        if let Some((_, sel)) = query.iter().find(|(k, _)| k == "fieldSelector") {
            info.name = exact_name(sel);
        }
    }
    if info.name.is_none() && verb == Verb::Delete {
        verb = Verb::DeleteCollection;
    }
    info.verb = verb;
    Ok(info)
}

/// Whether read-only mode lets a request through: get, list and watch (on the object or a
/// subresource that only reads), non-resource GET/HEAD, the access reviews (creates that store
/// nothing and answer "may I?"), and port-forward to a pod (the one create: it is how the cockpit
/// reads flows from hubble-relay, and it forwards a port without touching the pod). Everything
/// else is refused: exec, attach, proxy, eviction, and any create, update, patch or delete.
pub fn read_only_allows(info: &RequestInfo) -> bool {
    // Dot and empty segments could be another path to whatever normalizes it on the way.
    let trimmed = info.path.trim_matches('/');
    if !trimmed.is_empty() && trimmed.split('/').any(|s| matches!(s, "" | "." | "..")) {
        return false;
    }
    if !info.is_resource {
        return info.verb == Verb::Get || info.verb == Verb::Other("head".into());
    }
    // Only proxies have a path after the subresource.
    if info.resource.is_empty() || !info.rest.is_empty() {
        return false;
    }
    let sub = info.subresource.as_deref();
    match &info.verb {
        Verb::Get | Verb::List | Verb::Watch => {
            sub.is_none_or(|s| READ_SUBRESOURCES.contains(&s)) || (info.verb == Verb::Get && is_pod_portforward(info))
        }
        Verb::Create => {
            is_pod_portforward(info)
                || (info.group == "authorization.k8s.io"
                    && matches!(info.resource.as_str(), "selfsubjectaccessreviews" | "selfsubjectrulesreviews")
                    && sub.is_none()
                    && info.name.is_none()
                    && info.namespace.is_none())
        }
        _ => false,
    }
}

fn is_pod_portforward(info: &RequestInfo) -> bool {
    info.group.is_empty()
        && info.resource == "pods"
        && info.namespace.is_some()
        && info.name.is_some()
        && info.subresource.as_deref() == Some("portforward")
}

/// [`parse`] then [`read_only_allows`]; a request without request info is refused.
pub fn is_read_request(method: &Method, path: &str, query: Option<&str>) -> bool {
    parse(method, path, query).is_ok_and(|i| read_only_allows(&i))
}

/// The object name of a field selector that requires `metadata.name` to be exactly one value
/// (`metadata.name=x` or `==x`, among other terms), if that value is a valid path segment.
fn exact_name(selector: &str) -> Option<String> {
    let name = selector.split(',').find_map(|term| {
        let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
        (k.trim() == "metadata.name").then(|| v.trim().to_string())
    })?;
    let valid = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%']);
    valid.then_some(name)
}

/// `a=1&b=%20` → pairs, form-decoded (`+` is a space). Undecodable pairs are skipped, as Go's
/// query parser does.
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// Percent-decodes `s` (`+` as space when `plus` is set); `None` for a malformed escape or a
/// result that is not UTF-8.
fn percent_decode(s: &str, plus: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, uri: &str) -> RequestInfo {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        parse(&method, path, query).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    /// (method, path and query, verb, group, resource, subresource, namespace, name, allowed)
    type Row = (
        Method,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        bool,
    );

    #[rustfmt::skip]
    fn table() -> Vec<Row> {
        use Method as M;
        vec![
            // Core group, namespaced and cluster-scoped; list, get, watch.
            (M::GET, "/api/v1/pods", "list", "", "pods", "", "", "", true),
            (M::GET, "/api/v1/namespaces/kube-system/pods", "list", "", "pods", "", "kube-system", "", true),
            (M::GET, "/api/v1/namespaces/kube-system/pods/cilium-abcde", "get", "", "pods", "", "kube-system", "cilium-abcde", true),
            (M::HEAD, "/api/v1/nodes/cp1", "get", "", "nodes", "", "", "cp1", true),
            (M::GET, "/api/v1/nodes?watch=true&resourceVersion=10&allowWatchBookmarks=true", "watch", "", "nodes", "", "", "", true),
            (M::GET, "/api/v1/nodes?watch=1", "watch", "", "nodes", "", "", "", true),
            (M::GET, "/api/v1/nodes?watch=false", "list", "", "nodes", "", "", "", true),
            (M::GET, "/api/v1/watch/namespaces/kube-system/pods", "watch", "", "pods", "", "kube-system", "", true),
            (M::GET, "/api/v1/watch/nodes/cp1", "watch", "", "nodes", "", "", "cp1", true),
            (M::GET, "/api/v1/namespaces/argocd/pods?fieldSelector=metadata.name%3Dx&watch=true", "watch", "", "pods", "", "argocd", "x", true),
            // Namespaces are their own namespace.
            (M::GET, "/api/v1/namespaces", "list", "", "namespaces", "", "", "", true),
            (M::GET, "/api/v1/namespaces/default", "get", "", "namespaces", "", "default", "default", true),
            (M::PUT, "/api/v1/namespaces/default/finalize", "update", "", "namespaces", "finalize", "default", "default", false),
            // Group resources.
            (M::GET, "/apis/apps/v1/namespaces/kube-system/daemonsets/cilium", "get", "apps", "daemonsets", "", "kube-system", "cilium", true),
            (M::GET, "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?watch=true", "watch", "argoproj.io", "applications", "", "argocd", "", true),
            (M::GET, "/apis/cilium.io/v2/ciliumnodes", "list", "cilium.io", "ciliumnodes", "", "", "", true),
            (M::GET, "/apis/apps/v1/namespaces/kube-system/deployments/cilium-operator/scale", "get", "apps", "deployments", "scale", "kube-system", "cilium-operator", true),
            // Read subresources.
            (M::GET, "/api/v1/namespaces/kube-system/pods/cilium-abcde/log?container=cilium-agent&follow=true", "get", "", "pods", "log", "kube-system", "cilium-abcde", true),
            (M::GET, "/api/v1/nodes/cp1/status", "get", "", "nodes", "status", "", "cp1", true),
            // Writes.
            (M::PATCH, "/api/v1/nodes/cp1", "patch", "", "nodes", "", "", "cp1", false),
            (M::PATCH, "/api/v1/nodes/cp1/status", "patch", "", "nodes", "status", "", "cp1", false),
            (M::PUT, "/apis/apps/v1/namespaces/a/deployments/d", "update", "apps", "deployments", "", "a", "d", false),
            (M::POST, "/api/v1/namespaces/a/configmaps", "create", "", "configmaps", "", "a", "", false),
            (M::DELETE, "/api/v1/namespaces/a/pods/p", "delete", "", "pods", "", "a", "p", false),
            (M::DELETE, "/api/v1/namespaces/a/pods", "deletecollection", "", "pods", "", "a", "", false),
            (M::PATCH, "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/root", "patch", "argoproj.io", "applications", "", "argocd", "root", false),
            (M::POST, "/api/v1/namespaces/a/pods/p/eviction", "create", "", "pods", "eviction", "a", "p", false),
            (M::POST, "/api/v1/namespaces/a/serviceaccounts/default/token", "create", "", "serviceaccounts", "token", "a", "default", false),
            (M::OPTIONS, "/api/v1/nodes", "", "", "nodes", "", "", "", false),
            // Connect subresources: exec and attach by GET (WebSocket) and POST (SPDY).
            (M::GET, "/api/v1/namespaces/a/pods/p/exec?command=sh&stdin=true&stdout=true&tty=true", "get", "", "pods", "exec", "a", "p", false),
            (M::POST, "/api/v1/namespaces/a/pods/p/exec?command=true&stdout=true", "create", "", "pods", "exec", "a", "p", false),
            (M::GET, "/api/v1/namespaces/a/pods/p/attach?stdout=true", "get", "", "pods", "attach", "a", "p", false),
            (M::POST, "/api/v1/namespaces/a/pods/p/attach?stdin=true", "create", "", "pods", "attach", "a", "p", false),
            // Port-forward is the exception, both ways.
            (M::GET, "/api/v1/namespaces/kube-system/pods/hubble-relay-x/portforward?ports=4245", "get", "", "pods", "portforward", "kube-system", "hubble-relay-x", true),
            (M::POST, "/api/v1/namespaces/kube-system/pods/hubble-relay-x/portforward", "create", "", "pods", "portforward", "kube-system", "hubble-relay-x", true),
            (M::PUT, "/api/v1/namespaces/kube-system/pods/hubble-relay-x/portforward", "update", "", "pods", "portforward", "kube-system", "hubble-relay-x", false),
            // Proxies, with and without a proxied path, and the legacy proxy verb.
            (M::GET, "/api/v1/namespaces/a/pods/p/proxy", "get", "", "pods", "proxy", "a", "p", false),
            (M::GET, "/api/v1/namespaces/kube-system/services/hubble-ui/proxy/", "get", "", "services", "proxy", "kube-system", "hubble-ui", false),
            (M::GET, "/api/v1/namespaces/kube-system/services/hubble-ui/proxy/api/v1/flows", "get", "", "services", "proxy", "kube-system", "hubble-ui", false),
            (M::GET, "/api/v1/namespaces/kube-system/services/https:metrics-server:/proxy/metrics", "get", "", "services", "proxy", "kube-system", "https:metrics-server:", false),
            (M::GET, "/api/v1/nodes/cp1/proxy/configz", "get", "", "nodes", "proxy", "", "cp1", false),
            (M::GET, "/api/v1/nodes/cp1/proxy", "get", "", "nodes", "proxy", "", "cp1", false),
            (M::GET, "/api/v1/proxy/namespaces/a/pods/p/x", "proxy", "", "pods", "", "a", "p", false),
            // An encoded slash is a slash to the API server.
            (M::GET, "/api/v1/namespaces/a/pods/p%2Fexec", "get", "", "pods", "exec", "a", "p", false),
            // Access reviews ask, they store nothing; token and subject reviews are refused.
            (M::POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", "", true),
            (M::POST, "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", "create", "authorization.k8s.io", "selfsubjectrulesreviews", "", "", "", true),
            (M::POST, "/apis/authorization.k8s.io/v1/namespaces/a/localsubjectaccessreviews", "create", "authorization.k8s.io", "localsubjectaccessreviews", "", "a", "", false),
            (M::POST, "/apis/authentication.k8s.io/v1/tokenreviews", "create", "authentication.k8s.io", "tokenreviews", "", "", "", false),
            // Non-resource paths (discovery, version, health, openapi).
            (M::GET, "/api", "get", "", "", "", "", "", true),
            (M::GET, "/api/v1", "get", "", "", "", "", "", true),
            (M::GET, "/apis", "get", "", "", "", "", "", true),
            (M::GET, "/apis/apps/v1", "get", "", "", "", "", "", true),
            (M::GET, "/version", "get", "", "", "", "", "", true),
            (M::GET, "/healthz", "get", "", "", "", "", "", true),
            (M::GET, "/openapi/v3/apis/apps/v1", "get", "", "", "", "", "", true),
            (M::HEAD, "/readyz", "head", "", "", "", "", "", true),
            (M::POST, "/version", "post", "", "", "", "", "", false),
            (M::POST, "/simulator/v1/faults", "post", "", "", "", "", "", false),
        ]
    }

    #[test]
    fn request_info_and_read_only_rule() {
        let rows = table();
        assert!(rows.len() >= 25);
        for (method, uri, verb, group, resource, sub, ns, name, allowed) in rows {
            let i = info(method.clone(), uri);
            let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
            assert_eq!(i.verb.as_str(), verb, "{method} {uri}: {i:?}");
            assert_eq!(
                (i.group.as_str(), i.resource.as_str(), i.subresource.clone(), i.namespace.clone(), i.name.clone()),
                (group, resource, opt(sub), opt(ns), opt(name)),
                "{method} {uri}"
            );
            assert_eq!(read_only_allows(&i), allowed, "{method} {uri}: {i:?}");
            let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
            assert_eq!(is_read_request(&method, path, query), allowed, "{method} {uri}");
        }
    }

    #[test]
    fn proxied_path_is_kept() {
        let i = info(Method::GET, "/api/v1/namespaces/kube-system/services/hubble-ui/proxy/api/v1/flows");
        assert_eq!(i.rest, ["api", "v1", "flows"]);
        assert_eq!(i.target(), "services/proxy");
        assert_eq!(
            info(Method::GET, "/apis/apps/v1/namespaces/a/deployments/d/scale").target(),
            "deployments.apps/scale"
        );
        assert_eq!(info(Method::GET, "/version").target(), "non-resource path");
    }

    #[test]
    fn odd_paths_are_refused() {
        // A read subresource followed by a way back to exec.
        assert!(!is_read_request(&Method::GET, "/api/v1/namespaces/a/pods/p/log/../exec", None));
        assert!(!is_read_request(&Method::GET, "/api/v1/namespaces/a/pods/p/log/%2E%2E/exec", None));
        assert!(!is_read_request(&Method::GET, "/api/v1/namespaces/a/pods/p/log/extra", None));
        assert!(!is_read_request(&Method::GET, "/api/v1/namespaces/a//pods", None));
        assert!(!is_read_request(&Method::GET, "/api/v1/namespaces/a/pods/p%zz", None));
        assert_eq!(parse(&Method::GET, "/api/v1/watch", None), Err(RequestInfoError::NoKind));
        assert!(!is_read_request(&Method::GET, "/api/v1/watch", None));
        // Trailing slashes are trimmed, as the API server does.
        assert!(is_read_request(&Method::GET, "/api/v1/pods/", None));
    }

    #[test]
    fn query_decoding() {
        assert_eq!(info(Method::GET, "/api/v1/pods?w%61tch=tru%65").verb, Verb::Watch);
        assert_eq!(info(Method::GET, "/api/v1/pods?watch=").verb, Verb::Watch, "empty is true");
        assert_eq!(info(Method::GET, "/api/v1/pods?watch=FALSE").verb, Verb::List);
        assert_eq!(info(Method::GET, "/api/v1/pods?fieldSelector=metadata.name!%3Dx").name, None);
        assert_eq!(
            info(Method::GET, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1,metadata.name%3D%3Dx").name.as_deref(),
            Some("x")
        );
    }
}
