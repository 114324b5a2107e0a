//! GitOps manifests: the settings-driven renderer and the Cilium values linter.
pub mod lint;
