//! Reaching hubble-relay through the Kubernetes API (port-forward to a Ready pod behind Service
//! `hubble-relay`), for clusters where the relay is not exposed.
//!
//! The long-running flow source learns about the Service from a watch ([`watch_relay_service`]),
//! not by asking again at every reconnect: on a cluster without Hubble Relay, asking would be a
//! `GET services/hubble-relay` every few seconds for as long as the cockpit runs.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::watcher::{self, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::connect::{classify_transport, endpoint};
use super::{DEFAULT_RELAY_PORT, HubbleError, RELAY_SERVICE};
use crate::cluster::error_text::{kube_error_line, watcher_error_line};

/// Finds a Ready pod behind Service `hubble-relay` and the pod port its Service targets (one
/// `GET` of the Service: for one-shot use; the flow source watches it instead).
pub async fn find_relay_pod(client: &kube::Client, namespace: &str) -> Result<(String, u16), HubbleError> {
    let svcs: kube::api::Api<Service> = kube::api::Api::namespaced(client.clone(), namespace);
    let svc = match svcs.get_opt(RELAY_SERVICE).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(no_service(namespace)),
        Err(e) => {
            return Err(HubbleError::Kube(format!(
                "reading Service {namespace}/{RELAY_SERVICE}: {}",
                kube_error_line(&e)
            )));
        }
    };
    relay_pod_for(client, namespace, &svc).await
}

fn no_service(namespace: &str) -> HubbleError {
    HubbleError::Kube(format!(
        "no Service {RELAY_SERVICE} in namespace {namespace} (is Hubble Relay enabled? hubble.relay.enabled=true)"
    ))
}

/// A Ready pod behind `svc` (by its selector) and the pod port the Service targets.
pub async fn relay_pod_for(
    client: &kube::Client,
    namespace: &str,
    svc: &Service,
) -> Result<(String, u16), HubbleError> {
    use kube::api::{Api, ListParams};
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
        .map(|s| s.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        .unwrap_or_else(|| "k8s-app=hubble-relay".to_string());
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| HubbleError::Kube(format!("listing pods {selector} in {namespace}: {}", kube_error_line(&e))))?;
    let pod = pick_ready_pod(&list.items).ok_or_else(|| {
        HubbleError::Kube(format!("no Ready pod behind Service {namespace}/{RELAY_SERVICE} (selector {selector})"))
    })?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    Ok((name, target_port(svc, pod)))
}

/// What is known of Service `hubble-relay`, kept current by [`watch_relay_service`].
#[derive(Debug, Clone, Default, PartialEq)]
pub enum RelayService {
    /// Not listed yet.
    #[default]
    Unknown,
    /// Listed: there is no such Service (Hubble Relay not installed).
    Absent,
    Present(Box<Service>),
    /// The watch fails before anything was known (RBAC, API down): one readable line.
    Failed(String),
}

/// A watch on the one Service `hubble-relay` (field selector `metadata.name`), through the client
/// it was given (the cockpit's read-only one). The watch task ends when this is dropped.
pub struct RelayServiceWatch {
    rx: watch::Receiver<RelayService>,
    task: JoinHandle<()>,
}

impl Drop for RelayServiceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RelayServiceWatch {
    /// A receiver of every change.
    pub fn subscribe(&self) -> watch::Receiver<RelayService> {
        self.rx.clone()
    }
}

/// Starts watching Service `hubble-relay` in `namespace`: list once, then watch; on errors the
/// watch backs off and lists again (as the cockpit's other watches), keeping the last known
/// state.
pub fn watch_relay_service(client: kube::Client, namespace: &str) -> RelayServiceWatch {
    let (tx, rx) = watch::channel(RelayService::Unknown);
    let api: kube::api::Api<Service> = kube::api::Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={RELAY_SERVICE}"));
    let ns = namespace.to_string();
    let task = tokio::spawn(async move {
        let mut backoff = crate::cluster::watch::Backoff::default();
        loop {
            let mut stream = watcher(api.clone(), cfg.clone()).boxed();
            let mut listed: Option<Service> = None;
            let error = loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    () = tx.closed() => return,
                };
                match item {
                    None => break None,
                    Some(Ok(ev)) => {
                        if !matches!(ev, watcher::Event::Init) {
                            backoff.healthy();
                        }
                        match ev {
                            watcher::Event::Init => listed = None,
                            watcher::Event::InitApply(s) => listed = Some(s),
                            watcher::Event::InitDone => {
                                let now =
                                    listed.take().map_or(RelayService::Absent, |s| RelayService::Present(Box::new(s)));
                                tx.send_replace(now);
                            }
                            watcher::Event::Apply(s) => {
                                tx.send_replace(RelayService::Present(Box::new(s)));
                            }
                            watcher::Event::Delete(_) => {
                                tx.send_replace(RelayService::Absent);
                            }
                        }
                    }
                    Some(Err(e)) => break Some(e),
                }
            };
            if let Some(e) = error {
                let line = watcher_error_line(&e);
                tracing::debug!(namespace = %ns, error = %line, detail = ?e, "watch of Service hubble-relay failed; retrying");
                // What was known stays true until the watch says otherwise.
                tx.send_if_modified(|s| {
                    let replace = matches!(s, RelayService::Unknown | RelayService::Failed(_));
                    if replace {
                        *s = RelayService::Failed(format!("watching Service {ns}/{RELAY_SERVICE}: {line}"));
                    }
                    replace
                });
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.failed(None)) => {}
                () = tx.closed() => return,
            }
        }
    });
    RelayServiceWatch { rx, task }
}

/// How long a connect waits for the first answer of the Service watch.
const SERVICE_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The Service as the watch knows it now (waiting briefly for the first list).
async fn watched_service(rx: &mut watch::Receiver<RelayService>, namespace: &str) -> Result<Service, HubbleError> {
    let known = tokio::time::timeout(SERVICE_LIST_WAIT, rx.wait_for(|s| *s != RelayService::Unknown)).await;
    let state = match known {
        Ok(Ok(s)) => s.clone(),
        Ok(Err(_)) => RelayService::Failed(format!("the watch of Service {namespace}/{RELAY_SERVICE} stopped")),
        Err(_) => RelayService::Failed(format!(
            "Service {namespace}/{RELAY_SERVICE} not listed within {}s",
            SERVICE_LIST_WAIT.as_secs()
        )),
    };
    match state {
        RelayService::Present(s) => Ok(*s),
        RelayService::Absent => Err(no_service(namespace)),
        RelayService::Failed(m) => Err(HubbleError::Kube(m)),
        RelayService::Unknown => Err(HubbleError::Kube(format!("Service {namespace}/{RELAY_SERVICE} not listed yet"))),
    }
}

/// The first Running, Ready, not terminating pod (by name, for stable choices).
pub fn pick_ready_pod(pods: &[Pod]) -> Option<&Pod> {
    let mut ready: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    ready.into_iter().next()
}

/// The pod port the Service forwards to (named target ports looked up in the pod; default 4245).
pub fn target_port(svc: &Service, pod: &Pod) -> u16 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let port = ports.and_then(|p| p.iter().find(|p| p.name.as_deref() == Some("grpc")).or_else(|| p.first()));
    let Some(port) = port else { return DEFAULT_RELAY_PORT };
    match &port.target_port {
        Some(IntOrString::Int(n)) => u16::try_from(*n).unwrap_or(DEFAULT_RELAY_PORT),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .unwrap_or(DEFAULT_RELAY_PORT),
        None => u16::try_from(port.port).unwrap_or(DEFAULT_RELAY_PORT),
    }
}

/// Opens a channel to hubble-relay over Kubernetes port-forward streams. Each HTTP/2 connection
/// the channel makes (including reconnects) finds a Ready relay pod again and opens a new
/// port-forward, so a restarted relay pod is picked up. Reads the Service once per connection
/// (for one-shot use; see [`connect_via_kube_watched`]).
pub async fn connect_via_kube(client: kube::Client, namespace: &str) -> Result<Channel, HubbleError> {
    // Fail early with a clear message when there is no relay at all.
    find_relay_pod(&client, namespace).await?;
    let ns = namespace.to_string();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let (pod, port) = find_relay_pod(&client, &ns).await?;
            port_forward(client, &ns, pod, port).await
        }
    });
    connect_with(namespace, connector).await
}

/// [`connect_via_kube`] with the Service taken from a [`watch_relay_service`] watch: no request
/// for the Service at all, and "not installed" is known without asking.
pub async fn connect_via_kube_watched(
    client: kube::Client,
    namespace: &str,
    mut service: watch::Receiver<RelayService>,
) -> Result<Channel, HubbleError> {
    let svc = watched_service(&mut service, namespace).await?;
    relay_pod_for(&client, namespace, &svc).await?;
    let ns = namespace.to_string();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let client = client.clone();
        let ns = ns.clone();
        let mut service = service.clone();
        async move {
            let svc = watched_service(&mut service, &ns).await?;
            let (pod, port) = relay_pod_for(&client, &ns, &svc).await?;
            port_forward(client, &ns, pod, port).await
        }
    });
    connect_with(namespace, connector).await
}

async fn port_forward(
    client: kube::Client,
    ns: &str,
    pod: String,
    port: u16,
) -> Result<hyper_util::rt::TokioIo<tokio::io::DuplexStream>, HubbleError> {
    let api: kube::api::Api<Pod> = kube::api::Api::namespaced(client, ns);
    let mut pf = api
        .portforward(&pod, &[port])
        .await
        .map_err(|e| HubbleError::Kube(format!("port-forward to {ns}/{pod}:{port}: {}", kube_error_line(&e))))?;
    let stream = pf
        .take_stream(port)
        .ok_or_else(|| HubbleError::Kube(format!("port-forward to {ns}/{pod}:{port} gave no stream")))?;
    if let Some(err) = pf.take_error(port) {
        tokio::spawn(async move {
            if let Some(msg) = err.await {
                tracing::warn!(pod = %pod, port, error = %msg, "hubble-relay port-forward failed");
            }
        });
    }
    Ok(hyper_util::rt::TokioIo::new(stream))
}

async fn connect_with<C>(namespace: &str, connector: C) -> Result<Channel, HubbleError>
where
    C: tower::Service<http::Uri> + Send + 'static,
    C::Response: hyper::rt::Read + hyper::rt::Write + Send + Unpin,
    C::Future: Send,
    Box<dyn std::error::Error + Send + Sync>: From<C::Error> + Send,
{
    let ep = endpoint(format!("http://{RELAY_SERVICE}.{namespace}.svc:80"))?;
    let label = format!("port-forward {namespace}/{RELAY_SERVICE}");
    ep.connect_with_connector(connector).await.map_err(|e| classify_transport(&label, &e))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    fn pod(name: &str, phase: &str, ready: bool, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting.then_some(Time(jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "hubble-relay".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("grpc".into()),
                        container_port: 4245,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn picks_a_ready_relay_pod() {
        let pods = vec![
            pod("hubble-relay-a", "Pending", false, false),
            pod("hubble-relay-b", "Running", false, false),
            pod("hubble-relay-c", "Running", true, true),
            pod("hubble-relay-e", "Running", true, false),
            pod("hubble-relay-d", "Running", true, false),
        ];
        assert_eq!(pick_ready_pod(&pods).and_then(|p| p.metadata.name.as_deref()), Some("hubble-relay-d"));
        assert!(pick_ready_pod(&pods[..3]).is_none());
    }

    #[test]
    fn resolves_target_ports() {
        let svc = |target: Option<IntOrString>| Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("grpc".into()),
                    port: 80,
                    target_port: target,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = pod("r", "Running", true, false);
        assert_eq!(target_port(&svc(Some(IntOrString::Int(4245))), &p), 4245);
        assert_eq!(target_port(&svc(Some(IntOrString::String("grpc".into()))), &p), 4245);
        assert_eq!(target_port(&svc(Some(IntOrString::String("nope".into()))), &p), 4245);
        assert_eq!(target_port(&svc(None), &p), 80);
        assert_eq!(target_port(&Service::default(), &p), 4245);
    }
}
