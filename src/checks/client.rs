//! Builds a kube client from the global options the way kubectl resolves them: `--kubeconfig`
//! (or `$KUBECONFIG`, possibly several files joined by `:`), then `~/.kube/config`; `--context`.
//! Errors name the file and context, never the credentials in them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("kubeconfig{}: {message}", context.as_ref().map(|c| format!(" context {c:?}")).unwrap_or_default())]
    Config { context: Option<String>, message: String },
}

/// Builds the client for `global.kubeconfig` / `global.context` through the cockpit's one
/// connection path, always with the read-only request layer: pre-flight only reads (lists and
/// access reviews), and the layer guarantees it.
pub async fn build(global: &crate::cli::GlobalArgs) -> Result<kube::Client, ClientError> {
    crate::cluster::client::connect(global, |_| true).await.map(|c| c.client).map_err(|e| match e {
        crate::cluster::client::ConnectError::ReadKubeconfig { path, message } => ClientError::Read { path, message },
        other => ClientError::Config { context: global.context.clone(), message: describe(&other) },
    })
}

/// The error chain as text. kube's kubeconfig errors name files, contexts and fields, not secrets.
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}
