//! The Flows pane's `/` prompt: a compact filter syntax that maps onto the same hubble filter
//! flags (and so the same `FlowFilter`s the relay evaluates), plus free text.
//!
//! ```text
//! ns:media verdict:dropped node:homelab-w1 port:53 proto:udp pod:jellyfin !ns:kube-system "tcp flags"
//! ```
//!
//! * `key:value` — one hubble filter flag (`ns:` = `--namespace`, `pod:` = `--pod`, …). Different
//!   keys AND together, the same key repeated ORs (hubble semantics; `pod:`, `ns:`, `ip:`,
//!   `label:`, `port:` … match the source *or* the destination).
//! * `!key:value` — `--not`: flows matching it are hidden.
//! * `word`, `"two words"` — case-insensitive text that must appear in the formatted line;
//!   `!word` must not appear.
//! * A value with spaces is quoted: `label:"app in (a, b)"`.

use std::fmt;

use crate::hubble::proto::flow::{Flow, FlowFilter};

use super::{CompiledRequest, FilterBuilder, FilterError};

/// Keys of the prompt syntax → hubble flag (or extra key) they stand for.
pub const QUERY_KEYS: &[(&str, &str)] = &[
    ("ns", "namespace"),
    ("namespace", "namespace"),
    ("from-ns", "from-namespace"),
    ("to-ns", "to-namespace"),
    ("pod", "pod"),
    ("from-pod", "from-pod"),
    ("to-pod", "to-pod"),
    ("label", "label"),
    ("l", "label"),
    ("from-label", "from-label"),
    ("to-label", "to-label"),
    ("svc", "service"),
    ("service", "service"),
    ("from-svc", "from-service"),
    ("to-svc", "to-service"),
    ("ip", "ip"),
    ("from-ip", "from-ip"),
    ("to-ip", "to-ip"),
    ("fqdn", "fqdn"),
    ("from-fqdn", "from-fqdn"),
    ("to-fqdn", "to-fqdn"),
    ("port", "port"),
    ("from-port", "from-port"),
    ("to-port", "to-port"),
    ("proto", "protocol"),
    ("protocol", "protocol"),
    ("verdict", "verdict"),
    ("reason", "drop-reason-desc"),
    ("type", "type"),
    ("node", "node-name"),
    ("id", "identity"),
    ("identity", "identity"),
    ("from-id", "from-identity"),
    ("to-id", "to-identity"),
    ("workload", "workload"),
    ("status", "http-status"),
    ("method", "http-method"),
    ("path", "http-path"),
    ("url", "http-url"),
    ("dns", "dns-query"),
    ("dir", "traffic-direction"),
    ("flags", "tcp-flags"),
    ("uuid", "uuid"),
    ("ipv", "ip-version"),
    ("reply", "reply"),
];

/// A prompt input that could not be used. `offset` is the character position of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub offset: usize,
    pub token: String,
    pub message: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.token.is_empty() {
            write!(f, "{} (at {})", self.message, self.offset + 1)
        } else {
            write!(f, "{:?} (at {}): {}", self.token, self.offset + 1, self.message)
        }
    }
}

impl std::error::Error for QueryError {}

/// A parsed and compiled prompt query.
#[derive(Debug, Clone, Default)]
pub struct CompiledQuery {
    /// The text as typed.
    pub source: String,
    /// Filters to send to the relay or to match locally.
    pub whitelist: Vec<FlowFilter>,
    pub blacklist: Vec<FlowFilter>,
    /// Text that must appear (lower case).
    pub include_text: Vec<String>,
    /// Text that must not appear (lower case).
    pub exclude_text: Vec<String>,
    request: CompiledRequest,
}

struct Token {
    offset: usize,
    raw: String,
    negated: bool,
    key: Option<String>,
    value: String,
}

impl CompiledQuery {
    /// Parses and compiles a prompt line. An empty line matches everything.
    pub fn parse(input: &str) -> Result<CompiledQuery, QueryError> {
        let tokens = tokenize(input)?;
        let mut builder = FilterBuilder::new();
        let mut include_text = Vec::new();
        let mut exclude_text = Vec::new();
        for t in &tokens {
            let err = |e: FilterError| QueryError { offset: t.offset, token: t.raw.clone(), message: e.to_string() };
            match &t.key {
                None => {
                    if t.value.is_empty() {
                        continue;
                    }
                    let text = t.value.to_lowercase();
                    if t.negated { exclude_text.push(text) } else { include_text.push(text) }
                }
                Some(key) => {
                    let Some((_, flag)) = QUERY_KEYS.iter().find(|(k, _)| k == key) else {
                        return Err(QueryError {
                            offset: t.offset,
                            token: t.raw.clone(),
                            message: format!(
                                "unknown filter key {key:?} (quote text that contains a colon); known keys: {}",
                                known_keys()
                            ),
                        });
                    };
                    if t.value.is_empty() {
                        return Err(QueryError {
                            offset: t.offset,
                            token: t.raw.clone(),
                            message: format!("{key}: needs a value"),
                        });
                    }
                    if t.negated {
                        builder.not().map_err(err)?;
                    }
                    builder.set(flag, &normalize(flag, &t.value)).map_err(err)?;
                }
            }
        }
        let (whitelist, blacklist) =
            builder.build().map_err(|e| QueryError { offset: 0, token: String::new(), message: e.to_string() })?;
        let request = CompiledRequest::new(&whitelist, &blacklist).map_err(|e| QueryError {
            offset: 0,
            token: String::new(),
            message: e.to_string(),
        })?;
        Ok(CompiledQuery { source: input.to_string(), whitelist, blacklist, include_text, exclude_text, request })
    }

    /// Whether matching needs the formatted line (free text present).
    pub fn needs_line(&self) -> bool {
        !self.include_text.is_empty() || !self.exclude_text.is_empty()
    }

    /// Whether the query has no condition at all.
    pub fn is_empty(&self) -> bool {
        !self.needs_line() && self.request.is_empty()
    }

    /// The filter part only (what the relay can evaluate).
    pub fn matches_flow(&self, flow: &Flow) -> bool {
        self.request.matches(flow)
    }

    /// Filter part and free text; `line` is the flow's formatted line (compact or table text).
    pub fn matches(&self, flow: &Flow, line: &str) -> bool {
        self.matches_flow(flow) && self.matches_text(line)
    }

    /// The free-text part only (ASCII case-insensitive, no allocation).
    pub fn matches_text(&self, line: &str) -> bool {
        self.include_text.iter().all(|t| contains_ignore_ascii_case(line, t))
            && !self.exclude_text.iter().any(|t| contains_ignore_ascii_case(line, t))
    }
}

fn known_keys() -> String {
    let mut keys: Vec<&str> = QUERY_KEYS.iter().map(|(k, _)| *k).collect();
    keys.dedup();
    keys.join(", ")
}

/// Friendlier values for the prompt: verdicts and drop reasons in any case.
fn normalize(flag: &str, value: &str) -> String {
    match flag {
        "verdict" => value.to_ascii_uppercase(),
        "drop-reason-desc" => value.to_ascii_uppercase().replace('-', "_"),
        _ => value.to_string(),
    }
}

/// `needle` must already be lower case.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let h = haystack.as_bytes();
    let n = needle.as_bytes();
    if n.len() > h.len() {
        return false;
    }
    h.windows(n.len()).any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

fn tokenize(input: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<(usize, char)> = input.chars().enumerate().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].1.is_whitespace() {
            i += 1;
            continue;
        }
        let start = chars[i].0;
        let mut raw = String::new();
        let mut negated = false;
        if chars[i].1 == '!' {
            negated = true;
            raw.push('!');
            i += 1;
        }
        // Read the token: quoted sections may contain spaces.
        let mut text = String::new();
        let mut key: Option<String> = None;
        let mut quoted_any = false;
        while i < chars.len() && !chars[i].1.is_whitespace() {
            let c = chars[i].1;
            if c == '"' {
                quoted_any = true;
                raw.push(c);
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    let c = chars[i].1;
                    raw.push(c);
                    i += 1;
                    if c == '"' {
                        closed = true;
                        break;
                    }
                    text.push(c);
                }
                if !closed {
                    return Err(QueryError { offset: start, token: raw, message: "unterminated quote".into() });
                }
                continue;
            }
            if c == ':' && key.is_none() && !quoted_any && looks_like_key(&text) {
                key = Some(std::mem::take(&mut text));
                raw.push(c);
                i += 1;
                continue;
            }
            raw.push(c);
            text.push(c);
            i += 1;
        }
        tokens.push(Token { offset: start, raw, negated, key, value: text });
    }
    Ok(tokens)
}

/// A word before `:` is a key when it is made of lower-case letters and dashes; `10.0.0.1:53`
/// stays free text. (`http://x` is read as key `http` and rejected: quote text with colons.)
fn looks_like_key(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|c| c.is_ascii_lowercase() || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hubble::proto::flow::Verdict;

    #[test]
    fn parses_the_example() {
        let q = CompiledQuery::parse(
            "ns:media verdict:dropped node:homelab-w1 port:53 proto:udp pod:jellyfin !ns:kube-system",
        )
        .unwrap();
        assert_eq!(q.whitelist.len(), 2);
        assert_eq!(q.whitelist[0].source_pod, vec!["media/jellyfin"]);
        assert_eq!(q.whitelist[1].destination_pod, vec!["media/jellyfin"]);
        assert_eq!(q.whitelist[0].verdict, vec![Verdict::Dropped as i32]);
        assert_eq!(q.whitelist[0].node_name, vec!["homelab-w1"]);
        assert_eq!(q.whitelist[0].source_port, vec!["53"]);
        assert_eq!(q.whitelist[1].destination_port, vec!["53"]);
        assert_eq!(q.whitelist[0].protocol, vec!["udp"]);
        assert_eq!(q.blacklist.len(), 2);
        assert!(!q.needs_line());
    }

    #[test]
    fn free_text_and_quotes() {
        let q = CompiledQuery::parse(r#"coredns "tcp flags" !SYN label:"k8s:app in (a, b)""#).unwrap();
        assert_eq!(q.include_text, vec!["coredns", "tcp flags"]);
        assert_eq!(q.exclude_text, vec!["syn"]);
        assert_eq!(q.whitelist[0].source_label, vec!["k8s:app in (a, b)"]);
        assert!(q.matches_text("kube-system/CoreDNS-1 ... (TCP Flags: ACK)"));
        assert!(!q.matches_text("kube-system/coredns-1 ... (TCP Flags: SYN)"));
        let q = CompiledQuery::parse("10.0.0.1:53").unwrap();
        assert_eq!(q.include_text, vec!["10.0.0.1:53"]);
        assert!(CompiledQuery::parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_token() {
        let e = CompiledQuery::parse("ns:media nss:x").unwrap_err();
        assert_eq!(e.offset, 9);
        assert!(e.message.contains("unknown filter key"), "{e}");
        let e = CompiledQuery::parse("port:abc").unwrap_err();
        assert!(e.message.contains("invalid port"), "{e}");
        let e = CompiledQuery::parse("verdict:maybe").unwrap_err();
        assert!(e.to_string().contains("verdict:maybe"), "{e}");
        let e = CompiledQuery::parse("label:\"app").unwrap_err();
        assert_eq!(e.message, "unterminated quote");
        let e = CompiledQuery::parse("port:").unwrap_err();
        assert!(e.message.contains("needs a value"));
        let e = CompiledQuery::parse("label:a from-label:b").unwrap_err();
        assert!(e.message.contains("cannot be combined"), "{e}");
        let e = CompiledQuery::parse("dns:(").unwrap_err();
        assert!(e.message.contains("dns query"), "{e}");
    }
}
