//! Just enough of Kubernetes' protobuf encoding to read the access reviews kubectl sends as
//! `application/vnd.kubernetes.protobuf` (`kubectl auth can-i`): the `k8s\0` envelope
//! (`runtime.Unknown`) around SelfSubjectAccessReview / SelfSubjectRulesReview. Answers are JSON,
//! which client-go accepts.

use prost::Message;
use serde_json::{Value, json};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct Review {
    #[prost(message, optional, tag = "2")]
    spec: Option<Spec>,
}

/// SelfSubjectAccessReviewSpec (fields 1, 2) and SelfSubjectRulesReviewSpec (field 1, a string)
/// share field numbers with different types, so each is decoded on its own.
#[derive(Clone, PartialEq, Message)]
struct Spec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Clone, PartialEq, Message)]
struct RulesReview {
    #[prost(message, optional, tag = "2")]
    spec: Option<RulesSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct RulesSpec {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceAttributes {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
    #[prost(string, optional, tag = "3")]
    group: Option<String>,
    #[prost(string, optional, tag = "4")]
    version: Option<String>,
    #[prost(string, optional, tag = "5")]
    resource: Option<String>,
    #[prost(string, optional, tag = "6")]
    subresource: Option<String>,
    #[prost(string, optional, tag = "7")]
    name: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct NonResourceAttributes {
    #[prost(string, optional, tag = "1")]
    path: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
}

fn raw(body: &[u8]) -> Result<Vec<u8>, String> {
    let inner = body.strip_prefix(MAGIC).ok_or("missing the k8s protobuf envelope")?;
    let unknown = Unknown::decode(inner).map_err(|e| e.to_string())?;
    Ok(unknown.raw.unwrap_or_default())
}

/// Decodes a protobuf access/rules review into the JSON the JSON path understands.
pub fn review_to_json(plural: &str, body: &[u8]) -> Result<Value, String> {
    let raw = raw(body)?;
    if plural == "selfsubjectrulesreviews" {
        let r = RulesReview::decode(raw.as_slice()).map_err(|e| e.to_string())?;
        return Ok(json!({"spec": {"namespace": r.spec.and_then(|s| s.namespace).unwrap_or_default()}}));
    }
    let r = Review::decode(raw.as_slice()).map_err(|e| e.to_string())?;
    let spec = r.spec.unwrap_or_default();
    let mut out = json!({});
    if let Some(ra) = spec.resource_attributes {
        out["resourceAttributes"] = json!({
            "namespace": ra.namespace, "verb": ra.verb, "group": ra.group, "version": ra.version,
            "resource": ra.resource, "subresource": ra.subresource, "name": ra.name,
        });
    }
    if let Some(nra) = spec.non_resource_attributes {
        out["nonResourceAttributes"] = json!({"path": nra.path, "verb": nra.verb});
    }
    Ok(json!({"spec": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_access_review() {
        let review = Review {
            spec: Some(Spec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("create".into()),
                    resource: Some("pods".into()),
                    subresource: Some("eviction".into()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
        };
        let mut body = MAGIC.to_vec();
        body.extend(Unknown { raw: Some(review.encode_to_vec()) }.encode_to_vec());
        let v = review_to_json("selfsubjectaccessreviews", &body).unwrap();
        assert_eq!(v["spec"]["resourceAttributes"]["subresource"], "eviction");
        assert!(review_to_json("selfsubjectaccessreviews", b"nope").is_err());
    }
}
