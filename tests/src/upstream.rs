//! Small local upstreams on hyper: each records the requests it gets (method, path, headers)
//! and answers 200, or 302 to a fixed location for paths under `/redirect`, or what a scripted
//! handler says (a stand-in registry or CDN).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A scripted answer: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);
/// Decides the answer to a request (already recorded).
pub type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// Starts on 127.0.0.1 with an ephemeral port; `redirect_to` is the 302 target.
    pub fn start(redirect_to: Option<String>) -> Upstream {
        Self::start_with(redirect_to, true, None)
    }

    /// An upstream that keeps no record, for load tests.
    pub fn quiet() -> Upstream {
        Self::start_with(None, false, None)
    }

    /// A recording upstream that answers what `handler` says.
    pub fn scripted(handler: Handler) -> Upstream {
        Self::start_with(None, true, Some(handler))
    }

    fn start_with(redirect_to: Option<String>, record: bool, handler: Option<Handler>) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let seen2 = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
                let _ = addr_tx.send(listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
                let mut stop_rx = stop_rx;
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let seen = seen2.clone();
                            let redirect = redirect_to.clone();
                            let handler = handler.clone();
                            tokio::spawn(async move {
                                let svc = service_fn(move |req: Request<Incoming>| {
                                    let seen = seen.clone();
                                    let redirect = redirect.clone();
                                    let handler = handler.clone();
                                    async move { Ok::<_, Infallible>(answer(req, record.then_some(&*seen), redirect.as_deref(), handler.as_ref())) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                            });
                        }
                    }
                }
            });
        });
        let addr = addr_rx.recv().unwrap_or_else(|e| panic!("upstream did not start: {e}"));
        Upstream { addr, seen, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn answer(
    req: Request<Incoming>,
    seen: Option<&Mutex<Vec<Seen>>>,
    redirect: Option<&str>,
    handler: Option<&Handler>,
) -> Response<Full<Bytes>> {
    let Some(seen) = seen else {
        return Response::new(Full::new(Bytes::from_static(b"ok\n")));
    };
    let s = Seen {
        method: req.method().to_string(),
        path: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
    };
    let is_redirect = s.path.starts_with("/redirect");
    let scripted = handler.map(|h| h(&s));
    if let Ok(mut v) = seen.lock() {
        v.push(s);
    }
    if let Some((status, headers, body)) = scripted {
        let mut resp = Response::builder().status(status);
        for (k, v) in headers {
            resp = resp.header(k, v);
        }
        return resp.body(Full::new(Bytes::from(body))).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut resp = Response::builder();
    if let (true, Some(to)) = (is_redirect, redirect) {
        resp = resp.status(302).header("location", to);
    }
    resp.body(Full::new(Bytes::from_static(b"recorded\n"))).unwrap_or_else(|e| panic!("{e}"))
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
