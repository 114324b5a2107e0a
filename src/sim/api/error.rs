//! API errors as Kubernetes `Status` objects (`metav1.Status`), with the codes, reasons and
//! message shapes kube-apiserver uses.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use crate::sim::registry::Resource;
use crate::sim::store::StoreError;

/// An error answer: becomes a `Status` body with HTTP code `code`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `pods` for the core group, `deployments.apps` otherwise (as in real messages).
pub fn qualified(res: &Resource) -> String {
    if res.group.is_empty() { res.plural.to_string() } else { format!("{}.{}", res.plural, res.group) }
}

fn details(res: &Resource, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": res.plural});
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// Unknown path or resource (the apiserver's generic 404).
    pub fn no_route() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource").with_details(json!({}))
    }

    pub fn not_found(res: &Resource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(res))).with_details(details(res, name))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            .with_details(json!({}))
    }

    pub fn conflict(res: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(res)
            ),
        )
        .with_details(details(res, name))
    }

    pub fn invalid(res: &Resource, name: &str, message: &str) -> Self {
        let mut d = details(res, name);
        d["kind"] = json!(res.kind);
        d["causes"] = json!([{"reason": "FieldValueInvalid", "message": message}]);
        Self::new(422, "Invalid", format!("{} \"{name}\" is invalid: {message}", res.kind)).with_details(d)
    }

    pub fn too_large() -> Self {
        Self::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    }

    pub fn unsupported_media(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
            .with_details(json!({"causes": [{"message": "Internal error occurred (simulated)"}]}))
    }

    /// What kube-apiserver answers while the watch cache of a resource is (re)initializing (a
    /// CRD just created, a server just started): 429 with `retryAfterSeconds: 1`.
    pub fn storage_initializing() -> Self {
        Self::new(429, "TooManyRequests", "storage is (re)initializing").with_details(json!({"retryAfterSeconds": 1}))
    }

    pub fn unavailable() -> Self {
        Self::new(503, "ServiceUnavailable", "the server is currently unable to handle the request")
    }

    /// Maps a store error, with the resource's qualified name in the message like the real server.
    pub fn from_store(res: &Resource, err: StoreError) -> Self {
        match err {
            StoreError::NotFound { name, .. } => Self::not_found(res, &name),
            StoreError::AlreadyExists { name, .. } => {
                Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(res)))
                    .with_details(details(res, &name))
            }
            StoreError::Conflict { name, .. } => Self::conflict(res, &name),
            e @ StoreError::Gone { .. } => Self::new(410, "Expired", e.to_string()),
            StoreError::Invalid(msg) => {
                // The store's messages are field errors; the real server prefixes kind and name.
                Self::new(422, "Invalid", format!("{} is invalid: {msg}", res.kind)).with_details(
                    json!({"kind": res.kind, "causes": [{"reason": "FieldValueInvalid", "message": msg}]}),
                )
            }
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }

    pub fn into_response(self) -> Response<Body> {
        // As kube-apiserver: a `Retry-After` header only when the Status says retryAfterSeconds
        // (the eviction 429 has none; the storage 429 says 1).
        let retry_after = self.details.as_ref().and_then(|d| d.get("retryAfterSeconds")).and_then(Value::as_u64);
        let mut resp = json_response(self.code, &self.status());
        if let Some(secs) = retry_after.filter(|s| *s > 0) {
            resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A JSON response with the given HTTP code.
pub fn json_response(code: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A `Status` with `status: Success` (eviction, some deletes).
pub fn success_status(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::registry;

    #[test]
    fn messages_match_the_real_shapes() {
        let deploy = registry::find("apps/deployments").unwrap();
        let e = ApiError::not_found(deploy, "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        let s = e.status();
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["code"], 404);
        let pods = registry::find("pods").unwrap();
        assert_eq!(ApiError::conflict(pods, "a").code, 409);
        let gone = ApiError::from_store(pods, StoreError::Gone { requested: 3, oldest: 9 });
        assert_eq!(gone.status()["reason"], "Expired");
        assert_eq!(gone.message, "too old resource version: 3 (9)");
    }
}
