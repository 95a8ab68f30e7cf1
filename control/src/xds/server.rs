//! The ADS server (state of the world, gRPC): transport only. Each stream answers requests
//! from its node's snapshot, tracks ACKs and NACKs per type, and pushes a type again only
//! when its version changes: a rejected version is never re-sent, and the node keeps the last
//! version it accepted.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::cache::{Cache, NodeInfo};
use super::snapshot::Snapshot;
use super::{CLUSTER, LISTENER};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct Ads {
    cache: Arc<Cache>,
}

/// The gRPC service, ready for `tonic::transport::Server::add_service`.
pub fn service(cache: Arc<Cache>) -> AggregatedDiscoveryServiceServer<Ads> {
    AggregatedDiscoveryServiceServer::new(Ads { cache })
}

/// Serves ADS on a bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cache: Arc<Cache>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(service(cache))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
}

fn short(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

fn node_info(req: &DiscoveryRequest) -> Option<NodeInfo> {
    let node = req.node.as_ref()?;
    if node.id.is_empty() {
        return None;
    }
    let listen =
        node.metadata.as_ref().and_then(|m| m.fields.get("npm_connector_listen")).and_then(|v| match &v.kind {
            Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => s.parse().ok(),
            _ => None,
        });
    Some(NodeInfo { id: node.id.clone(), listen })
}

/// Per type: what was last sent, acknowledged, rejected, and which names are wanted.
#[derive(Default)]
struct TypeState {
    sent_version: Option<String>,
    sent_names: Vec<String>,
    nonce: String,
    nacked_version: Option<String>,
    names: Vec<String>,
    subscribed: bool,
}

struct StreamState {
    cache: Arc<Cache>,
    node: String,
    types: BTreeMap<String, TypeState>,
    nonce: u64,
    out: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl StreamState {
    /// Sends `type_url` from `snap` unless the node already has (or rejected) this version.
    async fn push(&mut self, type_url: &str, snap: &Snapshot, force: bool) -> bool {
        let Some(st) = self.types.get_mut(type_url) else { return true };
        let Some(typed) = snap.types.get(type_url) else { return true };
        let same = st.sent_version.as_deref() == Some(typed.version.as_str()) && st.sent_names == st.names;
        if (same && !force) || st.nacked_version.as_deref() == Some(typed.version.as_str()) {
            return true;
        }
        // Listeners and clusters are wildcard subscriptions; ECDS asks for names.
        let wildcard = type_url == LISTENER || type_url == CLUSTER || st.names.is_empty();
        let resources =
            typed.resources.iter().filter(|r| wildcard || st.names.contains(&r.name)).map(|r| r.any.clone()).collect();
        self.nonce += 1;
        st.nonce = self.nonce.to_string();
        st.sent_version = Some(typed.version.clone());
        st.sent_names = st.names.clone();
        let resp = DiscoveryResponse {
            version_info: typed.version.clone(),
            resources,
            type_url: type_url.to_owned(),
            nonce: st.nonce.clone(),
            ..Default::default()
        };
        log::info!("node {} sent {} version {}", self.node, short(type_url), typed.version);
        self.cache.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.out.send(Ok(resp)).await.is_ok()
    }

    async fn on_request(&mut self, req: DiscoveryRequest, snap: Option<Arc<Snapshot>>) -> bool {
        let st = self.types.entry(req.type_url.clone()).or_default();
        if !req.response_nonce.is_empty() {
            if req.response_nonce != st.nonce {
                return true; // an answer to an older response: superseded
            }
            match &req.error_detail {
                Some(err) => {
                    log::warn!(
                        "node {} rejected {} version {} (NACK), keeps version {:?}: {}",
                        self.node,
                        short(&req.type_url),
                        st.sent_version.as_deref().unwrap_or("-"),
                        req.version_info,
                        err.message
                    );
                    st.nacked_version = st.sent_version.clone();
                    self.cache.stats.nacks.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.cache.stats.acks.fetch_add(1, Ordering::Relaxed);
                    log::info!("node {} acked {} version {}", self.node, short(&req.type_url), req.version_info);
                }
            }
        }
        let initial = req.response_nonce.is_empty();
        st.subscribed = true;
        st.names = req.resource_names.clone();
        match snap {
            Some(s) => self.push(&req.type_url, &s, initial).await,
            None => true,
        }
    }

    async fn on_snapshot(&mut self, snap: &Snapshot) -> bool {
        // Make before break: clusters and filter configs before the listeners that use them.
        let mut order: Vec<String> = self.types.iter().filter(|(_, s)| s.subscribed).map(|(t, _)| t.clone()).collect();
        order.sort_by_key(|t| {
            if t == LISTENER {
                2
            } else if t == CLUSTER {
                0
            } else {
                1
            }
        });
        for t in order {
            if !self.push(&t, snap, false).await {
                return false;
            }
        }
        true
    }
}

/// Counts a stream as connected while it lives.
struct Open(Arc<Cache>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run_stream(
    cache: Arc<Cache>,
    mut inbound: Streaming<DiscoveryRequest>,
    out: mpsc::Sender<Result<DiscoveryResponse, Status>>,
) {
    let first = match inbound.message().await {
        Ok(Some(r)) => r,
        _ => return,
    };
    let Some(info) = node_info(&first) else {
        let _ = out.send(Err(Status::invalid_argument("the first DiscoveryRequest must carry node.id"))).await;
        return;
    };
    log::info!("node {} connected", info.id);
    let mut snap_rx: watch::Receiver<Option<Arc<Snapshot>>> = cache.watch(info.clone());
    cache.stats.connected.fetch_add(1, Ordering::Relaxed);
    let _open = Open(cache.clone());
    let mut st = StreamState { cache: cache.clone(), node: info.id.clone(), types: BTreeMap::new(), nonce: 0, out };
    let current = snap_rx.borrow().clone();
    if !st.on_request(first, current).await {
        return;
    }
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(req)) => {
                    let current = snap_rx.borrow().clone();
                    if !st.on_request(req, current).await { break }
                }
                Ok(None) | Err(_) => break,
            },
            changed = snap_rx.changed() => {
                if changed.is_err() { break }
                let Some(snap) = snap_rx.borrow_and_update().clone() else { continue };
                if !st.on_snapshot(&snap).await { break }
            }
        }
    }
    log::info!("node {} disconnected", st.node);
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_stream(self.cache.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("npm-connector serves state-of-the-world ADS only"))
    }
}
