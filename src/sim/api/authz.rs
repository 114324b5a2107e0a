//! Who may do what: the admin token may do everything, the viewer token only reads (like an RBAC
//! `view` binding). Also answers SelfSubjectAccessReview / SelfSubjectRulesReview truthfully.

use axum::body::Body;
use http::Response;
use serde_json::{Value, json};

use crate::sim::Identity;
use crate::sim::registry::Resource;

use super::error::{ApiError, json_response, qualified};
use super::route::ObjectPath;

/// The user name the real server would report for an identity.
pub fn user(id: Identity) -> &'static str {
    match id {
        Identity::Admin => "system:admin",
        Identity::Viewer => "system:serviceaccount:cutover:viewer",
    }
}

/// The RBAC verb of a request verb (`connect` to a pod is `create` on `pods/portforward`).
fn rbac_verb(verb: &str) -> &str {
    if verb == "connect" { "create" } else { verb }
}

/// Whether `id` may perform `verb` on `group`/`resource` (`resource` may be `pods/eviction`).
pub fn allowed(id: Identity, verb: &str, group: &str, resource: &str) -> bool {
    match id {
        Identity::Admin => true,
        Identity::Viewer => {
            matches!(verb, "get" | "list" | "watch")
                || (group == "authorization.k8s.io"
                    && verb == "create"
                    && matches!(resource, "selfsubjectaccessreviews" | "selfsubjectrulesreviews"))
        }
    }
}

/// 403 unless allowed, with the real RBAC message.
pub fn check(id: Identity, verb: &str, p: &ObjectPath) -> Result<(), ApiError> {
    let verb = rbac_verb(verb);
    let resource = p.rbac_resource();
    if allowed(id, verb, p.res.group, &resource) {
        return Ok(());
    }
    Err(forbidden(id, verb, p.res, &resource, p.name.as_deref(), p.namespace.as_deref()))
}

pub fn forbidden(
    id: Identity,
    verb: &str,
    res: &Resource,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> ApiError {
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", qualified(res)),
        None => qualified(res),
    };
    let scope = match namespace {
        Some(ns) if res.namespaced => format!("in the namespace \"{ns}\""),
        _ => "at the cluster scope".to_string(),
    };
    let mut details = json!({"kind": res.plural});
    if let Some(n) = name {
        details["name"] = json!(n);
    }
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{subject} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
            user(id),
            res.group
        ),
    )
    .with_details(details)
}

fn reason(id: Identity, ok: bool) -> &'static str {
    match (id, ok) {
        (Identity::Admin, _) => {
            "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\""
        }
        (Identity::Viewer, true) => {
            "RBAC: allowed by ClusterRoleBinding \"cutover-viewer\" of ClusterRole \"view\" to ServiceAccount \"viewer/cutover\""
        }
        (Identity::Viewer, false) => "",
    }
}

/// POST selfsubjectaccessreviews / selfsubjectrulesreviews: answered, never stored.
pub fn review(id: Identity, res: &Resource, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut obj: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the object provided is unrecognized (must be of type {}): {e}", res.kind))
    })?;
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {})",
            res.kind
        )));
    }
    obj["kind"] = json!(res.kind);
    obj["apiVersion"] = json!(res.api_version());
    obj["metadata"] = json!({"creationTimestamp": null});
    let status = if res.plural == "selfsubjectaccessreviews" {
        let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
        let ok = if let Some(ra) = spec.get("resourceAttributes") {
            let s = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("");
            let resource = if s("subresource").is_empty() {
                s("resource").to_string()
            } else {
                format!("{}/{}", s("resource"), s("subresource"))
            };
            allowed(id, s("verb"), s("group"), &resource)
        } else if let Some(nra) = spec.get("nonResourceAttributes") {
            id == Identity::Admin || nra.get("verb").and_then(Value::as_str) == Some("get")
        } else {
            return Err(ApiError::new(
                422,
                "Invalid",
                "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        };
        let mut st = json!({"allowed": ok});
        if !reason(id, ok).is_empty() {
            st["reason"] = json!(reason(id, ok));
        }
        st
    } else {
        let resource_rules = match id {
            Identity::Admin => json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]),
            Identity::Viewer => json!([
                {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
                {"verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["*"]},
            ]),
        };
        let non_resource_rules = match id {
            Identity::Admin => json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
            Identity::Viewer => {
                json!([{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version", "/version/"]}])
            }
        };
        json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
    };
    obj["status"] = status;
    Ok(json_response(201, &obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::registry;

    #[test]
    fn viewer_reads_only() {
        assert!(allowed(Identity::Viewer, "list", "", "pods"));
        assert!(allowed(Identity::Viewer, "get", "", "pods/log"));
        assert!(!allowed(Identity::Viewer, "create", "", "pods/eviction"));
        assert!(!allowed(Identity::Viewer, "patch", "", "nodes"));
        assert!(allowed(Identity::Admin, "delete", "", "nodes"));
    }

    #[test]
    fn forbidden_message_is_the_rbac_one() {
        let pods = registry::find("pods").unwrap();
        let e = forbidden(Identity::Viewer, "create", pods, "pods/eviction", Some("x"), Some("y"));
        assert_eq!(
            e.message,
            "pods \"x\" is forbidden: User \"system:serviceaccount:cutover:viewer\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"y\""
        );
        let nodes = registry::find("nodes").unwrap();
        let e = forbidden(Identity::Viewer, "patch", nodes, "nodes", Some("n1"), None);
        assert!(e.message.ends_with("in API group \"\" at the cluster scope"));
    }

    #[test]
    fn access_review_is_truthful() {
        let ssar = registry::find("authorization.k8s.io/selfsubjectaccessreviews").unwrap();
        let body = br#"{"spec":{"resourceAttributes":{"verb":"create","resource":"pods","subresource":"eviction","namespace":"a"}}}"#;
        let r = review(Identity::Viewer, ssar, body).unwrap();
        assert_eq!(r.status(), 201);
        let r = review(Identity::Viewer, ssar, b"{not json").unwrap_err();
        assert_eq!(r.code, 400);
    }
}
