//! A tiny HTTP server for the egress unit tests (the client's and the proxy's).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every request on `ip` with `302 Location: location` (or 200 when `None`),
/// counting connections.
pub async fn server(ip: &str, location: Option<String>) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let _ = s.read(&mut buf).await;
                let head = match location {
                    Some(to) => format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\n"),
                    None => "HTTP/1.1 200 OK\r\n".into(),
                };
                let _ = s
                    .write_all(
                        format!("{head}Content-Length: 2\r\nConnection: close\r\n\r\nok")
                            .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (base, hits)
}
