//! Starts the simulated cluster for manual checks with kubectl: prints `sim.info()` as JSON and
//! the kubeconfig path, then serves until Ctrl-C.
//!
//! ```sh
//! cargo run --example sim_serve -- [--seed-demo] [--port 6443]
//! KUBECONFIG=<printed path> kubectl get nodes,pods -A   # the https kubeconfig (kubectl needs TLS)
//! ```
//!
//! `--seed-demo` creates a few nodes, pods, DaemonSets, a PDB and the Argo CD Application CRD plus
//! one Application through the API (as a client would), for trying kubectl against.
#![allow(clippy::disallowed_methods)] // tests drive the API directly to set up and check scenarios

use std::net::SocketAddr;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, eyre};
use cutover::sim::{Sim, SimOptions};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<()> {
    color_eyre::install()?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = SimOptions::default();
    if let Some(i) = args.iter().position(|a| a == "--port") {
        let port: u16 = args.get(i + 1).ok_or_else(|| eyre!("--port needs a value"))?.parse().wrap_err("--port")?;
        opts.api_listen = SocketAddr::from(([127, 0, 0, 1], port));
    }
    let sim = Sim::start(opts).await.wrap_err("starting the sim")?;
    println!("{}", serde_json::to_string(&sim.info())?);
    // kubectl sends tokens only over TLS: a second kubeconfig reaches the same port over https.
    let tls_kubeconfig = sim.kubeconfig.with_file_name("kubeconfig-tls");
    cutover::sim::api::tls::write_kubeconfig(&tls_kubeconfig, sim.api_addr, &sim.shared)
        .wrap_err("writing the TLS kubeconfig")?;
    println!("KUBECONFIG={}", tls_kubeconfig.display());
    if args.iter().any(|a| a == "--seed-demo") {
        seed(&sim).await.wrap_err("seeding demo objects")?;
        println!("seeded demo objects");
    }
    tokio::signal::ctrl_c().await.wrap_err("waiting for Ctrl-C")?;
    sim.stop();
    Ok(())
}

/// Creates objects through the HTTP API with the admin token (not through the store).
async fn seed(sim: &Sim) -> Result<()> {
    let kc = kube::config::Kubeconfig::read_from(&sim.kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(cfg)?;
    let post = |path: &'static str, body: Value| {
        let client = client.clone();
        async move {
            let req = http::Request::post(path)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body)?)?;
            match client.request_text(req).await {
                Ok(_) => Ok(()),
                // Already there (e.g. seeded by the world): fine.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(eyre!("POST {path}: {e}")),
            }
        }
    };
    for ns in ["kube-system", "argocd", "demo"] {
        post("/api/v1/namespaces", json!({"metadata": {"name": ns}})).await?;
    }
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    for (i, node) in ["homelab-cp1", "homelab-w1", "homelab-w2"].iter().enumerate() {
        let role = if i == 0 {
            json!({"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"})
        } else {
            json!({})
        };
        let mut labels = json!({"kubernetes.io/hostname": node, "kubernetes.io/os": "linux"});
        if let (Some(l), Some(r)) = (labels.as_object_mut(), role.as_object()) {
            l.extend(r.clone());
        }
        post("/api/v1/nodes", json!({"metadata": {"name": node, "labels": labels},
            "spec": {"podCIDR": format!("10.42.{i}.0/24")},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now, "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
                       "addresses": [{"type": "InternalIP", "address": format!("192.168.1.{}", 10 + i)}, {"type": "Hostname", "address": node}],
                       "nodeInfo": {"kubeletVersion": "v1.32.6+k3s1", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-37-amd64", "containerRuntimeVersion": "containerd://2.0.5-k3s1", "architecture": "amd64", "operatingSystem": "linux"}}})).await?;
    }
    post("/apis/apps/v1/namespaces/kube-system/daemonsets", json!({"metadata": {"name": "svclb-traefik"},
        "spec": {"selector": {"matchLabels": {"app": "svclb-traefik"}}, "template": {"metadata": {"labels": {"app": "svclb-traefik"}}, "spec": {"containers": [{"name": "lb", "image": "rancher/klipper-lb:v0.4.13"}]}}}})).await?;
    let mut n = 0;
    for node in ["homelab-cp1", "homelab-w1", "homelab-w2"] {
        n += 1;
        let ds_uid = ds_uid(&client).await?;
        pod(&client, "kube-system", &format!("svclb-traefik-{n}x7k2"), node, json!({"app": "svclb-traefik"}),
            json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "svclb-traefik", "uid": ds_uid, "controller": true}]), "rancher/klipper-lb:v0.4.13", false).await?;
    }
    pod(&client, "kube-system", "coredns-6799fbcd5-q2x8w", "homelab-cp1", json!({"k8s-app": "kube-dns"}),
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "coredns-6799fbcd5", "uid": "00000000-0000-4000-8000-000000000001", "controller": true}]), "rancher/mirrored-coredns-coredns:1.12.0", false).await?;
    for (i, node) in ["homelab-w1", "homelab-w1", "homelab-w2"].iter().enumerate() {
        pod(&client, "demo", &format!("web-5d9c7b-{i}"), node, json!({"app": "web"}),
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7b", "uid": "00000000-0000-4000-8000-000000000002", "controller": true}]), "nginx:1.27", true).await?;
    }
    post(
        "/apis/policy/v1/namespaces/demo/poddisruptionbudgets",
        json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}),
    )
    .await?;
    let status = json!({"status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3, "observedGeneration": 1}});
    patch_status(&client, "/apis/policy/v1/namespaces/demo/poddisruptionbudgets/web/status", status).await?;
    post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json!({"metadata": {"name": "applications.argoproj.io"},
        "spec": {"group": "argoproj.io", "scope": "Namespaced", "names": {"kind": "Application", "plural": "applications", "singular": "application", "shortNames": ["app", "apps"]},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                               "additionalPrinterColumns": [{"name": "Sync Status", "type": "string", "jsonPath": ".status.sync.status"}, {"name": "Health Status", "type": "string", "jsonPath": ".status.health.status"}]}]}})).await?;
    // The CRD is served as soon as its object exists.
    tokio::time::sleep(Duration::from_millis(50)).await;
    post("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications", json!({"metadata": {"name": "cilium"},
        "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": "kube-system"}},
        "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}})).await?;
    Ok(())
}

async fn ds_uid(client: &kube::Client) -> Result<String> {
    let req = http::Request::get("/apis/apps/v1/namespaces/kube-system/daemonsets/svclb-traefik").body(Vec::new())?;
    let v: Value = client.request(req).await?;
    Ok(v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string())
}

async fn patch_status(client: &kube::Client, path: &str, body: Value) -> Result<()> {
    let req = http::Request::patch(path)
        .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
        .body(serde_json::to_vec(&body)?)?;
    client.request_text(req).await.map_err(|e| eyre!("PATCH {path}: {e}"))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn pod(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node: &str,
    labels: Value,
    owners: Value,
    image: &str,
    empty_dir: bool,
) -> Result<()> {
    let mut spec = json!({"nodeName": node, "terminationGracePeriodSeconds": 30, "containers": [{"name": "main", "image": image}]});
    if empty_dir {
        spec["volumes"] = json!([{"name": "cache", "emptyDir": {}}]);
    }
    let body = json!({"metadata": {"name": name, "labels": labels, "ownerReferences": owners}, "spec": spec});
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body)?)?;
    match client.request_text(req).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => return Err(eyre!("creating pod {name}: {e}")),
    }
    let ip = format!("10.42.{}.{}", name.len() % 3, 10 + name.len());
    let status = json!({"status": {"phase": "Running", "podIP": ip, "hostIP": "192.168.1.10",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "image": image, "imageID": "", "started": true, "state": {"running": {"startedAt": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}}}]}});
    patch_status(client, &format!("/api/v1/namespaces/{ns}/pods/{name}/status"), status).await
}
