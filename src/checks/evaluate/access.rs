//! `access/<verb>-<resource>`: what this identity may do, from the SelfSubjectAccessReviews
//! `gather` made for each thing the cockpit can do (a refusal only warns: watching still works).

use super::{Check, Status, check, unread};
use crate::checks::snapshot::ClusterSnapshot;

pub(super) fn access_checks(snap: &ClusterSnapshot) -> Vec<Check> {
    snap.access
        .iter()
        .map(|a| {
            let res =
                if a.subresource.is_empty() { a.resource.clone() } else { format!("{}-{}", a.resource, a.subresource) };
            let id = format!("access/{}-{res}", a.verb);
            let title = format!("May {}", a.what());
            match &a.result {
                Ok(d) if d.allowed => {
                    check(&id, &title, Status::Pass, vec![format!("allowed: {} (to {})", a.what(), a.purpose)], "")
                }
                Ok(d) => {
                    let mut ev = vec![format!("REFUSED: {} (needed to {})", a.what(), a.purpose)];
                    if !d.reason.is_empty() {
                        ev.push(d.reason.clone());
                    }
                    check(
                        &id,
                        &title,
                        Status::Warn,
                        ev,
                        format!(
                            "the cockpit cannot {} with this identity (watching still works); use a context that may",
                            a.purpose
                        ),
                    )
                }
                Err(e) => unread(&id, &title, e),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::evaluate::evaluate;
    use crate::checks::evaluate::fixtures::*;
    use crate::checks::snapshot::{AccessDecision, AccessReview, FetchError, FetchErrorKind};
    use crate::settings::Settings;

    #[test]
    fn access_reviews() {
        let mut snap = fresh();
        let review = |verb: &str, res: &str, sub: &str, allowed: bool| AccessReview {
            verb: verb.into(),
            group: String::new(),
            resource: res.into(),
            subresource: sub.into(),
            namespace: None,
            purpose: "drain nodes (evict pods)".into(),
            result: Ok(AccessDecision { allowed, reason: String::new() }),
        };
        snap.access = vec![
            review("patch", "nodes", "", true),
            review("create", "pods", "eviction", false),
            AccessReview {
                result: Err(FetchError::new(
                    "selfsubjectaccessreviews.authorization.k8s.io",
                    FetchErrorKind::Forbidden,
                    "",
                )),
                ..review("get", "pods", "portforward", false)
            },
        ];
        let checks = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&checks, "access/patch-nodes").status, Status::Pass);
        let ev_ = by_id(&checks, "access/create-pods-eviction");
        assert_eq!(ev_.status, Status::Warn);
        assert!(ev(ev_).contains("REFUSED: create pods/eviction"), "{ev_:?}");
        assert_eq!(by_id(&checks, "access/get-pods-portforward").status, Status::Unknown);
    }
}
