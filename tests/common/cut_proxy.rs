//! A TCP proxy on 127.0.0.1 that forwards to a server and can cut every connection
//! through it at once, with no WebSocket close frame: what a network blip, a NAT
//! timeout or a dead load balancer does to a client.

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
    accepted: Arc<AtomicUsize>,
    _tasks: Arc<Mutex<JoinSet<()>>>,
}

impl CutProxy {
    /// Starts a proxy to `target`.
    pub async fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut_tx, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let cut_rx = cut_tx.subscribe();
        let (acc, t) = (accepted.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                acc.fetch_add(1, Ordering::Relaxed);
                let mut cut = cut_rx.clone();
                let generation = *cut.borrow_and_update();
                t.lock().unwrap().spawn(async move {
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
            accepted,
            _tasks: tasks,
        }
    }

    /// `ws://` URL through the proxy, with `path` (starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Cuts every connection open through the proxy now (new ones are forwarded).
    pub fn cut(&self) {
        self.cut_tx.send_modify(|g| *g += 1);
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}
