//! The cluster-wide lock, as kured does it: before a disruptive operation the runner takes the
//! `coordination.k8s.io/v1` Lease `kube-system/cutover-lock` (holder: `user@host pid N`), renews
//! it while the operation runs and releases it after, so two operators or two bastions never act
//! at once. A Lease held by someone else refuses, naming its holder and age; a stale one (not
//! renewed for twice its duration: its holder died) is taken over only after an explicit
//! confirmation. Read-only mode never touches the Lease (it never gets here).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use crate::cluster::client::{api_status, redact};
use crate::cluster::write::WriteClient;

/// Where the lock lives and how long a holder may go without renewing it.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub duration: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig { namespace: "kube-system".into(), name: "cutover-lock".into(), duration: Duration::from_secs(30) }
    }
}

impl LeaseConfig {
    /// How often a holder renews (a third of the duration, as client-go's leader election).
    pub fn renew_every(&self) -> Duration {
        (self.duration / 3).max(Duration::from_secs(1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("the cluster lock {at} is held by {holder} (renewed {age} ago); wait for it or ask them")]
    Held { at: String, holder: String, age: String },
    #[error(
        "the cluster lock {at} is stale: held by {holder}, last renewed {age} ago (more than twice its {duration} s); take it over only if that cockpit is gone"
    )]
    Stale { at: String, holder: String, age: String, duration: u64 },
    #[error("someone else took the cluster lock {at} at the same moment; try again")]
    Raced { at: String },
    #[error("the cluster lock {at} was taken over by {holder} while this operation ran")]
    Lost { at: String, holder: String },
    #[error(
        "forbidden by RBAC on the cluster lock {at} (needs get, create and update on leases in its namespace): {message}"
    )]
    Forbidden { at: String, message: String },
    #[error("cluster lock {at}: {message}")]
    Api { at: String, message: String },
}

/// What the Lease says now, seen from `who`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// No holder (never taken, or released).
    Free,
    /// Ours already (an earlier operation of this process).
    Ours,
    /// Someone else's, renewed `age` ago.
    Held { holder: String, age: Duration },
    /// Someone else's, not renewed for more than twice its duration.
    Stale { holder: String, age: Duration },
}

/// Reads a Lease (pure: `now` is given).
pub fn inspect(lease: &Lease, who: &str, now: jiff::Timestamp) -> LeaseState {
    let Some(spec) = &lease.spec else { return LeaseState::Free };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return LeaseState::Free;
    }
    if holder == who {
        return LeaseState::Ours;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(30).max(1)).unwrap_or(30));
    match renewed {
        // A holder that never said when it renewed is treated as stale: it cannot be live.
        None => LeaseState::Stale { holder, age: Duration::MAX },
        Some(t) => {
            let age = Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO);
            if age > duration * 2 { LeaseState::Stale { holder, age } } else { LeaseState::Held { holder, age } }
        }
    }
}

/// `1m05s`, `12s`, `unknown` — how long ago, for messages.
pub fn human_age(d: Duration) -> String {
    if d == Duration::MAX {
        return "never".into();
    }
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A Lease this process holds.
#[derive(Debug, Clone)]
pub struct Held {
    pub config: LeaseConfig,
    pub who: String,
}

impl LeaseConfig {
    fn at(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn api(&self, client: &WriteClient) -> Api<Lease> {
        Api::namespaced(client.kube().clone(), &self.namespace)
    }

    fn err(&self, e: kube::Error) -> LeaseError {
        match (&e, api_status(&e)) {
            (kube::Error::Api(s), Some(403)) => LeaseError::Forbidden { at: self.at(), message: s.message.clone() },
            (_, Some(409)) => LeaseError::Raced { at: self.at() },
            _ => LeaseError::Api { at: self.at(), message: redact(&e.to_string()) },
        }
    }

    fn spec(&self, who: &str, now: jiff::Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.to_string()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes the lock for `who`. `take_over_stale`: the operator confirmed taking a stale lock.
    #[allow(clippy::disallowed_methods)] // the runner's own writes, journaled by the write client
    pub async fn acquire(&self, client: &WriteClient, who: &str, take_over_stale: bool) -> Result<Held, LeaseError> {
        let api = self.api(client);
        let now = jiff::Timestamp::now();
        let held = Held { config: self.clone(), who: who.to_string() };
        match api.get_opt(&self.name).await.map_err(|e| self.err(e))? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(self.spec(who, now, 0)),
                };
                api.create(&PostParams::default(), &lease).await.map_err(|e| self.err(e))?;
                Ok(held)
            }
            Some(mut lease) => {
                let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
                match inspect(&lease, who, now) {
                    LeaseState::Held { holder, age } => {
                        return Err(LeaseError::Held { at: self.at(), holder, age: human_age(age) });
                    }
                    LeaseState::Stale { holder, age } if !take_over_stale => {
                        return Err(LeaseError::Stale {
                            at: self.at(),
                            holder,
                            age: human_age(age),
                            duration: self.duration.as_secs(),
                        });
                    }
                    LeaseState::Free | LeaseState::Ours | LeaseState::Stale { .. } => {}
                }
                // Replace with the resourceVersion we read: a concurrent taker gets 409.
                lease.spec = Some(self.spec(who, now, transitions.saturating_add(1)));
                api.replace(&self.name, &PostParams::default(), &lease).await.map_err(|e| self.err(e))?;
                Ok(held)
            }
        }
    }
}

impl Held {
    /// Renews the lock; fails if someone took it over meanwhile.
    #[allow(clippy::disallowed_methods)]
    pub async fn renew(&self, client: &WriteClient) -> Result<(), LeaseError> {
        let c = &self.config;
        let api = c.api(client);
        let mut lease = api.get(&c.name).await.map_err(|e| c.err(e))?;
        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
        if holder != self.who {
            return Err(LeaseError::Lost { at: c.at(), holder });
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        api.replace(&c.name, &PostParams::default(), &lease).await.map_err(|e| c.err(e))?;
        Ok(())
    }

    /// Releases the lock (clears the holder; the object stays, as client-go's leader election
    /// leaves it). A lock someone else holds by now is left alone.
    #[allow(clippy::disallowed_methods)]
    pub async fn release(&self, client: &WriteClient) -> Result<(), LeaseError> {
        let c = &self.config;
        let api = c.api(client);
        let Some(mut lease) = api.get_opt(&c.name).await.map_err(|e| c.err(e))? else { return Ok(()) };
        if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(self.who.as_str()) {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        api.replace(&c.name, &PostParams::default(), &lease).await.map_err(|e| c.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: Option<i64>, duration: i32, now: jiff::Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(duration),
                renew_time: renewed_secs_ago
                    .map(|s| MicroTime(now.checked_sub(jiff::SignedDuration::from_secs(s)).unwrap_or(now))),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_free_ours_held_or_stale() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let me = "op@bastion pid 1";
        assert_eq!(inspect(&lease(None, None, 30, now), me, now), LeaseState::Free);
        assert_eq!(inspect(&lease(Some(""), Some(5), 30, now), me, now), LeaseState::Free);
        assert_eq!(inspect(&lease(Some(me), Some(500), 30, now), me, now), LeaseState::Ours);
        assert_eq!(
            inspect(&lease(Some("b@h pid 2"), Some(59), 30, now), me, now),
            LeaseState::Held { holder: "b@h pid 2".into(), age: Duration::from_secs(59) }
        );
        assert_eq!(
            inspect(&lease(Some("b@h pid 2"), Some(61), 30, now), me, now),
            LeaseState::Stale { holder: "b@h pid 2".into(), age: Duration::from_secs(61) }
        );
        assert!(matches!(inspect(&lease(Some("b"), None, 30, now), me, now), LeaseState::Stale { .. }));
    }

    #[test]
    fn ages_read_like_a_person_wrote_them() {
        assert_eq!(human_age(Duration::from_secs(7)), "7s");
        assert_eq!(human_age(Duration::from_secs(65)), "1m05s");
        assert_eq!(human_age(Duration::from_secs(7300)), "2h01m");
        assert_eq!(human_age(Duration::MAX), "never");
    }
}
