//! A network partition on demand: a TCP relay on 127.0.0.1 in front of one server (the
//! test's PostgreSQL), which [`Partition::cut`] stops relaying in both directions and
//! [`Partition::heal`] lets through again. A cut neither closes nor resets the connections,
//! like a switch that stops forwarding: each side's writes sit in buffers and its reads
//! wait, until heal delivers them or the side gives up on its own timeouts.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Partition {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Partition {
    /// Relays 127.0.0.1:<new port> to `target`, open until cut.
    pub async fn start(target: SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (cut_rx, stop2, tasks2) = (cut.subscribe(), stop.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let (cut_rx, stop3) = (cut_rx.clone(), stop2.clone());
                tasks2.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = stop3.cancelled() => {}
                        _ = pump(cr, sw, cut_rx.clone()) => {}
                        _ = pump(sr, cw, cut_rx) => {}
                    }
                });
            }
        });
        Partition {
            addr,
            cut,
            stop,
            tasks,
        }
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops relaying: nothing more passes either way until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tasks.close();
    }
}

/// Copies `from` to `to` while the line is up; while it is cut, reads nothing (so the
/// sender's kernel buffers fill as on a dead link) and holds what it had read.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        // A read in progress when the line is cut still completes; its bytes wait below.
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
