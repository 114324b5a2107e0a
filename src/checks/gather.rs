//! Reads the cluster into a `ClusterSnapshot`. Every resource is listed on its own (concurrently);
//! a 403 or a missing API for one is recorded in its slot and the others go on.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::k3s;
use super::snapshot::{
    ACCESS_QUESTIONS, AccessDecision, AccessReview, ClusterSnapshot, FetchError, FetchErrorKind, Fetched,
};
use crate::manifests::render::RenderContext;
use crate::settings::Settings;

/// Per-request deadline: an unresponsive API becomes `unreachable`, never a hang.
const TIMEOUT: Duration = Duration::from_secs(30);

fn classify(resource: &str, e: kube::Error) -> FetchError {
    match e {
        kube::Error::Api(s) => {
            let kind = match s.code {
                401 | 403 => FetchErrorKind::Forbidden,
                404 => FetchErrorKind::NotFound,
                _ => FetchErrorKind::Other,
            };
            FetchError::new(resource, kind, s.message)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            FetchError::new(resource, FetchErrorKind::Unreachable, e.to_string())
        }
        other => FetchError::new(resource, FetchErrorKind::Other, other.to_string()),
    }
}

async fn timed<T, F>(resource: &str, f: F) -> Fetched<T>
where
    F: Future<Output = Result<T, kube::Error>>,
{
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| classify(resource, e)),
        Err(_) => Err(FetchError::new(
            resource,
            FetchErrorKind::Unreachable,
            format!("no answer within {}s", TIMEOUT.as_secs()),
        )),
    }
}

/// Lists every object of a typed resource across namespaces, without managedFields.
async fn list_all<K>(client: &Client, resource: &str) -> Fetched<Vec<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let list = timed(resource, api.list(&ListParams::default())).await?;
    Ok(list.items.into_iter().map(strip).collect())
}

async fn list_cluster<K>(client: &Client, resource: &str) -> Fetched<Vec<K>>
where
    K: Resource<Scope = k8s_openapi::ClusterResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let list = timed(resource, api.list(&ListParams::default())).await?;
    Ok(list.items.into_iter().map(strip).collect())
}

fn strip<K: Resource>(mut k: K) -> K {
    k.meta_mut().managed_fields = None;
    k
}

async fn dynamic(
    client: &Client,
    gvk: GroupVersionKind,
    plural: &str,
    namespace: Option<&str>,
) -> Fetched<Vec<serde_json::Value>> {
    let resource = format!("{plural}.{}", gvk.group);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let list = timed(&resource, api.list(&ListParams::default())).await?;
    Ok(list
        .items
        .into_iter()
        .map(|mut o| {
            o.metadata.managed_fields = None;
            serde_json::to_value(o).unwrap_or(serde_json::Value::Null)
        })
        .collect())
}

/// Served group/versions from discovery.
pub async fn api_versions(client: &Client) -> Fetched<Vec<String>> {
    let core = timed("discovery /api", client.list_core_api_versions()).await?;
    let groups = timed("discovery /apis", client.list_api_groups()).await?;
    let mut v = core.versions;
    for g in groups.groups {
        v.extend(g.versions.into_iter().map(|gv| gv.group_version));
    }
    Ok(v)
}

// A SelfSubjectAccessReview is a POST that changes nothing ("may I?"); the read-only layer lets
// it through by name, and it is sent through the read-only client.
#[allow(clippy::disallowed_methods)]
async fn review(client: &Client, settings: &Settings, q: &(&str, &str, &str, &str, bool, &str)) -> AccessReview {
    let (verb, group, resource, subresource, in_argo_ns, purpose) = *q;
    let namespace = in_argo_ns.then(|| settings.argo.namespace.clone());
    let ssar = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: (!subresource.is_empty()).then(|| subresource.into()),
                namespace: namespace.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let result = timed("selfsubjectaccessreviews.authorization.k8s.io", api.create(&PostParams::default(), &ssar))
        .await
        .map(|r| {
            let st = r.status.unwrap_or_default();
            let reason = [st.reason.unwrap_or_default(), st.evaluation_error.unwrap_or_default()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            AccessDecision { allowed: st.allowed && !st.denied.unwrap_or(false), reason }
        });
    AccessReview {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace,
        purpose: purpose.into(),
        result,
    }
}

/// Reads everything the checks need.
pub async fn gather(client: &Client, settings: &Settings) -> ClusterSnapshot {
    let argo_ns = settings.argo.namespace.as_str();
    let version = async { timed("version", client.apiserver_version()).await.map(|i| i.git_version) };
    let crds = async {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        timed("customresourcedefinitions.apiextensions.k8s.io", api.list_metadata(&ListParams::default()))
            .await
            .map(|l| l.items.into_iter().filter_map(|m| m.metadata.name).collect::<Vec<_>>())
    };
    let access = futures::future::join_all(ACCESS_QUESTIONS.iter().map(|q| review(client, settings, q)));
    let (server_version, api_versions, nodes, pods, daemonsets, deployments, pdbs, services, ingress_classes, crds) = tokio::join!(
        version,
        api_versions(client),
        list_cluster::<Node>(client, "nodes"),
        list_all::<Pod>(client, "pods"),
        list_all::<DaemonSet>(client, "daemonsets.apps"),
        list_all::<Deployment>(client, "deployments.apps"),
        list_all::<PodDisruptionBudget>(client, "poddisruptionbudgets.policy"),
        list_all::<Service>(client, "services"),
        list_cluster::<IngressClass>(client, "ingressclasses.networking.k8s.io"),
        crds,
    );
    let (applications, cluster_issuers, access) = tokio::join!(
        dynamic(client, GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"), "applications", Some(argo_ns)),
        dynamic(client, GroupVersionKind::gvk("cert-manager.io", "v1", "ClusterIssuer"), "clusterissuers", None),
        access,
    );
    ClusterSnapshot {
        server_version,
        api_versions,
        nodes,
        pods,
        daemonsets,
        deployments,
        pdbs,
        services,
        ingress_classes,
        crds,
        applications,
        cluster_issuers,
        access,
    }
}

/// What `cutover render --cluster` asks: API versions and nodes (failures leave fields unknown).
pub async fn render_context(client: &Client) -> RenderContext {
    let (versions, nodes) = tokio::join!(api_versions(client), list_cluster::<Node>(client, "nodes"));
    let mut ctx = RenderContext { api_versions: versions.ok(), ..Default::default() };
    if let Ok(nodes) = nodes {
        ctx.schedulable_nodes = Some(nodes.iter().filter(|n| k3s::is_schedulable(n)).count());
        let (servers, agents) = node_order(&nodes);
        ctx.servers = servers;
        ctx.agents = agents;
    }
    ctx
}

/// Servers (the `--cluster-init` one first, then by name), then agents by name.
pub fn node_order(nodes: &[Node]) -> (Vec<String>, Vec<String>) {
    let mut servers: Vec<(bool, String)> = Vec::new();
    let mut agents: Vec<String> = Vec::new();
    for n in nodes {
        let name = k3s::node_name(n).to_string();
        if k3s::is_server(n) {
            let init = matches!(k3s::node_args(n), Some(Ok(a)) if a.flags.contains_key("cluster-init"));
            servers.push((!init, name));
        } else {
            agents.push(name);
        }
    }
    servers.sort();
    agents.sort();
    (servers.into_iter().map(|(_, n)| n).collect(), agents)
}
