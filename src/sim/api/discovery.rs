//! Discovery documents (`/version`, `/api`, `/apis`, APIResourceLists) and health endpoints, in
//! the legacy (non-aggregated) form: kubectl and client-go fall back to it when the answer to their
//! aggregated-discovery `Accept` is plain `application/json`.

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response};
use serde_json::{Value, json};

use crate::sim::Store;
use crate::sim::registry::{RESOURCES, Resource};

use super::error::{ApiError, json_response};
use super::route::served;

pub fn version() -> Response<Body> {
    json_response(
        200,
        &json!({
            "major": "1",
            "minor": "32",
            "emulationMajor": "1",
            "emulationMinor": "32",
            "minCompatibilityMajor": "1",
            "minCompatibilityMinor": "31",
            "gitVersion": "v1.32.6+k3s1",
            // Made up: the sim is not a k3s build.
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-06-27T00:00:00Z",
            "goVersion": "go1.23.10",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

pub fn health() -> Response<Body> {
    let mut r = Response::new(Body::from("ok"));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

pub fn core_versions(headers: &HeaderMap) -> Response<Body> {
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    json_response(
        200,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }),
    )
}

fn served_resources<'a>(store: &'a Store, group: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && served(store, r))
}

fn group_doc(store: &Store, group: &str) -> Option<Value> {
    let mut versions: Vec<&str> = Vec::new();
    for r in served_resources(store, group) {
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    let first = versions.first()?;
    let gv = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    Some(json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(first),
    }))
}

pub fn groups(store: &Store) -> Response<Body> {
    let mut names: Vec<&str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !names.contains(&r.group) {
            names.push(r.group);
        }
    }
    let groups: Vec<Value> = names.iter().filter_map(|g| group_doc(store, g)).collect();
    json_response(200, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

pub fn group(store: &Store, group: &str) -> Result<Response<Body>, ApiError> {
    let mut doc = group_doc(store, group).ok_or_else(ApiError::no_route)?;
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Ok(json_response(200, &doc))
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn sub_entry(r: &Resource, sub: &str) -> Value {
    let (group, version, kind, verbs): (&str, &str, &str, &[&str]) = match sub {
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "log" => ("", "v1", "Pod", &["get"]),
        "portforward" => ("", "v1", "PodPortForwardOptions", &["create", "get"]),
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        _ => ("", "", r.kind, &["get", "patch", "update"]),
    };
    let mut e = json!({
        "name": format!("{}/{sub}", r.plural),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if !version.is_empty() {
        e["group"] = json!(group);
        e["version"] = json!(version);
    }
    e
}

pub fn resources(store: &Store, group: &str, version: &str) -> Result<Response<Body>, ApiError> {
    let mut list = Vec::new();
    for r in served_resources(store, group).filter(|r| r.version == version) {
        let verbs: &[&str] = if r.group == "authorization.k8s.io" { &["create"] } else { ALL_VERBS };
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        list.push(e);
        for sub in r.subresources {
            list.push(sub_entry(r, sub));
        }
        if r.id == "namespaces" {
            list.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]}));
        }
    }
    if list.is_empty() {
        return Err(ApiError::no_route());
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Ok(json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    ))
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3` and its per-group-version documents, reduced to what kubectl looks for: PATCH
/// operations tagged with their kind and offering `fieldValidation` (so that `kubectl apply` /
/// `create` leave validation to the server). No schemas; `/openapi/v2` is not served.
pub fn openapi(store: &Store, rest: &[String]) -> Result<Response<Body>, ApiError> {
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    let (group, version) = match parts.as_slice() {
        ["v3"] => {
            let mut paths = serde_json::Map::new();
            for r in RESOURCES.iter().filter(|r| served(store, r)) {
                let p = gv_path(r.group, r.version);
                paths
                    .insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=sim-{}", r.version)}));
            }
            return Ok(json_response(200, &json!({"paths": paths})));
        }
        ["v3", "api", v] => ("", *v),
        ["v3", "apis", g, v] => (*g, *v),
        _ => return Err(ApiError::no_route()),
    };
    let mut paths = serde_json::Map::new();
    let param = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}]);
    for r in served_resources(store, group).filter(|r| r.version == version && r.group != "authorization.k8s.io") {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = |action: &str| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": param, "responses": {"200": {"description": "OK"}}});
        let base = if r.namespaced {
            format!("/{}/namespaces/{{namespace}}/{}", gv_path(r.group, r.version), r.plural)
        } else {
            format!("/{}/{}", gv_path(r.group, r.version), r.plural)
        };
        paths.insert(base.clone(), json!({"post": op("post")}));
        paths.insert(format!("{base}/{{name}}"), json!({"put": op("put"), "patch": op("patch")}));
    }
    if paths.is_empty() {
        return Err(ApiError::no_route());
    }
    Ok(json_response(
        200,
        &json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.6+k3s1"}, "paths": paths, "components": {"schemas": {}}}),
    ))
}
