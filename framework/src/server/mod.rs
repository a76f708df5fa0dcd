//! The HTTP runtime: one port serving every AWS service (the gateway) and the internal
//! `/_cryopod/` API that the CLI talks to.

mod api;
mod gateway;
pub mod pods_api;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::net::TcpListener;

use crate::aws::AwsError;
use crate::runtime::Runtime;

pub use api::{ApiError, health_document};

/// Hooks that persistence installs around AWS requests: lazy loading before the first
/// request of a service, durability after a change (`ON_REQUEST` saving).
#[async_trait]
pub trait RequestHooks: Send + Sync {
    /// Runs before a request is handed to `service`.
    async fn before_request(&self, service: &'static str) -> Result<(), AwsError>;
    /// Runs after a request to `service` changed state; the response waits for it.
    async fn after_change(&self, service: &'static str) -> Result<(), AwsError>;
    /// Extra JSON for `/_cryopod/health` (persistence status).
    fn health(&self) -> serde_json::Value;
    /// Saves now (`POST /_cryopod/state/save`); `services` narrows it.
    async fn save(&self, services: Option<Vec<String>>) -> Result<serde_json::Value, ApiError>;
    /// Loads every service whose saved state is still pending (lazy loading), before an
    /// operation on the whole state (export, import, reset, summary).
    async fn ensure_loaded(&self) -> Result<(), ApiError>;
    /// Loads the saved state now (`POST /_cryopod/state/load`).
    async fn load(&self, services: Option<Vec<String>>) -> Result<serde_json::Value, ApiError>;
}

/// Shared state of the HTTP handlers.
pub struct App {
    /// The services.
    pub runtime: Runtime,
    /// Persistence hooks, when persistence is on.
    pub hooks: Option<Arc<dyn RequestHooks>>,
    /// The address the server listens on, for URLs when a request has no Host header.
    pub listen: String,
    /// The pod stores (`DATA_DIR/pods` and remotes).
    pub pods: Arc<crate::pods::Pods>,
}

/// Builds the router: internal API under `/_cryopod`, every other path to the gateway.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .nest("/_cryopod/pods", pods_api::router())
        .route("/_cryopod/launchpad", pods_api::launchpad_route())
        .nest("/_cryopod", api::router())
        .fallback(aws_fallback)
        .with_state(app)
}

async fn aws_fallback(State(app): State<Arc<App>>, req: Request) -> Response {
    gateway::dispatch(app, req).await
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY a streamed body that follows its headers waits for the peer's
    // delayed ACK (~40 ms per response).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::trace!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// An in-process emulator on a free loopback port, for tests that talk to it over real HTTP
/// with the AWS SDK. Stops when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The runtime behind the server, for capture/export/import in tests.
    pub runtime: Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// A server running exactly `services` (which must be linked into the test binary).
    pub async fn start(services: &[&str]) -> TestServer {
        let runtime = match Runtime::builder()
            .enable(Some(services.iter().map(|s| s.to_string()).collect()))
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("cannot build the test runtime: {e}"),
        };
        Self::start_with_runtime(runtime).await
    }

    /// A server over an existing runtime.
    pub async fn start_with_runtime(runtime: Runtime) -> TestServer {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("cannot bind a loopback port: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("no local address: {e}"),
        };
        let app = Arc::new(App {
            runtime: runtime.clone(),
            hooks: None,
            listen: addr.to_string(),
            pods: Arc::new(match crate::pods::Pods::temporary() {
                Ok(p) => p,
                Err(e) => panic!("cannot create a temporary pod store: {e}"),
            }),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = serve(listener, app, async move {
                let _ = rx.await;
            })
            .await;
        });
        TestServer {
            endpoint: format!("http://{addr}"),
            addr,
            runtime,
            stop: Some(tx),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
