//! Watch streams: chunked newline-delimited `{"type":..,"object":..}` events, with the real
//! starting semantics (no/zero resourceVersion: synthetic ADDED of the current state; a given
//! resourceVersion: replay from history or a 410 ERROR event; `sendInitialEvents`: initial state
//! then a BOOKMARK annotated `k8s.io/initial-events-end`), periodic bookmarks, `timeoutSeconds`,
//! selector transitions (an object leaving a selector is DELETED for that watch), and faults
//! (CutWatches / API down end the stream).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::sim::registry::Resource;
use crate::sim::store::{EventType, StoreError, StoreEvent, WatchStart};

use super::error::ApiError;
use super::objects::{Filter, Output, partial};
use super::route::ObjectPath;
use super::{ApiState, BOOKMARK_EVERY, Query, table};

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    typ: &'a str,
    object: &'a Value,
}

fn line(typ: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&Event { typ, object }).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// How the stream starts.
enum Start {
    /// Synthetic ADDED for these, then live events after `rv`; `end_marker`: then a bookmark
    /// annotated `k8s.io/initial-events-end`.
    Initial { items: Vec<Arc<Value>>, rv: u64, end_marker: bool },
    /// Replay of history after the requested resourceVersion.
    Resume,
    /// The requested resourceVersion is compacted: one ERROR event, then the end.
    Gone(StoreError),
}

pub fn serve(state: &Arc<ApiState>, p: &ObjectPath, q: &Query, out: Output) -> Result<Response<Body>, ApiError> {
    let store = &state.shared.store;
    let filter = Filter::from_query(p, q)?;
    let rv = match q.get("resourceVersion").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            Some(s.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))?)
        }
    };
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    if send_initial && !bookmarks {
        return Err(ApiError::new(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Required value: allowWatchBookmarks must be set to true when sendInitialEvents is set",
        ));
    }
    let timeout = match q.get("timeoutSeconds") {
        Some(t) => Some(Duration::from_secs(
            t.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        )),
        None => None,
    };
    let initial_from_list = |ws: Result<WatchStart, StoreError>| -> Result<(Start, Option<WatchStart>), ApiError> {
        let ws = ws.map_err(|e| ApiError::from_store(p.res, e))?;
        let (all, rv) = store.list(p.res, filter.namespace.as_deref());
        let items = all.into_iter().filter(|o| filter.matches(p.res, o)).collect();
        Ok((Start::Initial { items, rv, end_marker: send_initial }, Some(ws)))
    };
    let (start, ws) = match rv {
        // No or zero resourceVersion: the current state first (subscribe before listing so that
        // nothing falls between the two; events already in the list are skipped by rv).
        None | Some(0) => initial_from_list(store.watch_from(None))?,
        Some(_) if send_initial => initial_from_list(store.watch_from(None))?,
        Some(n) => match store.watch_from(Some(n)) {
            Ok(ws) => (Start::Resume, Some(ws)),
            Err(e) => (Start::Gone(e), None),
        },
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    // A cut counts from the moment the request was accepted, as an apiserver restart would end
    // a connection still sending its initial events.
    let cut_generation = state.shared.faults.borrow().watch_cut_generation;
    let w = Watch {
        state: state.clone(),
        res: p.res,
        filter,
        out,
        bookmarks,
        known: HashSet::new(),
        table_columns_sent: false,
        tx,
        cut_generation,
    };
    tokio::spawn(w.run(start, ws, timeout));
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

struct Watch {
    state: Arc<ApiState>,
    res: &'static Resource,
    filter: Filter,
    out: Output,
    bookmarks: bool,
    /// (namespace, name) of objects this watch has reported as present (selector transitions).
    known: HashSet<(String, String)>,
    table_columns_sent: bool,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    /// `CutWatches` generation when the request was accepted: a later cut ends this watch.
    cut_generation: u64,
}

fn key(obj: &Value) -> (String, String) {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    (s("/metadata/namespace"), s("/metadata/name"))
}

impl Watch {
    async fn send_raw(&self, b: Bytes) -> bool {
        self.tx.send(Ok(b)).await.is_ok()
    }

    async fn send(&mut self, typ: &str, obj: &Value) -> bool {
        let rendered = match self.out {
            Output::Json => None,
            Output::Meta => Some(partial(obj)),
            Output::Table(inc) => {
                let first = !self.table_columns_sent;
                self.table_columns_sent = true;
                Some(table::table(&self.state.shared.store, self.res, &[Arc::new(obj.clone())], inc, first))
            }
        };
        self.send_raw(line(typ, rendered.as_ref().unwrap_or(obj))).await
    }

    async fn bookmark(&mut self, rv: u64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta});
        self.send_raw(line("BOOKMARK", &obj)).await
    }

    /// Sends what this event means for this watch. Returns false when the client is gone.
    async fn event(&mut self, ev: &StoreEvent) -> bool {
        if ev.resource != self.res.id {
            return true;
        }
        let obj = &ev.object;
        let now = self.filter.matches(self.res, obj);
        let typ = if !self.filter.selective() {
            now.then_some(ev.kind.as_str())
        } else {
            let k = key(obj);
            let was = self.known.contains(&k);
            match (ev.kind, was, now) {
                (EventType::Deleted, true, _) | (EventType::Deleted, false, true) => {
                    self.known.remove(&k);
                    Some("DELETED")
                }
                (EventType::Deleted, false, false) => None,
                (_, true, true) => Some("MODIFIED"),
                (_, false, true) => {
                    self.known.insert(k);
                    Some("ADDED")
                }
                (_, true, false) => {
                    self.known.remove(&k);
                    Some("DELETED")
                }
                (_, false, false) => None,
            }
        };
        match typ {
            Some(t) => self.send(t, obj).await,
            None => true,
        }
    }

    async fn gone(&self, e: &StoreError) {
        let status = ApiError::from_store(self.res, e.clone()).status();
        let _ = self.send_raw(line("ERROR", &status)).await;
    }

    async fn run(mut self, start: Start, ws: Option<WatchStart>, timeout: Option<Duration>) {
        let Some(ws) = ws else {
            if let Start::Gone(e) = &start {
                self.gone(e).await;
            }
            return;
        };
        let WatchStart { backlog, mut live, rv: start_rv } = ws;
        let mut skip_upto = start_rv;
        match start {
            Start::Initial { items, rv, end_marker } => {
                skip_upto = rv;
                for obj in &items {
                    self.known.insert(key(obj));
                    if !self.send("ADDED", obj).await {
                        return;
                    }
                }
                if end_marker && !self.bookmark(rv, true).await {
                    return;
                }
            }
            Start::Resume => {
                if self.filter.selective() {
                    // Best effort: what matches now is what the client is assumed to hold.
                    let (all, _) = self.state.shared.store.list(self.res, self.filter.namespace.as_deref());
                    self.known = all.iter().filter(|o| self.filter.matches(self.res, o)).map(|o| key(o)).collect();
                }
                for ev in &backlog {
                    if !self.event(ev).await {
                        return;
                    }
                }
            }
            Start::Gone(_) => return,
        }
        let mut last_rv = skip_upto;
        let mut faults = self.state.shared.faults.subscribe();
        let cut_generation = self.cut_generation;
        // Cut while the initial events were being sent.
        if faults.borrow_and_update().watch_cut_generation != cut_generation {
            return;
        }
        let mut shutdown = self.state.shutdown.clone();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= skip_upto {
                            continue;
                        }
                        last_rv = last_rv.max(ev.rv);
                        if !self.event(&ev).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Events were lost: make the client relist, as the watch cache does.
                        let oldest = self.state.shared.store.resource_version();
                        self.gone(&StoreError::Gone { requested: last_rv, oldest }).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if self.bookmarks => {
                    // Everything up to `snap` is already in the channel: drain it, then the
                    // bookmark can safely claim `snap`.
                    let snap = self.state.shared.store.resource_version();
                    loop {
                        match live.try_recv() {
                            Ok(ev) => {
                                if ev.rv > skip_upto {
                                    last_rv = last_rv.max(ev.rv);
                                    if !self.event(&ev).await {
                                        return;
                                    }
                                }
                            }
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(broadcast::error::TryRecvError::Lagged(_)) => {
                                self.gone(&StoreError::Gone { requested: last_rv, oldest: snap }).await;
                                return;
                            }
                            Err(broadcast::error::TryRecvError::Closed) => return,
                        }
                    }
                    last_rv = last_rv.max(snap);
                    if !self.bookmark(last_rv, false).await {
                        return;
                    }
                }
                _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } else { std::future::pending::<()>().await } } => return,
                changed = faults.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let f = faults.borrow_and_update();
                    if f.watch_cut_generation != cut_generation || f.api_down() {
                        return;
                    }
                }
                _ = shutdown.changed() => return,
                _ = self.tx.closed() => return,
            }
        }
    }
}
