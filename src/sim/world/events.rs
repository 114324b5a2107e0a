//! Kubernetes Events the world emits (kubelet, scheduler, controllers), deduplicated like the
//! real event recorder (same object + reason + message → count+1) and bounded in number.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::objects::{self as o, ids, res};
use crate::sim::store::Store;

/// At most this many Events exist; the oldest go first.
pub const MAX_EVENTS: usize = 400;

#[derive(Debug, Default)]
pub struct EventLog {
    /// Off while seeding: a seeded cluster has no history of its own start.
    pub enabled: bool,
    order: VecDeque<(String, String)>,
    index: BTreeMap<(String, String, String), (String, String)>,
    counter: u64,
    seed: u64,
}

impl EventLog {
    pub fn new(seed: u64) -> Self {
        EventLog { enabled: false, seed, ..Default::default() }
    }

    /// Records one event about `involved` (needs kind, name, uid; namespace/apiVersion if any).
    #[allow(clippy::too_many_arguments)]
    pub fn emit(
        &mut self,
        store: &Store,
        now: &str,
        involved: &Value,
        default_ns: &str,
        etype: &str,
        reason: &str,
        message: &str,
        component: &str,
        host: &str,
    ) {
        if !self.enabled {
            return;
        }
        let ns = match o::s(involved, "/namespace") {
            "" => default_ns.to_string(),
            n => n.to_string(),
        };
        let dedupe = (
            format!("{}/{}", o::s(involved, "/uid"), o::s(involved, "/name")),
            reason.to_string(),
            message.to_string(),
        );
        let r = res(ids::EVENTS);
        if let Some((ens, ename)) = self.index.get(&dedupe).cloned() {
            let bumped = store.mutate(r, &ens, &ename, |e| {
                let c = e.get("count").and_then(Value::as_i64).unwrap_or(1);
                e["count"] = json!(c + 1);
                e["lastTimestamp"] = json!(now);
                Ok(())
            });
            if bumped.is_ok() {
                return;
            }
            self.index.remove(&dedupe);
        }
        self.counter += 1;
        let h = o::fnv64(&format!("{}-{}-{}", self.seed, self.counter, o::s(involved, "/name")));
        let name = format!("{}.{:016x}", o::s(involved, "/name"), h);
        let mut source = json!({"component": component});
        if !host.is_empty() {
            source["host"] = json!(host);
        }
        let mut inv = involved.clone();
        if let Some(m) = inv.as_object_mut()
            && !ns.is_empty()
            && o::s(involved, "/namespace").is_empty()
            && o::s(involved, "/kind") != "Node"
        {
            m.insert("namespace".into(), json!(ns));
        }
        let ev = json!({
            "metadata": {"name": name},
            "involvedObject": inv,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": etype,
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": host,
        });
        if store.create(r, &ns, ev).is_ok() {
            self.order.push_back((ns.clone(), name.clone()));
            self.index.insert(dedupe, (ns, name));
        }
        while self.order.len() > MAX_EVENTS {
            if let Some((ons, oname)) = self.order.pop_front() {
                let _ = store.delete(r, &ons, &oname, Some(0));
                self.index.retain(|_, v| !(v.0 == ons && v.1 == oname));
            }
        }
    }
}

/// `involvedObject` for an object.
pub fn involved(obj: &Value) -> Value {
    let mut v = json!({
        "kind": o::s(obj, "/kind"),
        "apiVersion": o::s(obj, "/apiVersion"),
        "name": o::name(obj),
        "uid": o::uid(obj),
        "resourceVersion": o::s(obj, "/metadata/resourceVersion"),
    });
    if !o::namespace(obj).is_empty() {
        v["namespace"] = json!(o::namespace(obj));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn dedupes_and_bounds() {
        let s = Store::new(Arc::new(|| jiff::Timestamp::UNIX_EPOCH));
        let mut log = EventLog::new(1);
        log.enabled = true;
        let inv = json!({"kind": "Pod", "name": "p", "namespace": "default", "uid": "u"});
        log.emit(&s, "t", &inv, "default", "Normal", "Pulled", "m", "kubelet", "n");
        log.emit(&s, "t2", &inv, "default", "Normal", "Pulled", "m", "kubelet", "n");
        let (evs, _) = s.list(res(ids::EVENTS), None);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0]["count"], 2);
        for i in 0..(MAX_EVENTS + 10) {
            log.emit(&s, "t", &inv, "default", "Normal", "X", &format!("m{i}"), "kubelet", "n");
        }
        let (evs, _) = s.list(res(ids::EVENTS), None);
        assert_eq!(evs.len(), MAX_EVENTS);
    }
}
