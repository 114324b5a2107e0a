//! Argo CD, through which the plan rolls Cilium out: installed, a root app that watches the apps
//! path and picks up the Cilium Application's file (see `glob`), and that Application's state.

use serde_json::Value;

use super::glob::glob_match;
use super::{Check, Status, check, deploy_ready, ns_name, unread};
use crate::checks::snapshot::{ClusterSnapshot, FetchErrorKind};
use crate::settings::Settings;

pub(super) fn argocd_installed(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("argocd-installed", "Argo CD installed");
    match &snap.applications {
        Ok(apps) => {
            let mut evidence = vec![format!("{} Application(s) in namespace {}", apps.len(), s.argo.namespace)];
            if let Ok(deps) = &snap.deployments {
                for d in deps.iter().filter(|d| d.metadata.namespace.as_deref() == Some(s.argo.namespace.as_str())) {
                    let (r, w) = deploy_ready(d);
                    evidence.push(format!("{}: {r}/{w} ready", ns_name(&d.metadata)));
                }
            }
            check(id, title, Status::Pass, evidence, "")
        }
        Err(e) if e.kind == FetchErrorKind::NotFound => check(
            id,
            title,
            Status::Fail,
            vec![format!("applications.argoproj.io is not served ({e})")],
            "install Argo CD first: the plan rolls Cilium out through it",
        ),
        Err(e) => unread(id, title, e),
    }
}

fn app_named<'a>(apps: &'a [Value], name: &str) -> Option<&'a Value> {
    apps.iter().find(|a| a.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
}

fn app_sources(app: &Value) -> Vec<&Value> {
    let mut v: Vec<&Value> =
        app.pointer("/spec/sources").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    if let Some(s) = app.pointer("/spec/source") {
        v.push(s);
    }
    v
}

fn norm_repo(u: &str) -> String {
    u.trim().trim_end_matches('/').trim_end_matches(".git").to_ascii_lowercase()
}

fn norm_path(p: &str) -> &str {
    p.trim().trim_start_matches("./").trim_matches('/')
}

pub(super) fn argo_root_app(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("argo-root-app", "Root app watches the apps path");
    let apps = match &snap.applications {
        Ok(a) => a,
        Err(e) if e.kind == FetchErrorKind::NotFound => {
            return check(id, title, Status::Fail, vec![e.to_string()], "install Argo CD and the root app first");
        }
        Err(e) => return unread(id, title, e),
    };
    let want_path = norm_path(&s.git.apps_path);
    let file = s.cilium_app_file();
    let Some(root) = app_named(apps, &s.argo.root_app) else {
        let watchers: Vec<String> = apps
            .iter()
            .filter(|a| {
                app_sources(a)
                    .iter()
                    .any(|src| src.get("path").and_then(Value::as_str).map(norm_path) == Some(want_path))
            })
            .filter_map(|a| a.pointer("/metadata/name").and_then(Value::as_str).map(String::from))
            .collect();
        let mut evidence = vec![format!("no Application {:?} in {}", s.argo.root_app, s.argo.namespace)];
        let action = if watchers.is_empty() {
            format!("create the root app watching {want_path}, or {file} is never picked up")
        } else {
            evidence.push(format!("watching {want_path}: {}", watchers.join(", ")));
            format!("set argo.root_app = {:?} in cutover.toml", watchers[0])
        };
        return check(id, title, Status::Fail, evidence, action);
    };
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    let mut actions: Vec<String> = Vec::new();
    let srcs = app_sources(root);
    let watching = srcs.iter().find(|src| src.get("path").and_then(Value::as_str).map(norm_path) == Some(want_path));
    match watching {
        None => {
            let paths: Vec<String> = srcs
                .iter()
                .map(|src| src.get("path").and_then(Value::as_str).unwrap_or("<no path>").to_string())
                .collect();
            evidence.push(format!("{} watches {}, not {want_path}", s.argo.root_app, paths.join(", ")));
            status = Status::Fail;
            actions.push(format!("point the root app at {want_path} or fix git.apps_path"));
        }
        Some(src) => {
            let repo = src.get("repoURL").and_then(Value::as_str).unwrap_or("");
            let rev = src.get("targetRevision").and_then(Value::as_str).unwrap_or("HEAD");
            evidence.push(format!("source {repo} @ {rev}, path {want_path}"));
            if norm_repo(repo) != norm_repo(&s.git.repo_url) {
                status = Status::Warn;
                evidence.push(format!(
                    "repoURL differs from git.repo_url {} ({})",
                    s.git.repo_url,
                    s.origin_of("git.repo_url")
                ));
                actions.push("check git.repo_url".into());
            }
            let include = src.pointer("/directory/include").and_then(Value::as_str).unwrap_or("");
            let exclude = src.pointer("/directory/exclude").and_then(Value::as_str).unwrap_or("");
            if !include.is_empty() {
                if glob_match(include, &file) {
                    evidence.push(format!("directory.include {include:?} matches {file}"));
                } else {
                    status = Status::Fail;
                    evidence.push(format!("directory.include {include:?} does NOT match {file}"));
                    actions.push(format!("name the file to match {include:?} (argo.cilium_app) or widen the include"));
                }
            }
            if !exclude.is_empty() && glob_match(exclude, &file) {
                status = Status::Fail;
                evidence.push(format!("directory.exclude {exclude:?} matches {file}"));
                actions.push("narrow the root app's exclude".into());
            }
        }
    }
    let automated = root.pointer("/spec/syncPolicy/automated").filter(|a| !a.is_null());
    let enabled = automated.is_some_and(|a| a.get("enabled").and_then(Value::as_bool) != Some(false));
    if enabled {
        let flag = |k: &str| automated.and_then(|a| a.get(k)).and_then(Value::as_bool).unwrap_or(false);
        evidence.push(format!("automated sync on (prune {}, selfHeal {})", flag("prune"), flag("selfHeal")));
        if flag("selfHeal") {
            evidence.push(format!(
                "selfHeal: a live change to {} (e.g. turning off its auto-sync for a rollback) is reverted from git \
                 within seconds: freeze the root first or make the change in git",
                s.argo.cilium_app
            ));
        }
        if flag("prune") {
            evidence.push(format!(
                "prune: removing {file} from git deletes {} and, through its finalizer, Cilium itself",
                s.argo.cilium_app
            ));
        }
    } else {
        status = status.max(Status::Warn);
        evidence.push("automated sync off: a commit to the apps path does nothing until the root is synced".into());
        actions.push(format!("sync {} by hand after each commit (or enable automated sync)", s.argo.root_app));
    }
    check(id, title, status, evidence, actions.join("; "))
}

pub(super) fn argo_cilium_app(snap: &ClusterSnapshot, s: &Settings) -> Check {
    let (id, title) = ("argo-cilium-app", "Cilium Application");
    let apps = match &snap.applications {
        Ok(a) => a,
        Err(e) => return unread(id, title, e),
    };
    let Some(app) = app_named(apps, &s.argo.cilium_app) else {
        return check(
            id,
            title,
            Status::Pass,
            vec![format!("{} does not exist yet: the Stage 1 commit creates it", s.argo.cilium_app)],
            "",
        );
    };
    let text = |p: &str| app.pointer(p).and_then(Value::as_str).unwrap_or("?").to_string();
    let mut evidence = vec![format!(
        "{}: sync {}, health {}",
        s.argo.cilium_app,
        text("/status/sync/status"),
        text("/status/health/status")
    )];
    let mut status = Status::Pass;
    let mut action = String::new();
    if let Some(chart) = app_sources(app).into_iter().find(|src| src.get("chart").is_some()) {
        let rev = chart.get("targetRevision").and_then(Value::as_str).unwrap_or("?");
        evidence.push(format!("chart {} {rev}", chart.get("chart").and_then(Value::as_str).unwrap_or("?")));
        if rev != s.cilium.chart_version {
            status = Status::Warn;
            action = format!("cutover.toml pins {}; render and commit to align", s.cilium.chart_version);
        }
    }
    for c in app.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten() {
        let t = c.get("type").and_then(Value::as_str).unwrap_or("");
        let m = c.get("message").and_then(Value::as_str).unwrap_or("");
        evidence.push(format!("condition {t}: {m}"));
        if t == "ComparisonError" || t == "InvalidSpecError" {
            status = Status::Fail;
            action = "the chart does not render: run `cutover lint` on the values file".into();
        }
    }
    check(id, title, status, evidence, action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::evaluate::evaluate;
    use crate::checks::evaluate::fixtures::*;

    #[test]
    fn root_app_include_that_misses_the_file() {
        let mut snap = fresh();
        snap.applications = Ok(vec![root_app("*-application.yaml", false)]);
        let c = evaluate(&snap, &Settings::default());
        let root = by_id(&c, "argo-root-app");
        assert_eq!(root.status, Status::Fail);
        assert!(ev(root).contains("does NOT match cilium-app.yaml"), "{root:?}");
    }
}
