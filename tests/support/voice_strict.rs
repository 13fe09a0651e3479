//! The voice server's stricter half, as Discord's voice docs describe it: the connection
//! URL must name a voice gateway version Discord still serves (no default since November
//! 2024, versions below 4 discontinued), IDENTIFY must carry the token of the guild's last
//! VOICE_SERVER_UPDATE (else 4004, authentication failed) and the session of the bot's
//! voice state (else 4006, session no longer valid), and a connection that stops
//! heartbeating is closed with 4009 (session timeout). Test switches: withhold heartbeat
//! ACKs, and drop every UDP packet for a while (a router that loses the path).

use std::time::{Duration, Instant};

use super::state::State;
use super::Emulator;

/// The voice gateway versions Discord serves (its "Voice Gateway Versioning" table).
pub const VERSIONS: std::ops::RangeInclusive<u8> = 4..=8;

#[derive(Debug, Default)]
pub struct VoiceStrict {
    /// `heartbeat_interval` in HELLO for new connections (`None`: Discord's 13.75 s).
    pub heartbeat_interval: Option<Duration>,
    /// While set, voice heartbeats get no ACK.
    pub withhold_acks: bool,
    /// Voice heartbeats received, and how many got no ACK.
    pub heartbeats: usize,
    pub acks_withheld: usize,
    /// Connections closed with 4009 for missing heartbeats.
    pub heartbeat_timeouts: usize,
    /// Connections refused for their version, IDENTIFYs refused with 4004 / 4006.
    pub refused_versions: usize,
    pub refused_identifies: Vec<u16>,
    /// Until then, every UDP packet is dropped (no IP discovery answer, no audio counted).
    pub blackhole_until: Option<Instant>,
    pub udp_dropped: usize,
}

/// Why a connection URL's version is refused, if it is.
pub fn refuse_version(v: Option<&str>) -> Option<String> {
    match v.map(|v| v.parse::<u8>()) {
        None => Some("no voice gateway version (`?v=`): Discord has no default".into()),
        Some(Ok(n)) if VERSIONS.contains(&n) => None,
        Some(_) => Some(format!(
            "voice gateway version {:?} is not one Discord serves ({}-{})",
            v.unwrap_or_default(),
            VERSIONS.start(),
            VERSIONS.end()
        )),
    }
}

impl State {
    /// The close code Discord answers this IDENTIFY with, if it refuses it. Only guilds the
    /// emulator sent a VOICE_SERVER_UPDATE for are checked (a raw songbird `Driver` in the
    /// emulator's own tests connects with made-up credentials and no gateway).
    pub fn refuse_voice_identify(&mut self, guild: u64, token: &str, session: &str) -> Option<u16> {
        let expected = self.voice_server_tokens.get(&guild)?.clone();
        let code = if token != expected {
            self.voice_errors.push(format!(
                "voice IDENTIFY for guild {guild} with token {token:?}, but the last \
                 VOICE_SERVER_UPDATE gave {expected:?}: 4004"
            ));
            4004
        } else {
            let bot = self.bot_user_id;
            let state = self
                .guilds
                .get(&guild)
                .and_then(|g| g.voice_states.get(&bot))
                .map(|v| v.session_id.clone());
            if state.as_deref() == Some(session) {
                return None;
            }
            self.voice_errors.push(format!(
                "voice IDENTIFY for guild {guild} with session {session:?}, but the bot's voice \
                 state has {state:?}: 4006"
            ));
            4006
        };
        self.voice_strict.refused_identifies.push(code);
        Some(code)
    }

    /// Discord ended the voice session of `ssrc` (4006, 4009, 4014): a RESUME of it is
    /// refused, and audio still sent on it is not heard.
    pub fn end_voice_session(&mut self, ssrc: Option<u32>) {
        if let Some(info) = ssrc.and_then(|x| self.voice_sessions.get_mut(&x)) {
            info.invalidated = true;
        }
    }

    /// Whether a UDP packet arriving now is lost (counted).
    pub fn udp_blackholed(&mut self) -> bool {
        match self.voice_strict.blackhole_until {
            Some(t) if Instant::now() < t => {
                self.voice_strict.udp_dropped += 1;
                true
            }
            _ => false,
        }
    }
}

impl Emulator {
    /// `heartbeat_interval` in the voice HELLO of connections opened from now on (Discord:
    /// 13.75 s). A connection silent for twice that plus 1 s is closed with 4009.
    pub fn set_voice_heartbeat_interval(&self, interval: Duration) {
        self.with(|s| s.voice_strict.heartbeat_interval = Some(interval));
    }

    /// While `on`, voice heartbeats get no ACK (op 6).
    pub fn withhold_voice_heartbeat_acks(&self, on: bool) {
        self.with(|s| s.voice_strict.withhold_acks = on);
    }

    /// Voice heartbeats received, and how many got no ACK.
    pub fn voice_heartbeats(&self) -> (usize, usize) {
        self.read(|s| (s.voice_strict.heartbeats, s.voice_strict.acks_withheld))
    }

    /// Voice connections closed with 4009 because the client stopped heartbeating.
    pub fn voice_heartbeat_timeouts(&self) -> usize {
        self.read(|s| s.voice_strict.heartbeat_timeouts)
    }

    /// Voice connections refused for a missing or unsupported `?v=`.
    pub fn refused_voice_versions(&self) -> usize {
        self.read(|s| s.voice_strict.refused_versions)
    }

    /// Close codes of the voice IDENTIFYs refused so far (4004 token, 4006 session).
    pub fn refused_voice_identifies(&self) -> Vec<u16> {
        self.read(|s| s.voice_strict.refused_identifies.clone())
    }

    /// The session and token a voice IDENTIFY for the guild must carry: the bot's voice
    /// state's session and the last VOICE_SERVER_UPDATE's token.
    pub fn voice_credentials(&self, guild: u64) -> Option<(String, String)> {
        self.read(|s| {
            let token = s.voice_server_tokens.get(&guild)?.clone();
            let session = s.guilds.get(&guild)?.voice_states.get(&s.bot_user_id)?;
            Some((session.session_id.clone(), token))
        })
    }

    /// Drops every voice UDP packet, both ways, for `d` from now: no IP discovery answer
    /// and no audio received, as when a router loses the path. The websocket stays up.
    pub fn blackhole_udp(&self, d: Duration) {
        self.with(|s| s.voice_strict.blackhole_until = Some(Instant::now() + d));
    }

    /// UDP packets dropped by [`blackhole_udp`](Self::blackhole_udp) so far.
    pub fn udp_dropped(&self) -> usize {
        self.read(|s| s.voice_strict.udp_dropped)
    }
}
