//! One readable line for a Kubernetes client error, for the Events pane and the one-line CLI
//! messages: `429 TooManyRequests: storage is (re)initializing`, `tcp connect error: Connection
//! refused (os error 111)`.
//!
//! kube-rs's own `Display` for an API error appends the whole `Status` in debug form, which is
//! unreadable on an 80-column screen; the details belong in the log (tracing), not in the cockpit.

use std::error::Error as StdError;

use kube::core::Status;
use kube::runtime::watcher;

/// `<code> <reason>: <message>` of an API `Status` (parts the server left empty are left out).
pub fn status_line(s: &Status) -> String {
    let message = one_line(&s.message);
    let head = match (s.code, s.reason.is_empty()) {
        (0, true) => String::new(),
        (0, false) => s.reason.clone(),
        (code, true) => code.to_string(),
        (code, false) => format!("{code} {}", s.reason),
    };
    let line = match (head.is_empty(), message.is_empty()) {
        (true, true) => "the API server answered with an error and no message".to_string(),
        (true, false) => message,
        (false, true) => head,
        (false, false) => format!("{head}: {message}"),
    };
    super::client::redact(&line)
}

/// One line for any kube client error: the `Status` line for API errors, else the chain of
/// causes (`client error (Connect): tcp connect error: Connection refused (os error 111)`)
/// without kube's own `ServiceError:`/`HyperError:` prefixes.
pub fn kube_error_line(err: &kube::Error) -> String {
    let line = match err {
        kube::Error::Api(s) => return status_line(s),
        kube::Error::Service(e) => chain(e.as_ref()),
        kube::Error::HyperError(e) => chain(e),
        other => chain(other),
    };
    super::client::redact(&line)
}

/// One line for a watcher error (the stage — list, watch start, stream — goes to the log only).
pub fn watcher_error_line(err: &watcher::Error) -> String {
    match err {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            kube_error_line(e)
        }
        watcher::Error::WatchError(s) => status_line(s),
        watcher::Error::NoResourceVersion => err.to_string(),
    }
}

/// The API `Status` behind a watcher error, if the server answered with one.
pub fn watcher_status(err: &watcher::Error) -> Option<&Status> {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s),
        watcher::Error::WatchError(s) => Some(s),
        _ => None,
    }
}

/// Joins an error and its sources with `: `, skipping a cause whose text its parent already
/// contains (many errors repeat their source in their own message).
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = one_line(&e.to_string());
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Collapses newlines and runs of whitespace (Status messages may span lines).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        let mut s = Status::failure(message, reason);
        s.code = code;
        s
    }

    #[test]
    fn api_errors_are_one_line_without_debug_dumps() {
        let e = kube::Error::Api(Box::new(status(429, "TooManyRequests", "storage is (re)initializing")));
        assert!(e.to_string().contains("Status {"), "kube's own text is the debug dump: {e}");
        assert_eq!(kube_error_line(&e), "429 TooManyRequests: storage is (re)initializing");
        let w = watcher::Error::WatchStartFailed(e);
        assert_eq!(watcher_error_line(&w), "429 TooManyRequests: storage is (re)initializing");
        assert_eq!(watcher_status(&w).map(|s| s.code), Some(429));
        let gone = watcher::Error::WatchError(Box::new(status(410, "Expired", "too old resource version: 3 (9)")));
        assert_eq!(watcher_error_line(&gone), "410 Expired: too old resource version: 3 (9)");
        assert_eq!(status_line(&status(503, "", "")), "503");
        assert_eq!(status_line(&status(0, "", "line one\n  line two")), "line one line two");
    }

    #[test]
    fn transport_errors_name_their_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Connect(#[source] std::io::Error);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let e = kube::Error::Service(Box::new(Connect(io)));
        assert_eq!(kube_error_line(&e), "tcp connect error: Connection refused (os error 111)");
    }
}
