//! Builds a kube client from the global options the way kubectl resolves them: `--kubeconfig`
//! (or `$KUBECONFIG`, possibly several files joined by `:`), then `~/.kube/config`; `--context`.
//! Errors name the file and context, never the credentials in them.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("kubeconfig{}: {message}", context.as_ref().map(|c| format!(" context {c:?}")).unwrap_or_default())]
    Config { context: Option<String>, message: String },
    #[error("cannot create the Kubernetes client: {0}")]
    Client(String),
}

/// Builds the client for `global.kubeconfig` / `global.context`.
pub async fn build(global: &crate::cli::GlobalArgs) -> Result<kube::Client, ClientError> {
    let options = KubeConfigOptions { context: global.context.clone(), ..Default::default() };
    let config = match &global.kubeconfig {
        Some(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            for path in std::env::split_paths(paths).filter(|p| !p.as_os_str().is_empty()) {
                let kc = Kubeconfig::read_from(&path)
                    .map_err(|e| ClientError::Read { path: path.clone(), message: describe(&e) })?;
                merged = Some(match merged {
                    None => kc,
                    Some(m) => {
                        m.merge(kc).map_err(|e| ClientError::Read { path: path.clone(), message: describe(&e) })?
                    }
                });
            }
            let kc = merged.ok_or_else(|| ClientError::Config {
                context: global.context.clone(),
                message: "no kubeconfig file given".into(),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| ClientError::Config { context: global.context.clone(), message: describe(&e) })?;
    kube::Client::try_from(config).map_err(|e| ClientError::Client(e.to_string()))
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
