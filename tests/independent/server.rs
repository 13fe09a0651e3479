//! The standalone emulator: `tests/support`'s Discord (REST, gateway, voice) in a process of
//! its own, so that a client this project did not write (discord.js, see `client.js`) can be
//! pointed at it, with a loopback control API ([`super::control`]) to build the world, send
//! interactions and read what the emulator saw.
//!
//! It prints one JSON line on stdout once every port is bound (the addresses, the bot token
//! and the test CA for TLS) and stops by itself: `POST /shutdown`, the end of its stdin
//! (its parent is gone; `--ignore-stdin` turns that off), or `--lifetime` elapsing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control;
use crate::support::http::{read_request, write_response, HttpResponse};
use crate::support::{tls, Emulator, Interaction, Ports};

/// `--serve` options. Every port is on 127.0.0.1; 0 picks a free one.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "emulator-server",
    about = "The Discord emulator of tests/support as a standalone server, with a loopback control API"
)]
pub struct ServeArgs {
    /// Serve (this flag selects the server mode of the `independent` test binary).
    #[arg(long)]
    pub serve: bool,
    #[arg(long, default_value_t = 0)]
    pub control_port: u16,
    /// Plain-HTTP REST (`api_base`; discord.js: `rest.api = <api_base>/api`).
    #[arg(long, default_value_t = 0)]
    pub rest_port: u16,
    /// REST over TLS with the test certificate (what `https://discord.com` resolves to).
    #[arg(long, default_value_t = 0)]
    pub rest_tls_port: u16,
    #[arg(long, default_value_t = 0)]
    pub gateway_port: u16,
    /// The voice websocket (`wss://`, test certificate).
    #[arg(long, default_value_t = 0)]
    pub voice_port: u16,
    #[arg(long, default_value_t = 0)]
    pub voice_udp_port: u16,
    /// Exits after this long whatever happens (e.g. `90s`, `10m`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub lifetime: Duration,
    /// Keep running when stdin closes (by default the end of stdin means the parent is gone).
    #[arg(long)]
    pub ignore_stdin: bool,
}

/// What the control API reaches: the emulator, and the interactions it sent (by id).
pub struct Served {
    pub emu: Emulator,
    pub interactions: Mutex<std::collections::BTreeMap<u64, Interaction>>,
    pub info: Value,
    pub stop: CancellationToken,
}

/// Serves until shutdown; `Err` only when a port cannot be bound.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let emu = Emulator::start_on(Ports {
        rest: args.rest_port,
        rest_tls: args.rest_tls_port,
        gateway: args.gateway_port,
        voice: args.voice_port,
        voice_udp: args.voice_udp_port,
    })
    .await
    .map_err(|e| e.to_string())?;
    let control = TcpListener::bind(("127.0.0.1", args.control_port))
        .await
        .map_err(|e| format!("bind control API on port {}: {e}", args.control_port))?;
    let control_addr = control.local_addr().map_err(|e| e.to_string())?;
    let stop = CancellationToken::new();
    let info = info_json(&emu, control_addr);
    let served = Arc::new(Served {
        emu,
        interactions: Mutex::default(),
        info: info.clone(),
        stop: stop.clone(),
    });
    // The one line a driver waits for: every port is bound from here on.
    println!("{info}");

    let tracker = TaskTracker::new();
    if !args.ignore_stdin {
        let stop = stop.clone();
        tracker.spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    n = stdin.read(&mut buf) => if !matches!(n, Ok(n) if n > 0) {
                        eprintln!("emulator-server: stdin closed, stopping");
                        stop.cancel();
                        return;
                    }
                }
            }
        });
    }
    {
        let (stop, tracker2, served) = (stop.clone(), tracker.clone(), served.clone());
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = control.accept() => a,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let (stop, served) = (stop.clone(), served.clone());
                tracker2.spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = control_conn(tcp, served) => {}
                    }
                });
            }
        });
    }
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(args.lifetime) => {
            eprintln!("emulator-server: lifetime of {:?} over, stopping", args.lifetime);
            stop.cancel();
        }
    }
    tracker.close();
    // Connections finish their current answer (the one to `POST /shutdown` included).
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    Ok(())
}

/// Ports, identity and TLS trust, as the first stdout line and `GET /info` give them.
fn info_json(emu: &Emulator, control: SocketAddr) -> Value {
    let ca: PathBuf = tls::test_ca().bundle_path.clone();
    json!({
        "control": format!("http://{control}"),
        "api_base": emu.api_base(),
        "rest_tls": emu.rest_tls_addr().to_string(),
        "gateway_url": emu.gateway_url(),
        "voice_endpoint": emu.voice_endpoint(),
        "voice_udp": emu.voice_udp_addr().to_string(),
        "bot_token": emu.bot_token(),
        "bot_user_id": emu.bot_user_id().to_string(),
        "application_id": emu.application_id().to_string(),
        "ca_bundle": ca,
    })
}

/// One keep-alive control connection: requests answered in order.
async fn control_conn(tcp: TcpStream, served: Arc<Served>) {
    let (rd, mut wr) = tcp.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let req = match tokio::time::timeout(Duration::from_secs(120), read_request(&mut rd)).await
        {
            Ok(Ok(Some(req))) => req,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => {
                let resp = HttpResponse::json(400, &json!({"error": e.to_string()}));
                let _ = write_response(&mut wr, &resp, false).await;
                return;
            }
        };
        let resp = control::handle(&served, req).await;
        if write_response(&mut wr, &resp, true).await.is_err() {
            return;
        }
    }
}
