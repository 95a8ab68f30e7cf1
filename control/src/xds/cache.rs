//! The snapshot cache, keyed by node id: the builder sets a snapshot per node, streams watch
//! theirs. A node that connects is announced to the builder, which renders for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::snapshot::Snapshot;

/// What the control plane knows of a node: its id and the per-node settings from its
/// bootstrap's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// `node.metadata.npm_connector_listen`: where this Envoy's listener binds.
    pub listen: Option<SocketAddr>,
}

type Slot = watch::Sender<Option<Arc<Snapshot>>>;

#[derive(Default)]
struct Node {
    info: Option<NodeInfo>,
    slot: Option<Slot>,
}

pub struct Cache {
    nodes: Mutex<BTreeMap<String, Node>>,
    announce: mpsc::UnboundedSender<NodeInfo>,
    /// What the ADS streams did, for serve's /metrics.
    pub stats: StreamStats,
}

/// Counters the ADS server keeps (transport facts only).
#[derive(Default, Debug)]
pub struct StreamStats {
    /// ADS streams open now.
    pub connected: AtomicU64,
    pub acks: AtomicU64,
    pub nacks: AtomicU64,
    /// Responses sent (every type, every node).
    pub sent: AtomicU64,
}

impl Cache {
    /// The cache, and the channel on which connecting nodes are announced.
    pub fn new() -> (Arc<Cache>, mpsc::UnboundedReceiver<NodeInfo>) {
        let (announce, rx) = mpsc::unbounded_channel();
        (Arc::new(Cache { nodes: Mutex::new(BTreeMap::new()), announce, stats: StreamStats::default() }), rx)
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Node>) -> T) -> T {
        let mut guard = match self.nodes.lock() {
            Ok(g) => g,
            // A panic elsewhere while holding the lock leaves plain data behind: keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Subscribes a (re)connecting node to its snapshot and announces it to the builder.
    pub fn watch(&self, info: NodeInfo) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let rx = self.with(|nodes| {
            let n = nodes.entry(info.id.clone()).or_default();
            n.info = Some(info.clone());
            n.slot.get_or_insert_with(|| watch::channel(None).0).subscribe()
        });
        let _ = self.announce.send(info);
        rx
    }

    /// Sets a node's snapshot; streams are woken only if it differs from the current one.
    pub fn set(&self, node: &str, snapshot: Snapshot) {
        self.with(|nodes| {
            let n = nodes.entry(node.to_owned()).or_default();
            let slot = n.slot.get_or_insert_with(|| watch::channel(None).0);
            slot.send_if_modified(|cur| {
                if cur.as_deref() == Some(&snapshot) {
                    false
                } else {
                    *cur = Some(Arc::new(snapshot));
                    true
                }
            });
        });
    }

    /// Each node's current snapshot versions by type (for /metrics).
    pub fn versions(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.with(|nodes| {
            nodes
                .iter()
                .filter_map(|(id, n)| {
                    let snap = n.slot.as_ref()?.borrow().clone()?;
                    let v = snap.types.iter().map(|(t, typed)| ((*t).to_owned(), typed.version.clone())).collect();
                    Some((id.clone(), v))
                })
                .collect()
        })
    }

    /// Every node that has connected so far.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.with(|nodes| nodes.values().filter_map(|n| n.info.clone()).collect())
    }
}
