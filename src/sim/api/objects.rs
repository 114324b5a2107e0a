//! Object verbs: get, list (selectors, paging with consistent snapshots), create, update,
//! patch, delete, deletecollection, the status and scale subresources, dry-run; and dispatch to
//! watch, eviction, log and port-forward.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::sim::Identity;
use crate::sim::registry::{self, Resource};
use crate::sim::store::{Store, StoreError};

use super::error::{ApiError, json_response};
use super::patch::{PatchKind, strategic_merge};
use super::route::ObjectPath;
use super::select::{FieldSelector, LabelSelector, parse_fields, parse_labels};
use super::{ApiState, Query, authz, pods, portforward, proto, read_body, table, watch};

/// How a client wants objects rendered (from `Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// `as=PartialObjectMetadata(List)`: metadata only.
    Meta,
    /// `as=Table`: server-side printing for kubectl.
    Table(table::Include),
}

impl Output {
    pub fn negotiate(headers: &HeaderMap, q: &Query) -> Output {
        let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        // The first acceptable media type wins, as in the real negotiation.
        for part in accept.split(',') {
            let p = part.replace(' ', "");
            if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
                return Output::Table(table::Include::from_query(q.get("includeObject")));
            }
            if p.contains("as=PartialObjectMetadata") && p.contains("g=meta.k8s.io") {
                return Output::Meta;
            }
            if p.starts_with("application/json") || p.starts_with("*/*") {
                return Output::Json;
            }
        }
        Output::Json
    }
}

/// Metadata-only view of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

/// Which objects a list or watch selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(p: &ObjectPath, q: &Query) -> Result<Filter, ApiError> {
        Ok(Filter {
            namespace: p.namespace.clone().filter(|_| p.res.namespaced),
            name: p.name.clone(),
            labels: parse_labels(q.get("labelSelector").unwrap_or(""))?,
            fields: parse_fields(q.get("fieldSelector").unwrap_or(""), p.res)?,
        })
    }

    /// Label/field selectors present (matching can change as an object changes).
    pub fn selective(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }

    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        let meta = |k: &str| obj.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or("");
        self.namespace.as_deref().is_none_or(|ns| meta("namespace") == ns)
            && self.name.as_deref().is_none_or(|n| meta("name") == n)
            && self.labels.matches(obj)
            && self.fields.matches(res, obj)
    }
}

/// The filtered items of one list, shared by its pages.
type Items = Arc<Vec<Arc<Value>>>;

/// Snapshots of filtered lists kept for `continue` tokens, so that paging is consistent.
#[derive(Default)]
pub struct Snapshots {
    next: u64,
    /// id → (resourceVersion, items, taken at)
    map: HashMap<u64, (u64, Items, Instant)>,
}

const SNAPSHOT_TTL: Duration = Duration::from_secs(300);
const SNAPSHOT_MAX: usize = 64;

impl Snapshots {
    fn put(&mut self, rv: u64, items: Items) -> u64 {
        self.map.retain(|_, (_, _, at)| at.elapsed() < SNAPSHOT_TTL);
        if self.map.len() >= SNAPSHOT_MAX
            && let Some(oldest) = self.map.iter().min_by_key(|(_, (_, _, at))| *at).map(|(k, _)| *k)
        {
            self.map.remove(&oldest);
        }
        self.next += 1;
        self.map.insert(self.next, (rv, items, Instant::now()));
        self.next
    }

    fn get(&self, id: u64) -> Option<(u64, Items)> {
        self.map.get(&id).filter(|(_, _, at)| at.elapsed() < SNAPSHOT_TTL).map(|(rv, items, _)| (*rv, items.clone()))
    }
}

fn encode_continue(rv: u64, snap: u64, offset: usize) -> String {
    let doc = json!({"v": "meta.k8s.io/v1", "rv": rv, "snap": snap, "off": offset}).to_string();
    doc.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Option<(u64, u64, usize)> {
    let bytes: Option<Vec<u8>> =
        (0..token.len()).step_by(2).map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    let doc: Value = serde_json::from_slice(&bytes?).ok()?;
    Some((doc.get("rv")?.as_u64()?, doc.get("snap")?.as_u64()?, usize::try_from(doc.get("off")?.as_u64()?).ok()?))
}

fn expired_continue() -> ApiError {
    ApiError::new(
        410,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
    )
}

pub async fn handle(
    state: &Arc<ApiState>,
    req: Request<Incoming>,
    p: ObjectPath,
    verb: &str,
    q: &Query,
    identity: Identity,
) -> Result<Response<Body>, ApiError> {
    let out = Output::negotiate(req.headers(), q);
    let sub = p.sub.clone();
    match (verb, sub.as_deref()) {
        ("watch", _) => watch::serve(state, &p, q, out),
        ("list", _) => list(state, &p, q, out),
        ("get", Some("log")) => pods::log(state, &p, q),
        ("get", Some("scale")) => {
            let obj = get_obj(&state.shared.store, &p)?;
            Ok(json_response(200, &scale_of(&obj)))
        }
        ("get", _) => {
            let obj = get_obj(&state.shared.store, &p)?;
            Ok(json_response(200, &render_one(&state.shared.store, p.res, &obj, out)))
        }
        ("connect", _) => portforward::portforward(state, req, &p, q).await,
        ("create", Some("eviction")) => {
            let body = read_body(req).await?;
            pods::evict(state, &p, q, &body)
        }
        ("create", _) if p.res.group == "authorization.k8s.io" => {
            let protobuf = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with(proto::CONTENT_TYPE));
            let body = read_body(req).await?;
            if protobuf {
                let v = proto::review_to_json(p.res.plural, &body).map_err(|e| {
                    ApiError::bad_request(format!(
                        "the object provided is unrecognized (must be of type {}): {e}",
                        p.res.kind
                    ))
                })?;
                authz::review(identity, p.res, &serde_json::to_vec(&v).unwrap_or_default())
            } else {
                authz::review(identity, p.res, &body)
            }
        }
        ("create", _) => {
            let body = read_body(req).await?;
            create(&state.shared.store, &p, q, &body)
        }
        ("update", _) => {
            let body = read_body(req).await?;
            update(&state.shared.store, &p, q, &body)
        }
        ("patch", _) => {
            let ct =
                req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let body = read_body(req).await?;
            patch(&state.shared.store, &p, q, &ct, &body)
        }
        ("delete", _) => {
            let body = read_body(req).await?;
            delete(&state.shared.store, &p, q, &body)
        }
        ("deletecollection", _) => {
            let body = read_body(req).await?;
            delete_collection(state, &p, q, &body)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn name_of(p: &ObjectPath) -> &str {
    p.name.as_deref().unwrap_or("")
}

fn get_obj(store: &Store, p: &ObjectPath) -> Result<Arc<Value>, ApiError> {
    store.get(p.res, p.ns(), name_of(p)).map_err(|e| ApiError::from_store(p.res, e))
}

pub fn render_one(store: &Store, res: &Resource, obj: &Arc<Value>, out: Output) -> Value {
    match out {
        Output::Json => (**obj).clone(),
        Output::Meta => partial(obj),
        Output::Table(inc) => table::table(store, res, std::slice::from_ref(obj), inc, true),
    }
}

fn list(state: &Arc<ApiState>, p: &ObjectPath, q: &Query, out: Output) -> Result<Response<Body>, ApiError> {
    let store = &state.shared.store;
    let filter = Filter::from_query(p, q)?;
    let limit = match q.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let (rv, items, offset) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, snap, off) =
                decode_continue(token).ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            let (snap_rv, items) =
                state.snapshots.lock().unwrap_or_else(|e| e.into_inner()).get(snap).ok_or_else(expired_continue)?;
            if snap_rv != rv {
                return Err(expired_continue());
            }
            (rv, items, off)
        }
        None => {
            let (all, rv) = store.list(p.res, filter.namespace.as_deref());
            if let (Some(want), Some("Exact")) = (q.get("resourceVersion"), q.get("resourceVersionMatch"))
                && want.parse::<u64>().ok() != Some(rv)
            {
                return Err(ApiError::new(410, "Expired", format!("too old resource version: {want} ({rv})")));
            }
            let items: Vec<Arc<Value>> = all.into_iter().filter(|o| filter.matches(p.res, o)).collect();
            (rv, Arc::new(items), 0)
        }
    };
    let end = if limit > 0 { offset.saturating_add(limit).min(items.len()) } else { items.len() };
    let page = items.get(offset.min(items.len())..end).unwrap_or(&[]);
    let mut cont = None;
    if end < items.len() {
        let snap = state.snapshots.lock().unwrap_or_else(|e| e.into_inner()).put(rv, items.clone());
        cont = Some((encode_continue(rv, snap, end), items.len() - end));
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some((token, remaining)) = &cont {
        meta["continue"] = json!(token);
        if !filter.selective() {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let body = match out {
        Output::Table(inc) => {
            let mut t = table::table(store, p.res, page, inc, true);
            t["metadata"] = meta;
            t
        }
        Output::Meta => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": page.iter().map(|o| partial(o)).collect::<Vec<_>>(),
        }),
        Output::Json => json!({
            "kind": format!("{}List", p.res.kind),
            "apiVersion": p.res.api_version(),
            "metadata": meta,
            "items": page.iter().map(|o| o.as_ref()).collect::<Vec<&Value>>(),
        }),
    };
    Ok(json_response(200, &body))
}

fn parse_object(res: &Resource, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e}",
            res.kind
        ))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {})",
            res.kind
        )));
    }
    if let Some(av) = v.get("apiVersion").and_then(Value::as_str)
        && av != res.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if let Some(kind) = v.get("kind").and_then(Value::as_str)
        && kind != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): kind {kind} does not match",
            res.kind
        )));
    }
    Ok(v)
}

fn has_status_sub(res: &Resource) -> bool {
    res.subresources.contains(&"status")
}

fn rv_of(v: &Value) -> &str {
    v.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("")
}

fn create(store: &Store, p: &ObjectPath, q: &Query, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let res = p.res;
    let mut obj = parse_object(res, body)?;
    if p.name.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    if res.namespaced {
        let ns = p.namespace.as_deref().ok_or_else(ApiError::method_not_allowed)?;
        if let Some(body_ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let nsres = registry::find("namespaces").ok_or_else(|| ApiError::internal("no namespaces resource"))?;
        match store.get(nsres, "", ns) {
            Err(_) => return Err(ApiError::not_found(nsres, ns)),
            Ok(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        res.plural,
                        obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
                    ),
                )
                .with_details(json!({"causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]})));
            }
            Ok(_) => {}
        }
    }
    prepare_create(res, &mut obj);
    if q.dry_run() {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        if !name.is_empty() && store.get(res, p.ns(), &name).is_ok() {
            return Err(ApiError::from_store(res, StoreError::AlreadyExists { resource: res.plural.into(), name }));
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        if res.namespaced {
            obj["metadata"]["namespace"] = json!(p.ns());
        }
        obj["metadata"]["creationTimestamp"] = json!(store.now_string());
        return Ok(json_response(201, &obj));
    }
    let created = store.create(res, p.ns(), obj).map_err(|e| ApiError::from_store(res, e))?;
    Ok(json_response(201, &created))
}

/// What the real strategies do on create: status is the server's (kept for nodes, which the
/// kubelet registers with a status); server-owned metadata is dropped.
fn prepare_create(res: &Resource, obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
    }
    if let Some(map) = obj.as_object_mut() {
        match res.id {
            "pods" => {
                map.insert("status".into(), json!({"phase": "Pending"}));
            }
            "namespaces" => {
                map.insert("status".into(), json!({"phase": "Active"}));
            }
            "nodes" => {}
            _ if has_status_sub(res) => {
                map.remove("status");
            }
            _ => {}
        }
    }
    if res.id == "namespaces"
        && let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string)
    {
        let meta = &mut obj["metadata"];
        if !meta["labels"].is_object() {
            meta["labels"] = json!({});
        }
        meta["labels"]["kubernetes.io/metadata.name"] = json!(name);
    }
}

/// Keeps the parts a write may not change: status on the main resource (when there is a status
/// subresource), everything but status on `/status`.
fn apply_subresource_rules(res: &Resource, sub: Option<&str>, cur: &Value, new: &mut Value) {
    if !has_status_sub(res) {
        return;
    }
    match sub {
        Some("status") => {
            let status = new.get("status").cloned();
            *new = cur.clone();
            if let Some(map) = new.as_object_mut() {
                match status {
                    Some(s) => map.insert("status".into(), s),
                    None => map.remove("status"),
                };
            }
        }
        _ => {
            if let Some(map) = new.as_object_mut() {
                match cur.get("status") {
                    Some(s) => map.insert("status".into(), s.clone()),
                    None => map.remove("status"),
                };
            }
        }
    }
}

/// Read-modify-write with the store's compare-and-swap; `f` maps the current object to the new
/// one (and may refuse). Internal races retry like the real GuaranteedUpdate.
fn write<F>(store: &Store, p: &ObjectPath, dry_run: bool, f: F) -> Result<Arc<Value>, ApiError>
where
    F: Fn(&Value) -> Result<Value, ApiError>,
{
    let res = p.res;
    let name = name_of(p);
    for _ in 0..16 {
        let cur = get_obj(store, p)?;
        let mut new = f(&cur)?;
        if !new.is_object() {
            return Err(ApiError::invalid(res, name, "object must be a JSON object"));
        }
        if new.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
            return Err(ApiError::invalid(res, name, "metadata.name: Invalid value: field is immutable"));
        }
        if res.namespaced && new.pointer("/metadata/namespace") != cur.pointer("/metadata/namespace") {
            return Err(ApiError::invalid(res, name, "metadata.namespace: Invalid value: field is immutable"));
        }
        let cur_rv = rv_of(&cur).to_string();
        new["metadata"]["resourceVersion"] = json!(cur_rv);
        new["apiVersion"] = json!(res.api_version());
        new["kind"] = json!(res.kind);
        if dry_run {
            return Ok(Arc::new(new));
        }
        let result = store.mutate(res, p.ns(), name, |o| {
            if rv_of(o) != cur_rv {
                return Err(StoreError::Conflict { resource: res.plural.into(), name: name.into() });
            }
            *o = new.clone();
            Ok(())
        });
        match result {
            Ok(v) => return Ok(v),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(res, e)),
        }
    }
    Err(ApiError::conflict(res, name))
}

fn update(store: &Store, p: &ObjectPath, q: &Query, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let res = p.res;
    let name = name_of(p);
    if p.sub.as_deref() == Some("scale") {
        return update_scale(store, p, q, body, None);
    }
    let body = parse_object(res, body)?;
    if let Some(n) = body.pointer("/metadata/name").and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let want_rv = rv_of(&body).to_string();
    let obj = write(store, p, q.dry_run(), |cur| {
        if !want_rv.is_empty() && want_rv != rv_of(cur) {
            return Err(ApiError::conflict(res, name));
        }
        let mut new = body.clone();
        new["metadata"]["name"] = json!(name);
        if res.namespaced {
            new["metadata"]["namespace"] = json!(p.ns());
        }
        apply_subresource_rules(res, p.sub.as_deref(), cur, &mut new);
        Ok(new)
    })?;
    Ok(json_response(200, &obj))
}

fn apply_patch(
    kind: PatchKind,
    crd: bool,
    target: &mut Value,
    patch: &Value,
    res: &Resource,
    name: &str,
) -> Result<(), ApiError> {
    match kind {
        PatchKind::Merge => json_patch::merge(target, patch),
        PatchKind::Strategic => strategic_merge(target, patch),
        // Server-side apply without field ownership: the applied config is merged in.
        PatchKind::Apply if crd => json_patch::merge(target, patch),
        PatchKind::Apply => strategic_merge(target, patch),
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("json: cannot unmarshal the JSON patch: {e}")))?;
            json_patch::patch(target, &ops).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
                .with_details(json!({"name": name, "kind": res.plural}))
            })?;
        }
    }
    Ok(())
}

fn patch(
    store: &Store,
    p: &ObjectPath,
    q: &Query,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let res = p.res;
    let name = name_of(p);
    let accepted = if res.crd {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    };
    let kind = PatchKind::from_content_type(content_type).ok_or_else(|| ApiError::unsupported_media(accepted))?;
    if kind == PatchKind::Strategic && res.crd {
        return Err(ApiError::unsupported_media(accepted));
    }
    let patch: Value = if kind == PatchKind::Apply {
        crate::sim::yaml::slice_to_json(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
    };
    if kind == PatchKind::Apply {
        if q.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if p.sub.is_none() && store.get(res, p.ns(), name).is_err() {
            let mut obj = patch.clone();
            if obj.is_object() {
                obj["metadata"]["name"] = json!(name);
            }
            let created = create(
                store,
                &ObjectPath { name: None, ..p.clone() },
                q,
                &serde_json::to_vec(&obj).unwrap_or_default(),
            )?;
            return Ok(created);
        }
    }
    if p.sub.as_deref() == Some("scale") {
        return update_scale(store, p, q, body, Some((kind, patch)));
    }
    let obj = write(store, p, q.dry_run(), |cur| {
        let mut new = cur.clone();
        apply_patch(kind, res.crd, &mut new, &patch, res, name)?;
        // A resourceVersion in the patch is a precondition.
        if rv_of(&new) != rv_of(cur) {
            return Err(ApiError::conflict(res, name));
        }
        apply_subresource_rules(res, p.sub.as_deref(), cur, &mut new);
        Ok(new)
    })?;
    Ok(json_response(200, &obj))
}

fn scale_of(obj: &Value) -> Value {
    let sel = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": sel},
    })
}

fn update_scale(
    store: &Store,
    p: &ObjectPath,
    q: &Query,
    body: &[u8],
    patch: Option<(PatchKind, Value)>,
) -> Result<Response<Body>, ApiError> {
    let res = p.res;
    let name = name_of(p);
    let put: Option<Value> = match &patch {
        None => Some(
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding Scale: {e}")))?,
        ),
        Some(_) => None,
    };
    let obj = write(store, &ObjectPath { sub: None, ..p.clone() }, q.dry_run(), |cur| {
        let mut scale = scale_of(cur);
        match (&put, &patch) {
            (Some(s), _) => {
                let want = rv_of(s);
                if !want.is_empty() && want != rv_of(cur) {
                    return Err(ApiError::conflict(res, name));
                }
                scale = s.clone();
            }
            (None, Some((kind, pv))) => apply_patch(*kind, false, &mut scale, pv, res, name)?,
            (None, None) => {}
        }
        let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
        let mut new = cur.clone();
        new["spec"]["replicas"] = json!(replicas);
        Ok(new)
    })?;
    Ok(json_response(200, &scale_of(&obj)))
}

/// `DeleteOptions` from the body (may be empty) and query.
struct DeleteOpts {
    grace: Option<i64>,
    uid: Option<String>,
    rv: Option<String>,
    dry_run: bool,
}

fn delete_opts(q: &Query, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let grace = match q.get("gracePeriodSeconds") {
        Some(g) => {
            Some(g.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?)
        }
        None => opts.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    // propagationPolicy is accepted and ignored: the sim has no garbage collector.
    let s = |p: &str| opts.pointer(p).and_then(Value::as_str).map(str::to_string);
    let dry_run =
        q.dry_run() || opts.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOpts { grace, uid: s("/preconditions/uid"), rv: s("/preconditions/resourceVersion"), dry_run })
}

fn delete_one(store: &Store, res: &Resource, ns: &str, name: &str, o: &DeleteOpts) -> Result<Arc<Value>, ApiError> {
    let cur = store.get(res, ns, name).map_err(|e| ApiError::from_store(res, e))?;
    if let Some(uid) = &o.uid
        && Some(uid.as_str()) != cur.pointer("/metadata/uid").and_then(Value::as_str)
    {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                super::error::qualified(res),
                cur.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
            ),
        ));
    }
    if let Some(rv) = &o.rv
        && rv != rv_of(&cur)
    {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                super::error::qualified(res),
                rv_of(&cur)
            ),
        ));
    }
    if o.dry_run {
        return Ok(cur);
    }
    store.delete(res, ns, name, o.grace).map_err(|e| ApiError::from_store(res, e))
}

fn delete(store: &Store, p: &ObjectPath, q: &Query, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let o = delete_opts(q, body)?;
    let obj = delete_one(store, p.res, p.ns(), name_of(p), &o)?;
    Ok(json_response(200, &obj))
}

fn delete_collection(
    state: &Arc<ApiState>,
    p: &ObjectPath,
    q: &Query,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let store = &state.shared.store;
    let o = delete_opts(q, body)?;
    let filter = Filter::from_query(p, q)?;
    let (all, _) = store.list(p.res, filter.namespace.as_deref());
    let mut deleted = Vec::new();
    for obj in all.iter().filter(|o| filter.matches(p.res, o)) {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        match delete_one(store, p.res, ns, name, &o) {
            Ok(d) => deleted.push(d),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": format!("{}List", p.res.kind),
        "apiVersion": p.res.api_version(),
        "metadata": {"resourceVersion": store.resource_version().to_string()},
        "items": deleted.iter().map(|o| o.as_ref()).collect::<Vec<&Value>>(),
    });
    Ok(json_response(200, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, 7, 3);
        assert_eq!(decode_continue(&t), Some((42, 7, 3)));
        assert_eq!(decode_continue("zz"), None);
        assert_eq!(decode_continue("abc"), None);
    }

    #[test]
    fn status_rules() {
        let pods = registry::find("pods").unwrap();
        let cur = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"phase": "Running"}});
        let mut new = json!({"metadata": {"name": "a"}, "spec": {"x": 2}, "status": {"phase": "Failed"}});
        apply_subresource_rules(pods, None, &cur, &mut new);
        assert_eq!((new["spec"]["x"].as_i64(), new["status"]["phase"].as_str()), (Some(2), Some("Running")));
        let mut new = json!({"metadata": {"name": "a"}, "spec": {"x": 2}, "status": {"phase": "Failed"}});
        apply_subresource_rules(pods, Some("status"), &cur, &mut new);
        assert_eq!((new["spec"]["x"].as_i64(), new["status"]["phase"].as_str()), (Some(1), Some("Failed")));
        let apps = registry::find("argoproj.io/applications").unwrap();
        let mut new = json!({"status": {"sync": {"status": "Synced"}}});
        apply_subresource_rules(apps, None, &cur, &mut new);
        assert_eq!(new["status"]["sync"]["status"], "Synced", "Applications have no status subresource");
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json".parse().unwrap(),
        );
        assert!(matches!(Output::negotiate(&h, &Query::default()), Output::Table(_)));
        h.insert(
            http::header::ACCEPT,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1".parse().unwrap(),
        );
        assert_eq!(Output::negotiate(&h, &Query::default()), Output::Meta);
        h.insert(http::header::ACCEPT, "application/json, */*".parse().unwrap());
        assert_eq!(Output::negotiate(&h, &Query::default()), Output::Json);
    }
}
