//! The gateway's stricter half, as Discord's gateway docs describe it: heartbeats are
//! enforced (a connection that stops heartbeating is closed with 4009 and its session is
//! gone), ACKs can be withheld to make a zombie connection, the server can ask for a
//! heartbeat (op 1), tell the client to reconnect (op 7) or invalidate its session (op 9),
//! and a RESUME replays every dispatch after the client's `seq`, including those sent
//! while the client was away. Close codes that end a session (4007, 4009) end it here too.

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;

use super::shards::{self, ShardPair};
use super::state::{emu_debug, GwOut, State};
use super::Emulator;

/// How many sent dispatches a session keeps for a RESUME (Discord keeps a bounded buffer too).
const REPLAY_BUFFER: usize = 4096;

/// A session whose connection ended without ending the session: dispatches for it are
/// buffered until it resumes (or a new IDENTIFY on its shard replaces it).
#[derive(Clone, Debug)]
pub struct Detached {
    pub shard: ShardPair,
    pub intents: u64,
}

#[derive(Debug)]
pub struct GwStrict {
    /// `heartbeat_interval` sent in HELLO to new connections.
    pub heartbeat_interval: Duration,
    /// While set, heartbeats get no ACK (a zombie connection, as the client sees it).
    pub withhold_acks: bool,
    /// Heartbeats received from the bot, and how many were left without an ACK.
    pub heartbeats: usize,
    pub acks_withheld: usize,
    /// Connections closed for missing heartbeats (4009).
    pub heartbeat_timeouts: usize,
    /// Sent frames per session, oldest first, for RESUME.
    pub logs: HashMap<String, VecDeque<Value>>,
    pub detached: HashMap<String, Detached>,
    /// Sessions that ended (op 9 false, 4007, 4009, a replacing IDENTIFY).
    pub ended: HashSet<String>,
    /// Frames replayed on RESUME.
    pub replayed: usize,
    /// `"TYPE id"` of each dispatch replayed on RESUME (`id` of its `d`, if it has one).
    pub replayed_events: Vec<String>,
}

impl Default for GwStrict {
    fn default() -> Self {
        GwStrict {
            heartbeat_interval: Duration::from_millis(super::gateway::HEARTBEAT_INTERVAL_MS),
            withhold_acks: false,
            heartbeats: 0,
            acks_withheld: 0,
            heartbeat_timeouts: 0,
            logs: HashMap::new(),
            detached: HashMap::new(),
            ended: HashSet::new(),
            replayed: 0,
            replayed_events: Vec::new(),
        }
    }
}

/// How long a connection may go without a heartbeat before it is closed: the interval
/// plus Discord's jitter and a margin for a busy machine.
pub fn heartbeat_deadline(interval: Duration) -> Duration {
    interval * 2 + Duration::from_secs(1)
}

/// Close codes after which Discord will not resume the session (gateway docs, "Gateway
/// Close Event Codes": 4007 and 4009 say "reconnect and start a new session"; the others
/// listed here are not to be reconnected at all).
pub fn ends_session(code: u16) -> bool {
    matches!(code, 4004 | 4007 | 4009 | 4010 | 4011 | 4012 | 4013 | 4014)
}

impl State {
    /// Remembers a frame sent on `session` for a later RESUME.
    pub fn log_sent(&mut self, session: &str, frame: &Value) {
        let log = self.gw_strict.logs.entry(session.to_string()).or_default();
        log.push_back(frame.clone());
        while log.len() > REPLAY_BUFFER {
            log.pop_front();
        }
    }

    /// Ends a session: it can no longer be resumed and nothing more is buffered for it.
    pub fn end_session(&mut self, session: &str) {
        emu_debug!("session {session} ended");
        self.gw_sessions.remove(session);
        self.gw_strict.logs.remove(session);
        self.gw_strict.detached.remove(session);
        self.gw_strict.ended.insert(session.to_string());
    }

    /// The connection `conn_id` closed: its session (if still alive) waits for a RESUME.
    pub fn detach_conn(&mut self, conn_id: u64) {
        let Some(c) = self.gw_conns.remove(&conn_id) else {
            return;
        };
        if self.gw_sessions.contains_key(&c.session_id) {
            let d = Detached {
                shard: c.shard,
                intents: c.intents,
            };
            self.gw_strict.detached.insert(c.session_id, d);
        }
    }

    /// A new IDENTIFY on `shard` replaces any session that was waiting to resume there.
    pub fn end_detached_on(&mut self, shard: ShardPair) {
        let old: Vec<String> = self
            .gw_strict
            .detached
            .iter()
            .filter(|(_, d)| d.shard == shard)
            .map(|(s, _)| s.clone())
            .collect();
        for s in old {
            self.end_session(&s);
        }
    }

    /// Buffers a dispatch for each detached session that would have received it (its
    /// shard owns the guild, no live connection serves that shard, its intents allow it).
    /// Returns whether any did.
    pub fn buffer_detached(&mut self, t: &str, guild: Option<u64>, d: &Value) -> bool {
        let targets: Vec<String> = self
            .gw_strict
            .detached
            .iter()
            .filter(|(_, det)| match guild {
                Some(g) => shards::guild_on_shard(g, det.shard.1) == det.shard.0,
                None => det.shard.0 == 0,
            })
            .filter(|(_, det)| !self.gw_conns.values().any(|c| c.shard == det.shard))
            .filter(|(_, det)| {
                let need = shards::intent_needed(t);
                need == 0 || det.intents & need != 0
            })
            .map(|(s, _)| s.clone())
            .collect();
        for session in &targets {
            let seq = self.gw_sessions.entry(session.clone()).or_insert(0);
            *seq += 1;
            let frame = json!({"op": 0, "t": t, "s": *seq, "d": d});
            emu_debug!("gateway (buffered for {session}) -> {t} s={}", *seq);
            self.log_sent(session, &frame);
            self.dispatched.push(frame);
        }
        !targets.is_empty()
    }

    /// Sends `session`'s frames after `seq` to the resuming connection, in order. A `seq`
    /// past the last one sent is an invalid sequence (4007).
    pub fn replay(
        &mut self,
        session: &str,
        seq: u64,
        tx: &mpsc::UnboundedSender<GwOut>,
    ) -> Result<usize, ()> {
        let last = self.gw_sessions.get(session).copied().unwrap_or(0);
        if seq > last {
            return Err(());
        }
        self.gw_strict.detached.remove(session);
        let frames: Vec<Value> = self
            .gw_strict
            .logs
            .get(session)
            .map(|l| {
                l.iter()
                    .filter(|f| f["s"].as_u64().is_some_and(|s| s > seq))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for f in &frames {
            let _ = tx.send(GwOut::Frame(f.clone()));
            let id = f["d"]["id"].as_str().unwrap_or("");
            let t = f["t"].as_str().unwrap_or("");
            self.gw_strict.replayed_events.push(format!("{t} {id}"));
        }
        self.gw_strict.replayed += frames.len();
        Ok(frames.len())
    }

    /// The bot's heartbeat: an ACK unless ACKs are withheld.
    pub fn on_heartbeat(&mut self) -> Option<Value> {
        self.gw_strict.heartbeats += 1;
        if self.gw_strict.withhold_acks {
            self.gw_strict.acks_withheld += 1;
            return None;
        }
        Some(json!({"op": 11, "s": null, "t": null, "d": null}))
    }

    fn send_all(&mut self, frame: Value) -> usize {
        let mut n = 0;
        for c in self.gw_conns.values() {
            if c.tx.send(GwOut::Frame(frame.clone())).is_ok() {
                n += 1;
            }
        }
        n
    }
}

impl Emulator {
    /// `heartbeat_interval` in HELLO for connections opened from now on (Discord: 41.25 s).
    /// A connection that sends no heartbeat for twice that (plus 1 s) is closed with 4009.
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        self.with(|s| s.gw_strict.heartbeat_interval = interval);
    }

    /// While `on`, the bot's heartbeats get no ACK: to the bot the connection is a zombie.
    pub fn withhold_heartbeat_acks(&self, on: bool) {
        self.with(|s| s.gw_strict.withhold_acks = on);
    }

    /// Heartbeats received from the bot, and how many of them got no ACK.
    pub fn heartbeats(&self) -> (usize, usize) {
        self.read(|s| (s.gw_strict.heartbeats, s.gw_strict.acks_withheld))
    }

    /// Connections the emulator closed with 4009 because the bot stopped heartbeating.
    pub fn heartbeat_timeouts(&self) -> usize {
        self.read(|s| s.gw_strict.heartbeat_timeouts)
    }

    /// Op 1 from the server: every live connection must heartbeat at once.
    pub fn request_heartbeat(&self) -> usize {
        self.with(|s| s.send_all(json!({"op": 1, "s": null, "t": null, "d": null})))
    }

    /// Op 7 RECONNECT on every live connection: the bot should reconnect and resume.
    pub fn send_reconnect(&self) -> usize {
        self.with(|s| s.send_all(json!({"op": 7, "s": null, "t": null, "d": null})))
    }

    /// Op 9 INVALID_SESSION on every live connection. `resumable: false` ends the sessions
    /// (a RESUME of them is refused), so the bot must IDENTIFY again.
    pub fn send_invalid_session(&self, resumable: bool) -> usize {
        self.with(|s| {
            if !resumable {
                let sessions: Vec<String> =
                    s.gw_conns.values().map(|c| c.session_id.clone()).collect();
                for session in sessions {
                    s.gw_sessions.remove(&session);
                    s.gw_strict.ended.insert(session);
                }
            }
            s.send_all(json!({"op": 9, "s": null, "t": null, "d": resumable}))
        })
    }

    /// Dispatches replayed to resuming connections so far.
    pub fn gateway_replayed(&self) -> usize {
        self.read(|s| s.gw_strict.replayed)
    }
    /// `"TYPE id"` of each dispatch replayed on RESUME, in order.
    pub fn gateway_replayed_events(&self) -> Vec<String> {
        self.read(|s| s.gw_strict.replayed_events.clone())
    }
}
