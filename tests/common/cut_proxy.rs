//! A TCP proxy on 127.0.0.1 that forwards to a server and can cut every connection
//! through it at once, with no WebSocket close frame: what a network blip, a NAT
//! timeout or a dead load balancer does to a client.
//!
//! It can also hold new connections (accepted, but not forwarded until released: a
//! client's reconnection waits at a point the test chooses) and forward new
//! connections to another server (a restarted one on another port, behind the same
//! address, as a load balancer would).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The proxy. Dropping it stops accepting and cuts what is open.
pub struct CutProxy {
    /// The address clients connect to.
    pub addr: SocketAddr,
    /// Bumped by `cut`: every forwarding task of an older generation ends.
    cut_tx: watch::Sender<u64>,
    /// `false` while new connections are held (`hold`), `true` once released.
    open_tx: watch::Sender<bool>,
    /// Where new connections go (`retarget` changes it).
    target: Arc<Mutex<SocketAddr>>,
    accepted: Arc<AtomicUsize>,
    _tasks: Arc<Mutex<JoinSet<()>>>,
}

impl CutProxy {
    /// Starts a proxy to `target`.
    pub async fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut_tx, _) = watch::channel(0u64);
        let (open_tx, _) = watch::channel(true);
        let target = Arc::new(Mutex::new(target));
        let accepted = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let cut_rx = cut_tx.subscribe();
        let open_rx = open_tx.subscribe();
        let (acc, t, tgt) = (accepted.clone(), tasks.clone(), target.clone());
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                acc.fetch_add(1, Ordering::Relaxed);
                let mut cut = cut_rx.clone();
                let mut open = open_rx.clone();
                let generation = *cut.borrow_and_update();
                let tgt = tgt.clone();
                t.lock().unwrap().spawn(async move {
                    // Held: the client's connection is open but nothing reaches the
                    // server until `release` (a cut meanwhile drops it).
                    tokio::select! {
                        r = open.wait_for(|o| *o) => {
                            if r.is_err() {
                                return;
                            }
                        }
                        _ = cut.wait_for(|g| *g > generation) => return,
                    }
                    let target = *tgt.lock().unwrap();
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = cut.wait_for(|g| *g > generation) => {}
                    }
                    // Both sockets drop here: the peers see the TCP connection end.
                });
            }
        });
        CutProxy {
            addr,
            cut_tx,
            open_tx,
            target,
            accepted,
            _tasks: tasks,
        }
    }

    /// `ws://` URL through the proxy, with `path` (starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://` URL through the proxy, with `path` (starting with `/`).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Cuts every connection open through the proxy now, held ones included (new
    /// ones are forwarded, or held while `hold` is on).
    pub fn cut(&self) {
        self.cut_tx.send_modify(|g| *g += 1);
    }

    /// Holds the connections accepted from now on until `release`.
    pub fn hold(&self) {
        self.open_tx.send_replace(false);
    }

    /// Forwards the held connections, and new ones at once again.
    pub fn release(&self) {
        self.open_tx.send_replace(true);
    }

    /// Forwards the connections accepted from now on (and held ones) to `target`;
    /// those open already stay with the old one.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}
