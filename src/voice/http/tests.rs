//! The HTTP media source against small servers on loopback: reads, seeks, caps, stalls
//! and broken connections.

use std::io::{Read, Seek, SeekFrom};

use super::RangeSource;
use crate::sources::egress::client::GuardedClient;
use crate::sources::egress::policy::UrlPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn test_client() -> GuardedClient {
    GuardedClient::new(std::sync::Arc::new(UrlPolicy::ALLOW_PRIVATE), None).unwrap()
}

/// A tiny HTTP server over `data` that honours `Range: bytes=a-b` when `ranges`.
async fn serve(data: Vec<u8>, ranges: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let data = data.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let range = text
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| {
                        let (a, b) = r.trim().split_once('-')?;
                        let a: usize = a.parse().ok()?;
                        let b: usize = b.parse().unwrap_or(data.len() - 1);
                        Some((a, b.min(data.len() - 1)))
                    });
                let (head, body) = match range.filter(|_| ranges) {
                    Some((a, b)) => (
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n",
                            data.len(),
                            b + 1 - a
                        ),
                        data[a..=b].to_vec(),
                    ),
                    None => (
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}",
                            data.len(),
                            if ranges { "Accept-Ranges: bytes\r\n" } else { "" }
                        ),
                        data.clone(),
                    ),
                };
                let _ = sock
                    .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
                    .await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/media")
}

fn track(url: &str) -> crate::sources::Track {
    crate::sources::Track {
        stream_url: url.into(),
        ..crate::player::test_track("t")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_past_its_byte_cap_is_cut_off_and_says_so() {
    let data = vec![7u8; 300_000];
    let url = serve(data, false).await;
    let client = test_client();
    let source = RangeSource::new(&client, &track(&url)).with_max_bytes(Some(100_000));
    let capped = source.capped();
    let mut body = source.open(0).await.unwrap();
    let (read, err) = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 4096];
        let mut read = 0usize;
        // Bounded: the body has 300 000 bytes.
        for _ in 0..1000 {
            match body.read(&mut buf) {
                Ok(0) => return (read, None),
                Ok(n) => read += n,
                Err(e) => return (read, Some(e)),
            }
        }
        (read, None)
    })
    .await
    .unwrap();
    assert_eq!(read, 100_000, "not a byte past the cap");
    assert!(
        err.is_some(),
        "the track ends with an error, not a clean end"
    );
    assert!(capped.load(std::sync::atomic::Ordering::SeqCst));
    // A 3-minute track may take 36 MiB: 48 kHz stereo PCM (34.6 MB) fits.
    let cap = super::byte_cap(std::time::Duration::from_secs(180));
    assert!(cap > 48_000 * 4 * 180 && cap < 40 << 20, "{cap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_source_reads_and_seeks_both_ways() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let url = serve(data.clone(), true).await;
    let client = test_client();
    let mut body = RangeSource::new(&client, &track(&url))
        .open(0)
        .await
        .unwrap();
    assert!(body.is_seekable_stream());
    // songbird reads on its own threads: so do we
    tokio::task::spawn_blocking(move || {
        let mut head = [0u8; 10];
        body.read_exact(&mut head).unwrap();
        assert_eq!(&head[..], &data[..10]);
        // forward, far
        assert_eq!(body.seek(SeekFrom::Start(150_000)).unwrap(), 150_000);
        body.read_exact(&mut head).unwrap();
        assert_eq!(&head[..], &data[150_000..150_010]);
        // backward: nothing read before the seek leaks after it
        assert_eq!(body.seek(SeekFrom::Current(-100_010)).unwrap(), 50_000);
        body.read_exact(&mut head).unwrap();
        assert_eq!(&head[..], &data[50_000..50_010]);
        // a short hop forward
        assert_eq!(body.seek(SeekFrom::Current(3)).unwrap(), 50_013);
        body.read_exact(&mut head).unwrap();
        assert_eq!(&head[..], &data[50_013..50_023]);
        // from the end, and past it
        assert_eq!(body.seek(SeekFrom::End(-5)).unwrap(), 199_995);
        let mut rest = Vec::new();
        body.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[199_995..]);
        body.seek(SeekFrom::Start(500_000)).unwrap();
        assert_eq!(body.read(&mut head).unwrap(), 0);
        assert!(body.seek(SeekFrom::Current(-600_000)).is_err());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_ranges_is_read_only_forward() {
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let url = serve(data.clone(), false).await;
    let client = test_client();
    let mut body = RangeSource::new(&client, &track(&url))
        .open(0)
        .await
        .unwrap();
    assert!(!body.is_seekable_stream());
    tokio::task::spawn_blocking(move || {
        assert!(body.seek(SeekFrom::Start(10)).is_err());
        assert_eq!(body.stream_position().unwrap(), 0);
        let mut all = Vec::new();
        body.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_dead_link_fails_to_open() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let client = test_client();
    let err = RangeSource::new(&client, &track(&format!("http://{addr}/x")))
        .open(0)
        .await
        .err()
        .expect("404 fails");
    assert!(err.to_string().contains("404"), "{err}");
}

/// A server without byte ranges that closes its first answer after `cut` of `data`'s
/// bytes (the `Content-Length` says all of them) and answers later requests in full.
async fn dropping_server(data: Vec<u8>, cut: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
            let _ = s.write_all(head.as_bytes()).await;
            let end = if std::mem::take(&mut first) {
                cut
            } else {
                data.len()
            };
            let _ = s.write_all(&data[..end]).await;
            let _ = s.shutdown().await;
        }
    });
    format!("http://{addr}/x")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_body_without_ranges_is_read_again_from_the_start_up_to_where_it_was() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let url = dropping_server(data.clone(), 30_000).await;
    let mut body = RangeSource::new(&test_client(), &track(&url))
        .open(0)
        .await
        .unwrap();
    assert!(!body.is_seekable_stream());
    let all = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        body.read_to_end(&mut all).map(|_| all)
    })
    .await
    .unwrap()
    .expect("read to the end");
    assert_eq!(all.len(), data.len());
    assert!(all == data, "every byte once, in order");
}

/// A server that answers only the first request, with headers and `sent` of its
/// 100 000 bytes, then goes silent with the connection open; later requests get
/// nothing at all.
async fn stalling_server(sent: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        let mut first = true;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            if std::mem::take(&mut first) && sent > 0 {
                let head =
                    "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nAccept-Ranges: bytes\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&vec![7u8; sent]).await;
            }
            open.push(s); // never closed, never answered
        }
    });
    format!("http://{addr}/x")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_fails_the_track_instead_of_hanging_it() {
    let stall = std::time::Duration::from_millis(300);
    let client = test_client();
    let silent = stalling_server(0).await;
    let err = RangeSource::new(&client, &track(&silent))
        .with_stall_wait(stall)
        .open(0)
        .await
        .err()
        .expect("no answer is an error");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");

    // Mid-body: the bytes sent are read, then the stall is an error (after the
    // re-opens, which get no answer either), not a read that blocks for ever.
    let url = stalling_server(1000).await;
    let mut body = RangeSource::new(&client, &track(&url))
        .with_stall_wait(stall)
        .open(0)
        .await
        .unwrap();
    let read = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        let r = body.read_to_end(&mut all);
        (all.len(), r.map_err(|e| e.kind()))
    });
    let (n, r) = tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("the read ends")
        .unwrap();
    assert_eq!(n, 1000);
    assert_eq!(r, Err(std::io::ErrorKind::TimedOut));
}
