//! `serve`'s event loop: the xDS and metrics servers, file watching, SIGHUP, ticks, and the
//! shutdown that ends every stream.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;

use super::{metrics, now, Engine, ServeConfig, ServeError};
use crate::token::Entropy;
use crate::xds::cache::Cache;

/// Runs the control plane until `shutdown` completes.
pub async fn run(
    cfg: ServeConfig,
    entropy: Box<dyn Entropy + Send>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut engine = Engine::new(cfg.clone(), entropy)?;
    engine.tick(now());
    let (cache, mut announced) = Cache::new();
    let listener = tokio::net::TcpListener::bind(cfg.xds_addr).await.map_err(|e| ServeError::Bind(cfg.xds_addr, e))?;
    log::info!(
        "xDS (ADS, state of the world) on {}{}",
        cfg.xds_addr,
        if cfg.xds_tls.is_some() { ", mutual TLS" } else { ", plaintext" }
    );
    let http = match cfg.metrics_addr {
        None => None,
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| ServeError::Bind(addr, e))?;
            log::info!("/healthz and /metrics on {addr}");
            Some(tokio::spawn(metrics::serve_http(l, engine.metrics.clone(), cache.clone())))
        }
    };
    let exchange_handle = axum_server::Handle::new();
    let exchange = match &cfg.exchange {
        None => None,
        Some(x) => {
            let issuers = crate::exchange::oidc::Issuers::new(x.issuers.issuers.clone())
                .map_err(|e| ServeError::Exchange(e.to_string()))?;
            let view = Arc::new(RwLock::new(Arc::new(engine.exchange_view())));
            let ex = Arc::new(crate::exchange::Exchange::new(
                issuers,
                x.issuers.rate_limit,
                view.clone(),
                engine.metrics.clone(),
            ));
            let l = std::net::TcpListener::bind(x.listen).map_err(|e| ServeError::Bind(x.listen, e))?;
            l.set_nonblocking(true).map_err(|e| ServeError::Bind(x.listen, e))?;
            log::info!("token exchange (POST /v1/token, HTTPS) on {}", x.listen);
            let (tls, handle) = ((*x.tls).clone(), exchange_handle.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::exchange::server::serve(l, tls, ex, handle).await {
                    log::error!("token exchange stopped: {e}");
                }
            });
            Some(view)
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_cache = cache.clone();
    let xds_tls = cfg.xds_tls.as_ref().map(super::XdsTls::server_config);
    let server = tokio::spawn(async move {
        let stopped = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = crate::xds::server::serve(listener, server_cache, xds_tls, stopped).await {
            log::error!("xDS server stopped: {e}");
        }
    });

    // File events arrive on notify's thread; a change means "look again soon". Reads (our own
    // reloads open the files) are not changes.
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        use notify::EventKind::{Create, Modify, Remove};
        if let Ok(ev) = res {
            if matches!(ev.kind, Create(_) | Modify(_) | Remove(_)) {
                let _ = fs_tx.send(());
            }
        }
    })
    .map_err(|e| ServeError::Watch(cfg.manifests.display().to_string(), e))?;
    watcher
        .watch(&cfg.manifests, notify::RecursiveMode::Recursive)
        .map_err(|e| ServeError::Watch(cfg.manifests.display().to_string(), e))?;
    if let Some(keys) = &cfg.token_keys {
        // A Secret volume too: adding a key rotates, removing one revokes its tokens.
        watcher
            .watch(keys, notify::RecursiveMode::Recursive)
            .map_err(|e| ServeError::Watch(keys.display().to_string(), e))?;
    }
    if let Some(secrets) = &cfg.secrets {
        // Each Secret volume swaps its own `..data`: watched like the manifests.
        watcher
            .watch(secrets, notify::RecursiveMode::Recursive)
            .map_err(|e| ServeError::Watch(secrets.display().to_string(), e))?;
    }
    if let Some(state) = &cfg.state {
        let dir = state.join("tokens");
        let _ = std::fs::create_dir_all(&dir);
        watcher
            .watch(&dir, notify::RecursiveMode::Recursive)
            .map_err(|e| ServeError::Watch(dir.display().to_string(), e))?;
    }
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(ServeError::Signal)?;
    let mut tick = tokio::time::interval(cfg.tick);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(node) = announced.recv() => engine.publish_node(&cache, &node),
            Some(()) = fs_rx.recv() => {
                // Debounce: a ConfigMap update is several events (new dir, symlink swap, cleanup).
                tokio::time::sleep(cfg.debounce).await;
                while fs_rx.try_recv().is_ok() {}
                if engine.reload() {
                    engine.tick(now());
                    engine.publish(&cache);
                }
            }
            _ = hup.recv() => {
                log::info!("SIGHUP: reloading");
                engine.reload();
                engine.tick(now());
                engine.publish(&cache);
            }
            _ = tick.tick() => {
                if engine.tick(now()) {
                    engine.publish(&cache);
                }
            }
        }
        // The exchange mints for the connectors and keys of the last good reload.
        if let Some(view) = &exchange {
            if let Ok(mut v) = view.write() {
                *v = Arc::new(engine.exchange_view());
            }
        }
    }
    exchange_handle.shutdown();
    // A graceful shutdown waits for every ADS stream, and an Envoy never ends its stream on its
    // own: stop accepting, give in-flight responses a moment, then drop the connections. The
    // Envoys keep their last configuration and reconnect (to a restarted serve or a replica).
    let _ = stop_tx.send(());
    let mut server = server;
    if tokio::time::timeout(Duration::from_millis(500), &mut server).await.is_err() {
        server.abort();
        let _ = server.await;
    }
    if let Some(h) = http {
        h.abort();
    }
    log::info!("stopped");
    Ok(())
}
