//! Reaching hubble-relay through the Kubernetes API (port-forward to a Ready pod behind Service
//! `hubble-relay`), for clusters where the relay is not exposed.

use k8s_openapi::api::core::v1::{Pod, Service};
use tonic::transport::Channel;

use super::connect::{classify_transport, endpoint};
use super::{DEFAULT_RELAY_PORT, HubbleError, RELAY_SERVICE};

/// Finds a Ready pod behind Service `hubble-relay` and the pod port its Service targets.
pub async fn find_relay_pod(client: &kube::Client, namespace: &str) -> Result<(String, u16), HubbleError> {
    use kube::api::{Api, ListParams};
    let svcs: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = match svcs.get_opt(RELAY_SERVICE).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(HubbleError::Kube(format!(
                "no Service {RELAY_SERVICE} in namespace {namespace} (is Hubble Relay enabled? hubble.relay.enabled=true)"
            )));
        }
        Err(e) => return Err(HubbleError::Kube(format!("reading Service {namespace}/{RELAY_SERVICE}: {e}"))),
    };
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
        .map_err(|e| HubbleError::Kube(format!("listing pods {selector} in {namespace}: {e}")))?;
    let pod = pick_ready_pod(&list.items).ok_or_else(|| {
        HubbleError::Kube(format!("no Ready pod behind Service {namespace}/{RELAY_SERVICE} (selector {selector})"))
    })?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    Ok((name, target_port(&svc, pod)))
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
/// port-forward, so a restarted relay pod is picked up.
pub async fn connect_via_kube(client: kube::Client, namespace: &str) -> Result<Channel, HubbleError> {
    // Fail early with a clear message when there is no relay at all.
    find_relay_pod(&client, namespace).await?;
    let ns = namespace.to_string();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let (pod, port) = find_relay_pod(&client, &ns).await?;
            let api: kube::api::Api<Pod> = kube::api::Api::namespaced(client, &ns);
            let mut pf = api
                .portforward(&pod, &[port])
                .await
                .map_err(|e| HubbleError::Kube(format!("port-forward to {ns}/{pod}:{port}: {e}")))?;
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
            Ok::<_, HubbleError>(hyper_util::rt::TokioIo::new(stream))
        }
    });
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
