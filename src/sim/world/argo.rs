//! The sim's Argo CD application controller: renders each Application's sources (git directories
//! from the simulated repo, the Cilium chart through `manifests::lint` + `cilium::render`, the
//! other Helm charts from the seed), compares with the live objects, computes health, runs
//! manual (`operation`) and automated syncs (prune, selfHeal), refreshes (annotation), and
//! cascades deletes through the resources finalizer.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::cilium::{self, CiliumConfig};
use super::objects::{self as o, ids, res};
use super::{World, git, timing};
use crate::manifests::lint::{self, Finding, Impact, LintContext, LintError, LintOptions};
use crate::sim::registry;

pub const TRACKING: &str = "argocd.argoproj.io/tracking-id";
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
pub const REFRESH: &str = "argocd.argoproj.io/refresh";

fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str).unwrap_or("")
}

/// What every app's reconciliation in one tick needs (computed once per tick).
pub struct TickCtx {
    pub apis: Vec<String>,
    pub schedulable: usize,
    /// Workload uid (DaemonSet, StatefulSet, Deployment) → CrashLoopBackOff message of one of its pods.
    pub crashing: BTreeMap<String, String>,
}

/// What an app renders to.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub objects: Vec<Value>,
    pub revisions: Vec<String>,
    pub source_types: Vec<String>,
    /// Cilium agent exit reason from the values (AgentCrash findings).
    pub crash: Option<String>,
    pub cilium: Option<CiliumConfig>,
    pub multi: bool,
}

/// A sync in progress.
#[derive(Debug, Clone)]
pub struct RunningOp {
    pub operation: Value,
    pub started_str: String,
    pub finish_at: f64,
}

#[derive(Debug, Clone, Default)]
pub struct AppRt {
    pub last_reconcile: f64,
    pub reconciled_key: String,
    pub op: Option<RunningOp>,
    pub auto_attempted: Option<String>,
    pub last_sync_finished: f64,
    pub cache: Option<(String, Result<Desired, String>)>,
    /// Bumped by hard refreshes and new commits: Helm-generated certs change (manifest cache miss).
    pub churn: u64,
}

#[derive(Debug, Default)]
pub struct ArgoState {
    /// Objects of apps whose Helm charts the sim does not render (captured at seed time).
    pub fixed: BTreeMap<String, Vec<Value>>,
    pub apps: BTreeMap<String, AppRt>,
}

/// Application health order (worst last), as Argo CD aggregates.
fn health_rank(h: &str) -> u8 {
    match h {
        "Healthy" => 0,
        "Suspended" => 1,
        "Progressing" => 2,
        "Missing" => 3,
        "Degraded" => 4,
        _ => 5,
    }
}

fn group_version(obj: &Value) -> (String, String) {
    let av = o::s(obj, "/apiVersion");
    match av.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), av.to_string()),
    }
}

fn tracking_id(app: &str, obj: &Value, ns: &str) -> String {
    let (g, _) = group_version(obj);
    format!("{app}:{g}/{}:{ns}/{}", o::s(obj, "/kind"), o::name(obj))
}

fn sources(app: &Value) -> (Vec<Value>, bool) {
    if let Some(s) = app.pointer("/spec/sources").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        (s.clone(), true)
    } else {
        (app.pointer("/spec/source").cloned().into_iter().collect(), false)
    }
}

fn is_cilium_chart(src: &Value) -> bool {
    o::s(src, "/chart") == "cilium"
}

/// The chart's validation message as Argo CD shows a failed `helm template`.
fn helm_failure(idx: usize, total: usize, ns: &str, chart_version: &str, api_count: usize, detail: &str) -> String {
    format!(
        "Failed to load target state: failed to generate manifest for source {} of {total}: rpc error: code = Unknown desc = Manifest generation error (cached): `helm template . --name-template cilium --namespace {ns} --kube-version 1.32 --values <temp dir>/platform/networking/cilium/values.yaml <{api_count} --api-versions flags> --include-crds` failed exit status 1: Error: execution error at (cilium/templates/validate.yaml): {detail} (chart cilium {chart_version})",
        idx + 1
    )
}

/// Deep merge: `over` wins, objects merge recursively, arrays and scalars replace.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && v.is_object() => merge(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Whether the live object has what git says (Argo's diff, minus normalization details).
fn in_sync(desired: &Value, live: &Value) -> bool {
    if o::is_terminating(live) {
        return false;
    }
    let Some(d) = desired.as_object() else { return false };
    for (k, v) in d {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for f in ["labels", "annotations"] {
                    if let Some(want) = v.get(f)
                        && !o::is_subset(want, live.pointer(&format!("/metadata/{f}")).unwrap_or(&Value::Null))
                    {
                        return false;
                    }
                }
            }
            "data" | "stringData" | "rules" | "subjects" | "roleRef" => {
                if live.get(k) != Some(v) {
                    return false;
                }
            }
            _ => {
                if !o::is_subset(v, live.get(k).unwrap_or(&Value::Null)) {
                    return false;
                }
            }
        }
    }
    true
}

fn apply_order(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount" => 2,
        "Secret" => 3,
        "ConfigMap" => 4,
        "StorageClass" | "PersistentVolumeClaim" => 5,
        "ClusterRole" | "Role" => 6,
        "ClusterRoleBinding" | "RoleBinding" => 7,
        "Service" => 8,
        "DaemonSet" | "Deployment" | "StatefulSet" | "ReplicaSet" => 9,
        "Job" | "CronJob" => 10,
        "Ingress" | "IngressClass" => 11,
        _ => 12,
    }
}

impl World {
    /// API group/versions served (built-ins + established CRDs), as Helm's `.Capabilities`.
    pub(crate) fn api_versions(&self) -> Vec<String> {
        let mut v: BTreeSet<String> = [
            "v1",
            "apps/v1",
            "batch/v1",
            "policy/v1",
            "networking.k8s.io/v1",
            "rbac.authorization.k8s.io/v1",
            "storage.k8s.io/v1",
            "apiextensions.k8s.io/v1",
            "coordination.k8s.io/v1",
            "admissionregistration.k8s.io/v1",
            "apiregistration.k8s.io/v1",
            "autoscaling/v1",
            "autoscaling/v2",
            "discovery.k8s.io/v1",
            "events.k8s.io/v1",
            "scheduling.k8s.io/v1",
            "node.k8s.io/v1",
            "certificates.k8s.io/v1",
            "authentication.k8s.io/v1",
            "authorization.k8s.io/v1",
            "flowcontrol.apiserver.k8s.io/v1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (crds, _) = self.store.list(res(ids::CRDS), None);
        for c in crds {
            let group = o::s(&c, "/spec/group");
            let kind = o::s(&c, "/spec/names/kind");
            for ver in c.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default() {
                if o::bool_at(&ver, "/served") {
                    v.insert(format!("{group}/{}", o::s(&ver, "/name")));
                    v.insert(format!("{group}/{}/{kind}", o::s(&ver, "/name")));
                }
            }
        }
        v.into_iter().collect()
    }

    fn schedulable_nodes(&self) -> usize {
        let (nodes, _) = self.store.list(res(ids::NODES), None);
        nodes.iter().filter(|n| !o::bool_at(n, "/spec/unschedulable")).count()
    }

    fn git_file(&self, path: &str) -> Option<String> {
        self.git.head.as_ref()?.files.get(path.trim_start_matches('/')).cloned()
    }

    /// Renders an Application's sources.
    fn render_app(&mut self, app: &Value, churn: u64, ctx: &TickCtx) -> Result<Desired, String> {
        let app_name = o::name(app).to_string();
        let dest_ns = o::s(app, "/spec/destination/namespace").to_string();
        let (srcs, multi) = sources(app);
        if srcs.is_empty() {
            return Err("InvalidSpecError: spec.source or spec.sources must be specified".into());
        }
        let git_rev = self.git.head.as_ref().map(|h| h.rev.clone());
        let mut out = Desired { multi, ..Default::default() };
        let total = srcs.len();
        for (i, src) in srcs.iter().enumerate() {
            let has_chart = !o::s(src, "/chart").is_empty();
            let path = o::s(src, "/path").to_string();
            if !has_chart && path.is_empty() && !o::s(src, "/ref").is_empty() {
                out.revisions.push(git_rev.clone().unwrap_or_default());
                out.source_types.push(String::new());
                continue;
            }
            if has_chart {
                out.revisions.push(o::s(src, "/targetRevision").to_string());
                out.source_types.push("Helm".into());
                if is_cilium_chart(src) {
                    let d = self.render_cilium(src, &srcs, i, total, &dest_ns, churn, ctx)?;
                    out.crash = d.crash;
                    out.cilium = d.cilium;
                    out.objects.extend(d.objects);
                } else if let Some(objs) = self.argo.fixed.get(&app_name) {
                    out.objects.extend(objs.iter().cloned());
                } else {
                    return Err(format!(
                        "Failed to load target state: failed to generate manifest for source {} of {total}: rpc error: code = Unknown desc = the simulator cannot render chart {:?} from {}",
                        i + 1,
                        o::s(src, "/chart"),
                        o::s(src, "/repoURL")
                    ));
                }
                continue;
            }
            // A git directory.
            let Some(head) = self.git.head.as_ref() else {
                return Err(format!(
                    "Failed to load target state: failed to generate manifest for source {} of {total}: rpc error: code = Unknown desc = repository not read yet: {}",
                    i + 1,
                    self.git.error.clone().unwrap_or_default()
                ));
            };
            out.revisions.push(head.rev.clone());
            out.source_types.push("Directory".into());
            let dir = path.trim_matches('/').to_string();
            let recurse = o::bool_at(src, "/directory/recurse");
            let include = o::s(src, "/directory/include").to_string();
            let exclude = o::s(src, "/directory/exclude").to_string();
            let prefix = if dir.is_empty() || dir == "." { String::new() } else { format!("{dir}/") };
            if !prefix.is_empty() && !head.files.keys().any(|f| f.starts_with(&prefix)) {
                return Err(format!(
                    "Failed to load target state: failed to generate manifest for source {} of {total}: rpc error: code = Unknown desc = {dir}: app path does not exist",
                    i + 1
                ));
            }
            let files: Vec<(String, String)> = head
                .files
                .iter()
                .filter(|(f, _)| f.starts_with(&prefix))
                .filter(|(f, _)| recurse || !f[prefix.len()..].contains('/'))
                .filter(|(f, _)| {
                    let rel = &f[prefix.len()..];
                    let fname = rel.rsplit('/').next().unwrap_or(rel);
                    let target = if recurse { rel } else { fname };
                    (include.is_empty() || git::glob_match(&include, target) || git::glob_match(&include, fname))
                        && (exclude.is_empty()
                            || !(git::glob_match(&exclude, target) || git::glob_match(&exclude, fname)))
                })
                .map(|(f, c)| (f.clone(), c.clone()))
                .collect();
            for (f, text) in files {
                let docs = o::yaml_docs_to_json(&text).map_err(|e| {
                    format!(
                        "Failed to load target state: failed to generate manifest for source {} of {total}: rpc error: code = Unknown desc = Manifest generation error (cached): failed to unmarshal {f}: {e}",
                        i + 1
                    )
                })?;
                for d in docs {
                    if d.is_object() && !o::s(&d, "/kind").is_empty() {
                        out.objects.push(d);
                    }
                }
            }
        }
        // Namespace and tracking id on every object.
        for obj in out.objects.iter_mut() {
            let Some(r) = registry::by_kind(o::s(obj, "/apiVersion"), o::s(obj, "/kind")) else { continue };
            let ns = if r.namespaced {
                let n = o::namespace(obj);
                if n.is_empty() { dest_ns.clone() } else { n.to_string() }
            } else {
                String::new()
            };
            if r.namespaced {
                o::obj_mut(obj, "metadata").insert("namespace".into(), json!(ns));
            }
            let t = tracking_id(&app_name, obj, &ns);
            o::meta_map_mut(obj, "annotations").insert(TRACKING.into(), json!(t));
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn render_cilium(
        &self,
        src: &Value,
        srcs: &[Value],
        idx: usize,
        total: usize,
        dest_ns: &str,
        churn: u64,
        tctx: &TickCtx,
    ) -> Result<Desired, String> {
        let chart_version = o::s(src, "/targetRevision").to_string();
        let mut text_parts: Vec<String> = Vec::new();
        let mut merged = json!({});
        for vf in src.pointer("/helm/valueFiles").and_then(Value::as_array).cloned().unwrap_or_default() {
            let vf = vf.as_str().unwrap_or_default().to_string();
            let path = if let Some(rest) = vf.strip_prefix('$') {
                let (reference, p) = rest.split_once('/').unwrap_or((rest, ""));
                if !srcs.iter().any(|s| o::s(s, "/ref") == reference) {
                    return Err(format!(
                        "Failed to load target state: failed to generate manifest for source {} of {total}: rpc error: code = Unknown desc = source referenced \"${reference}\", but no source has a 'ref' field defined",
                        idx + 1
                    ));
                }
                p.to_string()
            } else {
                vf.clone()
            };
            match self.git_file(&path) {
                Some(t) => {
                    let v = o::yaml_to_json(&t).map_err(|e| {
                        helm_failure(
                            idx,
                            total,
                            dest_ns,
                            &chart_version,
                            0,
                            &format!("failed to parse {path}: error converting YAML to JSON: {e}"),
                        )
                    })?;
                    if v.is_object() {
                        merge(&mut merged, &v);
                    }
                    text_parts.push(t);
                }
                None if o::bool_at(src, "/helm/ignoreMissingValueFiles") => {}
                None => {
                    return Err(format!(
                        "Failed to load target state: failed to generate manifest for source {} of {total}: rpc error: code = Unknown desc = Manifest generation error (cached): {vf}: open <temp dir>/{path}: no such file or directory",
                        idx + 1
                    ));
                }
            }
        }
        let mut inline = false;
        if let Some(t) = src.pointer("/helm/values").and_then(Value::as_str).filter(|t| !t.trim().is_empty()) {
            if let Ok(v) = o::yaml_to_json(t)
                && v.is_object()
            {
                merge(&mut merged, &v);
            }
            inline = true;
        }
        if let Some(v) = src.pointer("/helm/valuesObject").filter(|v| v.is_object()) {
            merge(&mut merged, v);
            inline = true;
        }
        // Lint what Helm sees: the file text as committed, or the merged values.
        let text = if !inline && text_parts.len() == 1 {
            text_parts.remove(0)
        } else {
            serde_saphyr::to_string(&merged).unwrap_or_default()
        };
        let apis = &tctx.apis;
        let ctx = LintContext {
            chart_version: chart_version.clone(),
            api_versions: Some(apis.clone()),
            schedulable_nodes: Some(tctx.schedulable),
        };
        // Node-dependent agent failures (kube-proxy gone, port clashes) are decided per node by the
        // sim (cilium.rs); the linter judges the values alone, as if kube-proxy still ran.
        let opts = LintOptions {
            native_routing_cidr: Some("10.42.0.0/16".into()),
            kube_proxy_running: Some(true),
            direct_helm: false,
        };
        let findings = match lint::lint_values_with(&text, &ctx, &opts) {
            Ok(f) => f,
            Err(LintError::Syntax { line, message }) => {
                return Err(helm_failure(
                    idx,
                    total,
                    dest_ns,
                    &chart_version,
                    apis.len(),
                    &format!("failed to parse values: error converting YAML to JSON: yaml: line {line}: {message}"),
                ));
            }
        };
        let (render_fails, crash) = classify(&findings);
        if let Some(msg) = render_fails {
            return Err(helm_failure(idx, total, dest_ns, &chart_version, apis.len(), &msg));
        }
        let r = cilium::render(&merged, &chart_version, dest_ns, churn);
        Ok(Desired { objects: r.objects, crash, cilium: Some(r.config), ..Default::default() })
    }

    /// Objects tracked by each app (from the tracking annotation).
    fn tracked_index(&self) -> BTreeMap<String, Vec<(&'static registry::Resource, String, String)>> {
        let mut idx: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for (key, obj) in self.store.snapshot() {
            let t = annotation(&obj, TRACKING);
            if let Some((app, _)) = t.split_once(':')
                && let Some(r) = registry::find(key.resource)
            {
                idx.entry(app.to_string()).or_default().push((r, key.namespace.clone(), key.name.clone()));
            }
        }
        idx
    }

    pub(crate) fn argo_tick(&mut self) {
        let r = res(ids::APPLICATIONS);
        let (apps, _) = self.store.list(r, Some("argocd"));
        let names: BTreeSet<String> = apps.iter().map(|a| o::name(a).to_string()).collect();
        self.argo.apps.retain(|k, _| names.contains(k));
        let index = self.tracked_index();
        let ctx = self.tick_ctx();
        for app in apps {
            self.reconcile_app(&app, &index, &ctx);
        }
    }

    fn tick_ctx(&self) -> TickCtx {
        let (rss, _) = self.store.list(res(ids::REPLICASETS), None);
        let rs_owner: BTreeMap<&str, String> =
            rss.iter().filter_map(|r| o::controller_of(r).map(|c| (o::uid(r), c.uid))).collect();
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let mut crashing = BTreeMap::new();
        for p in &pods {
            let Some(msg) = p.pointer("/status/containerStatuses").and_then(Value::as_array).and_then(|cs| {
                cs.iter()
                    .find(|c| o::s(c, "/state/waiting/reason") == "CrashLoopBackOff")
                    .map(|c| o::s(c, "/state/waiting/message").to_string())
            }) else {
                continue;
            };
            if let Some(c) = o::controller_of(p) {
                let owner =
                    if c.kind == "ReplicaSet" { rs_owner.get(c.uid.as_str()).cloned().unwrap_or(c.uid) } else { c.uid };
                crashing.entry(owner).or_insert(msg);
            }
        }
        TickCtx { apis: self.api_versions(), schedulable: self.schedulable_nodes(), crashing }
    }

    fn reconcile_app(
        &mut self,
        app: &Value,
        index: &BTreeMap<String, Vec<(&'static registry::Resource, String, String)>>,
        ctx: &TickCtx,
    ) {
        let r = res(ids::APPLICATIONS);
        let name = o::name(app).to_string();
        let tracked = index.get(&name).cloned().unwrap_or_default();

        // Cascade delete through the resources finalizer.
        if o::is_terminating(app) {
            let finalizers: Vec<String> = app
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if finalizers.iter().any(|f| f.starts_with(RESOURCES_FINALIZER)) {
                for (rr, ns, n) in &tracked {
                    let _ = self.store.delete(rr, ns, n, None);
                }
                let remaining = tracked.iter().filter(|(rr, ns, n)| self.store.get(rr, ns, n).is_ok()).count();
                if remaining == 0 {
                    let _ = self.store.mutate(r, "argocd", &name, |a| {
                        if let Some(f) = a.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                            f.retain(|x| !x.as_str().unwrap_or_default().starts_with(RESOURCES_FINALIZER));
                        }
                        Ok(())
                    });
                    if name == "cilium-app" || tracked.iter().any(|(rr, _, n)| rr.kind == "DaemonSet" && n == "cilium")
                    {
                        self.cilium.applied = None;
                    }
                }
            }
            return;
        }

        let mut rt = match self.argo.apps.remove(&name) {
            Some(rt) => rt,
            None => {
                // What was last synced counts as attempted (Argo compares with the last sync's revision).
                let last = app
                    .pointer("/status/operationState/syncResult/revisions")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                    .or_else(|| {
                        app.pointer("/status/operationState/syncResult/revision")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    });
                AppRt { auto_attempted: last, ..Default::default() }
            }
        };
        let refresh = annotation(app, REFRESH).to_string();
        if refresh == "hard" {
            rt.churn += 1;
            rt.cache = None;
        }
        let git_rev = self.git.head.as_ref().map(|h| h.rev.clone()).unwrap_or_default();
        let spec_key = serde_json::to_string(&app.get("spec")).unwrap_or_default();
        let cache_key = format!("{spec_key}|{git_rev}|{}|{}|{}", ctx.apis.join(","), ctx.schedulable, rt.churn);
        let desired = match &rt.cache {
            Some((k, d)) if *k == cache_key => d.clone(),
            _ => {
                if rt.cache.as_ref().is_some_and(|(k, _)| !k.contains(&format!("|{git_rev}|"))) {
                    rt.churn += 1;
                }
                let d = self.render_app(app, rt.churn, ctx);
                rt.cache = Some((cache_key.clone(), d.clone()));
                d
            }
        };

        // Start a requested operation.
        let mut op_state = app.pointer("/status/operationState").cloned();
        let mut clear_operation = false;
        if let Some(op) = app.get("operation").filter(|v| !v.is_null())
            && rt.op.is_none()
        {
            rt.op = Some(RunningOp {
                operation: op.clone(),
                started_str: self.now_str.clone(),
                finish_at: self.now + timing::ARGO_SYNC,
            });
            op_state = Some(json!({"operation": op, "phase": "Running", "message": "", "startedAt": self.now_str}));
            clear_operation = true;
        }
        // Terminate on request.
        if rt.op.is_some() && op_state.as_ref().is_some_and(|s| o::s(s, "/phase") == "Terminating") {
            if let Some(s) = op_state.as_mut() {
                s["phase"] = json!("Failed");
                s["message"] = json!("Operation terminated");
                s["finishedAt"] = json!(self.now_str);
            }
            rt.op = None;
            rt.last_sync_finished = self.now;
        }

        let mut history = app.pointer("/status/history").and_then(Value::as_array).cloned().unwrap_or_default();
        // Finish a running sync.
        if let Some(op) = rt.op.clone()
            && self.now >= op.finish_at
        {
            let (phase, message, result) = match &desired {
                Err(e) => ("Error", format!("ComparisonError: {e}"), None),
                Ok(d) => self.sync_now(&name, app, d, &op.operation, &tracked),
            };
            let mut st = json!({"operation": op.operation, "phase": phase, "message": message, "startedAt": op.started_str, "finishedAt": self.now_str});
            if let Some(res) = result {
                st["syncResult"] = res;
            }
            if phase == "Succeeded"
                && let Ok(d) = &desired
            {
                let id = history.iter().filter_map(|h| o::i64_at(h, "/id")).max().map(|x| x + 1).unwrap_or(0);
                let mut h = json!({"id": id, "deployStartedAt": op.started_str, "deployedAt": self.now_str,
                                   "initiatedBy": op.operation.get("initiatedBy").cloned().unwrap_or(json!({}))});
                if d.multi {
                    h["revisions"] = json!(d.revisions);
                    h["sources"] = app.pointer("/spec/sources").cloned().unwrap_or(json!([]));
                } else {
                    h["revision"] = json!(d.revisions.first().cloned().unwrap_or_default());
                    h["source"] = app.pointer("/spec/source").cloned().unwrap_or(json!({}));
                }
                history.push(h);
                let limit = o::i64_at(app, "/spec/revisionHistoryLimit").unwrap_or(10).max(1) as usize;
                if history.len() > limit {
                    history.drain(..history.len() - limit);
                }
                if let Some(c) = &d.cilium {
                    self.cilium.applied = Some(c.clone());
                    self.cilium.lint_crash = d.crash.clone();
                }
            }
            op_state = Some(st);
            rt.op = None;
            rt.last_sync_finished = self.now;
            if let Ok(d) = &desired {
                rt.auto_attempted = Some(d.revisions.join(","));
            }
        }

        // Compare.
        let live_app = self.store.get(r, "argocd", &name).ok();
        let (sync_status, resources, health, conditions, images, urls) = match &desired {
            Err(e) => {
                let old = app.pointer("/status/health/status").and_then(Value::as_str).unwrap_or("Healthy").to_string();
                (
                    "Unknown".to_string(),
                    app.pointer("/status/resources").and_then(Value::as_array).cloned().unwrap_or_default(),
                    old,
                    vec![("ComparisonError".to_string(), e.clone())],
                    vec![],
                    vec![],
                )
            }
            Ok(d) => {
                let (st, res_list, health) = self.compare(&name, d, &tracked, ctx);
                let mut images = BTreeSet::new();
                let mut urls = BTreeSet::new();
                for obj in &d.objects {
                    for p in ["/spec/template/spec/containers", "/spec/template/spec/initContainers"] {
                        for c in obj.pointer(p).and_then(Value::as_array).cloned().unwrap_or_default() {
                            images.insert(o::s(&c, "/image").to_string());
                        }
                    }
                    if o::s(obj, "/kind") == "Ingress" {
                        for rule in obj.pointer("/spec/rules").and_then(Value::as_array).cloned().unwrap_or_default() {
                            urls.insert(format!("https://{}/", o::s(&rule, "/host")));
                        }
                    }
                }
                (st, res_list, health, vec![], images.into_iter().collect(), urls.into_iter().collect())
            }
        };

        // Automated sync.
        let automated = app
            .pointer("/spec/syncPolicy/automated")
            .filter(|a| a.is_object() && a.get("enabled") != Some(&json!(false)))
            .cloned();
        if let (Some(auto), Ok(d), None) = (&automated, &desired, &rt.op)
            && sync_status == "OutOfSync"
        {
            let key = d.revisions.join(",");
            let self_heal = o::bool_at(auto, "/selfHeal");
            let first_for_rev = rt.auto_attempted.as_deref() != Some(key.as_str());
            let heal_due = self_heal && self.now >= rt.last_sync_finished + timing::ARGO_SELF_HEAL;
            let last_failed = op_state.as_ref().is_some_and(|s| matches!(o::s(s, "/phase"), "Failed" | "Error"));
            if first_for_rev || (heal_due && !last_failed) {
                let mut sync = json!({"prune": o::bool_at(auto, "/prune")});
                if d.multi {
                    sync["revisions"] = json!(d.revisions);
                } else {
                    sync["revision"] = json!(d.revisions.first().cloned().unwrap_or_default());
                }
                let operation = json!({"initiatedBy": {"automated": true}, "retry": {"limit": 5}, "sync": sync});
                rt.op = Some(RunningOp {
                    operation: operation.clone(),
                    started_str: self.now_str.clone(),
                    finish_at: self.now + timing::ARGO_SYNC,
                });
                rt.auto_attempted = Some(key);
                op_state =
                    Some(json!({"operation": operation, "phase": "Running", "message": "", "startedAt": self.now_str}));
            }
        }

        // Status.
        let revisions = match &desired {
            Ok(d) => d.revisions.clone(),
            Err(_) => app
                .pointer("/status/sync/revisions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        };
        let multi = sources(app).1;
        let mut sync = json!({"status": sync_status, "comparedTo": {"destination": app.pointer("/spec/destination").cloned().unwrap_or(json!({}))}});
        if multi {
            sync["comparedTo"]["sources"] = app.pointer("/spec/sources").cloned().unwrap_or(json!([]));
            if !revisions.is_empty() {
                sync["revisions"] = json!(revisions);
            }
        } else {
            sync["comparedTo"]["source"] = app.pointer("/spec/source").cloned().unwrap_or(json!({}));
            if let Some(rv) = revisions.first().filter(|r| !r.is_empty()) {
                sync["revision"] = json!(rv);
            } else if let Some(old) = app.pointer("/status/sync/revision") {
                sync["revision"] = old.clone();
            }
        }
        let old_health = app.pointer("/status/health").cloned().unwrap_or(json!({}));
        let health_obj = if o::s(&old_health, "/status") == health {
            old_health
        } else {
            json!({"status": health, "lastTransitionTime": self.now_str})
        };
        let old_conds = app.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let conds: Vec<Value> = conditions
            .iter()
            .map(|(t, m)| {
                let ltt = old_conds
                    .iter()
                    .find(|c| o::s(c, "/type") == t && o::s(c, "/message") == m)
                    .and_then(|c| c.get("lastTransitionTime").cloned())
                    .unwrap_or(json!(self.now_str));
                json!({"type": t, "message": m, "lastTransitionTime": ltt})
            })
            .collect();
        let source_types = match &desired {
            Ok(d) => d.source_types.clone(),
            Err(_) => vec![],
        };
        let mut status = Map::new();
        status.insert("sync".into(), sync);
        status.insert("health".into(), health_obj);
        status.insert("resources".into(), json!(resources));
        if !conds.is_empty() {
            status.insert("conditions".into(), json!(conds));
        }
        if let Some(s) = op_state {
            status.insert("operationState".into(), s);
        }
        if !history.is_empty() {
            status.insert("history".into(), json!(history));
        }
        status.insert("controllerNamespace".into(), json!("argocd"));
        if !self.scenario.argocd_persist_resource_health {
            status.insert("resourceHealthSource".into(), json!("appTree"));
        }
        if multi {
            status
                .insert("sourceTypes".into(), json!(source_types.iter().filter(|t| !t.is_empty()).collect::<Vec<_>>()));
        } else if let Some(t) = source_types.first() {
            status.insert("sourceType".into(), json!(t));
        }
        let mut summary = json!({});
        if !images.is_empty() {
            summary["images"] = json!(images);
        }
        if !urls.is_empty() {
            summary["externalURLs"] = json!(urls);
        }
        status.insert("summary".into(), summary);
        let old_reconciled = app.pointer("/status/reconciledAt").cloned();
        if let Some(rc) = &old_reconciled {
            status.insert("reconciledAt".into(), rc.clone());
        }
        let mut status = Value::Object(status);
        let periodic = self.now - rt.last_reconcile >= timing::ARGO_RECONCILE;
        let reconcile_key = format!("{git_rev}|{spec_key}");
        let changed = live_app.as_ref().and_then(|a| a.get("status")) != Some(&status);
        let due = periodic
            || !refresh.is_empty()
            || rt.reconciled_key != reconcile_key
            || old_reconciled.is_none()
            || changed;
        if due {
            status["reconciledAt"] = json!(self.now_str);
            rt.last_reconcile = self.now;
            rt.reconciled_key = reconcile_key;
        }
        if changed || due || clear_operation || !refresh.is_empty() {
            let _ = self.store.mutate(r, "argocd", &name, |a| {
                a["status"] = status.clone();
                if clear_operation && let Some(m) = a.as_object_mut() {
                    m.remove("operation");
                }
                if !refresh.is_empty()
                    && let Some(ann) = a.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut)
                {
                    ann.remove(REFRESH);
                }
                Ok(())
            });
        }
        self.argo.apps.insert(name, rt);
    }

    /// Sync status, per-resource entries and app health.
    fn compare(
        &self,
        app: &str,
        d: &Desired,
        tracked: &[(&'static registry::Resource, String, String)],
        ctx: &TickCtx,
    ) -> (String, Vec<Value>, String) {
        let mut entries: Vec<(String, String, String, String, Value)> = Vec::new();
        let mut out_of_sync = false;
        let mut health = "Healthy".to_string();
        let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
        let persist = self.scenario.argocd_persist_resource_health;
        for obj in &d.objects {
            let (g, v) = group_version(obj);
            let kind = o::s(obj, "/kind").to_string();
            let ns = o::namespace(obj).to_string();
            let nm = o::name(obj).to_string();
            let mut e = json!({"version": v, "kind": kind, "name": nm});
            if !g.is_empty() {
                e["group"] = json!(g);
            }
            if !ns.is_empty() {
                e["namespace"] = json!(ns);
            }
            let live = registry::by_kind(o::s(obj, "/apiVersion"), &kind).and_then(|r| {
                seen.insert((r.id.to_string(), ns.clone(), nm.clone()));
                self.store.get(r, &ns, &nm).ok()
            });
            let synced = live.as_ref().is_some_and(|l| in_sync(obj, l));
            if !synced {
                out_of_sync = true;
            }
            e["status"] = json!(if synced { "Synced" } else { "OutOfSync" });
            let h = match &live {
                None => Some(("Missing".to_string(), String::new())),
                Some(l) if kind != "Application" => resource_health(l, ctx),
                Some(_) => None,
            };
            if let Some((hs, hm)) = h {
                if health_rank(&hs) > health_rank(&health) {
                    health = hs.clone();
                }
                if persist {
                    e["health"] =
                        if hm.is_empty() { json!({"status": hs}) } else { json!({"status": hs, "message": hm}) };
                }
            }
            entries.push((g, kind, ns, nm, e));
        }
        for (r, ns, nm) in tracked {
            if seen.contains(&(r.id.to_string(), ns.clone(), nm.clone())) {
                continue;
            }
            let Ok(live) = self.store.get(r, ns, nm) else { continue };
            // Objects the app owns (tracking id) but git no longer has.
            let t = annotation(&live, TRACKING);
            if !t.starts_with(&format!("{app}:")) {
                continue;
            }
            out_of_sync = true;
            let (g, v) = group_version(&live);
            let mut e =
                json!({"version": v, "kind": r.kind, "name": nm, "status": "OutOfSync", "requiresPruning": true});
            if !g.is_empty() {
                e["group"] = json!(g);
            }
            if !ns.is_empty() {
                e["namespace"] = json!(ns);
            }
            entries.push((g, r.kind.to_string(), ns.clone(), nm.clone(), e));
        }
        entries.sort_by(|a, b| (&a.0, &a.1, &a.2, &a.3).cmp(&(&b.0, &b.1, &b.2, &b.3)));
        let status = if out_of_sync { "OutOfSync" } else { "Synced" };
        (status.into(), entries.into_iter().map(|e| e.4).collect(), health)
    }

    /// Applies the desired objects (and prunes when asked). Returns phase, message, syncResult.
    fn sync_now(
        &mut self,
        app_name: &str,
        app: &Value,
        d: &Desired,
        operation: &Value,
        tracked: &[(&'static registry::Resource, String, String)],
    ) -> (&'static str, String, Option<Value>) {
        let prune = o::bool_at(operation, "/sync/prune");
        let dry = o::bool_at(operation, "/sync/dryRun");
        let subset: Vec<Value> =
            operation.pointer("/sync/resources").and_then(Value::as_array).cloned().unwrap_or_default();
        let wanted = |obj: &Value| {
            subset.is_empty()
                || subset.iter().any(|s| {
                    o::s(s, "/kind") == o::s(obj, "/kind")
                        && o::s(s, "/name") == o::name(obj)
                        && (o::s(s, "/namespace").is_empty() || o::s(s, "/namespace") == o::namespace(obj))
                })
        };
        let mut opts: Vec<String> = Vec::new();
        for p in ["/spec/syncPolicy/syncOptions", "/sync/syncOptions"] {
            let src = if p.starts_with("/spec") { app } else { operation };
            for x in src.pointer(p).and_then(Value::as_array).cloned().unwrap_or_default() {
                if let Some(s) = x.as_str() {
                    opts.push(s.to_string());
                }
            }
        }
        let dest_ns = o::s(app, "/spec/destination/namespace").to_string();
        let mut results = Vec::new();
        let mut failed = Vec::new();
        if opts.iter().any(|x| x == "CreateNamespace=true")
            && !dest_ns.is_empty()
            && self.store.get(res(ids::NAMESPACES), "", &dest_ns).is_err()
            && !dry
        {
            let _ = self.store.create(
                res(ids::NAMESPACES),
                "",
                json!({"metadata": {"name": dest_ns, "labels": {"kubernetes.io/metadata.name": dest_ns}}}),
            );
        }
        let mut objs: Vec<&Value> = d.objects.iter().filter(|x| wanted(x)).collect();
        objs.sort_by_key(|x| apply_order(o::s(x, "/kind")));
        let mut applied: BTreeSet<(String, String, String)> = BTreeSet::new();
        for obj in objs {
            let (g, v) = group_version(obj);
            let kind = o::s(obj, "/kind").to_string();
            let (ns, nm) = (o::namespace(obj).to_string(), o::name(obj).to_string());
            let lower =
                format!("{}{}", kind.to_lowercase(), if g.is_empty() { String::new() } else { format!(".{g}") });
            let mut e = json!({"group": g, "version": v, "kind": kind, "namespace": if ns.is_empty() { dest_ns.clone() } else { ns.clone() }, "name": nm, "hookPhase": "Running", "syncPhase": "Sync"});
            let Some(r) = registry::by_kind(o::s(obj, "/apiVersion"), &kind) else {
                let m = format!(
                    "The Kubernetes API could not find {g}/{kind} for requested resource {ns}/{nm}. Make sure the \"{kind}\" CRD is installed on the destination cluster."
                );
                e["status"] = json!("SyncFailed");
                e["message"] = json!(m);
                failed.push(m);
                results.push(e);
                continue;
            };
            if r.crd && self.store.get(res(ids::CRDS), "", &r.crd_name()).is_err() {
                let m = format!(
                    "The Kubernetes API could not find {}/{kind} for requested resource {ns}/{nm}. Make sure the \"{kind}\" CRD is installed on the destination cluster.",
                    r.group
                );
                e["status"] = json!("SyncFailed");
                e["message"] = json!(m);
                failed.push(m);
                results.push(e);
                continue;
            }
            applied.insert((r.id.to_string(), ns.clone(), nm.clone()));
            let message = match self.store.get(r, &ns, &nm) {
                Ok(live) if in_sync(obj, &live) => format!("{lower}/{nm} unchanged"),
                Ok(_) if dry => format!("{lower}/{nm} configured (dry run)"),
                Ok(_) => {
                    let desired = obj.clone();
                    match self.store.mutate(r, &ns, &nm, |l| {
                        let Some(dm) = desired.as_object() else { return Ok(()) };
                        for f in ["labels", "annotations"] {
                            if let Some(want) = dm.get("metadata").and_then(|m| m.get(f)).and_then(Value::as_object) {
                                let m = o::meta_map_mut(l, f);
                                for (a, b) in want {
                                    m.insert(a.clone(), b.clone());
                                }
                            }
                        }
                        if let Some(lm) = l.as_object_mut() {
                            for (k, v) in dm {
                                match k.as_str() {
                                    "apiVersion" | "kind" | "status" | "metadata" => {}
                                    "data" | "stringData" | "rules" | "subjects" | "roleRef" => {
                                        lm.insert(k.clone(), v.clone());
                                    }
                                    _ => match lm.get_mut(k) {
                                        Some(lv) => merge(lv, v),
                                        None => {
                                            lm.insert(k.clone(), v.clone());
                                        }
                                    },
                                }
                            }
                        }
                        Ok(())
                    }) {
                        Ok(_) => format!("{lower}/{nm} configured"),
                        Err(err) => {
                            failed.push(err.to_string());
                            e["status"] = json!("SyncFailed");
                            err.to_string()
                        }
                    }
                }
                Err(_) if dry => format!("{lower}/{nm} created (dry run)"),
                Err(_) => {
                    let mut c = obj.clone();
                    if let Some(m) = c.as_object_mut() {
                        m.remove("status");
                    }
                    match self.store.create(r, &ns, c) {
                        Ok(_) => format!("{lower}/{nm} created"),
                        Err(err) => {
                            failed.push(err.to_string());
                            e["status"] = json!("SyncFailed");
                            err.to_string()
                        }
                    }
                }
            };
            if e.get("status").is_none() {
                e["status"] = json!("Synced");
            }
            e["message"] = json!(message);
            results.push(e);
        }
        // Prune what git no longer has.
        if subset.is_empty() {
            for (r, ns, nm) in tracked {
                if applied.contains(&(r.id.to_string(), ns.clone(), nm.clone())) {
                    continue;
                }
                let Ok(live) = self.store.get(r, ns, nm) else { continue };
                if !annotation(&live, TRACKING).starts_with(&format!("{app_name}:")) {
                    continue;
                }
                let (g, v) = group_version(&live);
                let lower =
                    format!("{}{}", r.kind.to_lowercase(), if g.is_empty() { String::new() } else { format!(".{g}") });
                let mut e = json!({"group": g, "version": v, "kind": r.kind, "namespace": ns, "name": nm, "hookPhase": "Running", "syncPhase": "Sync"});
                if prune && !dry {
                    let _ = self.store.delete(r, ns, nm, None);
                    e["status"] = json!("Pruned");
                    e["message"] = json!("pruned");
                } else {
                    e["status"] = json!("PruneSkipped");
                    e["message"] = json!(format!("ignored (requires pruning) {lower}/{nm}"));
                }
                results.push(e);
            }
        }
        let mut result = json!({"resources": results});
        if d.multi {
            result["revisions"] = json!(d.revisions);
            result["sources"] = app.pointer("/spec/sources").cloned().unwrap_or(json!([]));
        } else {
            result["revision"] = json!(d.revisions.first().cloned().unwrap_or_default());
            result["source"] = app.pointer("/spec/source").cloned().unwrap_or(json!({}));
        }
        if failed.is_empty() {
            ("Succeeded", "successfully synced (all tasks run)".into(), Some(result))
        } else {
            ("Failed", format!("one or more objects failed to apply, reason: {}", failed.join("; ")), Some(result))
        }
    }
}

/// Health of one live resource, as Argo CD's built-in checks (None = no health check).
fn resource_health(obj: &Value, ctx: &TickCtx) -> Option<(String, String)> {
    let kind = o::s(obj, "/kind");
    let crashing = ctx.crashing.get(o::uid(obj)).cloned();
    let g = |p: &str| o::i64_at(obj, p).unwrap_or(0);
    match kind {
        "Deployment" => {
            if let Some(m) = crashing {
                return Some(("Degraded".into(), m));
            }
            let want = o::i64_at(obj, "/spec/replicas").unwrap_or(1);
            if g("/status/observedGeneration") < g("/metadata/generation") {
                return Some((
                    "Progressing".into(),
                    "Waiting for rollout to finish: observed deployment generation less than desired generation".into(),
                ));
            }
            if g("/status/updatedReplicas") < want {
                return Some((
                    "Progressing".into(),
                    format!(
                        "Waiting for rollout to finish: {} out of {want} new replicas have been updated...",
                        g("/status/updatedReplicas")
                    ),
                ));
            }
            if g("/status/replicas") > g("/status/updatedReplicas") {
                return Some((
                    "Progressing".into(),
                    format!(
                        "Waiting for rollout to finish: {} old replicas are pending termination...",
                        g("/status/replicas") - g("/status/updatedReplicas")
                    ),
                ));
            }
            if g("/status/availableReplicas") < g("/status/updatedReplicas") {
                return Some((
                    "Progressing".into(),
                    format!(
                        "Waiting for rollout to finish: {} of {} updated replicas are available...",
                        g("/status/availableReplicas"),
                        g("/status/updatedReplicas")
                    ),
                ));
            }
            Some(("Healthy".into(), String::new()))
        }
        "DaemonSet" | "StatefulSet" => {
            if let Some(m) = crashing {
                return Some(("Degraded".into(), m));
            }
            if kind == "DaemonSet" {
                let desired = g("/status/desiredNumberScheduled");
                if g("/status/observedGeneration") < g("/metadata/generation") {
                    return Some((
                        "Progressing".into(),
                        "Waiting for rollout to finish: observed daemon set generation less than desired generation"
                            .into(),
                    ));
                }
                if g("/status/updatedNumberScheduled") < desired {
                    return Some((
                        "Progressing".into(),
                        format!(
                            "Waiting for daemon set \"{}\" rollout to finish: {} out of {desired} new pods have been updated...",
                            o::name(obj),
                            g("/status/updatedNumberScheduled")
                        ),
                    ));
                }
                if g("/status/numberAvailable") < desired {
                    return Some((
                        "Progressing".into(),
                        format!(
                            "Waiting for daemon set \"{}\" rollout to finish: {} of {desired} updated pods are available...",
                            o::name(obj),
                            g("/status/numberAvailable")
                        ),
                    ));
                }
            } else {
                let want = o::i64_at(obj, "/spec/replicas").unwrap_or(1);
                if g("/status/readyReplicas") < want {
                    return Some((
                        "Progressing".into(),
                        format!("Waiting for {} pods to be ready...", want - g("/status/readyReplicas")),
                    ));
                }
            }
            Some(("Healthy".into(), String::new()))
        }
        "Service" => {
            if o::s(obj, "/spec/type") == "LoadBalancer" && obj.pointer("/status/loadBalancer/ingress/0").is_none() {
                return Some(("Progressing".into(), String::new()));
            }
            Some(("Healthy".into(), String::new()))
        }
        "PersistentVolumeClaim" => Some(if o::s(obj, "/status/phase") == "Bound" {
            ("Healthy".into(), String::new())
        } else {
            ("Progressing".into(), String::new())
        }),
        "Ingress" => Some(if obj.pointer("/status/loadBalancer/ingress/0").is_some() {
            ("Healthy".into(), String::new())
        } else {
            ("Progressing".into(), String::new())
        }),
        "Job" => Some(if obj.pointer("/status/succeeded").is_some() {
            ("Healthy".into(), "job completed".into())
        } else {
            ("Progressing".into(), String::new())
        }),
        "PodDisruptionBudget" | "CronJob" | "CustomResourceDefinition" => Some(("Healthy".into(), String::new())),
        _ => None,
    }
}

/// First RenderFails message (what `helm template` stops at) and first AgentCrash message.
pub fn classify(findings: &[Finding]) -> (Option<String>, Option<String>) {
    let render = findings.iter().find(|f| f.impact == Impact::RenderFails).map(|f| f.message.clone());
    let crash = findings.iter().find(|f| f.impact == Impact::AgentCrash).map(|f| f.message.clone());
    (render, crash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(impact: Impact, msg: &str) -> Finding {
        Finding { id: "x", key: "k".into(), line: Some(1), impact, message: msg.into(), fix: String::new() }
    }

    #[test]
    fn classify_findings() {
        let (r, c) = classify(&[
            f(Impact::Warning, "w"),
            f(Impact::AgentCrash, "crash"),
            f(Impact::RenderFails, "tunnel was deprecated"),
        ]);
        assert_eq!(r.as_deref(), Some("tunnel was deprecated"));
        assert_eq!(c.as_deref(), Some("crash"));
        assert_eq!(classify(&[f(Impact::Ignored, "i")]), (None, None));
    }

    #[test]
    fn sync_comparison() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}}, "data": {"k": "v"}});
        assert!(in_sync(&desired, &live));
        let live2 = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v", "extra": "1"}});
        assert!(!in_sync(&desired, &live2));
        let svc = json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        let live_svc = json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "10.43.1.1", "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert!(in_sync(&svc, &live_svc));
    }

    #[test]
    fn merges() {
        let mut a = json!({"a": {"b": 1, "c": [1]}, "d": 1});
        merge(&mut a, &json!({"a": {"c": [2]}, "e": 2}));
        assert_eq!(a, json!({"a": {"b": 1, "c": [2]}, "d": 1, "e": 2}));
    }
}
