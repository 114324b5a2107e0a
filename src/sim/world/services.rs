//! Service plumbing: ClusterIP and NodePort allocation (10.43.0.0/16, 30000-32767), MetalLB's
//! LoadBalancer IPs from its IPAddressPool (withdrawn under the `LoadBalancerIpLost` fault), the
//! Endpoints controller, and the HAProxy ingress controller's Ingress status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::World;
use super::objects::{self as o, ids, res};
use super::scenario::NodeRole;

fn ip_range(spec: &str) -> Vec<String> {
    // "a.b.c.x-a.b.c.y" or a CIDR /24-/32 (enough for a homelab pool).
    if let Some((a, b)) = spec.split_once('-') {
        let (Some((pa, la)), Some((_, lb))) = (a.trim().rsplit_once('.'), b.trim().rsplit_once('.')) else {
            return vec![];
        };
        let (Ok(x), Ok(y)) = (la.parse::<u8>(), lb.parse::<u8>()) else { return vec![] };
        return (x..=y).map(|i| format!("{pa}.{i}")).collect();
    }
    if let Some((base, bits)) = spec.split_once('/') {
        let Ok(bits) = bits.parse::<u32>() else { return vec![] };
        let Some((pa, last)) = base.rsplit_once('.') else { return vec![] };
        let Ok(start) = last.parse::<u32>() else { return vec![] };
        if !(24..=32).contains(&bits) {
            return vec![];
        }
        let n = 1u32 << (32 - bits);
        return (start..(start + n).min(256)).map(|i| format!("{pa}.{i}")).collect();
    }
    vec![spec.to_string()]
}

impl World {
    pub(crate) fn services_tick(&mut self) {
        self.allocate_service_ips();
        self.endpoints_tick();
        self.ingress_status_tick();
        self.issuer_status_tick();
    }

    /// cert-manager marks its ClusterIssuers Ready once it runs.
    fn issuer_status_tick(&mut self) {
        if !self.workload_ready("cert-manager", "app.kubernetes.io/component", "controller") {
            return;
        }
        let (issuers, _) = self.store.list(res(ids::CLUSTERISSUERS), None);
        let now = self.now_str.clone();
        for i in issuers.iter().filter(|i| o::condition_status(i, "/status/conditions", "Ready") != "True") {
            let _ = self.store.mutate(res(ids::CLUSTERISSUERS), "", o::name(i), |x| {
                x["status"] = json!({"acme": {"uri": "https://acme-v02.api.letsencrypt.org/acme/acct/2187346512", "lastRegisteredEmail": "admin@rcrumana.xyz"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "ACMEAccountRegistered", "message": "The ACME account was registered with the ACME server",
                                    "lastTransitionTime": now, "observedGeneration": 1}]});
                Ok(())
            });
        }
    }

    fn allocate_service_ips(&mut self) {
        let (svcs, _) = self.store.list(res(ids::SERVICES), None);
        let mut used: BTreeSet<String> = svcs.iter().map(|s| o::s(s, "/spec/clusterIP").to_string()).collect();
        let mut ports: BTreeSet<i64> = svcs
            .iter()
            .flat_map(|s| s.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default())
            .filter_map(|p| o::i64_at(&p, "/nodePort"))
            .collect();
        let mut lb_used: BTreeSet<String> = svcs
            .iter()
            .flat_map(|s| {
                s.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).cloned().unwrap_or_default()
            })
            .map(|i| o::s(&i, "/ip").to_string())
            .collect();
        let pool: Vec<String> = {
            let (pools, _) = self.store.list(res(ids::IPADDRESSPOOLS), None);
            pools
                .iter()
                .flat_map(|p| p.pointer("/spec/addresses").and_then(Value::as_array).cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(ip_range))
                .flatten()
                .collect()
        };
        let metallb_up = self.workload_ready("metallb-system", "app.kubernetes.io/component", "controller");
        for s in &svcs {
            let (ns, name) = (o::namespace(s).to_string(), o::name(s).to_string());
            let ty = match o::s(s, "/spec/type") {
                "" => "ClusterIP",
                t => t,
            };
            if ty == "ExternalName" {
                continue;
            }
            let mut patch_ip = None;
            if o::s(s, "/spec/clusterIP").is_empty() {
                let ip = loop {
                    let c = format!("10.43.{}.{}", self.rng.u8(0..=255), self.rng.u8(1..=254));
                    if !used.contains(&c) && c != "10.43.0.1" && c != "10.43.0.10" {
                        break c;
                    }
                };
                used.insert(ip.clone());
                patch_ip = Some(ip);
            }
            let needs_ports = matches!(ty, "NodePort" | "LoadBalancer")
                && s.pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .is_some_and(|ps| ps.iter().any(|p| p.get("nodePort").is_none()));
            let mut new_ports = Vec::new();
            if needs_ports {
                for p in s.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default() {
                    let mut p = p.clone();
                    if p.get("nodePort").is_none() {
                        let np = loop {
                            let c = self.rng.i64(30000..=32767);
                            if ports.insert(c) {
                                break c;
                            }
                        };
                        p["nodePort"] = json!(np);
                    }
                    new_ports.push(p);
                }
            }
            // The `LoadBalancerIpLost` fault: MetalLB withdraws the IP and does not assign it again.
            if ty == "LoadBalancer" && self.faults.lb_ip_lost.contains(&(ns.clone(), name.clone())) {
                if s.pointer("/status/loadBalancer/ingress/0").is_some() {
                    let _ = self.store.mutate(res(ids::SERVICES), &ns, &name, |x| {
                        x["status"]["loadBalancer"] = json!({});
                        Ok(())
                    });
                }
                continue;
            }
            let mut lb_ip = None;
            if ty == "LoadBalancer" && metallb_up && s.pointer("/status/loadBalancer/ingress/0").is_none() {
                let requested = o::s(s, "/metadata/annotations/metallb.universe.tf~1loadBalancerIPs").to_string();
                let pick = if !requested.is_empty() && !lb_used.contains(&requested) {
                    Some(requested)
                } else {
                    pool.iter().find(|ip| !lb_used.contains(*ip)).cloned()
                };
                if let Some(ip) = pick {
                    lb_used.insert(ip.clone());
                    lb_ip = Some(ip);
                }
            }
            if patch_ip.is_none() && !needs_ports && lb_ip.is_none() {
                continue;
            }
            let _ = self.store.mutate(res(ids::SERVICES), &ns, &name, |x| {
                if let Some(ip) = &patch_ip {
                    x["spec"]["clusterIP"] = json!(ip);
                    x["spec"]["clusterIPs"] = json!([ip]);
                    let spec = o::obj_mut(x, "spec");
                    spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
                    spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
                    spec.entry("internalTrafficPolicy").or_insert(json!("Cluster"));
                    spec.entry("sessionAffinity").or_insert(json!("None"));
                    spec.entry("type").or_insert(json!("ClusterIP"));
                }
                if needs_ports {
                    x["spec"]["ports"] = Value::Array(new_ports.clone());
                    o::obj_mut(x, "spec").entry("externalTrafficPolicy").or_insert(json!("Cluster"));
                }
                if let Some(ip) = &lb_ip {
                    x["status"]["loadBalancer"]["ingress"] = json!([{"ip": ip, "ipMode": "VIP"}]);
                }
                Ok(())
            });
        }
    }

    /// Whether some pod in `ns` with label `k=v` is Ready.
    pub(crate) fn workload_ready(&self, ns: &str, k: &str, v: &str) -> bool {
        let (pods, _) = self.store.list(res(ids::PODS), Some(ns));
        pods.iter().any(|p| o::labels(p).get(k).map(String::as_str) == Some(v) && o::pod_ready(p))
    }

    fn endpoints_tick(&mut self) {
        let (svcs, _) = self.store.list(res(ids::SERVICES), None);
        let (pods, _) = self.store.list(res(ids::PODS), None);
        type Labelled<'a> = (&'a Arc<Value>, BTreeMap<String, String>);
        let mut by_ns: BTreeMap<&str, Vec<Labelled>> = BTreeMap::new();
        for p in pods.iter().filter(|p| !o::is_terminating(p) && !o::s(p, "/status/podIP").is_empty()) {
            by_ns.entry(o::namespace(p)).or_default().push((p, o::labels(p)));
        }
        for s in &svcs {
            let (ns, name) = (o::namespace(s).to_string(), o::name(s).to_string());
            let subsets = if ns == "default" && name == "kubernetes" {
                let addrs: Vec<Value> = self
                    .nodes
                    .values()
                    .filter(|k| k.role == NodeRole::Server && k.posting())
                    .map(|k| json!({"ip": k.ip}))
                    .collect();
                if addrs.is_empty() {
                    json!([])
                } else {
                    json!([{"addresses": addrs, "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])
                }
            } else {
                let sel = o::string_map(s.pointer("/spec/selector"));
                if sel.is_empty() {
                    continue;
                }
                let members: Vec<&Arc<Value>> = by_ns
                    .get(ns.as_str())
                    .map(|v| v.iter().filter(|(_, l)| o::map_selector_matches(&sel, l)).map(|(p, _)| *p).collect())
                    .unwrap_or_default();
                let svc_ports = s.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
                let ports: Vec<Value> = svc_ports
                    .iter()
                    .filter_map(|sp| {
                        let target = match sp.get("targetPort") {
                            Some(Value::Number(n)) => n.as_i64(),
                            Some(Value::String(pn)) => members.iter().find_map(|p| {
                                p.pointer("/spec/containers")?.as_array()?.iter().find_map(|c| {
                                    c.get("ports")?
                                        .as_array()?
                                        .iter()
                                        .find(|x| o::s(x, "/name") == pn)
                                        .and_then(|x| o::i64_at(x, "/containerPort"))
                                })
                            }),
                            _ => o::i64_at(sp, "/port"),
                        }?;
                        let mut e =
                            json!({"port": target, "protocol": match o::s(sp, "/protocol") { "" => "TCP", x => x }});
                        if !o::s(sp, "/name").is_empty() {
                            e["name"] = json!(o::s(sp, "/name"));
                        }
                        Some(e)
                    })
                    .collect();
                let addr = |p: &Value| {
                    json!({"ip": o::s(p, "/status/podIP"), "nodeName": o::s(p, "/spec/nodeName"),
                           "targetRef": {"kind": "Pod", "name": o::name(p), "namespace": ns, "uid": o::uid(p)}})
                };
                let ready: Vec<Value> = members.iter().filter(|p| o::pod_ready(p)).map(|p| addr(p)).collect();
                let not_ready: Vec<Value> = members.iter().filter(|p| !o::pod_ready(p)).map(|p| addr(p)).collect();
                if members.is_empty() || ports.is_empty() {
                    json!([])
                } else {
                    let mut sub = json!({"ports": ports});
                    if !ready.is_empty() {
                        sub["addresses"] = json!(ready);
                    }
                    if !not_ready.is_empty() {
                        sub["notReadyAddresses"] = json!(not_ready);
                    }
                    json!([sub])
                }
            };
            let r = res(ids::ENDPOINTS);
            match self.store.get(r, &ns, &name) {
                Ok(ep) => {
                    let same = ep.get("subsets").unwrap_or(&json!([])) == &subsets;
                    if !same {
                        let now = self.now_str.clone();
                        let _ = self.store.mutate(r, &ns, &name, |e| {
                            if subsets.as_array().is_some_and(Vec::is_empty) {
                                if let Some(m) = e.as_object_mut() {
                                    m.remove("subsets");
                                }
                            } else {
                                e["subsets"] = subsets.clone();
                            }
                            o::meta_map_mut(e, "annotations")
                                .insert("endpoints.kubernetes.io/last-change-trigger-time".into(), json!(now));
                            Ok(())
                        });
                    }
                }
                Err(_) => {
                    let mut ep = json!({"metadata": {"name": name, "labels": s.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                        "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": self.now_str}}});
                    if !subsets.as_array().is_some_and(Vec::is_empty) {
                        ep["subsets"] = subsets;
                    }
                    let _ = self.store.create(r, &ns, ep);
                }
            }
        }
        // Endpoints this controller made for Services that are gone go too.
        let (eps, _) = self.store.list(res(ids::ENDPOINTS), None);
        let names: BTreeSet<(String, String)> =
            svcs.iter().map(|s| (o::namespace(s).to_string(), o::name(s).to_string())).collect();
        for e in eps {
            let ours = e.pointer("/metadata/annotations/endpoints.kubernetes.io~1last-change-trigger-time").is_some();
            if ours && !names.contains(&(o::namespace(&e).to_string(), o::name(&e).to_string())) {
                let _ = self.store.delete(res(ids::ENDPOINTS), o::namespace(&e), o::name(&e), None);
            }
        }
    }

    /// HAProxy ingress publishes its LoadBalancer IP on the Ingresses of its class.
    fn ingress_status_tick(&mut self) {
        let (classes, _) = self.store.list(res(ids::INGRESSCLASSES), None);
        let haproxy_classes: BTreeSet<String> = classes
            .iter()
            .filter(|c| o::s(c, "/spec/controller").contains("haproxy"))
            .map(|c| o::name(c).to_string())
            .collect();
        let lb_ip =
            self.store.get(res(ids::SERVICES), "haproxy-ingress", "haproxy-ingress").ok().and_then(|s| {
                s.pointer("/status/loadBalancer/ingress/0/ip").and_then(Value::as_str).map(str::to_string)
            });
        let up = self.workload_ready("haproxy-ingress", "app.kubernetes.io/name", "haproxy-ingress");
        let (ings, _) = self.store.list(res(ids::INGRESSES), None);
        for i in ings {
            if !haproxy_classes.contains(o::s(&i, "/spec/ingressClassName")) {
                continue;
            }
            let want = match (&lb_ip, up) {
                (Some(ip), true) => json!({"loadBalancer": {"ingress": [{"ip": ip}]}}),
                _ => continue,
            };
            if i.get("status") != Some(&want) {
                let _ = self.store.mutate(res(ids::INGRESSES), o::namespace(&i), o::name(&i), |x| {
                    x["status"] = want.clone();
                    Ok(())
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(ip_range("192.168.20.240-192.168.20.242"), ["192.168.20.240", "192.168.20.241", "192.168.20.242"]);
        assert_eq!(ip_range("192.168.20.240/30").len(), 4);
    }
}
