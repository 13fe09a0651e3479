//! Voice faults, as Discord's voice docs describe them: the voice websocket closed with
//! 4006 (session no longer valid) or 4009 (session timed out) mid-song, and the UDP path
//! lost for 10 s. Each test plays a tone with the real bot and measures how long a
//! listener hears nothing, printed as `recovery[...]` for RELIABILITY.md. The first tests
//! check the emulator refuses what Discord refuses (versions, credentials, heartbeats).

mod support;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::world::*;
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const G: u64 = 800_000_000_000_000_001;
const VC: u64 = 800_000_000_000_000_101;

// ---------------------------------------------------------------------------------------------
// The emulator, by hand
// ---------------------------------------------------------------------------------------------

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_voice(emu: &Emulator, query: &str) -> Result<RawWs, String> {
    let url = format!("wss://{}/{query}", emu.voice_endpoint());
    match tokio::time::timeout(T, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => panic!("voice connect timed out"),
    }
}

/// The next JSON message, or the close code (bounded).
async fn next(ws: &mut RawWs) -> Result<Value, Option<u16>> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no voice message within 5 s");
        match m {
            Some(Ok(WsMessage::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(WsMessage::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn send(ws: &mut RawWs, v: Value) {
    ws.send(WsMessage::text(v.to_string())).await.unwrap();
}

/// A guild where Discord has put the bot in a voice channel (voice state + server update).
async fn raw_world(emu: &Emulator) {
    emu.add_guild(G, "raw");
    emu.add_voice_channel(G, VC, "Music");
    emu.move_bot(G, Some(VC)).await;
}

async fn identify(ws: &mut RawWs, emu: &Emulator, session: &str, token: &str) {
    let d = json!({"server_id": G.to_string(), "session_id": session, "token": token,
        "user_id": emu.bot_user_id().to_string(), "max_dave_protocol_version": 1});
    send(ws, json!({"op": 0, "d": d})).await;
}

/// Discord serves voice gateway versions 4 to 8 and has no default: a URL without `v`, or
/// with an older one, gets no websocket. songbird's v4 and discord.js's v8 are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_versions_discord_does_not_serve_are_refused() {
    let emu = Emulator::start().await;
    for query in ["", "?encoding=json", "?v=3", "?v=9", "?v=x"] {
        let e = raw_voice(&emu, query).await.err();
        assert!(
            e.as_deref().is_some_and(|e| e.contains("400")),
            "{query:?}: {e:?}"
        );
    }
    assert_eq!(emu.refused_voice_versions(), 5);
    let errors = emu.protocol_errors();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(
        errors[0].contains("no voice gateway version"),
        "{errors:#?}"
    );
    for v in [4, 8] {
        let mut ws = raw_voice(&emu, &format!("?v={v}")).await.unwrap();
        let hello = next(&mut ws).await.unwrap();
        assert_eq!(
            (hello["op"].clone(), hello["d"]["v"].clone()),
            (json!(8), json!(v))
        );
    }
    assert_eq!(emu.refused_voice_versions(), 5);
}

/// IDENTIFY with a token other than the last VOICE_SERVER_UPDATE's is closed with 4004,
/// with a session other than the bot's voice state's with 4006; the right pair is READY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_voice_token_gets_4004_and_an_unknown_session_4006() {
    let emu = Emulator::start().await;
    raw_world(&emu).await;
    let (session, token) = emu.voice_credentials(G).expect("Discord gave credentials");
    let mut ws = raw_voice(&emu, "?v=8").await.unwrap();
    next(&mut ws).await.unwrap(); // HELLO
    identify(&mut ws, &emu, &session, "not-the-token").await;
    assert_eq!(next(&mut ws).await.err(), Some(Some(4004)));

    let mut ws = raw_voice(&emu, "?v=8").await.unwrap();
    next(&mut ws).await.unwrap();
    identify(&mut ws, &emu, "some-other-session", &token).await;
    assert_eq!(next(&mut ws).await.err(), Some(Some(4006)));

    let mut ws = raw_voice(&emu, "?v=8").await.unwrap();
    next(&mut ws).await.unwrap();
    identify(&mut ws, &emu, &session, &token).await;
    assert_eq!(next(&mut ws).await.unwrap()["op"], 2, "READY");
    assert_eq!(emu.refused_voice_identifies(), vec![4004, 4006]);
    assert_eq!(emu.voice_connections(G), 1);
}

/// A voice connection that stops heartbeating is closed with 4009 once twice the interval
/// plus 1 s has passed; while ACKs are withheld a heartbeat gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_voice_connection_is_closed_with_4009() {
    let emu = Emulator::start().await;
    raw_world(&emu).await;
    let interval = Duration::from_millis(300);
    emu.set_voice_heartbeat_interval(interval);
    let (session, token) = emu.voice_credentials(G).unwrap();
    let mut ws = raw_voice(&emu, "?v=8").await.unwrap();
    let hello = next(&mut ws).await.unwrap();
    assert_eq!(hello["d"]["heartbeat_interval"], json!(300.0));
    identify(&mut ws, &emu, &session, &token).await;
    assert_eq!(next(&mut ws).await.unwrap()["op"], 2);
    send(&mut ws, json!({"op": 3, "d": {"t": 1, "seq_ack": 1}})).await;
    let ack = next(&mut ws).await.unwrap();
    assert_eq!(
        (ack["op"].clone(), ack["d"]["t"].clone()),
        (json!(6), json!(1))
    );

    emu.withhold_voice_heartbeat_acks(true);
    send(&mut ws, json!({"op": 3, "d": {"t": 2, "seq_ack": 2}})).await;
    let silent_since = Instant::now();
    // No ACK comes: the next thing is the close, once the client stayed silent too long.
    assert_eq!(next(&mut ws).await.err(), Some(Some(4009)));
    let took = silent_since.elapsed();
    eprintln!("voice heartbeat timeout after {:.2} s", took.as_secs_f64());
    assert!(took >= interval * 2 + Duration::from_secs(1), "{took:?}");
    assert_eq!(emu.voice_heartbeats(), (2, 1));
    assert_eq!(emu.voice_heartbeat_timeouts(), 1);
    assert!(emu.protocol_errors().is_empty());
}

/// While the UDP path is lost, IP discovery gets no answer; after, it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_udp_path_answers_nothing_until_it_comes_back() {
    let emu = Emulator::start().await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(emu.voice_udp_addr()).await.unwrap();
    let mut req = [0u8; 74];
    req[0..2].copy_from_slice(&1u16.to_be_bytes());
    req[2..4].copy_from_slice(&70u16.to_be_bytes());
    req[4..8].copy_from_slice(&42u32.to_be_bytes());
    let mut buf = [0u8; 128];
    emu.blackhole_udp(Duration::from_millis(1500));
    let until = Instant::now() + Duration::from_millis(1500);
    sock.send(&req).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_millis(700), sock.recv(&mut buf)).await;
    assert!(lost.is_err(), "an answer came through the blackhole");
    assert_eq!(emu.udp_dropped(), 1);
    tokio::time::sleep_until(until.into()).await;
    sock.send(&req).await.unwrap();
    let n = tokio::time::timeout(T, sock.recv(&mut buf))
        .await
        .expect("IP discovery answered after the blackhole")
        .unwrap();
    assert_eq!((n, u16::from_be_bytes([buf[0], buf[1]])), (74, 2));
}

// ---------------------------------------------------------------------------------------------
// The bot
// ---------------------------------------------------------------------------------------------

const TONE_HZ: f32 = 330.0;

/// A 60 s tone (longer than any outage here), playing and heard.
async fn playing(w: &World) {
    write_tone_wav(&w.media_dir().join("hold.wav"), TONE_HZ, 60.0, 0.5);
    let r = w.play(ANN, &w.files.url("hold.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_audio_frames(GUILD, 25, T).await;
}

/// Waits until the tone is heard for 1 s (50 frames) from frames `again` accepts, asserts
/// it is the tone, and returns the longest silence from `since` until then.
async fn heard_again_after(
    w: &World,
    what: &str,
    since: Instant,
    deadline: Duration,
    again: impl Fn(&AudioFrame) -> bool + Copy,
) -> Duration {
    let loud = |f: &AudioFrame| rms(std::slice::from_ref(f)) > support::audio::SILENCE_RMS;
    let count = move |e: &Emulator| {
        e.read(|s| {
            s.audio
                .get(&GUILD)
                .map_or(0, |a| a.iter().filter(|f| again(f) && loud(f)).count())
        })
    };
    w.emu
        .wait_for(&format!("the tone again after {what}"), deadline, |e| {
            count(e) >= 50
        })
        .await;
    let frames = w.emu.audio(GUILD);
    let after: Vec<AudioFrame> = non_silent(&frames).into_iter().filter(again).collect();
    let f = dominant_frequency(&after[..50]);
    assert!((f - TONE_HZ).abs() < 10.0, "heard {f} Hz after {what}");
    let silence = longest_silence(&frames, since, after[49].at);
    eprintln!(
        "{what}: {:.2} s of silence, the tone heard again {:.2} s after the fault",
        silence.as_secs_f64(),
        (after[0].at - since).as_secs_f64()
    );
    support::recovered(&format!("{what} (silence)"), silence);
    silence
}

/// The SSRC of the session the tone is heard on now.
fn current_ssrc(w: &World) -> u32 {
    w.emu.audio(GUILD).last().expect("audio").ssrc
}

/// 4006 mid-song: the session is gone and songbird will not resume it; the bot joins its
/// channel again (a new op 4, a new voice session) and the tone goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_close_4006_mid_song_rejoins_and_the_music_goes_on() {
    let w = World::start().await;
    playing(&w).await;
    let (joins, sessions) = (
        w.emu.voice_state_updates(GUILD).len(),
        w.emu.voice_connections(GUILD),
    );
    let old = current_ssrc(&w);
    let t0 = Instant::now();
    w.emu.close_voice(GUILD, 4006).await;
    let silence = heard_again_after(&w, "voice 4006", t0, T, |f| f.ssrc != old).await;
    assert!(silence < Duration::from_secs(10), "{silence:?}");
    assert!(
        w.emu.voice_state_updates(GUILD)[joins..].contains(&Some(MUSIC)),
        "a new voice state update: {:?}",
        w.emu.voice_state_updates(GUILD)
    );
    assert!(
        w.emu.voice_connections(GUILD) > sessions,
        "a new voice session"
    );
    assert_eq!(w.emu.voice_resumes(GUILD), 0);
    assert_eq!(w.emu.bot_voice_channel(GUILD), Some(MUSIC));
    let q = w.cmd(ANN, "nowplaying", json!([])).await;
    assert!(q.text().contains("hold"), "{}", q.text());
    assert_eq!(w.emu.refused_voice_identifies(), Vec::<u16>::new());
    w.stop().await;
}

/// 4009 mid-song: songbird tries to resume, Discord refuses the timed-out session (4006),
/// and the call gets a new voice session; the tone goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_close_4009_mid_song_gets_a_new_session_and_the_music_goes_on() {
    let w = World::start().await;
    playing(&w).await;
    let sessions = w.emu.voice_connections(GUILD);
    let old = current_ssrc(&w);
    let t0 = Instant::now();
    w.emu.close_voice(GUILD, 4009).await;
    let silence = heard_again_after(&w, "voice 4009", t0, T, |f| f.ssrc != old).await;
    assert!(silence < Duration::from_secs(10), "{silence:?}");
    assert!(
        w.emu.voice_connections(GUILD) > sessions,
        "a new voice session"
    );
    assert_eq!(
        w.emu.voice_resumes(GUILD),
        0,
        "a timed-out session is not resumed"
    );
    assert_eq!(w.emu.bot_voice_channel(GUILD), Some(MUSIC));
    assert_eq!(w.emu.refused_voice_identifies(), Vec::<u16>::new());
    w.stop().await;
}

/// The UDP path is lost for 10 s mid-song: the bot stays in its call, commands answer
/// meanwhile, and once the path is back the tone is heard again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blackholed_for_10_s_mid_song_and_the_music_comes_back() {
    let w = World::start().await;
    playing(&w).await;
    let outage = Duration::from_secs(10);
    let t0 = Instant::now();
    w.emu.blackhole_udp(outage);
    // Commands answer while nothing reaches the listeners.
    let q = w.cmd(ANN, "nowplaying", json!([])).await;
    assert!(q.text().contains("hold"), "{}", q.text());
    let q = w.cmd(ANN, "queue", json!([])).await;
    assert!(q.text().contains("hold"), "{}", q.text());
    assert!(t0.elapsed() < outage, "the commands took the whole outage");
    let back = t0 + outage;
    tokio::time::sleep_until(back.into()).await;
    assert!(w.emu.udp_dropped() > 100, "the audio was dropped");
    let silence = heard_again_after(&w, "UDP blackhole 10 s", t0, Duration::from_secs(5), |f| {
        f.at > t0
    })
    .await;
    let late = heard_again(&w.emu.audio(GUILD), t0, Duration::from_secs(1))
        .expect("the break")
        .at
        .saturating_duration_since(back);
    // From the path's return to the tone heard again.
    support::recovered("UDP blackhole 10 s (after the path came back)", late);
    assert!(
        silence >= outage - Duration::from_millis(500),
        "{silence:?}"
    );
    assert!(late < Duration::from_secs(2), "{late:?}");
    assert_eq!(w.emu.bot_voice_channel(GUILD), Some(MUSIC));
    assert_eq!(
        w.bot.registry.stats(encore::resources::Kind::Call).current,
        1
    );
    assert_eq!(
        w.emu.voice_state_updates(GUILD),
        vec![Some(MUSIC)],
        "never left"
    );
    assert_eq!(w.emu.refused_voice_identifies(), Vec::<u16>::new());
    w.stop().await;
}
