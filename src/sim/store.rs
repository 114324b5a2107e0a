//! The simulated API server's object store: every object as JSON, one cluster-wide
//! resourceVersion counter, a bounded event history for watches (older resourceVersions get
//! 410 Gone, as etcd compaction does), and a broadcast of changes for live watchers.
//!
//! The HTTP layer and the in-process controllers both go through this store, so a change made by
//! a controller is seen by clients exactly like a change made by another client.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::registry::Resource;

/// How many past events are kept for watches that start from an older resourceVersion.
pub const HISTORY_LEN: usize = 4096;

/// Why a store operation failed; maps one-to-one onto Kubernetes `Status` reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict { resource: String, name: String },
    #[error("too old resource version: {requested} ({oldest})")]
    Gone { requested: u64, oldest: u64 },
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// HTTP status code the real API server uses for this error.
    pub fn code(&self) -> u16 {
        match self {
            StoreError::NotFound { .. } => 404,
            StoreError::AlreadyExists { .. } | StoreError::Conflict { .. } => 409,
            StoreError::Gone { .. } => 410,
            StoreError::Invalid(_) => 422,
        }
    }

    /// Kubernetes `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "NotFound",
            StoreError::AlreadyExists { .. } => "AlreadyExists",
            StoreError::Conflict { .. } => "Conflict",
            StoreError::Gone { .. } => "Expired",
            StoreError::Invalid(_) => "Invalid",
        }
    }
}

/// Watch event type, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    pub rv: u64,
    pub resource: &'static str,
    pub namespace: String,
    pub kind: EventType,
    pub object: Arc<Value>,
}

/// Key of an object: registry resource id (`"pods"`, `"argoproj.io/applications"`), namespace
/// (empty for cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    history: VecDeque<StoreEvent>,
    /// resourceVersion below which history has been dropped.
    compacted_before: u64,
    uid_counter: u64,
}

/// Clock used for timestamps; the sim can run on a fixed or scaled clock for determinism.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The object store. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<StoreEvent>,
    clock: Clock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new(Arc::new(jiff::Timestamp::now))
    }
}

/// Result of starting a watch: the events after the requested resourceVersion that are already
/// in history, then a live receiver for everything after them.
pub struct WatchStart {
    pub backlog: Vec<StoreEvent>,
    pub live: broadcast::Receiver<StoreEvent>,
    /// The store's resourceVersion when the watch started.
    pub rv: u64,
}

impl Store {
    pub fn new(clock: Clock) -> Self {
        let (tx, _) = broadcast::channel(HISTORY_LEN);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::with_capacity(HISTORY_LEN),
                compacted_before: 1,
                uid_counter: 0,
            })),
            tx,
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the data consistent (every mutation is
        // completed before the guard drops), so recover from poisoning.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }

    /// RFC 3339 timestamp of now, second precision, as Kubernetes writes `metav1.Time`.
    pub fn now_string(&self) -> String {
        format_time(self.now())
    }

    /// Current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Drops all history (every older resourceVersion now answers 410), as a compaction would.
    pub fn compact(&self) {
        let mut g = self.lock();
        g.history.clear();
        g.compacted_before = g.rv + 1;
    }

    fn record(&self, g: &mut Inner, resource: &'static str, namespace: &str, kind: EventType, object: Arc<Value>) {
        let ev = StoreEvent { rv: g.rv, resource, namespace: namespace.to_string(), kind, object };
        if g.history.len() == HISTORY_LEN
            && let Some(old) = g.history.pop_front()
        {
            g.compacted_before = old.rv + 1;
        }
        g.history.push_back(ev.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// Creates an object. Fills uid, resourceVersion, creationTimestamp, generation; `generateName`
    /// is honoured when `metadata.name` is empty.
    pub fn create(&self, res: &Resource, namespace: &str, mut obj: Value) -> Result<Arc<Value>, StoreError> {
        let ns = if res.namespaced { namespace } else { "" };
        let mut g = self.lock();
        if !obj.is_object() {
            return Err(StoreError::Invalid("object must be a JSON object".into()));
        }
        let mut name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty() {
            let prefix = obj.pointer("/metadata/generateName").and_then(Value::as_str).unwrap_or("");
            if prefix.is_empty() {
                return Err(StoreError::Invalid(
                    "metadata.name: Required value: name or generateName is required".into(),
                ));
            }
            g.uid_counter += 1;
            name = format!("{prefix}{}", short_suffix(g.uid_counter));
        }
        validate_name(&name)?;
        let key = Key { resource: res.id, namespace: ns.to_string(), name: name.clone() };
        if g.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists { resource: res.plural.to_string(), name });
        }
        g.rv += 1;
        g.uid_counter += 1;
        let uid = uid_for(g.uid_counter);
        let rv = g.rv;
        let now = self.now_string();
        set_api_version_kind(&mut obj, res);
        let meta = ensure_object(&mut obj, "metadata");
        meta.insert("name".into(), json!(name));
        if res.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(now));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        let obj = Arc::new(obj);
        g.objects.insert(key, obj.clone());
        self.record(&mut g, res.id, ns, EventType::Added, obj.clone());
        Ok(obj)
    }

    pub fn get(&self, res: &Resource, namespace: &str, name: &str) -> Result<Arc<Value>, StoreError> {
        let ns = if res.namespaced { namespace } else { "" };
        let key = Key { resource: res.id, namespace: ns.to_string(), name: name.to_string() };
        self.lock()
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound { resource: res.plural.to_string(), name: name.to_string() })
    }

    /// Lists objects of a resource, in (namespace, name) order, with the resourceVersion of the
    /// snapshot. `namespace: None` lists across all namespaces.
    pub fn list(&self, res: &Resource, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let g = self.lock();
        let items = g
            .objects
            .iter()
            .filter(|(k, _)| k.resource == res.id && namespace.is_none_or(|ns| !res.namespaced || k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, g.rv)
    }

    /// Replaces an object. When `obj` carries `metadata.resourceVersion`, it must match the stored
    /// one (optimistic concurrency, 409 otherwise). Bumps `generation` when `spec` changed.
    pub fn update(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Arc<Value>, StoreError> {
        let ns = if res.namespaced { namespace } else { "" };
        let mut g = self.lock();
        let key = Key { resource: res.id, namespace: ns.to_string(), name: name.to_string() };
        let Some(old) = g.objects.get(&key).cloned() else {
            return Err(StoreError::NotFound { resource: res.plural.to_string(), name: name.to_string() });
        };
        if !obj.is_object() {
            return Err(StoreError::Invalid("object must be a JSON object".into()));
        }
        if let Some(want) = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str)
            && !want.is_empty()
            && Some(want) != old.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        {
            return Err(StoreError::Conflict { resource: res.plural.to_string(), name: name.to_string() });
        }
        if let Some(body_name) = obj.pointer("/metadata/name").and_then(Value::as_str)
            && body_name != name
        {
            return Err(StoreError::Invalid(format!(
                "metadata.name: Invalid value: \"{body_name}\": field is immutable (URL names \"{name}\")"
            )));
        }
        self.commit_update(&mut g, res, key, &old, &mut obj);
        Ok(g.objects
            .get(&Key { resource: res.id, namespace: ns.to_string(), name: name.to_string() })
            .cloned()
            .unwrap_or_else(|| Arc::new(obj)))
    }

    /// Applies `f` to the stored object and writes the result (no resourceVersion precondition:
    /// this is how in-process controllers write). Returns the new object.
    pub fn mutate<F>(&self, res: &Resource, namespace: &str, name: &str, f: F) -> Result<Arc<Value>, StoreError>
    where
        F: FnOnce(&mut Value) -> Result<(), StoreError>,
    {
        let ns = if res.namespaced { namespace } else { "" };
        let mut g = self.lock();
        let key = Key { resource: res.id, namespace: ns.to_string(), name: name.to_string() };
        let Some(old) = g.objects.get(&key).cloned() else {
            return Err(StoreError::NotFound { resource: res.plural.to_string(), name: name.to_string() });
        };
        let mut obj = (*old).clone();
        f(&mut obj)?;
        if obj == *old {
            return Ok(old);
        }
        // The caller may not change identity.
        if obj.pointer("/metadata/name") != old.pointer("/metadata/name") {
            return Err(StoreError::Invalid("metadata.name is immutable".into()));
        }
        self.commit_update(&mut g, res, key.clone(), &old, &mut obj);
        Ok(g.objects.get(&key).cloned().unwrap_or_else(|| Arc::new(obj)))
    }

    fn commit_update(&self, g: &mut Inner, res: &Resource, key: Key, old: &Value, obj: &mut Value) {
        set_api_version_kind(obj, res);
        // Server-owned metadata is kept from the stored object.
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let mut generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
        if obj.get("spec") != old.get("spec") {
            generation += 1;
        }
        let ns = key.namespace.clone();
        g.rv += 1;
        let rv = g.rv;
        let meta = ensure_object(obj, "metadata");
        for k in ["uid", "creationTimestamp", "namespace", "name"] {
            match old_meta.get(k) {
                Some(v) => meta.insert(k.into(), v.clone()),
                None => meta.remove(k),
            };
        }
        // deletionTimestamp can be set by the store only, and never cleared.
        match old_meta.get("deletionTimestamp") {
            Some(v) => meta.insert("deletionTimestamp".into(), v.clone()),
            None => meta.remove("deletionTimestamp"),
        };
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("generation".into(), json!(generation));
        let finalizers_empty = meta.get("finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty);
        let terminating = meta.contains_key("deletionTimestamp");
        let obj = Arc::new(std::mem::take(obj));
        if terminating && finalizers_empty && !res.graceful_delete {
            g.objects.remove(&key);
            self.record(g, res.id, &ns, EventType::Deleted, obj.clone());
        } else {
            g.objects.insert(key, obj.clone());
            self.record(g, res.id, &ns, EventType::Modified, obj.clone());
        }
    }

    /// Deletes an object. With finalizers (or, for pods bound to a node, a grace period > 0) the
    /// object only gets `deletionTimestamp` and stays until its finalizers are removed / the
    /// kubelet confirms (by calling `delete` again with `grace_seconds = Some(0)`).
    pub fn delete(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        grace_seconds: Option<i64>,
    ) -> Result<Arc<Value>, StoreError> {
        let ns = if res.namespaced { namespace } else { "" };
        let mut g = self.lock();
        let key = Key { resource: res.id, namespace: ns.to_string(), name: name.to_string() };
        let Some(old) = g.objects.get(&key).cloned() else {
            return Err(StoreError::NotFound { resource: res.plural.to_string(), name: name.to_string() });
        };
        let has_finalizers =
            old.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        let bound = old.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let pod_grace = if res.graceful_delete && bound {
            let default = old.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
            grace_seconds.unwrap_or(default).max(0)
        } else {
            0
        };
        if has_finalizers || pod_grace > 0 {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(old);
            }
            let mut obj = (*old).clone();
            g.rv += 1;
            let rv = g.rv;
            let now = self.now_string();
            let meta = ensure_object(&mut obj, "metadata");
            meta.insert("deletionTimestamp".into(), json!(now));
            meta.insert("deletionGracePeriodSeconds".into(), json!(pod_grace));
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            let obj = Arc::new(obj);
            g.objects.insert(key, obj.clone());
            self.record(&mut g, res.id, ns, EventType::Modified, obj.clone());
            return Ok(obj);
        }
        g.objects.remove(&key);
        g.rv += 1;
        let rv = g.rv;
        let mut obj = (*old).clone();
        ensure_object(&mut obj, "metadata").insert("resourceVersion".into(), json!(rv.to_string()));
        let obj = Arc::new(obj);
        self.record(&mut g, res.id, ns, EventType::Deleted, obj.clone());
        Ok(obj)
    }

    /// Starts a watch on all resources. `from_rv = None` means "from now". Events at or before
    /// `from_rv` are not replayed; a `from_rv` older than the retained history is 410 Gone.
    pub fn watch_from(&self, from_rv: Option<u64>) -> Result<WatchStart, StoreError> {
        let g = self.lock();
        let live = self.tx.subscribe();
        let backlog = match from_rv {
            None => Vec::new(),
            Some(rv) if rv + 1 < g.compacted_before => {
                return Err(StoreError::Gone { requested: rv, oldest: g.compacted_before });
            }
            Some(rv) => g.history.iter().filter(|e| e.rv > rv).cloned().collect(),
        };
        Ok(WatchStart { backlog, live, rv: g.rv })
    }

    /// All objects of all resources (for snapshots, e.g. the topology for the relay).
    pub fn snapshot(&self) -> Vec<(Key, Arc<Value>)> {
        self.lock().objects.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

fn ensure_object<'a>(obj: &'a mut Value, field: &str) -> &'a mut serde_json::Map<String, Value> {
    let map = obj.as_object_mut().expect("checked: object");
    let entry = map.entry(field.to_string()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("just set to an object")
}

fn set_api_version_kind(obj: &mut Value, res: &Resource) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(res.api_version()));
        map.insert("kind".into(), json!(res.kind));
    }
}

fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )))
    }
}

/// Deterministic uid (the sim replays the same history for the same seed).
fn uid_for(n: u64) -> String {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (n >> 4) & 0xfff,
        n
    )
}

/// Five-character name suffix from the Kubernetes alphabet (no vowels), deterministic.
pub fn short_suffix(n: u64) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5bd1_e995;
    (0..5)
        .map(|_| {
            let c = ALPHA[(h % ALPHA.len() as u64) as usize] as char;
            h /= ALPHA.len() as u64;
            c
        })
        .collect()
}

/// `metav1.Time` format: RFC 3339, UTC, seconds.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::registry;

    fn store() -> Store {
        Store::new(Arc::new(|| jiff::Timestamp::from_second(1_750_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH)))
    }

    #[test]
    fn create_get_update_conflict() {
        let s = store();
        let cm = registry::find("configmaps").unwrap();
        let o = s.create(cm, "default", json!({"metadata": {"name": "a"}, "data": {"k": "v"}})).unwrap();
        assert_eq!(o["kind"], "ConfigMap");
        let rv = o["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let mut upd = (*o).clone();
        upd["data"]["k"] = json!("w");
        let o2 = s.update(cm, "default", "a", upd.clone()).unwrap();
        assert_ne!(o2["metadata"]["resourceVersion"].as_str().unwrap(), rv);
        // Same stale rv again: conflict.
        assert_eq!(s.update(cm, "default", "a", upd).unwrap_err().code(), 409);
        assert_eq!(s.create(cm, "default", json!({"metadata": {"name": "a"}})).unwrap_err().code(), 409);
    }

    #[test]
    fn finalizers_delay_deletion() {
        let s = store();
        let cm = registry::find("configmaps").unwrap();
        s.create(cm, "default", json!({"metadata": {"name": "a", "finalizers": ["x"]}})).unwrap();
        let d = s.delete(cm, "default", "a", None).unwrap();
        assert!(d["metadata"]["deletionTimestamp"].is_string());
        assert!(s.get(cm, "default", "a").is_ok());
        s.mutate(cm, "default", "a", |o| {
            o["metadata"]["finalizers"] = json!([]);
            Ok(())
        })
        .unwrap();
        assert_eq!(s.get(cm, "default", "a").unwrap_err().code(), 404);
    }

    #[test]
    fn watch_replays_history_and_expires() {
        let s = store();
        let cm = registry::find("configmaps").unwrap();
        let start = s.resource_version();
        s.create(cm, "default", json!({"metadata": {"name": "a"}})).unwrap();
        s.create(cm, "default", json!({"metadata": {"name": "b"}})).unwrap();
        let w = s.watch_from(Some(start)).unwrap();
        assert_eq!(w.backlog.len(), 2);
        s.compact();
        assert_eq!(s.watch_from(Some(start)).err().map(|e| e.code()), Some(410));
    }
}
