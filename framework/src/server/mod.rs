//! The HTTP runtime: one port serving every AWS service (the gateway) and the internal
//! `/_cryopod/` API that the CLI talks to.

mod api;
mod gateway;
pub mod guard;
pub mod localstack;
pub mod pods_api;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    /// Runs after a request to `service` changed state, `generation` being the newest change
    /// it made ([`crate::service::track_changes`]); the response waits for it. An error
    /// means the change is not there (persistence rolled it back), so the request may be
    /// retried as is.
    async fn after_change(&self, service: &'static str, generation: u64) -> Result<(), AwsError>;
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
    /// The emulator's own hosts and origins, for the guards against web pages
    /// ([`guard`]).
    pub access: guard::Access,
}

/// Builds the router: internal API under `/_cryopod`, every other path to the gateway.
/// The management guard sits in front of everything, so no route under `/_cryopod/` or
/// `/_localstack/` (today's or a future one) can be reached without it.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .nest("/_cryopod/pods", pods_api::router())
        .route("/_cryopod/launchpad", pods_api::launchpad_route())
        .nest("/_cryopod", api::router())
        .nest("/_localstack", localstack::router())
        .fallback(aws_fallback)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::management,
        ))
        .with_state(app)
}

async fn aws_fallback(State(app): State<Arc<App>>, mut req: Request) -> Response {
    let grant = guard::GrantSlot::default();
    req.extensions_mut().insert(grant.clone());
    grant.apply(gateway::dispatch(app, req).await)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
///
/// Connections whose first request is for the internal API (`/_cryopod/…`) are served by a
/// runtime of their own, on one low-priority thread ([`crate::background`]); AWS requests
/// keep the caller's runtime. Why: an export streams gigabytes, and writing each chunk to
/// the socket is kernel work of a few hundred microseconds that, done on the workers that
/// serve AWS requests, made a request that lands behind it wait (GetObject p99 during
/// exports 2.8–3.8× the quiet p99; 1.06× with no HTTP in the way). The internal API is
/// the CLI's: a `cryopod` command opens its own connection, so sorting connections by their
/// first request line sorts the traffic. Handlers are the same router either way.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(app);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let (internal_tx, internal_rx) = tokio::sync::mpsc::unbounded_channel();
    let internal_router = router.clone();
    let internal_stop = stopped(stop_rx.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("cryopod-internal-api")
        .build()?;
    let internal = crate::background::run("internal-api", move || {
        let listener = Handoff::<std::net::TcpStream>(internal_rx);
        rt.block_on(async move {
            axum::serve(listener, internal_router)
                .with_graceful_shutdown(internal_stop)
                .await
        })
    });

    let (aws_tx, aws_rx) = tokio::sync::mpsc::unbounded_channel();
    let aws = axum::serve(Handoff::<tokio::net::TcpStream>(aws_rx), router)
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future();

    let accept = async move {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let tcp = tokio::select! {
                () = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                },
            };
            // Without TCP_NODELAY a streamed body that follows its headers waits for the
            // peer's delayed ACK (~40 ms per response).
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::trace!(error = %e, "cannot set TCP_NODELAY");
            }
            let (aws_tx, internal_tx) = (aws_tx.clone(), internal_tx.clone());
            tokio::spawn(async move {
                if !first_request_is_internal(&tcp).await {
                    let _ = aws_tx.send(tcp);
                    return;
                }
                match tcp.into_std() {
                    Ok(std) => {
                        let _ = internal_tx.send(std);
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot hand a connection over"),
                }
            });
        }
        let _ = stop_tx.send(true);
    };
    let (_, aws, internal) = tokio::join!(accept, aws, internal);
    aws?;
    internal
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .map_err(std::io::Error::other)
}

/// Whether a connection's first request line is for `/_cryopod/`. Reads nothing (peeks),
/// so the connection is served from its first byte by whichever runtime gets it. A client
/// that sends nothing for a second, or only part of a request line, is an AWS client.
async fn first_request_is_internal(tcp: &tokio::net::TcpStream) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 24];
    loop {
        let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        if let Some(internal) = is_internal_request_line(&buf[..n]) {
            return internal;
        }
        // A request line split across segments: look again shortly (a peek returns at
        // once while any byte is waiting).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `Some(answer)` once the start of a request line decides it, `None` while it is too
/// short to tell.
fn is_internal_request_line(seen: &[u8]) -> Option<bool> {
    // The management surface: cryopod's API and its LocalStack face (whose exports stream
    // as long as cryopod's).
    const PATHS: [&[u8]; 2] = [b"/_cryopod/", b"/_localstack/"];
    const LONGEST_METHOD: usize = 7; // OPTIONS
    let Some(space) = seen.iter().position(|b| *b == b' ') else {
        let may_be_method = seen.len() <= LONGEST_METHOD && seen.iter().all(u8::is_ascii_uppercase);
        return if may_be_method { None } else { Some(false) };
    };
    let path = &seen[space + 1..];
    if PATHS.iter().any(|p| path.starts_with(p)) {
        Some(true)
    } else if PATHS.iter().any(|p| p.starts_with(path)) {
        None
    } else {
        Some(false)
    }
}

/// Accept errors that concern one connection are skipped; others (such as running out of
/// file descriptors) are logged and retried after a pause, as `axum::serve` does.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The connections one runtime serves, handed over by the accepting task. `T` is what
/// crosses the channel: a tokio stream within a runtime, a std stream between runtimes
/// (registered with the receiving runtime's reactor on arrival).
struct Handoff<T>(tokio::sync::mpsc::UnboundedReceiver<T>);

impl<T: IntoTokio> axum::serve::Listener for Handoff<T> {
    type Io = tokio::net::TcpStream;
    type Addr = Option<SocketAddr>;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(conn) = self.0.recv().await else {
                // No more connections: the server is stopping, and axum's loop ends on
                // the shutdown signal.
                return std::future::pending().await;
            };
            match conn.into_tokio() {
                Ok(tcp) => {
                    let peer = tcp.peer_addr().ok();
                    return (tcp, peer);
                }
                Err(e) => tracing::debug!(error = %e, "cannot take a connection over"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(None)
    }
}

trait IntoTokio: Send + 'static {
    fn into_tokio(self) -> std::io::Result<tokio::net::TcpStream>;
}

impl IntoTokio for tokio::net::TcpStream {
    fn into_tokio(self) -> std::io::Result<tokio::net::TcpStream> {
        Ok(self)
    }
}

impl IntoTokio for std::net::TcpStream {
    fn into_tokio(self) -> std::io::Result<tokio::net::TcpStream> {
        // Already non-blocking: `tokio::net::TcpStream::into_std` keeps that mode.
        tokio::net::TcpStream::from_std(self)
    }
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
            access: guard::Access::loopback(addr),
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::first_request_is_internal;

    /// The accepted side of a loopback connection whose client wrote `parts` in turn.
    async fn sorted(parts: &'static [&'static [u8]]) -> bool {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            for p in parts {
                c.write_all(p).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            c
        });
        let (server, _) = listener.accept().await.unwrap();
        let internal = first_request_is_internal(&server).await;
        let _client = client.await.unwrap();
        // Peeking consumed nothing: the whole request is still there to read.
        let mut buf = [0u8; 64];
        let n = server.peek(&mut buf).await.unwrap();
        assert!(n > 0 && buf.starts_with(parts[0]));
        internal
    }

    #[tokio::test]
    async fn connections_are_sorted_by_their_first_request_line_without_reading_it() {
        assert!(sorted(&[b"GET /_cryopod/state?services=s3 HTTP/1.1\r\n\r\n"]).await);
        assert!(sorted(&[b"POST /_cryopod/state HTTP/1.1\r\n"]).await);
        assert!(sorted(&[b"PO", b"ST /_cryo", b"pod/state HTTP/1.1\r\n"]).await);
        assert!(!sorted(&[b"GET /bucket/key HTTP/1.1\r\n\r\n"]).await);
        assert!(sorted(&[b"DELETE /_cryopod/pods/demo HTTP/1.1\r\n"]).await);
        assert!(!sorted(&[b"PUT /bucket HTTP/1.1\r\n"]).await);
        assert!(!sorted(&[b"\x16\x03\x01 not http"]).await);
        assert!(!sorted(&[b"GET /_cryopodx HTTP/1.1\r\n"]).await);
        assert!(sorted(&[b"GET /_localstack/health HTTP/1.1\r\n\r\n"]).await);
        assert!(sorted(&[b"DELETE /_locals", b"tack/pods/p HTTP/1.1\r\n"]).await);
        assert!(!sorted(&[b"GET /_localstackx HTTP/1.1\r\n"]).await);
    }
}
