//! The simulated Kubernetes API server (HTTP on loopback). STUB: being written.
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::SimShared;

/// Serves the Kubernetes API on `listener` until the task is aborted.
pub fn serve(listener: TcpListener, shared: Arc<SimShared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = (listener, shared);
        std::future::pending::<()>().await;
    })
}
