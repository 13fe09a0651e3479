//! DAVE (Discord's audio/video end-to-end encryption, protocol v1) in the emulated voice server.
//!
//! The voice server plays Discord's part: it answers `max_dave_protocol_version: 1` with
//! `dave_protocol_version: 1`, is the MLS external sender (op 25), proposes adds and removes
//! (op 27), relays commits and welcomes (ops 28 → 29/30), runs transitions (21, 22, 23, 24) and
//! answers invalid commits (31). It never commits itself.
//!
//! Every human in the bot's voice channel (per the emulator's voice states) is a simulated
//! *listener*: a davey [`DaveSession`] with that user's id, a member of the channel's MLS group.
//! Listeners decrypt every frame the bot sends; what they decrypt is what
//! [`Emulator::audio`](super::Emulator::audio) records (frames with [`AudioFrame::dave`] set).
//!
//! Flows (one at a time per call, each bounded by [`FLOW_TIMEOUT`]):
//! - Bot key package (op 26) while humans are in the channel (the usual join): the listeners
//!   form the group, one of them commits the add of the bot, the bot gets `[30][tid][Welcome]`,
//!   answers op 23, the server sends op 22.
//! - A human joins later: op 11 (clients connect) first, then `[27][0][add proposals]`; the bot
//!   commits (op 28); the server hands the Welcome to the new listener, the commit to the other
//!   listeners, relays `[29][tid][commit]`, waits for op 23, sends op 22.
//! - A human leaves: op 13 and `[27][0][remove proposal]`; the bot commits; relayed as above.
//!   The last human leaving instead gets op 24 (epoch 1) and op 21 (transition 0): the bot
//!   re-initializes and sends a new key package.
//! - The bot reports an invalid commit or welcome (op 31): it re-initializes, sends a new key
//!   package and is welcomed again.
//!
//! A departed listener (or one added with [`Emulator::dave_add_eavesdropper`]) becomes an
//! *eavesdropper*: it keeps trying to decrypt, so tests can show that someone outside the group
//! cannot.
//!
//! Lock order: a [`DaveCall`] lock may be held while taking the emulator state lock
//! ([`Shared::with`]), never the other way round.
//!
//! [`Emulator::dave_add_eavesdropper`]: super::Emulator::dave_add_eavesdropper

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU16;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use davey::{DaveSession, MediaType, ProposalsOperationType};
use openmls::prelude::tls_codec::{DeserializeBytes, Serialize as _, VLBytes};
use openmls::prelude::{
    BasicCredential, Ciphersuite, ContentType, ExternalProposal, ExternalSender, GroupEpoch,
    GroupId, KeyPackage, KeyPackageIn, LeafNodeIndex, MlsMessageIn, MlsMessageOut, OpenMlsProvider,
    ProtocolVersion, SenderExtensionIndex, Welcome,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use serde_json::{json, Value};

use super::state::{AudioFrame, Shared, State, VoiceCmd};

/// The DAVE protocol version the emulator speaks.
pub const DAVE_PROTOCOL_VERSION: u16 = 1;
/// Every DAVE frame ends with this marker.
pub const MARKER: [u8; 2] = [0xFA, 0xFA];
/// The Opus silence frame: never DAVE-encrypted.
pub const OPUS_SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];
/// How long the server waits for the bot's part of a flow (op 26, 28, 23 or 31).
pub const FLOW_TIMEOUT: Duration = Duration::from_secs(10);
/// After a transition executes, plain frames and undecryptable frames still in flight are not
/// reported as errors for this long.
pub const TRANSITION_GRACE: Duration = Duration::from_secs(1);
const MAX_EAVESDROPPERS: usize = 8;

fn version() -> NonZeroU16 {
    NonZeroU16::new(DAVE_PROTOCOL_VERSION).expect("non-zero")
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// What one simulated participant (a listener or an eavesdropper) got out of the bot's frames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// DAVE frames it decrypted (for an eavesdropper: should stay 0 once the group has moved
    /// on without it).
    pub decrypted: usize,
    /// DAVE frames it could not decrypt.
    pub failed: usize,
    /// Plain (not DAVE) Opus frames, which anyone in the call could hear. Silence frames are
    /// not counted.
    pub plain: usize,
}

/// DAVE counters and the current group of a guild's call (see [`Emulator::dave_stats`]).
/// Counters accumulate over every voice connection of the guild until
/// [`Emulator::clear_dave_stats`].
///
/// [`Emulator::dave_stats`]: super::Emulator::dave_stats
/// [`Emulator::clear_dave_stats`]: super::Emulator::clear_dave_stats
#[derive(Clone, Debug, Default)]
pub struct DaveStats {
    /// `dave_protocol_version` of the last SESSION_DESCRIPTION (0: transport encryption only).
    pub protocol_version: u16,
    /// RTP payloads that were DAVE frames (ending in `FA FA`).
    pub frames_encrypted: usize,
    /// DAVE frames a listener decrypted: these are the frames `audio()` records with `dave`.
    pub frames_decrypted: usize,
    /// DAVE frames while listeners were in the group that none of them could decrypt.
    pub decrypt_failures: usize,
    /// Plain Opus frames (not DAVE, silence frames excluded).
    pub frames_plain: usize,
    /// Plain frames received while the bot and a listener shared a group, outside transitions:
    /// dropped (a DAVE client cannot play them) and reported in `voice_errors`.
    pub frames_plain_in_group: usize,
    /// Opus silence frames (`F8 FF FE`), which stay plain under DAVE.
    pub frames_silence: usize,
    /// Single listeners failing a frame another listener decrypted (a listener that joined
    /// late cannot decrypt frames of the epoch before it: normal around a transition).
    pub listener_failures: usize,
    /// Key packages (op 26) received from the bot.
    pub key_packages: usize,
    /// Proposal messages (op 27) sent.
    pub proposals: usize,
    /// Commits (op 28) received from the bot and accepted.
    pub commits: usize,
    /// Welcomes (op 30) sent to the bot.
    pub welcomes: usize,
    /// Commits announced to the bot (op 29).
    pub announced_commits: usize,
    /// Transitions executed (op 22 sent after the bot's op 23).
    pub transitions: usize,
    /// Re-initializations asked of the bot (op 24 with epoch 1).
    pub reinits: usize,
    /// Invalid commit/welcome reports (op 31) from the bot.
    pub invalid_commits: usize,
    /// The MLS group id of the current call (the bot's voice channel), if known.
    pub channel_id: Option<u64>,
    /// Whether the bot is in an MLS group with the listeners (set when the welcome or commit is
    /// relayed to it).
    pub bot_in_group: bool,
    /// Listeners (user ids) in the bot's group, sorted.
    pub listeners: Vec<u64>,
    /// Group epoch as the server knows it.
    pub epoch: u64,
    /// The flow the server is waiting on, if any.
    pub pending: Option<String>,
    /// Voice privacy code of the group as the first listener sees it.
    pub privacy_code: Option<String>,
    /// Per listener user id (listeners in the group when the frame arrived).
    pub listener_frames: BTreeMap<u64, PeerStats>,
    /// Per eavesdropper user id: sessions outside the group (departed listeners, and those
    /// added with `Emulator::dave_add_eavesdropper`).
    pub eavesdroppers: BTreeMap<u64, PeerStats>,
}

impl DaveStats {
    /// No flow pending, the bot is in a group with exactly `listeners` (any order).
    pub fn settled_with(&self, listeners: &[u64]) -> bool {
        let mut want: Vec<u64> = listeners.to_vec();
        want.sort_unstable();
        want.dedup();
        self.pending.is_none()
            && if want.is_empty() {
                !self.bot_in_group && self.listeners.is_empty()
            } else {
                self.bot_in_group && self.listeners == want
            }
    }

    fn clear_counters(&mut self) {
        let keep = DaveStats {
            protocol_version: self.protocol_version,
            channel_id: self.channel_id,
            bot_in_group: self.bot_in_group,
            listeners: std::mem::take(&mut self.listeners),
            epoch: self.epoch,
            pending: self.pending.take(),
            privacy_code: self.privacy_code.take(),
            eavesdroppers: self
                .eavesdroppers
                .keys()
                .map(|k| (*k, PeerStats::default()))
                .collect(),
            listener_frames: BTreeMap::new(),
            ..DaveStats::default()
        };
        *self = keep;
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// A message for the bot. Binary frames are `[op][payload]` here; the connection adds the
/// sequence prefix on voice gateway v8.
#[derive(Clone, Debug)]
pub enum Out {
    Json(u8, Value),
    Binary(u8, Vec<u8>),
}

pub fn op11_clients_connect(user_ids: &[u64]) -> Out {
    let ids: Vec<String> = user_ids.iter().map(|u| u.to_string()).collect();
    Out::Json(11, json!({ "user_ids": ids }))
}

pub fn op13_client_disconnect(user_id: u64) -> Out {
    Out::Json(13, json!({ "user_id": user_id.to_string() }))
}

pub fn op21_prepare_transition(protocol_version: u16, transition_id: u16) -> Out {
    Out::Json(
        21,
        json!({ "protocol_version": protocol_version, "transition_id": transition_id }),
    )
}

pub fn op22_execute_transition(transition_id: u16) -> Out {
    Out::Json(22, json!({ "transition_id": transition_id }))
}

pub fn op24_prepare_epoch(protocol_version: u16, epoch: u64) -> Out {
    Out::Json(
        24,
        json!({ "protocol_version": protocol_version, "epoch": epoch }),
    )
}

fn with_tid(tid: u16, body: &[u8]) -> Vec<u8> {
    let mut v = tid.to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Parses a key package the way Discord's voice server must: a raw `KeyPackage` (op 26 is not an
/// MLSMessage), validated.
pub fn parse_key_package(bytes: &[u8]) -> Result<KeyPackage, String> {
    let kp = KeyPackageIn::tls_deserialize_exact_bytes(bytes)
        .map_err(|e| format!("not a KeyPackage: {e}"))?;
    kp.validate(
        OpenMlsRustCrypto::default().crypto(),
        ProtocolVersion::Mls10,
    )
    .map_err(|e| format!("invalid KeyPackage: {e}"))
}

/// The user id in a key package's basic credential (big-endian u64).
pub fn key_package_user(kp: &KeyPackage) -> Option<u64> {
    let c = kp.leaf_node().credential().serialized_content();
    <[u8; 8]>::try_from(c).ok().map(u64::from_be_bytes)
}

/// `payload` is a DAVE frame: long enough for the supplemental bytes and ends in `FA FA`.
pub fn is_dave_frame(payload: &[u8]) -> bool {
    payload.len() >= 11 && payload.ends_with(&MARKER)
}

/// The humans (non-bot members) in `channel_id` per the emulator's voice states.
pub fn humans_in_channel(s: &State, guild_id: u64, channel_id: u64) -> Vec<u64> {
    let Some(g) = s.guilds.get(&guild_id) else {
        return Vec::new();
    };
    g.voice_states
        .iter()
        .filter(|(u, v)| {
            v.channel_id == channel_id
                && **u != s.bot_user_id
                && g.member(**u).is_none_or(|m| !m.is_bot)
        })
        .map(|(u, _)| *u)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The call
// ---------------------------------------------------------------------------------------------

/// A shared handle to a call's DAVE state (used by the websocket task and the UDP receiver).
#[derive(Clone)]
pub struct DaveHandle(Arc<Mutex<DaveCall>>);

impl DaveHandle {
    pub fn new(call: DaveCall) -> DaveHandle {
        DaveHandle(Arc::new(Mutex::new(call)))
    }
    pub fn lock(&self) -> MutexGuard<'_, DaveCall> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for DaveHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaveHandle")
    }
}

struct Listener {
    session: DaveSession,
    key_package: KeyPackage,
    in_group: bool,
}

impl Listener {
    fn new(user_id: u64, channel_id: u64, external_sender: &[u8]) -> Result<Listener, String> {
        let mut session = DaveSession::new(version(), user_id, channel_id, None)
            .map_err(|e| format!("listener {user_id}: {e:?}"))?;
        let kp = session
            .create_key_package()
            .map_err(|e| format!("listener {user_id}: key package: {e:?}"))?;
        session
            .set_external_sender(external_sender)
            .map_err(|e| format!("listener {user_id}: external sender: {e:?}"))?;
        Ok(Listener {
            session,
            key_package: parse_key_package(&kp)?,
            in_group: false,
        })
    }
}

enum Pending {
    /// Proposals sent (op 27): waiting for the bot's commit (op 28).
    Commit { adds: Vec<u64>, deadline: Instant },
    /// Welcome or commit relayed with this transition id: waiting for op 23.
    Ready { tid: u16, deadline: Instant },
    /// op 24 sent (or op 31 received): waiting for a new key package (op 26).
    KeyPackage { deadline: Instant },
    /// A deliberately invalid commit was announced: waiting for op 31.
    Invalid { tid: u16, deadline: Instant },
}

impl Pending {
    fn deadline(&self) -> Instant {
        match self {
            Pending::Commit { deadline, .. }
            | Pending::Ready { deadline, .. }
            | Pending::KeyPackage { deadline }
            | Pending::Invalid { deadline, .. } => *deadline,
        }
    }
    fn describe(&self) -> String {
        match self {
            Pending::Commit { adds, .. } if adds.is_empty() => {
                "the bot's commit (op 28) of a removal".into()
            }
            Pending::Commit { adds, .. } => format!("the bot's commit (op 28) adding {adds:?}"),
            Pending::Ready { tid, .. } => format!("the bot's op 23 for transition {tid}"),
            Pending::KeyPackage { .. } => "a key package (op 26) from the bot".into(),
            Pending::Invalid { tid, .. } => {
                format!("the bot's op 31 for the invalid commit of transition {tid}")
            }
        }
    }
}

/// Discord's side of DAVE for one voice connection of the bot, plus the simulated listeners.
pub struct DaveCall {
    shared: Arc<Shared>,
    pub guild_id: u64,
    /// The MLS group id (the bot's voice channel when it connected); `None` if the emulator does
    /// not know it (a raw songbird Driver without op 4): then no group is ever formed.
    pub channel_id: Option<u64>,
    pub bot_user_id: u64,
    signer: SignatureKeyPair,
    external_sender: Vec<u8>,
    epoch: u64,
    bot_key_package: Option<KeyPackage>,
    bot_in_group: bool,
    /// A fresh key package arrived: if humans are present, they welcome the bot.
    welcome_due: bool,
    listeners: BTreeMap<u64, Listener>,
    eavesdroppers: BTreeMap<u64, DaveSession>,
    pending: Option<Pending>,
    last_tid: u16,
    transition_until: Option<Instant>,
}

impl DaveCall {
    pub fn new(
        shared: Arc<Shared>,
        guild_id: u64,
        channel_id: Option<u64>,
        bot_user_id: u64,
    ) -> Result<DaveCall, String> {
        let suite = Ciphersuite::MLS_128_DHKEMP256_AES128GCM_SHA256_P256;
        let signer = SignatureKeyPair::new(suite.signature_algorithm())
            .map_err(|e| format!("external sender key: {e:?}"))?;
        let ext = ExternalSender::new(
            signer.public().into(),
            BasicCredential::new(b"encore-emulator-voice".to_vec()).into(),
        );
        let external_sender = ext
            .tls_serialize_detached()
            .map_err(|e| format!("external sender: {e}"))?;
        Ok(DaveCall {
            shared,
            guild_id,
            channel_id,
            bot_user_id,
            signer,
            external_sender,
            epoch: 0,
            bot_key_package: None,
            bot_in_group: false,
            welcome_due: false,
            listeners: BTreeMap::new(),
            eavesdroppers: BTreeMap::new(),
            pending: None,
            last_tid: 0,
            transition_until: None,
        })
    }

    /// The serialized `ExternalSender` (op 25 payload).
    pub fn external_sender(&self) -> &[u8] {
        &self.external_sender
    }

    // ------------------------------------------------------------------ recording

    fn stats(&self, f: impl FnOnce(&mut DaveStats)) {
        let g = self.guild_id;
        self.shared.with(|s| f(s.dave_stats.entry(g).or_default()));
    }

    fn log(&self, msg: impl std::fmt::Display) {
        let line = format!("guild {}: DAVE {msg}", self.guild_id);
        super::state::emu_debug!("{line}");
        self.shared.with(|s| s.voice_log.push(line));
    }

    fn error(&self, msg: impl std::fmt::Display) {
        let line = format!("guild {}: DAVE: {msg}", self.guild_id);
        super::state::emu_debug!("{line}");
        self.shared.with(|s| {
            s.voice_log.push(line.clone());
            s.voice_errors.push(line);
        });
    }

    /// Copies the group state into [`DaveStats`].
    pub fn mirror(&self) {
        let listeners: Vec<u64> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.in_group)
            .map(|(u, _)| *u)
            .collect();
        let code = self
            .listeners
            .values()
            .find(|l| l.in_group)
            .and_then(|l| l.session.voice_privacy_code().map(String::from));
        let pending = self.pending.as_ref().map(Pending::describe);
        let (bot_in_group, epoch, channel) = (self.bot_in_group, self.epoch, self.channel_id);
        let eaves: Vec<u64> = self.eavesdroppers.keys().copied().collect();
        self.stats(|st| {
            st.channel_id = channel;
            st.bot_in_group = bot_in_group;
            st.listeners = listeners;
            st.epoch = epoch;
            st.pending = pending;
            st.privacy_code = code;
            st.eavesdroppers.retain(|k, _| eaves.contains(k));
            for e in eaves {
                st.eavesdroppers.entry(e).or_default();
            }
        });
    }

    fn next_tid(&mut self) -> u16 {
        self.last_tid = self.last_tid.wrapping_add(1).max(1);
        self.last_tid
    }

    fn group_id(&self) -> Option<GroupId> {
        self.channel_id
            .map(|c| GroupId::from_slice(&c.to_be_bytes()))
    }

    fn in_group(&self) -> Vec<u64> {
        self.listeners
            .iter()
            .filter(|(_, l)| l.in_group)
            .map(|(u, _)| *u)
            .collect()
    }

    fn expected_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.listeners.keys().copied().collect();
        ids.push(self.bot_user_id);
        ids
    }

    fn keep_as_eavesdropper(&mut self, user_id: u64, session: DaveSession) {
        if self.eavesdroppers.len() >= MAX_EAVESDROPPERS {
            if let Some(k) = self.eavesdroppers.keys().next().copied() {
                self.eavesdroppers.remove(&k);
            }
        }
        self.eavesdroppers.insert(user_id, session);
    }

    // ------------------------------------------------------------------ proposals

    fn proposal_bytes(&self, msgs: Vec<MlsMessageOut>) -> Result<Vec<u8>, String> {
        let mut all = Vec::new();
        for m in msgs {
            all.extend(
                m.tls_serialize_detached()
                    .map_err(|e| format!("serialize proposal: {e}"))?,
            );
        }
        VLBytes::new(all)
            .tls_serialize_detached()
            .map_err(|e| format!("serialize proposals: {e}"))
    }

    fn add_proposals(&self, kps: &[KeyPackage]) -> Result<Vec<u8>, String> {
        let gid = self.group_id().ok_or("no group id")?;
        let mut msgs = Vec::new();
        for kp in kps {
            msgs.push(
                ExternalProposal::new_add::<OpenMlsRustCrypto>(
                    kp.clone(),
                    gid.clone(),
                    GroupEpoch::from(self.epoch),
                    &self.signer,
                    SenderExtensionIndex::new(0),
                )
                .map_err(|e| format!("add proposal: {e:?}"))?,
            );
        }
        self.proposal_bytes(msgs)
    }

    fn remove_proposals(&self, leaves: &[LeafNodeIndex]) -> Result<Vec<u8>, String> {
        let gid = self.group_id().ok_or("no group id")?;
        let mut msgs = Vec::new();
        for leaf in leaves {
            msgs.push(
                ExternalProposal::new_remove::<OpenMlsRustCrypto>(
                    *leaf,
                    gid.clone(),
                    GroupEpoch::from(self.epoch),
                    &self.signer,
                    SenderExtensionIndex::new(0),
                )
                .map_err(|e| format!("remove proposal: {e:?}"))?,
            );
        }
        self.proposal_bytes(msgs)
    }

    /// Members of the group other than the bot store the proposals, as every Discord client
    /// does (the bot's commit refers to them). Their own commits are discarded: the bot's wins.
    fn listeners_store_proposals(&mut self, proposals: &[u8]) -> Result<(), String> {
        let expected = self.expected_ids();
        for (uid, l) in self.listeners.iter_mut().filter(|(_, l)| l.in_group) {
            l.session
                .process_proposals(ProposalsOperationType::APPEND, proposals, Some(&expected))
                .map_err(|e| format!("listener {uid} could not process the proposals: {e:?}"))?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ events

    /// Right after SESSION_DESCRIPTION: op 11 for the humans already in the channel, op 25.
    pub fn start(&mut self, humans: &[u64]) -> Vec<Out> {
        let mut out = Vec::new();
        if !humans.is_empty() {
            out.push(op11_clients_connect(humans));
        }
        out.push(Out::Binary(25, self.external_sender.clone()));
        if self.channel_id.is_none() {
            self.log("the bot's voice channel is unknown (no op 4): no group will be formed");
        }
        self.log(format!(
            "-> op 25 external sender; humans in channel {humans:?}"
        ));
        out
    }

    /// op 26 from the bot.
    pub fn on_key_package(&mut self, payload: &[u8]) -> Vec<Out> {
        let kp = match parse_key_package(payload) {
            Ok(kp) => kp,
            Err(e) => {
                self.error(format!("op 26 ({} bytes): {e}", payload.len()));
                return Vec::new();
            }
        };
        if key_package_user(&kp) != Some(self.bot_user_id) {
            self.error(format!(
                "op 26 key package is for user {:?}, not the bot {}",
                key_package_user(&kp),
                self.bot_user_id
            ));
            return Vec::new();
        }
        self.stats(|st| st.key_packages += 1);
        match self.pending.take() {
            None | Some(Pending::KeyPackage { .. }) => {}
            Some(p) => self.log(format!(
                "new key package while waiting for {}: starting over",
                p.describe()
            )),
        }
        self.log(format!("<- op 26 key package ({} bytes)", payload.len()));
        // A new key package means a fresh session on the bot's side: no group any more.
        self.listeners.clear();
        self.bot_in_group = false;
        self.epoch = 0;
        self.bot_key_package = Some(kp);
        self.welcome_due = true;
        Vec::new()
    }

    /// op 28 from the bot: `[MLSMessage commit][Welcome, if it adds members]`.
    pub fn on_commit(&mut self, payload: &[u8]) -> Vec<Out> {
        let adds = match self.pending.take() {
            Some(Pending::Commit { adds, .. }) => adds,
            other => {
                self.pending = other;
                self.error(format!(
                    "unexpected op 28 ({} bytes): no proposals outstanding",
                    payload.len()
                ));
                return Vec::new();
            }
        };
        match self.accept_commit(payload, &adds) {
            Ok(out) => out,
            Err(e) => self.restart(&format!("bad commit from the bot: {e}")),
        }
    }

    fn accept_commit(&mut self, payload: &[u8], adds: &[u64]) -> Result<Vec<Out>, String> {
        let (msg, rest) = MlsMessageIn::tls_deserialize_bytes(payload)
            .map_err(|e| format!("op 28 is not an MLSMessage: {e}"))?;
        let commit = &payload[..payload.len() - rest.len()];
        let pm = msg
            .try_into_protocol_message()
            .map_err(|e| format!("op 28 is not a protocol message: {e:?}"))?;
        if pm.content_type() != ContentType::Commit {
            return Err(format!(
                "op 28 carries {:?}, not a commit",
                pm.content_type()
            ));
        }
        if pm.epoch().as_u64() != self.epoch {
            return Err(format!(
                "commit for epoch {}, the group is at {}",
                pm.epoch().as_u64(),
                self.epoch
            ));
        }
        if Some(pm.group_id().clone()) != self.group_id() {
            return Err("commit for another group".into());
        }
        let welcome = if rest.is_empty() {
            None
        } else {
            Welcome::tls_deserialize_exact_bytes(rest)
                .map_err(|e| format!("op 28 trailing bytes are not a Welcome: {e}"))?;
            Some(rest.to_vec())
        };
        if !adds.is_empty() && welcome.is_none() {
            return Err("the commit adds members but carries no Welcome".into());
        }
        if adds.is_empty() && welcome.is_some() {
            return Err("a Welcome with a commit that adds nobody".into());
        }
        for (uid, l) in self.listeners.iter_mut() {
            if l.in_group {
                l.session
                    .process_commit(commit)
                    .map_err(|e| format!("listener {uid} rejected the commit: {e:?}"))?;
            } else if adds.contains(uid) {
                let w = welcome.as_deref().unwrap_or_default();
                l.session
                    .process_welcome(w)
                    .map_err(|e| format!("listener {uid} rejected the Welcome: {e:?}"))?;
                l.in_group = true;
            }
        }
        self.epoch += 1;
        let tid = self.next_tid();
        self.bot_in_group = true;
        self.transition_until = Some(Instant::now() + FLOW_TIMEOUT);
        self.pending = Some(Pending::Ready {
            tid,
            deadline: Instant::now() + FLOW_TIMEOUT,
        });
        self.stats(|st| {
            st.commits += 1;
            st.announced_commits += 1;
        });
        self.log(format!(
            "<- op 28 commit ({} bytes{}); -> op 29 transition {tid}, epoch {}",
            commit.len(),
            if welcome.is_some() { " + Welcome" } else { "" },
            self.epoch
        ));
        Ok(vec![Out::Binary(29, with_tid(tid, commit))])
    }

    /// op 23 from the bot.
    pub fn on_transition_ready(&mut self, d: &Value) -> Vec<Out> {
        let tid = d["transition_id"].as_u64().unwrap_or(u64::MAX);
        match &self.pending {
            Some(Pending::Ready { tid: t, .. }) if u64::from(*t) == tid => {
                let t = *t;
                self.pending = None;
                self.transition_until = Some(Instant::now() + TRANSITION_GRACE);
                self.stats(|st| st.transitions += 1);
                self.log(format!("<- op 23 ready {t}; -> op 22 execute {t}"));
                vec![op22_execute_transition(t)]
            }
            _ => {
                self.log(format!(
                    "<- op 23 for transition {tid}, not pending: ignored"
                ));
                Vec::new()
            }
        }
    }

    /// op 31 from the bot: it could not process a commit or welcome. songbird re-initializes and
    /// sends a new key package; the server then welcomes it again.
    pub fn on_invalid_commit(&mut self, d: &Value) -> Vec<Out> {
        let tid = d["transition_id"].as_u64().unwrap_or(u64::MAX);
        self.stats(|st| st.invalid_commits += 1);
        match self.pending.take() {
            Some(Pending::Invalid { tid: t, .. }) if u64::from(t) == tid => {
                self.log(format!("<- op 31 for the injected invalid commit {t}"));
            }
            _ => self.error(format!(
                "the bot reported an invalid commit/welcome (op 31) for transition {tid}"
            )),
        }
        self.listeners.clear();
        self.bot_in_group = false;
        self.bot_key_package = None;
        self.epoch = 0;
        self.pending = Some(Pending::KeyPackage {
            deadline: Instant::now() + FLOW_TIMEOUT,
        });
        Vec::new()
    }

    /// Announces a commit the bot cannot process (to exercise op 31).
    pub fn inject_invalid_commit(&mut self) -> Result<Vec<Out>, String> {
        if self.pending.is_some() || !self.bot_in_group {
            return Err(format!(
                "needs a settled group (bot in group: {}, pending: {:?})",
                self.bot_in_group,
                self.pending.as_ref().map(Pending::describe)
            ));
        }
        let tid = self.next_tid();
        self.pending = Some(Pending::Invalid {
            tid,
            deadline: Instant::now() + FLOW_TIMEOUT,
        });
        self.log(format!(
            "-> op 29 transition {tid} with an invalid commit (injected)"
        ));
        Ok(vec![Out::Binary(
            29,
            with_tid(tid, &[0xDE, 0xAD, 0xBE, 0xEF]),
        )])
    }

    /// Adds a session that tries to decrypt every frame but never joins the group.
    pub fn add_eavesdropper(&mut self, user_id: u64) -> Result<(), String> {
        let mut session = DaveSession::new(version(), user_id, self.channel_id.unwrap_or(0), None)
            .map_err(|e| format!("{e:?}"))?;
        session.create_key_package().map_err(|e| format!("{e:?}"))?;
        session
            .set_external_sender(&self.external_sender)
            .map_err(|e| format!("{e:?}"))?;
        self.keep_as_eavesdropper(user_id, session);
        Ok(())
    }

    /// Asks the bot to start over (op 24 epoch 1 + op 21 transition 0) after a failed flow.
    fn restart(&mut self, why: &str) -> Vec<Out> {
        self.error(format!("{why}; asking the bot to re-initialize (op 24)"));
        self.listeners.clear();
        self.reinit()
    }

    fn reinit(&mut self) -> Vec<Out> {
        self.bot_in_group = false;
        self.bot_key_package = None;
        self.epoch = 0;
        self.pending = Some(Pending::KeyPackage {
            deadline: Instant::now() + FLOW_TIMEOUT,
        });
        self.stats(|st| st.reinits += 1);
        self.log("-> op 24 epoch 1, op 21 transition 0");
        vec![
            op24_prepare_epoch(DAVE_PROTOCOL_VERSION, 1),
            op21_prepare_transition(DAVE_PROTOCOL_VERSION, 0),
        ]
    }

    /// Timeouts, then brings the group in line with `humans` (the humans in the channel, or
    /// `None` when this is not the guild's current connection). Runs at most one flow step.
    pub fn tick(&mut self, humans: Option<&[u64]>) -> Vec<Out> {
        if let Some(p) = &self.pending {
            if Instant::now() < p.deadline() {
                return Vec::new();
            }
            let what = p.describe();
            let p = self.pending.take();
            return match p {
                Some(Pending::KeyPackage { .. }) => {
                    self.error(format!(
                        "timed out after {FLOW_TIMEOUT:?} waiting for {what}"
                    ));
                    Vec::new()
                }
                _ => self.restart(&format!(
                    "timed out after {FLOW_TIMEOUT:?} waiting for {what}"
                )),
            };
        }
        let Some(humans) = humans else {
            return Vec::new();
        };
        let (Some(channel), Some(bot_kp)) = (self.channel_id, self.bot_key_package.clone()) else {
            return Vec::new();
        };
        let desired: BTreeSet<u64> = humans.iter().copied().collect();
        if !self.bot_in_group {
            let welcome = std::mem::take(&mut self.welcome_due);
            if desired.is_empty() {
                return Vec::new();
            }
            let r = if welcome {
                self.welcome_bot(channel, &desired, bot_kp)
            } else {
                self.propose_adds(channel, &desired)
            };
            return r.unwrap_or_else(|e| self.restart(&e));
        }
        let in_group: BTreeSet<u64> = self.in_group().into_iter().collect();
        let removes: Vec<u64> = in_group.difference(&desired).copied().collect();
        let adds: BTreeSet<u64> = desired.difference(&in_group).copied().collect();
        let r = if !removes.is_empty() && removes.len() == in_group.len() {
            Ok(self.last_listeners_left(&removes))
        } else if !removes.is_empty() {
            self.propose_removes(&removes)
        } else if !adds.is_empty() {
            self.propose_adds(channel, &adds)
        } else {
            Ok(Vec::new())
        };
        r.unwrap_or_else(|e| self.restart(&e))
    }

    /// The humans form the group and one of them commits the add of the bot: op 30.
    fn welcome_bot(
        &mut self,
        channel: u64,
        members: &BTreeSet<u64>,
        bot_kp: KeyPackage,
    ) -> Result<Vec<Out>, String> {
        self.listeners.clear();
        for uid in members {
            self.listeners
                .insert(*uid, Listener::new(*uid, channel, &self.external_sender)?);
        }
        let mut kps = vec![bot_kp];
        kps.extend(
            self.listeners
                .values()
                .skip(1)
                .map(|l| l.key_package.clone()),
        );
        let proposals = self.add_proposals(&kps)?;
        let expected = self.expected_ids();
        let mut it = self.listeners.iter_mut();
        let (leader_id, leader) = it.next().ok_or("no listener")?;
        let cw = leader
            .session
            .process_proposals(ProposalsOperationType::APPEND, &proposals, Some(&expected))
            .map_err(|e| format!("listener {leader_id} could not commit the bot's add: {e:?}"))?
            .ok_or("the listener's commit is empty")?;
        let welcome = cw.welcome.ok_or("the listener's commit has no Welcome")?;
        leader
            .session
            .process_commit(&cw.commit)
            .map_err(|e| format!("listener {leader_id} could not merge its commit: {e:?}"))?;
        leader.in_group = true;
        let epoch = leader.session.epoch().map(|e| e.as_u64()).unwrap_or(1);
        for (uid, l) in it {
            l.session
                .process_welcome(&welcome)
                .map_err(|e| format!("listener {uid} rejected the Welcome: {e:?}"))?;
            l.in_group = true;
        }
        self.epoch = epoch;
        let tid = self.next_tid();
        self.bot_in_group = true;
        self.transition_until = Some(Instant::now() + FLOW_TIMEOUT);
        self.pending = Some(Pending::Ready {
            tid,
            deadline: Instant::now() + FLOW_TIMEOUT,
        });
        self.stats(|st| st.welcomes += 1);
        self.log(format!(
            "listeners {members:?} committed the bot's add; -> op 30 Welcome transition {tid}, epoch {epoch}"
        ));
        let ids: Vec<u64> = members.iter().copied().collect();
        Ok(vec![
            op11_clients_connect(&ids),
            Out::Binary(30, with_tid(tid, &welcome)),
        ])
    }

    /// New humans: op 11, then add proposals for the bot to commit.
    fn propose_adds(&mut self, channel: u64, adds: &BTreeSet<u64>) -> Result<Vec<Out>, String> {
        let mut kps = Vec::new();
        for uid in adds {
            let l = Listener::new(*uid, channel, &self.external_sender)?;
            kps.push(l.key_package.clone());
            self.listeners.insert(*uid, l);
        }
        let proposals = self.add_proposals(&kps)?;
        self.listeners_store_proposals(&proposals)?;
        let ids: Vec<u64> = adds.iter().copied().collect();
        self.pending = Some(Pending::Commit {
            adds: ids.clone(),
            deadline: Instant::now() + FLOW_TIMEOUT,
        });
        self.stats(|st| st.proposals += 1);
        self.log(format!(
            "-> op 11 {ids:?}, op 27 add {ids:?} at epoch {}",
            self.epoch
        ));
        let mut frame = vec![ProposalsOperationType::APPEND as u8];
        frame.extend(proposals);
        Ok(vec![op11_clients_connect(&ids), Out::Binary(27, frame)])
    }

    /// Humans left (some remain): op 13, then remove proposals for the bot to commit.
    fn propose_removes(&mut self, removes: &[u64]) -> Result<Vec<Out>, String> {
        let mut out = Vec::new();
        let mut leaves = Vec::new();
        for uid in removes {
            if let Some(l) = self.listeners.remove(uid) {
                let leaf = l
                    .session
                    .own_leaf_index()
                    .ok_or(format!("listener {uid} has no leaf"))?;
                leaves.push(leaf);
                self.keep_as_eavesdropper(*uid, l.session);
            }
            out.push(op13_client_disconnect(*uid));
        }
        let proposals = self.remove_proposals(&leaves)?;
        self.listeners_store_proposals(&proposals)?;
        self.pending = Some(Pending::Commit {
            adds: Vec::new(),
            deadline: Instant::now() + FLOW_TIMEOUT,
        });
        self.stats(|st| st.proposals += 1);
        self.log(format!(
            "-> op 13 {removes:?}, op 27 remove at epoch {}",
            self.epoch
        ));
        let mut frame = vec![ProposalsOperationType::APPEND as u8];
        frame.extend(proposals);
        out.push(Out::Binary(27, frame));
        Ok(out)
    }

    /// The last humans left: op 13, then the bot starts over alone (op 24 epoch 1, op 21).
    fn last_listeners_left(&mut self, removes: &[u64]) -> Vec<Out> {
        let mut out = Vec::new();
        for uid in removes {
            if let Some(l) = self.listeners.remove(uid) {
                self.keep_as_eavesdropper(*uid, l.session);
            }
            out.push(op13_client_disconnect(*uid));
        }
        self.log(format!("-> op 13 {removes:?}: nobody left in the group"));
        out.extend(self.reinit());
        out
    }

    // ------------------------------------------------------------------ media

    /// One transport-decrypted RTP payload from the bot. Returns the Opus frame a listener
    /// would play and whether it arrived DAVE-encrypted, or `None` when nobody could play it.
    pub fn on_media(&mut self, payload: &[u8]) -> Option<(Vec<u8>, bool)> {
        self.on_media_at(payload, Instant::now())
    }

    /// [`Self::on_media`] for a payload arriving at `now` (a test can model a frame that
    /// arrives after the transition grace without waiting for it).
    pub fn on_media_at(&mut self, payload: &[u8], now: Instant) -> Option<(Vec<u8>, bool)> {
        if payload == OPUS_SILENCE {
            self.stats(|st| st.frames_silence += 1);
            return Some((payload.to_vec(), false));
        }
        let in_transition = self.transition_until.is_some_and(|t| now < t);
        let bot = self.bot_user_id;
        let mut eaves: Vec<(u64, bool)> = Vec::new();
        if !is_dave_frame(payload) {
            let live = self.bot_in_group && self.listeners.values().any(|l| l.in_group);
            let dropped = live && !in_transition;
            let ids: Vec<u64> = self.eavesdroppers.keys().copied().collect();
            let listeners = self.in_group();
            self.stats(|st| {
                st.frames_plain += 1;
                if dropped {
                    st.frames_plain_in_group += 1;
                }
                for id in ids {
                    st.eavesdroppers.entry(id).or_default().plain += 1;
                }
                for id in listeners {
                    st.listener_frames.entry(id).or_default().plain += 1;
                }
            });
            if dropped {
                self.error(format!(
                    "plain Opus frame ({} bytes) after the bot joined the group (epoch {})",
                    payload.len(),
                    self.epoch
                ));
                return None;
            }
            return Some((payload.to_vec(), false));
        }
        let mut first: Option<Vec<u8>> = None;
        let mut listener_failures = 0usize;
        let mut per_listener: Vec<(u64, bool)> = Vec::new();
        for (id, l) in self.listeners.iter_mut().filter(|(_, l)| l.in_group) {
            match decrypt(&mut l.session, bot, payload) {
                Ok(p) => {
                    first.get_or_insert(p);
                    per_listener.push((*id, true));
                }
                Err(_) => {
                    listener_failures += 1;
                    per_listener.push((*id, false));
                }
            }
        }
        let tried = per_listener.len();
        for (id, s) in self.eavesdroppers.iter_mut() {
            eaves.push((*id, decrypt(s, bot, payload).is_ok()));
        }
        let ok = first.is_some();
        let failed = tried > 0 && !ok;
        self.stats(|st| {
            st.frames_encrypted += 1;
            if ok {
                st.frames_decrypted += 1;
                st.listener_failures += listener_failures;
            } else if failed {
                st.decrypt_failures += 1;
            }
            for (id, ok) in eaves {
                let e = st.eavesdroppers.entry(id).or_default();
                if ok {
                    e.decrypted += 1;
                } else {
                    e.failed += 1;
                }
            }
            for (id, ok) in per_listener {
                let e = st.listener_frames.entry(id).or_default();
                if ok {
                    e.decrypted += 1;
                } else {
                    e.failed += 1;
                }
            }
        });
        if failed && !in_transition {
            self.error(format!(
                "no listener could decrypt a DAVE frame ({} bytes, epoch {})",
                payload.len(),
                self.epoch
            ));
        }
        first.map(|p| (p, true))
    }
}

/// Decrypts a frame from `user_id`; a panic inside davey counts as a failure.
fn decrypt(session: &mut DaveSession, user_id: u64, payload: &[u8]) -> Result<Vec<u8>, String> {
    match catch_unwind(AssertUnwindSafe(|| {
        session.decrypt(user_id, MediaType::AUDIO, payload)
    })) {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(_) => Err("davey panicked".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Emulator API
// ---------------------------------------------------------------------------------------------

impl super::Emulator {
    /// DAVE on (the default) or off for voice connections made from now on. Off: SESSION_DESCRIPTION
    /// says `dave_protocol_version: 0` (transport encryption only). On: a client without DAVE
    /// (`max_dave_protocol_version` absent or 0) is closed with 4017, as Discord does.
    pub fn set_dave(&self, enabled: bool) {
        self.with(|s| s.dave_enabled = enabled);
    }

    pub fn dave_enabled(&self) -> bool {
        self.read(|s| s.dave_enabled)
    }

    /// DAVE counters and the current group of the guild's call.
    pub fn dave_stats(&self, guild_id: u64) -> DaveStats {
        self.read(|s| s.dave_stats.get(&guild_id).cloned().unwrap_or_default())
    }

    /// Zeroes the guild's DAVE counters (the group state stays).
    pub fn clear_dave_stats(&self, guild_id: u64) {
        self.with(|s| {
            if let Some(st) = s.dave_stats.get_mut(&guild_id) {
                st.clear_counters();
            }
        });
    }

    /// Waits until no DAVE flow is pending and the bot shares a group with exactly `listeners`
    /// (empty: the bot is alone, not in a group). Panics with the state on timeout.
    pub async fn wait_dave_group(&self, guild_id: u64, listeners: &[u64], timeout: Duration) {
        let ok = self
            .shared()
            .wait_until(timeout, |s| {
                s.dave_stats
                    .get(&guild_id)
                    .is_some_and(|st| st.settled_with(listeners))
                    .then_some(())
            })
            .await;
        if ok.is_none() {
            let (st, summary) = self.read(|s| (s.dave_stats.get(&guild_id).cloned(), s.summary()));
            panic!(
                "emulator: DAVE group of guild {guild_id} did not settle with listeners {listeners:?} \
                 within {timeout:?}: {st:#?}\n{summary}"
            );
        }
    }

    /// Waits until listeners decrypted at least `n` DAVE frames in the guild (since the last
    /// [`clear_dave_stats`](Self::clear_dave_stats)).
    pub async fn wait_dave_frames(&self, guild_id: u64, n: usize, timeout: Duration) {
        let ok = self
            .shared()
            .wait_until(timeout, |s| {
                (s.dave_stats
                    .get(&guild_id)
                    .is_some_and(|st| st.frames_decrypted >= n))
                .then_some(())
            })
            .await;
        if ok.is_none() {
            let (st, summary) = self.read(|s| (s.dave_stats.get(&guild_id).cloned(), s.summary()));
            panic!(
                "emulator: wanted {n} decrypted DAVE frames in guild {guild_id} within {timeout:?}: {st:#?}\n{summary}"
            );
        }
    }

    fn dave_call(&self, guild_id: u64) -> DaveHandle {
        let h = self.read(|s| s.dave_calls.get(&guild_id).cloned());
        h.unwrap_or_else(|| {
            let summary = self.read(|s| s.summary());
            panic!("emulator: guild {guild_id} has no DAVE call (is the bot connected with DAVE?)\n{summary}")
        })
    }

    /// Adds a DAVE session for `user_id` that is never part of the group but tries to decrypt
    /// every frame of the guild's current call ([`DaveStats::eavesdroppers`]).
    pub fn dave_add_eavesdropper(&self, guild_id: u64, user_id: u64) {
        let h = self.dave_call(guild_id);
        let mut call = h.lock();
        call.add_eavesdropper(user_id)
            .unwrap_or_else(|e| panic!("emulator: eavesdropper {user_id}: {e}"));
        call.mirror();
    }

    /// Announces (op 29) a commit the bot cannot process: it must answer op 31, re-initialize
    /// and be welcomed again. Needs a settled group.
    pub fn dave_inject_invalid_commit(&self, guild_id: u64) {
        let h = self.dave_call(guild_id);
        let out = {
            let mut call = h.lock();
            let out = call
                .inject_invalid_commit()
                .unwrap_or_else(|e| panic!("emulator: dave_inject_invalid_commit: {e}"));
            call.mirror();
            out
        };
        let sent = self.read(|s| {
            s.voice_current
                .get(&guild_id)
                .is_some_and(|c| c.tx.send(VoiceCmd::Dave(out)).is_ok())
        });
        assert!(sent, "emulator: guild {guild_id} has no voice connection");
    }

    /// Frames of [`audio`](Self::audio) that arrived DAVE-encrypted and were decrypted.
    pub fn dave_audio(&self, guild_id: u64) -> Vec<AudioFrame> {
        self.read(|s| {
            s.audio
                .get(&guild_id)
                .map(|v| v.iter().filter(|f| f.dave).cloned().collect())
                .unwrap_or_default()
        })
    }
}
