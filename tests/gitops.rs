//! The cockpit's Git client against the sim's bare Git origin, with the real `git`: the Stage 1
//! files `cutover render` produces are committed in a clone, pushed, and the sim's Argo CD syncs
//! exactly that revision (the root app picks up `cilium-app.yaml`, the Cilium app ends Synced and
//! Healthy at the pushed commit).
#![cfg(feature = "sim")] // drives the simulated cluster

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use cutover::gitops::{Change, GitJournal, Repo, TRAILER_STAGE, TRAILER_STEP};
use cutover::manifests::render::{RenderContext, Stage, render};
use cutover::settings::Settings;
use cutover::sim::{Sim, SimOptions};
use cutover::tempdir::TempDir;

/// Generous: the machine may be loaded; every wait polls a condition.
const WAIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Recording(Mutex<Vec<String>>);

impl GitJournal for Recording {
    fn before(&self, action: &str, detail: &str) -> Result<(), String> {
        self.0.lock().expect("lock").push(format!("before {action} {detail}"));
        Ok(())
    }
    fn after(&self, action: &str, _detail: &str, ok: bool) {
        self.0.lock().expect("lock").push(format!("after {action} {ok}"));
    }
}

async fn client(sim: &Sim) -> kube::Client {
    let kc = Kubeconfig::read_from(&sim.kubeconfig).expect("kubeconfig");
    let opts = KubeConfigOptions { context: Some("sim".into()), ..Default::default() };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

async fn app(c: &kube::Client, name: &str) -> Option<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    Api::<DynamicObject>::namespaced_with(c.clone(), "argocd", &ar).get_opt(name).await.ok().flatten()
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_stage1_pushed_to_the_sim_origin_is_synced_by_its_argo_cd() {
    let sim = Sim::start(SimOptions { scenario: "fresh".into(), seed: 3, speed: 20.0, ..Default::default() })
        .await
        .expect("sim starts");
    let c = client(&sim).await;
    let info = sim.info();
    let origin = info.git_repo.clone().expect("the sim has an origin");
    assert_eq!(git(&origin, &["rev-parse", "--is-bare-repository"]), "true");
    assert_eq!(info.git_url.as_deref(), Some(format!("file://{}", origin.display()).as_str()));
    let seeded = git(&origin, &["rev-parse", "refs/heads/main"]);

    let tmp = TempDir::new().expect("temp dir");
    let clone = sim.clone_origin(&tmp.path.join("k8s-homelab")).expect("clones the origin");
    let mut settings = Settings::default();
    sim.point_settings_at(&mut settings, clone.clone());
    assert_eq!(settings.git.repo_path, clone);
    assert_eq!(settings.git.branch, "main");
    let files = render(Stage::One, &settings, &RenderContext::default()).expect("renders");

    let repo = Repo::open(&settings.git.repo_path, &settings.git.branch, "origin", false).await.expect("opens");
    let own: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let journal = Recording::default();
    let prepared = repo.prepare(&own, &journal).await.expect("a fresh clone is ready");
    assert_eq!((prepared.head.as_str(), prepared.behind), (seeded.as_str(), 0));
    let preview = repo.preview(&files).await.expect("preview");
    let app_path = format!("{}/cilium-app.yaml", settings.git.apps_path);
    let app_file = preview.files.iter().find(|f| f.path == app_path).expect("the app file is rendered");
    assert_eq!(app_file.change, Change::Created);

    let trailers = [(TRAILER_STEP, "stage1-commit"), (TRAILER_STAGE, "1")];
    let pushed = repo.commit_and_push(&files, "Stage 1: Cilium as the CNI", &trailers, &journal).await.expect("pushed");
    assert!(!pushed.unchanged, "{pushed:?}");
    assert_eq!(git(&origin, &["rev-parse", "refs/heads/main"]), pushed.commit);
    assert_eq!(git(&origin, &["rev-parse", "refs/heads/main~1"]), seeded);
    let log = journal.0.lock().expect("lock").clone();
    assert!(log.iter().any(|l| l == &format!("before push origin {}:refs/heads/main", pushed.commit)), "{log:?}");

    // The root app creates the Cilium Application from the pushed file; it syncs that revision.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = app(&c, &settings.argo.cilium_app).await;
        let (sync, health, revisions) = a.as_ref().map_or((String::new(), String::new(), Vec::new()), |a| {
            let s = |p: &str| a.data.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
            let revs: Vec<String> = a
                .data
                .pointer("/status/sync/revisions")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            (s("/status/sync/status"), s("/status/health/status"), revs)
        });
        if sync == "Synced" && health == "Healthy" && revisions.contains(&pushed.commit) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cilium-app Synced/Healthy at {}: now {sync:?}/{health:?} at {revisions:?}",
            pushed.commit
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Again: nothing new.
    let again = repo.commit_and_push(&files, "Stage 1: Cilium as the CNI", &trailers, &journal).await.expect("again");
    assert!(again.unchanged, "{again:?}");
    assert_eq!(git(&origin, &["rev-parse", "refs/heads/main"]), pushed.commit);
    let own = repo.find_own_commit("stage1-commit").await.expect("find").expect("found");
    assert_eq!((own.commit.as_str(), own.reverted_by.as_deref()), (pushed.commit.as_str(), None));

    // The file:// URL is what any git clones.
    let url = info.git_url.expect("url");
    git(&tmp.path, &["clone", "-q", &url, "second"]);
    assert_eq!(git(&tmp.path.join("second"), &["rev-parse", "HEAD"]), pushed.commit);
}
