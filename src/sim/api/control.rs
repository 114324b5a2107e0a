//! `/simulator/v1`: the sim-only control surface (admin token only): inject faults, run node
//! operations, read the request log.

use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::json;

use crate::sim::{Fault, Identity, world};

use super::error::{ApiError, json_response};
use super::{ApiState, read_body};

pub async fn handle(
    state: &Arc<ApiState>,
    req: Request<Incoming>,
    rest: &[String],
    identity: Identity,
) -> Result<Response<Body>, ApiError> {
    if identity != Identity::Admin {
        return Err(ApiError::new(403, "Forbidden", "the simulator control surface needs the admin token"));
    }
    let method = req.method().clone();
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (method, parts.as_slice()) {
        (Method::POST, ["faults"]) => {
            let body = read_body(req).await?;
            let fault: Fault =
                serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid fault: {e}")))?;
            state.shared.inject(&fault);
            Ok(json_response(200, &json!({"injected": fault})))
        }
        (Method::POST, ["nodes", node, "ops"]) => {
            let body = read_body(req).await?;
            let op: world::NodeOp =
                serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid node op: {e}")))?;
            match world::node_op(&state.shared, node, &op) {
                Ok(result) => Ok(json_response(200, &json!({"node": node, "result": result}))),
                Err(e) => Err(ApiError::new(422, "Invalid", e.to_string())),
            }
        }
        (Method::GET, ["requests"]) => Ok(json_response(200, &json!(state.shared.requests.all()))),
        (_, ["faults"] | ["requests"] | ["nodes", _, "ops"]) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::no_route()),
    }
}
