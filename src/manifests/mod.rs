//! GitOps manifests: the settings-driven renderer (templates in assets/templates/) and the Cilium
//! values linter.
pub mod chart_keys;
pub mod lint;
pub mod render;
pub mod template;
