//! Label selectors (string form from `?labelSelector=` and the JSON `LabelSelector` of PDBs) and
//! field selectors, with the fields the real server supports per resource.

use serde_json::{Map, Value};

use crate::sim::registry::Resource;

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let v = labels.and_then(|l| l.get(&self.key)).and_then(Value::as_str);
        match self.op {
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Eq | Op::In => v.is_some_and(|v| self.values.iter().any(|w| w == v)),
            Op::NotEq | Op::NotIn => v.is_none_or(|v| !self.values.iter().any(|w| w == v)),
            Op::Gt | Op::Lt => {
                let (Some(v), Some(w)) = (v.and_then(|v| v.parse::<i64>().ok()), self.values.first()) else {
                    return false;
                };
                let Ok(w) = w.parse::<i64>() else { return false };
                if self.op == Op::Gt { v > w } else { v < w }
            }
        }
    }
}

/// A conjunction of requirements; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.0.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn valid_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    });
    name_ok && prefix_ok
}

fn valid_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

fn bad(msg: String) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {msg}"))
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn req(key: &str, op: Op, values: Vec<String>) -> Result<Requirement, ApiError> {
    let key = key.trim();
    if !valid_key(key) {
        return Err(bad(format!(
            "key: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.'"
        )));
    }
    if let Some(v) = values.iter().find(|v| !valid_value(v)) {
        return Err(bad(format!(
            "values[0][{key}]: Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"
        )));
    }
    Ok(Requirement { key: key.to_string(), op, values })
}

/// Parses `?labelSelector=` syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`.
pub fn parse_labels(s: &str) -> Result<LabelSelector, ApiError> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Ok(LabelSelector(out));
    }
    for part in split_top(s) {
        let p = part.trim();
        if p.is_empty() {
            return Err(bad("found ',', expected: identifier".into()));
        }
        if let Some(k) = p.strip_prefix('!') {
            out.push(req(k, Op::DoesNotExist, vec![])?);
            continue;
        }
        if let Some(open) = p.find('(') {
            let close = p.rfind(')').filter(|c| *c > open && p[c + 1..].trim().is_empty());
            let Some(close) = close else { return Err(bad(format!("found '{p}', expected: ')'"))) };
            let head = p[..open].trim_end();
            let (key, op) = if let Some(k) = head.strip_suffix("notin") {
                (k, Op::NotIn)
            } else if let Some(k) = head.strip_suffix("in") {
                (k, Op::In)
            } else {
                return Err(bad(format!("found '{head}', expected: in, notin")));
            };
            if !key.ends_with(char::is_whitespace) {
                return Err(bad(format!("found '{head}', expected: in, notin")));
            }
            let values: Vec<String> =
                p[open + 1..close].split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
            if values.is_empty() {
                return Err(bad("for 'in', 'notin' operators, values set can't be empty".into()));
            }
            out.push(req(key, op, values)?);
            continue;
        }
        let ops: [(&str, Op); 5] = [("!=", Op::NotEq), ("==", Op::Eq), ("=", Op::Eq), (">", Op::Gt), ("<", Op::Lt)];
        match ops.iter().find_map(|(tok, op)| p.find(tok).map(|i| (i, tok.len(), *op))) {
            Some((i, len, op)) => {
                let value = p[i + len..].trim().to_string();
                if matches!(op, Op::Gt | Op::Lt) && value.parse::<i64>().is_err() {
                    return Err(bad(format!("for 'Gt', 'Lt' operators, the value must be an integer: {value}")));
                }
                out.push(req(&p[..i], op, vec![value])?)
            }
            None => out.push(req(p, Op::Exists, vec![])?),
        }
    }
    Ok(LabelSelector(out))
}

/// Converts a JSON `metav1.LabelSelector`. `null`/absent selects nothing (`None`); `{}` everything.
pub fn from_json(sel: Option<&Value>) -> Result<Option<LabelSelector>, String> {
    let Some(sel) = sel.filter(|v| !v.is_null()) else { return Ok(None) };
    let mut out = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            out.push(Requirement { key: k.clone(), op: Op::Eq, values: vec![v.as_str().unwrap_or("").to_string()] });
        }
    }
    for e in sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("").to_string();
        let values: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let op = match e.get("operator").and_then(Value::as_str) {
            Some("In") => Op::In,
            Some("NotIn") => Op::NotIn,
            Some("Exists") => Op::Exists,
            Some("DoesNotExist") => Op::DoesNotExist,
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        out.push(Requirement { key, op, values });
    }
    Ok(Some(LabelSelector(out)))
}

/// One `field=value` / `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldReq {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldReq>);

/// Field selectors the real server accepts per resource (besides metadata.name/namespace),
/// with their JSON pointer.
fn field_pointer(res: &Resource, field: &str) -> Option<&'static str> {
    Some(match (res.id, field) {
        (_, "metadata.name") => "/metadata/name",
        (_, "metadata.namespace") => "/metadata/namespace",
        ("pods", "spec.nodeName") => "/spec/nodeName",
        ("pods", "spec.restartPolicy") => "/spec/restartPolicy",
        ("pods", "spec.schedulerName") => "/spec/schedulerName",
        ("pods", "spec.serviceAccountName") => "/spec/serviceAccountName",
        ("pods", "spec.hostNetwork") => "/spec/hostNetwork",
        ("pods", "status.phase") => "/status/phase",
        ("pods", "status.podIP") => "/status/podIP",
        ("pods", "status.nominatedNodeName") => "/status/nominatedNodeName",
        ("nodes", "spec.unschedulable") => "/spec/unschedulable",
        ("namespaces", "status.phase") => "/status/phase",
        ("secrets", "type") => "/type",
        ("events", "involvedObject.kind") => "/involvedObject/kind",
        ("events", "involvedObject.namespace") => "/involvedObject/namespace",
        ("events", "involvedObject.name") => "/involvedObject/name",
        ("events", "involvedObject.uid") => "/involvedObject/uid",
        ("events", "reason") => "/reason",
        ("events", "type") => "/type",
        ("events", "source") => "/source/component",
        ("apps/replicasets", "status.replicas") => "/status/replicas",
        ("batch/jobs", "status.successful") => "/status/succeeded",
        _ => return None,
    })
}

fn field_value(obj: &Value, ptr: &str) -> String {
    match obj.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // Unset booleans read as false, like the typed structs the real server converts from.
        None | Some(Value::Null) if ptr.ends_with("hostNetwork") || ptr.ends_with("unschedulable") => "false".into(),
        _ => String::new(),
    }
}

/// Parses `?fieldSelector=`; unknown fields are 400 like the real server.
pub fn parse_fields(s: &str, res: &Resource) -> Result<FieldSelector, ApiError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, value, negate) = if let Some((f, v)) = part.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, v, false)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, v, false)
        } else {
            return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{part}'")));
        };
        let field = field.trim();
        if field_pointer(res, field).is_none() {
            let msg = if res.crd {
                format!("\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
            } else {
                format!("field label not supported: {field}")
            };
            return Err(ApiError::bad_request(msg));
        }
        out.push(FieldReq { field: field.to_string(), value: value.trim().to_string(), negate });
    }
    Ok(FieldSelector(out))
}

impl FieldSelector {
    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        self.0.iter().all(|f| {
            let actual = field_pointer(res, &f.field).map(|p| field_value(obj, p)).unwrap_or_default();
            (actual == f.value) != f.negate
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::registry;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "n", "labels": labels}, "spec": {"nodeName": "w1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selectors() {
        let p = pod(json!({"app": "web", "tier": "fe", "n": "5"}));
        let t = |s: &str| parse_labels(s).unwrap().matches(&p);
        assert!(t("app=web"));
        assert!(t("app==web,tier"));
        assert!(!t("app!=web"));
        assert!(t("app in (web, api),tier notin (db)"));
        assert!(!t("app notin (web)"));
        assert!(t("!missing"));
        assert!(!t("!app"));
        assert!(t("n>4") && !t("n<4"));
        assert!(t(""));
        assert!(parse_labels("app in (").is_err());
        assert!(parse_labels("a b c=d").is_err());
        assert!(parse_labels("app=we b").is_err());
        assert_eq!(parse_labels("x,").map_err(|e| e.code), Err(400));
    }

    #[test]
    fn json_selectors() {
        let p = pod(json!({"app": "web"}));
        let s = from_json(Some(
            &json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
        ));
        assert!(s.unwrap().unwrap().matches(&p));
        assert!(from_json(Some(&json!({}))).unwrap().unwrap().matches(&p), "empty selects all");
        assert!(from_json(None).unwrap().is_none(), "nil selects none");
    }

    #[test]
    fn field_selectors() {
        let pods = registry::find("pods").unwrap();
        let p = pod(json!({}));
        let t = |s: &str| parse_fields(s, pods).unwrap().matches(pods, &p);
        assert!(t("spec.nodeName=w1,status.phase!=Succeeded"));
        assert!(!t("spec.nodeName=w2"));
        assert!(t("metadata.namespace==n"));
        assert!(t("spec.hostNetwork=false"));
        assert_eq!(parse_fields("spec.bogus=1", pods).map_err(|e| e.code), Err(400));
        let apps = registry::find("argoproj.io/applications").unwrap();
        assert!(parse_fields("spec.project=x", apps).unwrap_err().message.contains("not a known field selector"));
    }
}
