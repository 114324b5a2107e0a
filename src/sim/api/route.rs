//! URL → what is being asked for: discovery documents, health, the sim control surface, or an
//! object path (resource, namespace, name, subresource), and the Kubernetes verb of a request.

use http::Method;

use crate::sim::Store;
use crate::sim::registry::{self, Resource};

use super::error::ApiError;

/// A request target.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    ResourceList {
        group: String,
        version: String,
    },
    /// `/openapi/v3[/...]` (minimal), `/openapi/v2` (404)
    OpenApi(Vec<String>),
    /// `/simulator/v1/...`
    Simulator(Vec<String>),
    Object(ObjectPath),
}

/// A resource path: `namespace` is `None` for cluster-scoped resources and all-namespace lists.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectPath {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

impl ObjectPath {
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    /// `pods/eviction` style resource name for RBAC messages.
    pub fn rbac_resource(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}/{s}", self.res.plural),
            None => self.res.plural.to_string(),
        }
    }
}

/// Whether a CRD-backed resource is currently installed.
pub fn served(store: &Store, res: &Resource) -> bool {
    if !res.crd {
        return true;
    }
    registry::find("apiextensions.k8s.io/customresourcedefinitions")
        .is_some_and(|crd| store.get(crd, "", &res.crd_name()).is_ok())
}

/// Parses a URL path. Unknown paths are `Err(404)`.
pub fn parse(path: &str, store: &Store) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health),
        ["openapi", rest @ ..] => Ok(Route::OpenApi(rest.iter().map(|s| s.to_string()).collect())),
        ["simulator", "v1", rest @ ..] => Ok(Route::Simulator(rest.iter().map(|s| s.to_string()).collect())),
        ["api"] => Ok(Route::CoreVersions),
        ["apis"] => Ok(Route::Groups),
        ["apis", g] => Ok(Route::Group(g.to_string())),
        ["api", "v1"] => Ok(Route::ResourceList { group: String::new(), version: "v1".into() }),
        ["apis", g, v] => Ok(Route::ResourceList { group: g.to_string(), version: v.to_string() }),
        ["api", "v1", rest @ ..] => object("", "v1", rest, store),
        ["apis", g, v, rest @ ..] => object(g, v, rest, store),
        _ => Err(ApiError::no_route()),
    }
}

fn lookup(group: &str, version: &str, plural: &str, store: &Store) -> Result<&'static Resource, ApiError> {
    let res = registry::by_path(group, version, plural).ok_or_else(ApiError::no_route)?;
    if served(store, res) { Ok(res) } else { Err(ApiError::no_route()) }
}

fn check_sub(res: &Resource, sub: &str) -> Result<String, ApiError> {
    if res.subresources.contains(&sub) { Ok(sub.to_string()) } else { Err(ApiError::no_route()) }
}

fn object(group: &str, version: &str, rest: &[&str], store: &Store) -> Result<Route, ApiError> {
    let obj = |res, namespace: Option<&str>, name: Option<&str>, sub: Option<String>| {
        Ok(Route::Object(ObjectPath {
            res,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            sub,
        }))
    };
    match rest {
        // `/api/v1/namespaces/{name}/status` is the Namespace's own subresource.
        ["namespaces", name, sub] if group.is_empty() && matches!(*sub, "status" | "finalize") => {
            let res = lookup("", "v1", "namespaces", store)?;
            let sub = if *sub == "finalize" { "finalize".to_string() } else { check_sub(res, sub)? };
            obj(res, None, Some(name), Some(sub))
        }
        ["namespaces", ns, plural, tail @ ..] => {
            let res = lookup(group, version, plural, store)?;
            if !res.namespaced {
                return Err(ApiError::no_route());
            }
            match tail {
                [] => obj(res, Some(ns), None, None),
                [name] => obj(res, Some(ns), Some(name), None),
                [name, sub] => obj(res, Some(ns), Some(name), Some(check_sub(res, sub)?)),
                _ => Err(ApiError::no_route()),
            }
        }
        [plural] => obj(lookup(group, version, plural, store)?, None, None, None),
        [plural, name] => {
            let res = lookup(group, version, plural, store)?;
            if res.namespaced {
                return Err(ApiError::no_route());
            }
            obj(res, None, Some(name), None)
        }
        [plural, name, sub] => {
            let res = lookup(group, version, plural, store)?;
            if res.namespaced {
                return Err(ApiError::no_route());
            }
            obj(res, None, Some(name), Some(check_sub(res, sub)?))
        }
        _ => Err(ApiError::no_route()),
    }
}

/// The Kubernetes verb of a request on an object path (`connect` for port-forward).
pub fn verb(method: &Method, p: &ObjectPath, watch: bool) -> Result<&'static str, ApiError> {
    let verb = match (p.sub.as_deref(), p.name.is_some(), method.as_str()) {
        (Some("portforward"), _, "GET" | "POST") => "connect",
        (Some("log"), _, "GET") => "get",
        (Some("eviction"), _, "POST") => "create",
        (Some("log" | "eviction" | "portforward"), _, _) => return Err(ApiError::method_not_allowed()),
        (_, false, "GET") if watch => "watch",
        (_, false, "GET") => "list",
        (_, false, "POST") => "create",
        (_, false, "DELETE") => "deletecollection",
        (_, true, "GET") if watch => "watch",
        (_, true, "GET") => "get",
        (_, true, "PUT") => "update",
        (_, true, "PATCH") => "patch",
        (_, true, "DELETE") => "delete",
        _ => return Err(ApiError::method_not_allowed()),
    };
    if p.sub.is_some() && matches!(verb, "delete" | "list" | "watch" | "deletecollection") {
        return Err(ApiError::method_not_allowed());
    }
    // Reviews are answered, never stored: only create exists.
    if p.res.group == "authorization.k8s.io" && verb != "create" {
        return Err(ApiError::method_not_allowed());
    }
    Ok(verb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let store = Store::default();
        let Ok(Route::Object(p)) = parse("/api/v1/namespaces/kube-system/pods/x/eviction", &store) else {
            panic!("eviction path")
        };
        assert_eq!(
            (p.res.plural, p.ns(), p.name.as_deref(), p.sub.as_deref()),
            ("pods", "kube-system", Some("x"), Some("eviction"))
        );
        let Ok(Route::Object(p)) = parse("/api/v1/pods", &store) else { panic!("all-namespace list") };
        assert!(p.namespace.is_none() && p.name.is_none());
        assert!(parse("/api/v1/pods/x", &store).is_err(), "namespaced item needs a namespace");
        let Ok(Route::Object(p)) = parse("/api/v1/namespaces/default/status", &store) else { panic!("ns status") };
        assert_eq!((p.res.plural, p.name.as_deref()), ("namespaces", Some("default")));
        let Ok(Route::Object(p)) = parse("/api/v1/nodes/n1/status", &store) else { panic!("node status") };
        assert_eq!(p.sub.as_deref(), Some("status"));
        assert!(parse("/api/v1/widgets", &store).is_err());
        assert!(parse("/api/v1/nodes/n1/eviction", &store).is_err());
        // CRD-backed kinds appear only with their CRD.
        assert!(parse("/apis/argoproj.io/v1alpha1/applications", &store).is_err());
        let crd = registry::find("apiextensions.k8s.io/customresourcedefinitions").unwrap();
        store.create(crd, "", json!({"metadata": {"name": "applications.argoproj.io"}})).unwrap();
        assert!(parse("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/x", &store).is_ok());
    }

    #[test]
    fn verbs() {
        let store = Store::default();
        let Ok(Route::Object(p)) = parse("/api/v1/namespaces/a/pods", &store) else { panic!() };
        assert_eq!(verb(&Method::GET, &p, true), Ok("watch"));
        assert_eq!(verb(&Method::POST, &p, false), Ok("create"));
        assert_eq!(verb(&Method::PUT, &p, false).map_err(|e| e.code), Err(405));
        let Ok(Route::Object(p)) = parse("/api/v1/namespaces/a/pods/x/portforward", &store) else { panic!() };
        assert_eq!(verb(&Method::GET, &p, false), Ok("connect"));
    }
}
