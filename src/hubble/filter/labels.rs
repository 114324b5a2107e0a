//! Label selectors as Hubble evaluates them on flow labels (`k8s:app=web`, `reserved:host`):
//! Kubernetes selector syntax (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
//! `a>1`, `a<2`, comma = AND) extended with Cilium label sources (`k8s:app=x`, `reserved:world`,
//! `any:app`). Matching never allocates.

use std::fmt;

/// A compiled selector: all requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    /// `None` = any source.
    source: Option<String>,
    key: String,
    op: Op,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    In,
    NotIn,
    Gt(i64),
    Lt(i64),
}

/// Why a selector did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(pub String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Selector {
    /// Parses a selector. The empty selector matches every label set (as Kubernetes').
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser { s: input.as_bytes(), i: 0, src: input };
        let mut reqs = Vec::new();
        p.ws();
        if p.eof() {
            return Ok(Selector { reqs });
        }
        loop {
            reqs.push(p.requirement()?);
            p.ws();
            if p.eof() {
                break;
            }
            if !p.eat(b',') {
                return Err(p.err("expected ',' between requirements"));
            }
        }
        Ok(Selector { reqs })
    }

    /// Whether the labels (`source:key=value` strings as in `Endpoint.labels`) satisfy the selector.
    pub fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        let found = self.lookup(labels);
        match self.op {
            Op::Exists => found.is_some(),
            Op::DoesNotExist => found.is_none(),
            Op::In => found.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotIn => found.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Gt(n) => found.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > n),
            Op::Lt(n) => found.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < n),
        }
    }

    /// The value of the first label with this key (and source, unless any), like Cilium's
    /// `LabelArray.Get`.
    fn lookup<'a, S: AsRef<str>>(&self, labels: &'a [S]) -> Option<&'a str> {
        labels.iter().find_map(|l| {
            let (src, key, value) = split_label(l.as_ref());
            let source_ok = match &self.source {
                None => true,
                Some(s) => s == src,
            };
            (source_ok && key == self.key).then_some(value)
        })
    }
}

/// Splits a Cilium label string `source:key=value` into its parts. A label without a source
/// before the `=` has source `unspec`; a label without `=` has an empty value.
pub fn split_label(label: &str) -> (&str, &str, &str) {
    let eq = label.find('=');
    let colon = label.find(':');
    let (source, rest) = match (colon, eq) {
        (Some(c), Some(e)) if c < e => (&label[..c], &label[c + 1..]),
        (Some(c), None) => (&label[..c], &label[c + 1..]),
        _ => ("unspec", label),
    };
    match rest.find('=') {
        Some(e) => (source, &rest[..e], &rest[e + 1..]),
        None => (source, rest, ""),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn err(&self, what: &str) -> SelectorError {
        SelectorError(format!("invalid label selector {:?}: {what} (at offset {})", self.src, self.i))
    }

    fn word(&mut self) -> &str {
        let start = self.i;
        while self.peek().is_some_and(|c| !c.is_ascii_whitespace() && !b"=!<>,()".contains(&c)) {
            self.i += 1;
        }
        &self.src[start..self.i]
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        self.ws();
        let negated = self.eat(b'!');
        self.ws();
        let raw_key = self.word().to_string();
        if raw_key.is_empty() {
            return Err(self.err("expected a label key"));
        }
        let (source, key) = split_selector_key(&raw_key);
        validate_key(&key).map_err(|e| self.err(&e))?;
        self.ws();
        if negated {
            if !(self.eof() || self.peek() == Some(b',')) {
                return Err(self.err("'!key' takes no operator"));
            }
            return Ok(Requirement { source, key, op: Op::DoesNotExist, values: Vec::new() });
        }
        let (op, values) = match self.peek() {
            None | Some(b',') => (Op::Exists, Vec::new()),
            Some(b'=') => {
                self.i += 1;
                self.eat(b'=');
                (Op::In, vec![self.value()?])
            }
            Some(b'!') => {
                self.i += 1;
                if !self.eat(b'=') {
                    return Err(self.err("expected '!='"));
                }
                (Op::NotIn, vec![self.value()?])
            }
            Some(b'>') | Some(b'<') => {
                let gt = self.peek() == Some(b'>');
                self.i += 1;
                let v = self.value()?;
                let n: i64 = v.parse().map_err(|_| self.err("'>' and '<' need an integer value"))?;
                (if gt { Op::Gt(n) } else { Op::Lt(n) }, Vec::new())
            }
            Some(_) => {
                let w = self.word().to_string();
                let op = match w.as_str() {
                    "in" => Op::In,
                    "notin" => Op::NotIn,
                    _ => return Err(self.err("expected an operator (=, ==, !=, in, notin, >, <)")),
                };
                (op, self.value_set()?)
            }
        };
        Ok(Requirement { source, key, op, values })
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        self.ws();
        let v = self.word().to_string();
        validate_value(&v).map_err(|e| self.err(&e))?;
        Ok(v)
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.ws();
        if !self.eat(b'(') {
            return Err(self.err("expected '(' after in/notin"));
        }
        let mut values = Vec::new();
        loop {
            values.push(self.value()?);
            self.ws();
            if self.eat(b')') {
                break;
            }
            if !self.eat(b',') {
                return Err(self.err("expected ',' or ')' in value set"));
            }
        }
        Ok(values)
    }
}

/// Splits a selector key into (source, key) as Cilium does: `src:key` (the user form), else the
/// part before the first `.` is taken as the source (Cilium's `k8s.foo` form). A selector key
/// `app.kubernetes.io/name` therefore only matches with an explicit `k8s:` prefix, exactly as in
/// Hubble.
fn split_selector_key(raw: &str) -> (Option<String>, String) {
    let (source, key) = if let Some((s, k)) = raw.split_once(':') {
        (s, k)
    } else if let Some((s, k)) = raw.split_once('.') {
        (s, k)
    } else {
        ("any", raw)
    };
    let source = if source == "any" || source.is_empty() { None } else { Some(source.to_string()) };
    (source, key.to_string())
}

fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty label key".into());
    }
    if key.len() > 317 {
        return Err("label key too long".into());
    }
    if !key.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_./".contains(&c)) {
        return Err(format!("invalid character in label key {key:?}"));
    }
    Ok(())
}

fn validate_value(v: &str) -> Result<(), String> {
    if v.len() > 63 {
        return Err(format!("label value {v:?} is longer than 63 characters"));
    }
    if !v.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)) {
        return Err(format!("invalid character in label value {v:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &[&str] = &[
        "k8s:app=web",
        "k8s:app.kubernetes.io/name=jellyfin",
        "k8s:io.kubernetes.pod.namespace=media",
        "k8s:tier=3",
        "container:app=other",
    ];

    fn m(sel: &str, labels: &[&str]) -> bool {
        Selector::parse(sel).unwrap_or_else(|e| panic!("{e}")).matches(labels)
    }

    #[test]
    fn equality_and_sources() {
        assert!(m("app=web", WEB));
        assert!(m("k8s:app=web", WEB));
        assert!(m("k8s:app==web", WEB));
        assert!(m("any:app=web", WEB));
        assert!(!m("k8s:app=other", WEB));
        assert!(m("container:app=other", WEB));
        assert!(!m("reserved:app=web", WEB));
        assert!(m("k8s:io.kubernetes.pod.namespace=media", WEB));
        assert!(m("k8s:app.kubernetes.io/name=jellyfin", WEB));
        // Cilium treats the part before the first dot as the source.
        assert!(!m("app.kubernetes.io/name=jellyfin", WEB));
        assert!(m("app!=db", WEB));
        assert!(!m("app!=web", WEB));
        assert!(m("missing!=x", WEB));
    }

    #[test]
    fn set_and_existence() {
        assert!(m("app in (db, web)", WEB));
        assert!(m("k8s:app in (web)", WEB));
        assert!(!m("app notin (web,db)", WEB));
        assert!(m("missing notin (x)", WEB));
        assert!(m("app", WEB));
        assert!(m("!missing", WEB));
        assert!(!m("!app", WEB));
        assert!(m("tier>2,tier<4", WEB));
        assert!(!m("tier>3", WEB));
        assert!(m("app=web, !missing, k8s:tier", WEB));
        assert!(m("", WEB));
        assert!(m("reserved:host", &["reserved:host"]));
        assert!(!m("reserved:world", &["reserved:host"]));
        assert!(m("host", &["reserved:host"]));
        assert!(!m("kubernetes.io/hostname=w1", &["kubernetes.io/hostname=w1"]));
        assert!(m("any:role=worker", &["role=worker"]));
    }

    #[test]
    fn errors() {
        for bad in ["app=", "=x", "app in web", "app in (a", "!app=x", "app=a b", "app ~ x", "tier>x", "a,,b"] {
            if bad == "app=" {
                // An empty value is allowed (label with empty value).
                assert!(Selector::parse(bad).is_ok());
                continue;
            }
            assert!(Selector::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn label_split() {
        assert_eq!(split_label("k8s:app=web"), ("k8s", "app", "web"));
        assert_eq!(split_label("reserved:host"), ("reserved", "host", ""));
        assert_eq!(split_label("role=a:b"), ("unspec", "role", "a:b"));
        assert_eq!(split_label("k8s:a=b=c"), ("k8s", "a", "b=c"));
    }
}
