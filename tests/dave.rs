//! DAVE (end-to-end voice encryption, protocol v1): the real bot against the emulator's DAVE
//! voice server, where simulated listeners (the humans in the bot's channel) are in the MLS group
//! and decrypt every frame. Each test asserts that DAVE frames (ending in `FA FA`) were received
//! and decrypted by a listener, since songbird silently drops DAVE frames it cannot parse and a
//! layout mistake would otherwise look like plain audio.
//!
//! The first test drives the emulator's DAVE state machine directly with a client that mirrors
//! songbird 0.6.1's `ws.rs` handling and parses every server frame with songbird's own model
//! (`serenity-voice-model`), so a frame layout mistake fails there first.

mod support;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use serenity_voice_model::payload::{
    DaveMlsCommitWelcome, DaveMlsInvalidCommitWelcome, DaveMlsKeyPackage,
    DaveMlsProposalsOperationType, DaveTransitionReady,
};
use serenity_voice_model::{deserialize_binary_event, serialize_binary_event, Event};
use support::dave::{DaveCall, Out};
use support::state::{Shared, State};
use support::world::*;
use support::*;

fn near(f: f32, want: f32) -> bool {
    (f - want).abs() <= 15.0
}

// ---------------------------------------------------------------------------------------------
// Helpers for the end-to-end tests
// ---------------------------------------------------------------------------------------------

/// A tone long enough to outlast joins, leaves and transitions (served as `name`).
fn long_tone(w: &World, name: &str, freq: f32, secs: f32) -> String {
    write_tone_wav(&w.media_dir().join(name), freq, secs, 0.5);
    w.files.url(name)
}

/// Waits for `n` audible frames that arrived DAVE-encrypted and a listener decrypted (since the
/// last `clear_audio`), and returns them.
async fn hear_dave(w: &World, n: usize) -> Vec<AudioFrame> {
    w.emu
        .wait_for(&format!("{n} audible DAVE frames"), T, |e| {
            non_silent(&e.dave_audio(GUILD)).len() >= n
        })
        .await;
    non_silent(&w.emu.dave_audio(GUILD))
}

/// Waits (bounded) until a run of frames reaches every listener decryptable: right after a
/// transition, frames the mixer encrypted under the epoch before it may still be in flight.
async fn wait_epoch_settled(w: &World) {
    let deadline = std::time::Instant::now() + T;
    loop {
        w.emu.clear_audio(GUILD);
        w.emu.clear_dave_stats(GUILD);
        hear_dave(w, 5).await;
        let st = w.emu.dave_stats(GUILD);
        if st.listener_failures == 0 && st.decrypt_failures == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "listeners still fail to decrypt: {st:#?}"
        );
    }
}

/// DAVE v1 was negotiated, frames really were DAVE frames decrypted by a listener, nothing plain
/// arrived once the group existed, and the voice server saw no anomaly.
fn assert_dave_ok(w: &World) {
    let st = w.emu.dave_stats(GUILD);
    assert_eq!(st.protocol_version, 1, "{st:#?}");
    assert!(
        st.frames_encrypted > 0 && st.frames_decrypted > 0,
        "no DAVE frame was received and decrypted: {st:#?}"
    );
    assert_eq!(st.frames_plain_in_group, 0, "{st:#?}");
    let errors = w.emu.voice_errors();
    assert!(errors.is_empty(), "voice errors: {errors:#?}\n{st:#?}");
}

// ---------------------------------------------------------------------------------------------
// The emulator's DAVE server against a songbird-like client, offline
// ---------------------------------------------------------------------------------------------

const BOT: u64 = BOT_USER_ID;
const CHAN: u64 = 1_000_000_000_000_101;
const G: u64 = 1_000_000_000_000_001;
const L1: u64 = 1_000_000_000_000_301;
const L2: u64 = 1_000_000_000_000_302;

/// The parts of songbird 0.6.1's `driver/tasks/ws.rs` that handle DAVE, over a davey session.
struct SongbirdLike {
    session: davey::DaveSession,
    protocol_version: u16,
    recognized: HashSet<u64>,
    pending_transitions: HashMap<u16, u16>,
}

/// What the client sends back.
enum ClientMsg {
    Binary(Vec<u8>),
    Json(Value),
}

impl SongbirdLike {
    /// After SESSION_DESCRIPTION with `dave_protocol_version: 1`: a session and its key package.
    fn connect() -> (SongbirdLike, ClientMsg) {
        let mut session =
            davey::DaveSession::new(NonZeroU16::new(1).unwrap(), BOT, CHAN, None).unwrap();
        let key_package = session.create_key_package().unwrap();
        let kp =
            serialize_binary_event(&Event::DaveMlsKeyPackage(DaveMlsKeyPackage { key_package }))
                .unwrap();
        let mut recognized = HashSet::new();
        recognized.insert(BOT);
        let c = SongbirdLike {
            session,
            protocol_version: 1,
            recognized,
            pending_transitions: HashMap::new(),
        };
        (c, ClientMsg::Binary(kp))
    }

    fn parse(out: &Out) -> Event {
        match out {
            Out::Binary(op, payload) => {
                let mut frame = vec![*op];
                frame.extend_from_slice(payload);
                deserialize_binary_event(&frame)
                    .unwrap_or_else(|e| panic!("songbird cannot parse binary op {op}: {e}"))
            }
            Out::Json(op, d) => {
                let text = json!({"op": op, "d": d}).to_string();
                serde_json::from_str::<Event>(&text)
                    .unwrap_or_else(|e| panic!("songbird cannot parse {text}: {e}"))
            }
        }
    }

    fn ready(&mut self, transition_id: u16) -> ClientMsg {
        self.pending_transitions
            .insert(transition_id, self.protocol_version);
        ClientMsg::Json(
            serde_json::to_value(Event::from(DaveTransitionReady {
                transition_id,
                protocol_version: self.protocol_version,
            }))
            .unwrap(),
        )
    }

    fn invalid(&mut self, transition_id: u16) -> Vec<ClientMsg> {
        let mut out = vec![ClientMsg::Json(
            serde_json::to_value(Event::from(DaveMlsInvalidCommitWelcome { transition_id }))
                .unwrap(),
        )];
        out.extend(self.reinit());
        out
    }

    fn reinit(&mut self) -> Vec<ClientMsg> {
        let v = NonZeroU16::new(self.protocol_version).unwrap();
        self.session.reinit(v, BOT, CHAN, None).unwrap();
        let key_package = self.session.create_key_package().unwrap();
        vec![ClientMsg::Binary(
            serialize_binary_event(&Event::DaveMlsKeyPackage(DaveMlsKeyPackage { key_package }))
                .unwrap(),
        )]
    }

    fn handle(&mut self, out: &Out) -> Vec<ClientMsg> {
        match Self::parse(out) {
            Event::ClientsConnect(ev) => {
                self.recognized.extend(ev.user_ids.iter().map(|u| u.0));
                vec![]
            }
            Event::ClientDisconnect(ev) => {
                self.recognized.remove(&ev.user_id.0);
                vec![]
            }
            Event::DavePrepareTransition(ev) => {
                self.pending_transitions
                    .insert(ev.transition_id, ev.protocol_version);
                if ev.transition_id == 0 {
                    self.pending_transitions.remove(&0);
                    self.protocol_version = ev.protocol_version;
                    vec![]
                } else {
                    vec![self.ready(ev.transition_id)]
                }
            }
            Event::DaveExecuteTransition(ev) => {
                let v = self
                    .pending_transitions
                    .remove(&ev.transition_id)
                    .expect("execute of a known transition");
                self.protocol_version = v;
                vec![]
            }
            Event::DavePrepareEpoch(ev) if ev.epoch == 1 => {
                self.protocol_version = ev.protocol_version;
                self.reinit()
            }
            Event::DaveMlsExternalSender(ev) => {
                self.session
                    .set_external_sender(&ev.external_sender)
                    .unwrap();
                vec![]
            }
            Event::DaveMlsProposals(ev) => {
                let op = match ev.operation_type {
                    DaveMlsProposalsOperationType::Append => davey::ProposalsOperationType::APPEND,
                    DaveMlsProposalsOperationType::Revoke => davey::ProposalsOperationType::REVOKE,
                };
                let ids: Vec<u64> = self.recognized.iter().copied().collect();
                let cw = self
                    .session
                    .process_proposals(op, &ev.proposals, Some(&ids))
                    .unwrap_or_else(|e| panic!("proposals rejected: {e:?}"));
                cw.map(|cw| {
                    ClientMsg::Binary(
                        serialize_binary_event(&Event::DaveMlsCommitWelcome(
                            DaveMlsCommitWelcome {
                                commit: cw.commit,
                                welcome: cw.welcome,
                            },
                        ))
                        .unwrap(),
                    )
                })
                .into_iter()
                .collect()
            }
            Event::DaveMlsAnnounceCommitTransition(ev) => {
                match self.session.process_commit(&ev.commit_message) {
                    Ok(()) if ev.transition_id != 0 => vec![self.ready(ev.transition_id)],
                    Ok(()) => vec![],
                    Err(_) => self.invalid(ev.transition_id),
                }
            }
            Event::DaveMlsWelcome(ev) => match self.session.process_welcome(&ev.welcome) {
                Ok(()) if ev.transition_id != 0 => vec![self.ready(ev.transition_id)],
                Ok(()) => vec![],
                Err(_) => self.invalid(ev.transition_id),
            },
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// What songbird's mixer sends for an Opus frame.
    fn media(&mut self, opus: &[u8]) -> Vec<u8> {
        if self.protocol_version != 0 && self.session.is_ready() {
            self.session.encrypt_opus(opus).unwrap().into_owned()
        } else {
            opus.to_vec()
        }
    }
}

/// Delivers `outs` to the client, feeds its replies to the server, lets the server reconcile
/// with `humans`, until quiet (bounded).
fn pump(call: &mut DaveCall, bot: &mut SongbirdLike, mut outs: Vec<Out>, humans: &[u64]) {
    for _ in 0..50 {
        let mut replies = Vec::new();
        for o in &outs {
            replies.extend(bot.handle(o));
        }
        outs.clear();
        for r in replies {
            outs.extend(match r {
                ClientMsg::Binary(b) => match b[0] {
                    26 => call.on_key_package(&b[1..]),
                    28 => call.on_commit(&b[1..]),
                    op => panic!("client binary op {op}"),
                },
                ClientMsg::Json(v) => match v["op"].as_u64() {
                    Some(23) => call.on_transition_ready(&v["d"]),
                    Some(31) => call.on_invalid_commit(&v["d"]),
                    op => panic!("client op {op:?}"),
                },
            });
        }
        outs.extend(call.tick(Some(humans)));
        call.mirror();
        if outs.is_empty() {
            return;
        }
    }
    panic!("DAVE exchange did not settle");
}

#[test]
fn dave_server_flows_against_a_songbird_like_client() {
    let shared = Arc::new(Shared::new(State::new(BOT, BOT, "token".into())));
    let stats = || shared.read(|s| s.dave_stats.get(&G).cloned().unwrap_or_default());
    let errors = || shared.read(|s| s.voice_errors.clone());
    let opus = [0xFCu8, 0xFF, 0xFE, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07];
    let send = |call: &mut DaveCall, bot: &mut SongbirdLike| {
        let pkt = bot.media(&opus);
        (pkt.ends_with(&[0xFA, 0xFA]), call.on_media(&pkt))
    };

    let mut call = DaveCall::new(shared.clone(), G, Some(CHAN), BOT).unwrap();
    // SESSION_DESCRIPTION: songbird sends its key package at once; the server sends 11 and 25.
    let (mut bot, kp) = SongbirdLike::connect();
    let start = call.start(&[L1]);
    let ClientMsg::Binary(kp) = kp else {
        unreachable!()
    };
    let mut outs = start;
    outs.extend(call.on_key_package(&kp[1..]));
    pump(&mut call, &mut bot, outs, &[L1]);
    let st = stats();
    assert!(st.settled_with(&[L1]), "welcome path: {st:#?}");
    assert_eq!(
        (st.welcomes, st.transitions, st.epoch),
        (1, 1, 1),
        "{st:#?}"
    );
    assert!(bot.session.is_ready());
    let (dave, heard) = send(&mut call, &mut bot);
    assert!(dave, "the bot encrypts once welcomed");
    assert_eq!(heard, Some((opus.to_vec(), true)));
    // The silence frame stays plain and is accepted.
    let sil = bot.media(&dave::OPUS_SILENCE);
    assert_eq!(sil, dave::OPUS_SILENCE);
    assert_eq!(call.on_media(&sil), Some((sil.clone(), false)));

    // A second human joins: op 11, proposals, the bot commits, the newcomer is welcomed.
    pump(&mut call, &mut bot, vec![], &[L1, L2]);
    let st = stats();
    assert!(st.settled_with(&[L1, L2]), "commit path: {st:#?}");
    assert_eq!((st.commits, st.epoch), (1, 2), "{st:#?}");
    assert!(bot.recognized.contains(&L2));
    for _ in 0..3 {
        assert_eq!(send(&mut call, &mut bot).1, Some((opus.to_vec(), true)));
    }
    let st = stats();
    assert_eq!(st.listener_frames[&L1].decrypted, 4, "{st:#?}");
    assert_eq!(st.listener_frames[&L2].decrypted, 3, "{st:#?}");

    // L2 leaves: remove proposal, the bot commits; L2 can no longer decrypt.
    pump(&mut call, &mut bot, vec![], &[L1]);
    let st = stats();
    assert!(st.settled_with(&[L1]), "remove: {st:#?}");
    assert_eq!((st.commits, st.epoch), (2, 3), "{st:#?}");
    assert!(!bot.recognized.contains(&L2));
    assert_eq!(send(&mut call, &mut bot).1, Some((opus.to_vec(), true)));
    let st = stats();
    assert_eq!(st.eavesdroppers[&L2].decrypted, 0, "{st:#?}");
    assert_eq!(st.eavesdroppers[&L2].failed, 1, "{st:#?}");

    // The last human leaves: op 24 epoch 1 + op 21, the bot re-initializes and plays plain.
    pump(&mut call, &mut bot, vec![], &[]);
    let st = stats();
    assert!(st.settled_with(&[]), "last leaves: {st:#?}");
    assert_eq!((st.reinits, st.key_packages), (1, 2), "{st:#?}");
    assert!(!bot.session.is_ready());
    assert_eq!(
        send(&mut call, &mut bot),
        (false, Some((opus.to_vec(), false)))
    );

    // L1 comes back while the bot is alone: the bot commits the add from its pending group.
    pump(&mut call, &mut bot, vec![], &[L1]);
    let st = stats();
    assert!(st.settled_with(&[L1]), "rejoin: {st:#?}");
    assert_eq!((st.commits, st.welcomes), (3, 1), "{st:#?}");
    assert_eq!(send(&mut call, &mut bot).1, Some((opus.to_vec(), true)));

    // An invalid commit: the bot answers op 31, re-initializes and is welcomed again.
    let outs = call.inject_invalid_commit().unwrap();
    pump(&mut call, &mut bot, outs, &[L1]);
    let st = stats();
    assert!(st.settled_with(&[L1]), "after op 31: {st:#?}");
    assert_eq!((st.invalid_commits, st.welcomes), (1, 2), "{st:#?}");
    assert_eq!(send(&mut call, &mut bot).1, Some((opus.to_vec(), true)));

    assert!(errors().is_empty(), "{:#?}", errors());

    // Once the transition grace is over, a plain frame inside the group is refused and reported.
    let after_grace =
        std::time::Instant::now() + dave::TRANSITION_GRACE + Duration::from_millis(100);
    assert_eq!(call.on_media_at(&opus, after_grace), None);
    assert_eq!(stats().frames_plain_in_group, 1);
    assert_eq!(errors().len(), 1, "{:#?}", errors());
    // Malformed client frames are errors, not panics.
    assert!(call.on_key_package(&[1, 2, 3]).is_empty());
    assert!(call.on_commit(&[0xFF; 40]).is_empty());
    assert_eq!(call.on_media_at(&[0u8; 20][..], after_grace), None);
    assert!(errors().len() >= 3, "{:#?}", errors());
}

// ---------------------------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------------------------

/// The usual case: ANN is already in the channel when the bot joins. Her session commits the
/// bot's add and the bot is welcomed (op 30); she decrypts the tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_in_the_channel_welcomes_the_bot_and_hears_the_tone() {
    let w = World::start().await;
    assert!(w.emu.dave_enabled(), "DAVE is the emulator's default");
    let r = w.play(ANN, &w.files.url("low.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;

    let frames = hear_dave(&w, 60).await;
    let f = dominant_frequency(&frames);
    assert!(near(f, 440.0), "ANN decrypted {f} Hz, want 440");
    assert_contiguous(&frames);
    let st = w.emu.dave_stats(GUILD);
    assert_eq!(st.welcomes, 1, "{st:#?}");
    assert!(st.transitions >= 1, "{st:#?}");
    assert_eq!(st.decrypt_failures, 0, "{st:#?}");
    assert_eq!(st.channel_id, Some(MUSIC));
    assert!(st.privacy_code.is_some(), "{st:#?}");
    assert!(st.listener_frames[&ANN].decrypted >= 60, "{st:#?}");
    // What `audio()` records once the group exists is what ANN decrypted.
    let all = non_silent(&w.emu.audio(GUILD));
    let plain = all.iter().filter(|f| !f.dave).count();
    assert!(
        plain <= st.frames_plain,
        "{plain} plain frames recorded: {st:#?}"
    );
    assert_dave_ok(&w);
    w.stop().await;
}

/// BEN joins while the bot is playing to ANN: op 11, an add proposal, the bot commits (op 28),
/// BEN is welcomed and hears the rest of the tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_joining_mid_song_is_added_by_the_bots_commit_and_hears_the_rest() {
    let w = World::start().await;
    let url = long_tone(&w, "dave-long.wav", 440.0, 20.0);
    w.play(ANN, &url).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    hear_dave(&w, 25).await;

    w.emu.user_join_voice(GUILD, BEN, MUSIC).await;
    w.emu.wait_dave_group(GUILD, &[ANN, BEN], T).await;
    let st = w.emu.dave_stats(GUILD);
    assert_eq!((st.commits, st.announced_commits), (1, 1), "{st:#?}");
    assert!(st.proposals >= 1, "{st:#?}");

    // A frame or two the mixer encrypted under the old epoch may still be in flight: BEN cannot
    // decrypt those (ANN can), as in a real call. Count from after the transition.
    wait_epoch_settled(&w).await;
    w.emu.clear_audio(GUILD);
    w.emu.clear_dave_stats(GUILD);
    let frames = hear_dave(&w, 50).await;
    assert!(near(dominant_frequency(&frames), 440.0));
    assert_contiguous(&frames);
    let st = w.emu.dave_stats(GUILD);
    assert!(
        st.listener_frames[&BEN].decrypted >= 50,
        "BEN decrypts what the bot sends: {st:#?}"
    );
    assert_eq!(st.listener_frames[&BEN].failed, 0, "{st:#?}");
    assert_dave_ok(&w);
    w.stop().await;
}

/// ANN leaves (the bot is alone: op 24 re-init, it plays plain) and comes back: the bot commits
/// her add from its own group and she hears the tone again. Then BEN joins and leaves again
/// (remove proposal, the bot commits) while ANN keeps listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_leaves_and_joins_again() {
    let w = World::start().await;
    let url = long_tone(&w, "dave-long.wav", 440.0, 25.0);
    w.play(ANN, &url).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    hear_dave(&w, 20).await;

    w.emu.user_leave_voice(GUILD, ANN).await;
    w.emu.wait_dave_group(GUILD, &[], T).await;
    let st = w.emu.dave_stats(GUILD);
    assert!(st.reinits >= 1 && st.key_packages >= 2, "{st:#?}");
    // Alone, the bot sends plain Opus (there is no group).
    let plain_before = st.frames_plain;
    w.emu
        .wait_for("plain frames while the bot is alone", T, |e| {
            e.dave_stats(GUILD).frames_plain >= plain_before + 10
        })
        .await;

    w.emu.user_join_voice(GUILD, ANN, MUSIC).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    let st = w.emu.dave_stats(GUILD);
    assert_eq!(
        st.welcomes, 1,
        "the rejoin is the bot's commit, not a welcome: {st:#?}"
    );
    assert!(st.commits >= 1, "{st:#?}");
    w.emu.clear_audio(GUILD);
    let frames = hear_dave(&w, 40).await;
    assert!(near(dominant_frequency(&frames), 440.0));
    assert_contiguous(&frames);

    // BEN comes and goes; ANN keeps hearing throughout.
    w.emu.user_join_voice(GUILD, BEN, MUSIC).await;
    w.emu.wait_dave_group(GUILD, &[ANN, BEN], T).await;
    w.emu.user_leave_voice(GUILD, BEN).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    w.emu.clear_audio(GUILD);
    let frames = hear_dave(&w, 40).await;
    assert!(near(dominant_frequency(&frames), 440.0));
    assert_contiguous(&frames);
    assert_dave_ok(&w);
    w.stop().await;
}

/// `/leave`, then a new `/play`: a new voice session, a new group, and ANN hears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_leaves_and_a_new_play_rejoins_under_dave() {
    let w = World::start().await;
    w.play(ANN, &w.files.url("low.wav")).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    hear_dave(&w, 20).await;

    let leave = w.cmd(ANN, "leave", json!([])).await;
    assert!(leave.text().contains("Left"), "{}", leave.text());
    w.emu.wait_bot_voice(GUILD, None, T).await;

    w.emu.clear_audio(GUILD);
    let r = w.play(ANN, &w.files.url("high.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
    w.emu
        .wait_for("a second DAVE welcome", T, |e| {
            e.dave_stats(GUILD).welcomes >= 2
        })
        .await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    assert_eq!(w.emu.voice_connections(GUILD), 2);
    let frames = hear_dave(&w, 40).await;
    let f = dominant_frequency(&frames);
    assert!(
        near(f, 880.0),
        "after rejoining ANN decrypted {f} Hz, want 880"
    );
    assert_contiguous(&frames);
    assert_dave_ok(&w);
    w.stop().await;
}

/// Someone outside the group cannot decrypt: a stranger's DAVE session, and BEN after he left
/// (the bot's commit of his removal moved the group to keys he does not have). Nothing plain
/// reaches them either once the group exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_outside_the_group_cannot_decrypt() {
    const STRANGER: u64 = 1_000_000_000_000_399;
    let w = World::start().await;
    w.emu.user_join_voice(GUILD, BEN, MUSIC).await;
    let url = long_tone(&w, "dave-long.wav", 440.0, 20.0);
    w.play(ANN, &url).await;
    w.emu.wait_dave_group(GUILD, &[ANN, BEN], T).await;
    w.emu.dave_add_eavesdropper(GUILD, STRANGER);
    hear_dave(&w, 10).await;

    w.emu.user_leave_voice(GUILD, BEN).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    // Frames already in flight under the old epoch are not what this test is about.
    wait_epoch_settled(&w).await;
    w.emu.clear_audio(GUILD);
    w.emu.clear_dave_stats(GUILD);
    hear_dave(&w, 50).await;

    let st = w.emu.dave_stats(GUILD);
    for who in [STRANGER, BEN] {
        let e = &st.eavesdroppers[&who];
        assert_eq!(e.decrypted, 0, "{who} decrypted frames: {st:#?}");
        assert!(e.failed >= 50, "{who} saw the DAVE frames: {st:#?}");
        assert_eq!(e.plain, 0, "{who} heard plain audio: {st:#?}");
    }
    assert_eq!(st.frames_plain, 0, "{st:#?}");
    assert!(st.listener_frames[&ANN].decrypted >= 50, "{st:#?}");
    assert_dave_ok(&w);
    w.stop().await;
}

/// Opus passthrough (volume 100, a WebM/Opus file): the file's Opus packets are DAVE-encrypted
/// as they are, and ANN decrypts exactly those packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_passthrough_is_dave_encrypted_too() {
    let w = World::start().await;
    let path = w.media_dir().join("tone.webm");
    write_tone_webm(&path, 660.0, 4.0);
    let r = w.play(ANN, &w.files.url("tone.webm")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    let frames = hear_dave(&w, 60).await;
    let f = dominant_frequency(&frames);
    assert!(near(f, 660.0), "ANN decrypted {f} Hz, want 660");

    // Passthrough, not a re-encode: the decrypted packet sizes are a run of the file's.
    let sizes = packet_sizes(&path);
    assert!(sizes.len() > 100, "ffprobe packet sizes: {sizes:?}");
    let got: Vec<usize> = frames.iter().map(|f| f.opus_len).collect();
    let run = &got[got.len() / 2 - 10..got.len() / 2 + 10];
    assert!(
        sizes.windows(run.len()).any(|w| w == run),
        "decrypted Opus sizes {run:?} are not a run of the file's packets {sizes:?}"
    );
    assert_dave_ok(&w);
    w.stop().await;
}

/// A commit the bot cannot process: it answers op 31, re-initializes, and is welcomed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_commit_is_reported_and_the_bot_is_welcomed_again() {
    let w = World::start().await;
    let url = long_tone(&w, "dave-long.wav", 440.0, 20.0);
    w.play(ANN, &url).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    hear_dave(&w, 10).await;

    w.emu.dave_inject_invalid_commit(GUILD);
    w.emu
        .wait_for("op 31 and a new welcome", T, |e| {
            let st = e.dave_stats(GUILD);
            st.invalid_commits == 1 && st.welcomes == 2
        })
        .await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    w.emu.clear_audio(GUILD);
    let frames = hear_dave(&w, 40).await;
    assert!(near(dominant_frequency(&frames), 440.0));
    assert_contiguous(&frames);
    assert_dave_ok(&w);
    w.stop().await;
}

/// A resumable voice close (4015): songbird resumes the session, keeps its DAVE session and
/// group, and ANN keeps decrypting. (Closes that need a fresh IDENTIFY are the same as `/leave`
/// followed by `/play` here: a new call and a new welcome.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_voice_session_keeps_its_dave_group() {
    let w = World::start().await;
    let url = long_tone(&w, "dave-long.wav", 440.0, 20.0);
    w.play(ANN, &url).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    hear_dave(&w, 10).await;

    w.emu.close_voice(GUILD, 4015).await;
    w.emu
        .wait_for("voice resume", T, |e| e.voice_resumes(GUILD) == 1)
        .await;
    w.emu.clear_audio(GUILD);
    let frames = hear_dave(&w, 30).await;
    assert!(near(dominant_frequency(&frames), 440.0));
    assert_contiguous(&frames);
    let st = w.emu.dave_stats(GUILD);
    assert_eq!(
        (st.welcomes, st.key_packages),
        (1, 1),
        "a resume keeps the group: {st:#?}"
    );
    assert_eq!(w.emu.voice_connections(GUILD), 1);
    assert_dave_ok(&w);
    w.stop().await;
}

/// A moderator moves the bot to LOBBY, where BEN is: a new call in the new channel's group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_bot_joins_the_new_channels_group() {
    let w = World::start().await;
    w.emu.user_join_voice(GUILD, BEN, LOBBY).await;
    let url = long_tone(&w, "dave-long.wav", 440.0, 20.0);
    w.play(ANN, &url).await;
    w.emu.wait_dave_group(GUILD, &[ANN], T).await;
    hear_dave(&w, 10).await;

    w.emu.move_bot(GUILD, Some(LOBBY)).await;
    w.emu
        .wait_for("the call in LOBBY", T, |e| {
            e.dave_stats(GUILD).channel_id == Some(LOBBY)
        })
        .await;
    w.emu.wait_dave_group(GUILD, &[BEN], T).await;
    w.emu.clear_audio(GUILD);
    w.emu.clear_dave_stats(GUILD);
    let frames = hear_dave(&w, 30).await;
    assert!(near(dominant_frequency(&frames), 440.0));
    let st = w.emu.dave_stats(GUILD);
    assert!(st.listener_frames[&BEN].decrypted >= 30, "{st:#?}");
    assert!(!st.listener_frames.contains_key(&ANN), "{st:#?}");
    assert_dave_ok(&w);
    w.stop().await;
}

/// Protocol version 0 stays available: transport encryption only, plain Opus, still heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dave_off_gives_transport_encryption_only() {
    let w = World::start().await;
    w.emu.set_dave(false);
    w.play(ANN, &w.files.url("low.wav")).await;
    let f = w.hear(60).await;
    assert!(near(f, 440.0), "heard {f} Hz");
    let st = w.emu.dave_stats(GUILD);
    assert_eq!(st.protocol_version, 0, "{st:#?}");
    assert_eq!(st.frames_encrypted, 0, "{st:#?}");
    assert!(st.frames_plain >= 60, "{st:#?}");
    assert!(w.emu.audio(GUILD).iter().all(|f| !f.dave));
    assert!(
        w.emu.voice_errors().is_empty(),
        "{:#?}",
        w.emu.voice_errors()
    );
    w.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The voice websocket, by hand
// ---------------------------------------------------------------------------------------------

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn raw_voice(emu: &Emulator, v: u8) -> RawWs {
    let url = format!("wss://{}/?v={v}", emu.voice_endpoint());
    let (ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url))
        .await
        .expect("voice connect timed out")
        .expect("voice connect");
    ws
}

/// The next text or binary message (bounded).
async fn next_msg(ws: &mut RawWs) -> WsMessage {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no voice message within 5 s")
            .expect("voice socket ended")
            .expect("voice socket error");
        if m.is_text() || m.is_binary() || m.is_close() {
            return m;
        }
    }
}

async fn next_json(ws: &mut RawWs) -> Value {
    match next_msg(ws).await {
        WsMessage::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected JSON, got {other:?}"),
    }
}

async fn send_json(ws: &mut RawWs, v: Value) {
    ws.send(WsMessage::text(v.to_string())).await.unwrap();
}

/// IDENTIFY (with the credentials Discord gave the bot, when it gave any) and SELECT_PROTOCOL.
async fn identify_and_select(emu: &Emulator, ws: &mut RawWs, max_dave: Option<u16>) {
    let (session, token) = emu
        .voice_credentials(G)
        .unwrap_or(("raw".into(), "raw".into()));
    let mut d = json!({
        "server_id": G.to_string(), "session_id": session, "token": token,
        "user_id": BOT.to_string(),
    });
    if let Some(m) = max_dave {
        d["max_dave_protocol_version"] = json!(m);
    }
    send_json(ws, json!({"op": 0, "d": d})).await;
    let select = json!({"op": 1, "d": {"protocol": "udp", "data": {
        "address": "127.0.0.1", "port": 9, "mode": "aead_aes256_gcm_rtpsize"}}});
    send_json(ws, select).await;
}

fn raw_world(emu: &Emulator) {
    emu.add_guild(G, "raw");
    emu.add_voice_channel(G, CHAN, "Music");
    emu.add_member(G, L1, "l1", false, false);
    emu.add_member(G, L2, "l2", false, false);
}

/// Voice gateway v8 (discord.js): every server message is numbered, binary frames start with
/// the sequence number. A malformed client frame is an error, never the end of the server task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_gateway_v8_numbers_dave_frames() {
    let emu = Emulator::start().await;
    raw_world(&emu);
    // The bot's voice state (op 4) tells the emulator the channel; there is no gateway here.
    emu.move_bot(G, Some(CHAN)).await;
    emu.user_join_voice(G, L1, CHAN).await;
    let mut ws = raw_voice(&emu, 8).await;
    identify_and_select(&emu, &mut ws, Some(1)).await;
    let mut seq = 0u64;
    let mut numbered = |v: &Value| {
        seq += 1;
        assert_eq!(v["seq"], json!(seq), "{v}");
    };
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["op"], 8);
    numbered(&hello);
    let ready = next_json(&mut ws).await;
    assert_eq!(ready["op"], 2);
    numbered(&ready);
    let desc = next_json(&mut ws).await;
    assert_eq!(
        (
            desc["op"].clone(),
            desc["d"]["dave_protocol_version"].clone()
        ),
        (json!(4), json!(1))
    );
    numbered(&desc);
    let clients = next_json(&mut ws).await;
    assert_eq!(clients["op"], 11);
    assert_eq!(clients["d"]["user_ids"], json!([L1.to_string()]));
    numbered(&clients);
    let WsMessage::Binary(ext) = next_msg(&mut ws).await else {
        panic!("expected op 25")
    };
    assert_eq!(
        u16::from_be_bytes([ext[0], ext[1]]) as u64,
        seq + 1,
        "sequence prefix"
    );
    assert_eq!(ext[2], 25);
    seq += 1;

    // The client's key package: L1 welcomes it.
    let mut session =
        davey::DaveSession::new(NonZeroU16::new(1).unwrap(), BOT, CHAN, None).unwrap();
    let mut kp = vec![26u8];
    kp.extend(session.create_key_package().unwrap());
    session.set_external_sender(&ext[3..]).unwrap();
    ws.send(WsMessage::binary(kp)).await.unwrap();
    let clients = next_json(&mut ws).await;
    assert_eq!(clients["op"], 11);
    seq += 1;
    assert_eq!(clients["seq"], json!(seq));
    let WsMessage::Binary(welcome) = next_msg(&mut ws).await else {
        panic!("expected op 30")
    };
    seq += 1;
    assert_eq!(u16::from_be_bytes([welcome[0], welcome[1]]) as u64, seq);
    assert_eq!(welcome[2], 30);
    let tid = u16::from_be_bytes([welcome[3], welcome[4]]);
    session.process_welcome(&welcome[5..]).unwrap();
    assert!(session.is_ready());
    send_json(
        &mut ws,
        json!({"op": 23, "d": {"transition_id": tid, "protocol_version": 1}}),
    )
    .await;
    let exec = next_json(&mut ws).await;
    seq += 1;
    assert_eq!(
        exec,
        json!({"op": 22, "d": {"transition_id": tid}, "seq": seq})
    );
    emu.wait_dave_group(G, &[L1], T).await;

    // Malformed frames: recorded, and the connection still answers heartbeats.
    ws.send(WsMessage::binary(vec![99u8, 1, 2])).await.unwrap();
    ws.send(WsMessage::binary(vec![26u8, 0xFF, 0xFF]))
        .await
        .unwrap();
    ws.send(WsMessage::binary(vec![28u8, 0x00])).await.unwrap();
    send_json(&mut ws, json!({"op": 3, "d": {"t": 77, "seq_ack": seq}})).await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["op"], 6);
    assert_eq!(ack["d"]["t"], 77);
    let errors = emu.voice_errors();
    assert!(
        errors.iter().any(|e| e.contains("unexpected binary op 99")),
        "{errors:#?}"
    );
    assert!(errors.iter().any(|e| e.contains("op 26")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("op 28")), "{errors:#?}");
    // The group is untouched.
    assert!(emu.dave_stats(G).settled_with(&[L1]));
}

/// With DAVE on, a client that does not offer it is refused like Discord does (4017); with
/// DAVE off it gets version 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_dave_is_refused_unless_dave_is_off() {
    let emu = Emulator::start().await;
    raw_world(&emu);
    let mut ws = raw_voice(&emu, 4).await;
    identify_and_select(&emu, &mut ws, None).await;
    let mut closed = None;
    for _ in 0..4 {
        if let WsMessage::Close(f) = next_msg(&mut ws).await {
            closed = f.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(closed, Some(4017));
    assert!(emu.voice_errors().iter().any(|e| e.contains("DAVE")));

    emu.set_dave(false);
    let mut ws = raw_voice(&emu, 4).await;
    identify_and_select(&emu, &mut ws, None).await;
    let desc = loop {
        let v = next_json(&mut ws).await;
        if v["op"] == 4 {
            break v;
        }
    };
    assert_eq!(desc["d"]["dave_protocol_version"], 0);
    assert_eq!(emu.dave_stats(G).protocol_version, 0);
}
