//! Serving an identity provider on a listener: in the foreground until a shutdown future
//! completes (`devstack idp`), or in the background for tests, with the issuer taken from the
//! address actually bound.

use std::{future::Future, net::SocketAddr};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use super::{Idp, IdpConfig};
use crate::Error;

/// An identity provider serving in the background, from [`spawn`] or [`spawn_on`]. Dropping it
/// (or [`RunningIdp::stop`]) shuts the server down.
#[derive(Debug)]
pub struct RunningIdp {
    /// The handle: mint tokens, rotate keys, flip the JWKS switch, read the fetch counter.
    pub idp: Idp,
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningIdp {
    /// The issuer URL: `http://127.0.0.1:PORT` unless the config named another.
    pub fn url(&self) -> &str {
        self.idp.issuer()
    }

    /// Stops accepting, lets in-flight requests finish, and reports how serving ended.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.stop.take();
        match (&mut self.task).await {
            Ok(result) => result.map_err(Error::Serve),
            Err(join) => Err(Error::Serve(std::io::Error::other(join))),
        }
    }
}

impl Drop for RunningIdp {
    fn drop(&mut self) {
        // Dropping the sender completes the shutdown future of the server task.
        self.stop.take();
    }
}

/// Binds `127.0.0.1:0` and serves an IdP there in the background; the issuer is the bound
/// address unless `config.issuer` says otherwise. For tests. Needs a Tokio runtime.
pub async fn spawn(config: IdpConfig) -> Result<RunningIdp, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::Serve)?;
    spawn_on(listener, config)
}

/// Serves an IdP on `listener` in the background, as [`spawn`] does.
pub fn spawn_on(listener: TcpListener, config: IdpConfig) -> Result<RunningIdp, Error> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let idp = Idp::new(with_bound_issuer(config, addr))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(shared::http::serve(listener, idp.router(), async move {
        // Err means the sender was dropped: also a request to stop.
        let _ = stopped.await;
    }));
    Ok(RunningIdp {
        idp,
        addr,
        stop: Some(stop),
        task,
    })
}

/// Serves an IdP on `listener` until `shutdown` completes (`devstack idp`).
pub async fn serve(
    listener: TcpListener,
    config: IdpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let idp = Idp::new(with_bound_issuer(config, addr))?;
    tracing::info!(issuer = idp.issuer(), kid = %idp.current_kid(), "identity provider ready");
    shared::http::serve(listener, idp.router(), shutdown)
        .await
        .map_err(Error::Serve)
}

fn with_bound_issuer(mut config: IdpConfig, addr: SocketAddr) -> IdpConfig {
    config
        .issuer
        .get_or_insert_with(|| format!("http://{addr}"));
    config
}
