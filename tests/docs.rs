//! The documentation a user reads stays true and self-contained: it never points at notes that
//! only the developers have, and the figures it quotes match the code's defaults.

use std::path::Path;

fn user_docs() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.into_iter().map(|p| (p.display().to_string(), std::fs::read_to_string(&p).expect("read doc"))).collect()
}

#[test]
fn docs_never_point_at_developer_only_notes() {
    let private = [
        "../shared",
        "shared/reference",
        "reference notes",
        "k3s-cni-cutover.md",
        "cilium-helm-1.16.md",
        "argocd-application.md",
        "hubble-grpc.md",
        "k8s-drain-eviction.md",
        "cilium-implementation-plan.md",
    ];
    for (path, text) in user_docs() {
        for (n, line) in text.lines().enumerate() {
            for p in private {
                assert!(!line.contains(p), "{path}:{}: points at {p:?}, which users do not have: {line}", n + 1);
            }
        }
    }
}

#[test]
fn the_architecture_quotes_the_default_frame_rate() {
    let fps = cutover::tui::TuiOptions::default().max_fps;
    let (_, text) = user_docs().into_iter().find(|(p, _)| p.ends_with("architecture.md")).expect("architecture.md");
    assert!(text.contains(&format!("default {fps} fps")), "docs/architecture.md must say the default is {fps} fps");
}
