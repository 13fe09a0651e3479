//! One task per guild owns that guild's queue and voice call. Commands are messages to it,
//! so queue state has exactly one writer and no lock is held across an await on Discord.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::player::persist::{QueueStore, SavedQueue};
use crate::player::queue::{Advance, Entry, LoopMode, Queue, QueueError, Requester};
use crate::player::voice::{
    Notice, Notifier, PlayOptions, TrackOutcome, VoiceCall, VoiceError, VoiceEvent, VoiceFactory,
};
use crate::resources::{Activity, CallGuard, CleanupReason, Guard, IdlePolicy, Kind, Registry};
use crate::sources::Track;

/// How often a lost voice connection is re-joined before giving up, and the first wait.
const REJOIN_ATTEMPTS: u32 = 3;
const REJOIN_BASE: Duration = Duration::from_secs(1);
/// How long a dropped connection may take to come back on its own (songbird resumes
/// 4015 itself; a move arrives as a new voice state) before the player acts.
const RECONNECT_GRACE: Duration = Duration::from_secs(2);
/// Longest the player waits for a notice to be posted in the text channel.
const NOTICE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlayerError {
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Voice(#[from] VoiceError),
    #[error("I'm already playing in <#{0}>; join that channel to control the music")]
    OtherChannel(u64),
    #[error("I'm not in a voice channel")]
    NotConnected,
    #[error("the player is shutting down; try again in a moment")]
    Gone,
    #[error("volume must be between 0 and 200")]
    BadVolume,
    #[error("I'm playing in as many channels as I'm allowed to right now ({0}); try again later")]
    Busy(usize),
    #[error("I'm reconnecting to the voice channel; try again in a moment")]
    Reconnecting,
}

/// What `/queue` and `/nowplaying` show.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub current: Option<Entry>,
    pub position: Option<Duration>,
    pub upcoming: Vec<Entry>,
    pub loop_mode: LoopMode,
    pub paused: bool,
    pub volume: u16,
    pub voice_channel: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// Position of the first added track: 0 = playing now.
    pub position: usize,
    pub added: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub skipped: usize,
    pub skipped_title: String,
    pub next: Option<String>,
}

/// A request to the player task; each carries its own reply channel.
pub enum Request {
    Enqueue {
        tracks: Vec<Arc<Track>>,
        requester: Requester,
        voice_channel: u64,
        text_channel: u64,
        front: bool,
        reply: oneshot::Sender<Result<Enqueued, PlayerError>>,
    },
    /// Skips `n` tracks counting the current one, which must still be entry `current`
    /// (the one the caller saw, voted on or was allowed to skip).
    Skip {
        n: usize,
        current: u64,
        reply: oneshot::Sender<Result<Skipped, PlayerError>>,
    },
    Back {
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    Pause {
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    Resume {
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    /// Clears the queue and stops playback; stays in the channel.
    Stop {
        reply: oneshot::Sender<Result<usize, PlayerError>>,
    },
    /// Clears everything and disconnects; the task ends.
    Leave {
        reason: CleanupReason,
        reply: oneshot::Sender<Result<(), PlayerError>>,
    },
    /// Leaves for `reason` unless `only_if_idle` and something is playing; answers
    /// whether it left.
    Cleanup {
        reason: CleanupReason,
        only_if_idle: bool,
        reply: oneshot::Sender<bool>,
    },
    /// How many humans are in `channel` now (sent by the gateway edge on voice changes).
    Presence {
        channel: u64,
        humans: usize,
    },
    /// The bot's own voice state changed: moved to `Some(channel)` or disconnected.
    BotVoiceState {
        channel: Option<u64>,
    },
    /// Brings back a queue saved before a restart: joins its channel and resumes.
    Restore {
        saved: SavedQueue,
        reply: oneshot::Sender<Result<(), PlayerError>>,
    },
    /// The guild's settings changed (`/settings`).
    Configure {
        settings: PlayerSettings,
    },
    /// Removes upcoming `from..=to`, which must still hold the entries `ids`.
    Remove {
        from: usize,
        to: usize,
        ids: Vec<u64>,
        reply: oneshot::Sender<Result<Vec<Entry>, PlayerError>>,
    },
    /// Moves upcoming `from` (still entry `id`) to `to`.
    Move {
        from: usize,
        to: usize,
        id: u64,
        reply: oneshot::Sender<Result<Entry, PlayerError>>,
    },
    Shuffle {
        reply: oneshot::Sender<Result<usize, PlayerError>>,
    },
    Clear {
        reply: oneshot::Sender<Result<usize, PlayerError>>,
    },
    SetLoop {
        mode: LoopMode,
        reply: oneshot::Sender<Result<LoopMode, PlayerError>>,
    },
    SetVolume {
        percent: u16,
        reply: oneshot::Sender<Result<u16, PlayerError>>,
    },
    Seek {
        to: Duration,
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
}

/// Limits and defaults a player starts with.
#[derive(Debug, Clone)]
pub struct PlayerSettings {
    pub volume: u16,
    pub max_queue: usize,
    pub idle: IdlePolicy,
    /// Most voice calls across all guilds.
    pub max_calls: usize,
    /// How often a playing track's position is saved between queue changes, so a crash or
    /// a SIGKILL resumes near where it was instead of from the track's start.
    pub save_position_every: Option<Duration>,
}

/// The cheap, clonable address of a guild's player task.
#[derive(Clone, Debug)]
pub struct PlayerHandle {
    tx: mpsc::Sender<Request>,
    /// `/play`s still looking up what to queue here (shared with the player).
    resolving: Arc<AtomicUsize>,
}

/// Held by a `/play` while it looks its query up: the player does not leave for being
/// idle meanwhile, so a slow lookup does not end in a leave and an immediate re-join.
/// Dropping it (queued, failed or cancelled) lets the idle clock run again.
#[must_use]
pub struct Resolving(Arc<AtomicUsize>);

impl Drop for Resolving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PlayerHandle {
    /// Marks a `/play` for this guild as under way until the guard is dropped.
    pub fn resolving(&self) -> Resolving {
        self.resolving.fetch_add(1, Ordering::Relaxed);
        Resolving(self.resolving.clone())
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends a request that carries no reply; a gone player is fine.
    pub async fn send(&self, req: Request) {
        let _ = self.tx.send(req).await;
    }

    /// Sends a request and waits for its answer; `Gone` if the task has ended.
    pub async fn ask<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Request,
    ) -> Result<R, PlayerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| PlayerError::Gone)?;
        rx.await.map_err(|_| PlayerError::Gone)
    }

    /// Like `ask` for requests whose answer is itself a `Result`.
    pub async fn call<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<R, PlayerError>>) -> Request,
    ) -> Result<R, PlayerError> {
        self.ask(make).await?
    }
}

pub struct GuildPlayer {
    guild: u64,
    queue: Queue,
    voice: Box<dyn VoiceCall>,
    notifier: Arc<dyn Notifier>,
    settings: PlayerSettings,
    registry: Arc<Registry>,
    voice_channel: Option<u64>,
    text_channel: Option<u64>,
    paused: bool,
    /// Token of the track the voice call is playing; bumped on every start and stop.
    token: u64,
    events: mpsc::UnboundedReceiver<VoiceEvent>,
    activity: Activity,
    /// Set while the voice connection is down: when to act and how often we tried.
    reconnect: Option<Reconnect>,
    /// Registered while connected; dropping it unregisters the call.
    call: Option<CallGuard>,
    store: Arc<dyn QueueStore>,
    /// Fingerprint of what was last handed to the store, to save only on change.
    saved: Option<u64>,
    /// When to save the playing track's position next; `None` unless it is playing.
    checkpoint_at: Option<Instant>,
    /// See [`Resolving`].
    resolving: Arc<AtomicUsize>,
    _unit: Guard,
}

#[derive(Debug, Clone, Copy)]
struct Reconnect {
    at: Instant,
    attempts: u32,
    /// Discord closed with 4014 (kicked, channel gone, or moved): unless a move arrives
    /// within the grace period, the call is over; re-joining would undo a moderator.
    kicked: bool,
}

impl GuildPlayer {
    /// Creates the player task's state and its handle. Run it with [`GuildPlayer::run`].
    pub fn new(
        guild: u64,
        voice: &VoiceFactory,
        notifier: Arc<dyn Notifier>,
        settings: PlayerSettings,
        registry: Arc<Registry>,
        store: Arc<dyn QueueStore>,
    ) -> (Self, PlayerHandle, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::unbounded_channel();
        let resolving = Arc::new(AtomicUsize::new(0));
        let player = Self {
            guild,
            queue: Queue::new(),
            voice: voice(guild, events_tx),
            notifier,
            settings,
            _unit: registry.acquire(Kind::Player),
            registry,
            voice_channel: None,
            text_channel: None,
            paused: false,
            token: 0,
            events,
            activity: Activity::default(),
            reconnect: None,
            call: None,
            store,
            saved: None,
            checkpoint_at: None,
            resolving: resolving.clone(),
        };
        (player, PlayerHandle { tx, resolving }, rx)
    }

    /// Serves requests, voice events and timers until the player leaves (asked to, a
    /// timeout, a lost connection), every handle is dropped, or `shutdown` fires. Always
    /// leaves the voice channel on the way out.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        loop {
            let wake = self.next_wakeup();
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let flow = tokio::select! {
                _ = shutdown.cancelled() => Flow::Leave(CleanupReason::Shutdown),
                req = requests.recv() => match req {
                    None => Flow::Leave(CleanupReason::Shutdown),
                    Some(req) => self.handle(req).await,
                },
                Some(ev) = self.events.recv() => self.on_voice_event(ev).await,
                _ = timer => self.on_timer().await,
            };
            match flow {
                Flow::Continue => self.persist().await,
                Flow::Leave(reason) => {
                    self.leave(reason).await;
                    return;
                }
                Flow::Done => return,
            }
        }
    }

    /// When the next timer (idle, alone, paused, reconnect) is due.
    fn next_wakeup(&self) -> Option<Instant> {
        let idle = self
            .settings
            .idle
            .next_deadline(&self.activity)
            .map(|(at, _)| at);
        [idle, self.reconnect.map(|r| r.at), self.checkpoint_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Re-derives since-when the idle and paused conditions hold after any change.
    fn refresh_activity(&mut self) {
        let now = Instant::now();
        let connected = self.voice_channel.is_some();
        let playing = self.queue.current().is_some();
        self.activity.idle_since = match (connected && !playing, self.activity.idle_since) {
            (true, since) => since.or(Some(now)),
            (false, _) => None,
        };
        self.activity.paused_since = match (playing && self.paused, self.activity.paused_since) {
            (true, since) => since.or(Some(now)),
            (false, _) => None,
        };
        if !connected {
            self.activity.alone_since = None;
        }
        if playing && !self.paused {
            if let Some(call) = &self.call {
                call.touch();
            }
        }
        let every = self.settings.save_position_every;
        self.checkpoint_at = match (connected && playing && !self.paused, self.checkpoint_at) {
            (true, at) => at.or(every.map(|e| now + e)),
            (false, _) => None,
        };
    }

    async fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        match self.settings.idle.due(&self.activity, now) {
            // Someone's /play is on its way: idle (or paused) starts counting afresh.
            Some(CleanupReason::Idle) if self.resolving.load(Ordering::Relaxed) > 0 => {
                let a = &mut self.activity;
                a.idle_since = a.idle_since.map(|_| now);
                a.paused_since = a.paused_since.map(|_| now);
            }
            Some(reason) => return Flow::Leave(reason),
            None => {}
        }
        if self.checkpoint_at.is_some_and(|at| at <= now) {
            self.checkpoint_at = self.settings.save_position_every.map(|e| now + e);
            if let Some(position) = self.voice.position().await {
                self.store.checkpoint(self.guild, position);
            }
        }
        match self.reconnect {
            Some(r) if r.at <= now => self.try_rejoin(r).await,
            _ => Flow::Continue,
        }
    }

    async fn on_voice_event(&mut self, ev: VoiceEvent) -> Flow {
        match ev {
            VoiceEvent::TrackEnded { token, outcome } => {
                self.on_track_ended(token, outcome).await;
                Flow::Continue
            }
            VoiceEvent::Connected => {
                if self.reconnect.take().is_some() {
                    tracing::info!(guild = self.guild, "voice connection restored");
                }
                Flow::Continue
            }
            VoiceEvent::Disconnected { code, reason } => {
                if self.voice_channel.is_none() {
                    return Flow::Continue; // our own leave
                }
                tracing::warn!(
                    guild = self.guild,
                    ?code,
                    reason,
                    "voice connection dropped"
                );
                self.registry.record_error("voice disconnect");
                if self.reconnect.is_none() {
                    self.reconnect = Some(Reconnect {
                        at: Instant::now() + RECONNECT_GRACE,
                        attempts: 0,
                        kicked: code == Some(4014),
                    });
                }
                Flow::Continue
            }
        }
    }

    /// The connection did not come back by itself: re-join the same channel with
    /// exponential backoff, or give up and clean up so a later `/play` starts fresh.
    async fn try_rejoin(&mut self, r: Reconnect) -> Flow {
        let Some(channel) = self.voice_channel else {
            self.reconnect = None;
            return Flow::Continue;
        };
        // After a failed attempt we are disconnected by our own hand; before the first,
        // the voice layer's view says what happened meanwhile.
        let seen = if r.attempts == 0 {
            self.voice.current_channel().await
        } else {
            Some(channel)
        };
        match seen {
            // Disconnected by someone (kick, channel gone): nothing to re-join.
            None => return Flow::Leave(CleanupReason::BotDisconnected),
            // Moved: a new voice state will follow; songbird connects there itself.
            Some(c) if c != channel => {
                self.reconnect = None;
                return Flow::Continue;
            }
            // 4014 without a move: Discord ended this session (kicked, channel gone).
            Some(_) if r.kicked => return Flow::Leave(CleanupReason::BotDisconnected),
            Some(_) => {}
        }
        if r.attempts >= REJOIN_ATTEMPTS {
            tracing::warn!(guild = self.guild, "voice connection lost for good");
            return Flow::Leave(CleanupReason::Error);
        }
        let position = self.voice.position().await;
        tracing::info!(
            guild = self.guild,
            attempt = r.attempts + 1,
            "re-joining voice"
        );
        // songbird treats a join of the channel it thinks it is in as done: drop the dead
        // session first so the join opens a new one.
        self.voice.leave().await;
        match self.voice.join(channel).await {
            Ok(()) => {
                self.reconnect = None;
                if self.queue.current().is_some() {
                    self.start_current_at(position).await;
                }
            }
            Err(e) => {
                tracing::warn!(guild = self.guild, error = %e, "re-join failed");
                self.reconnect = Some(Reconnect {
                    at: Instant::now() + REJOIN_BASE * 2u32.pow(r.attempts),
                    attempts: r.attempts + 1,
                    kicked: false,
                });
            }
        }
        Flow::Continue
    }

    async fn handle(&mut self, req: Request) -> Flow {
        match req {
            Request::Enqueue {
                tracks,
                requester,
                voice_channel,
                text_channel,
                front,
                reply,
            } => {
                let r = self
                    .enqueue(tracks, requester, voice_channel, text_channel, front)
                    .await;
                let _ = reply.send(r);
            }
            Request::Skip { n, current, reply } => {
                let _ = reply.send(self.skip(n, current).await);
            }
            Request::Back { reply } => {
                let r = match self.queue.back() {
                    Ok(()) => {
                        self.queue.advance(Advance::Skipped);
                        self.start_current().await;
                        Ok(self.current_title().unwrap_or_default())
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(r);
            }
            Request::Pause { reply } => {
                let r = match self.current_title() {
                    None => Err(QueueError::NothingPlaying.into()),
                    Some(t) => {
                        self.voice.pause().await;
                        self.paused = true;
                        Ok(t)
                    }
                };
                let _ = reply.send(r);
            }
            Request::Resume { reply } => {
                let r = match self.current_title() {
                    None => Err(QueueError::NothingPlaying.into()),
                    Some(t) => {
                        self.voice.resume().await;
                        self.paused = false;
                        Ok(t)
                    }
                };
                let _ = reply.send(r);
            }
            Request::Stop { reply } => {
                let n = self.queue.clear_all();
                self.stop_voice().await;
                let _ = reply.send(Ok(n));
            }
            Request::Leave { reason, reply } => {
                self.leave(reason).await;
                let _ = reply.send(Ok(()));
                return Flow::Done;
            }
            Request::Cleanup {
                reason,
                only_if_idle,
                reply,
            } => {
                let busy = (self.queue.current().is_some() && !self.paused)
                    || self.resolving.load(Ordering::Relaxed) > 0;
                if only_if_idle && busy {
                    let _ = reply.send(false);
                } else {
                    self.leave(reason).await;
                    let _ = reply.send(true);
                    return Flow::Done;
                }
            }
            Request::Presence { channel, humans } => {
                if self.voice_channel == Some(channel) {
                    self.activity.alone_since = match (humans, self.activity.alone_since) {
                        (0, since) => since.or(Some(Instant::now())),
                        _ => None,
                    };
                }
            }
            Request::Restore { saved, reply } => {
                let r = self.restore(saved).await;
                let _ = reply.send(r);
            }
            Request::Configure { settings } => {
                self.settings.idle = settings.idle;
                self.settings.max_queue = settings.max_queue;
                self.settings.max_calls = settings.max_calls;
                self.settings.save_position_every = settings.save_position_every;
            }
            Request::BotVoiceState { channel } => match channel {
                // Only a real disconnect counts: songbird drops the call when it sees it; a
                // stale update from before a re-join leaves it connected.
                None if self.voice_channel.is_some()
                    && self.voice.current_channel().await.is_none() =>
                {
                    return Flow::Leave(CleanupReason::BotDisconnected);
                }
                Some(c) if self.voice_channel.is_some_and(|old| old != c) => {
                    tracing::info!(
                        guild = self.guild,
                        channel = c,
                        "moved to another voice channel"
                    );
                    self.voice_channel = Some(c);
                    self.activity.alone_since = None;
                    if let Some(call) = &self.call {
                        call.set_channel(c);
                    }
                }
                _ => {}
            },
            Request::Remove {
                from,
                to,
                ids,
                reply,
            } => {
                let r = self
                    .queue
                    .expect_upcoming(from, &ids)
                    .and_then(|()| self.queue.remove_range(from, to));
                let _ = reply.send(r.map_err(Into::into));
            }
            Request::Move {
                from,
                to,
                id,
                reply,
            } => {
                let r = self
                    .queue
                    .expect_upcoming(from, &[id])
                    .and_then(|()| self.queue.move_entry(from, to).cloned());
                let _ = reply.send(r.map_err(Into::into));
            }
            Request::Shuffle { reply } => {
                let r = self
                    .queue
                    .shuffle(&mut rand::thread_rng())
                    .map(|()| self.queue.upcoming().len())
                    .map_err(Into::into);
                let _ = reply.send(r);
            }
            Request::Clear { reply } => {
                let _ = reply.send(Ok(self.queue.clear_upcoming()));
            }
            Request::SetLoop { mode, reply } => {
                self.queue.set_loop_mode(mode);
                let _ = reply.send(Ok(mode));
            }
            Request::SetVolume { percent, reply } => {
                let r = if percent > 200 {
                    Err(PlayerError::BadVolume)
                } else {
                    self.settings.volume = percent;
                    self.voice.set_volume(gain(percent)).await;
                    Ok(percent)
                };
                let _ = reply.send(r);
            }
            Request::Seek { to, reply } => {
                let r = match self.current_title() {
                    None => Err(QueueError::NothingPlaying.into()),
                    // songbird only seeks a track whose connection is up: it would just wait.
                    Some(_) if self.reconnect.is_some() => Err(PlayerError::Reconnecting),
                    Some(t) => self.voice.seek(to).await.map(|()| t).map_err(Into::into),
                };
                let _ = reply.send(r);
            }
            Request::Snapshot { reply } => {
                let position = match self.queue.current() {
                    Some(_) => self.voice.position().await,
                    None => None,
                };
                let _ = reply.send(Snapshot {
                    current: self.queue.current().cloned(),
                    position,
                    upcoming: self.queue.upcoming().iter().cloned().collect(),
                    loop_mode: self.queue.loop_mode(),
                    paused: self.paused,
                    volume: self.settings.volume,
                    voice_channel: self.voice_channel,
                });
            }
        }
        self.refresh_activity();
        Flow::Continue
    }

    fn current_title(&self) -> Option<String> {
        self.queue.current().map(|e| e.track.title.clone())
    }

    async fn enqueue(
        &mut self,
        tracks: Vec<Arc<Track>>,
        requester: Requester,
        voice_channel: u64,
        text_channel: u64,
        front: bool,
    ) -> Result<Enqueued, PlayerError> {
        match self.voice_channel {
            Some(c) if c != voice_channel && !self.queue.is_idle() => {
                return Err(PlayerError::OtherChannel(c));
            }
            Some(c) if c == voice_channel => {}
            _ => {
                // Take the slot before joining, so a refusal leaves nothing half-joined.
                let call = match self.call.take() {
                    Some(call) => call,
                    None => self
                        .registry
                        .try_call(self.guild, voice_channel, self.settings.max_calls)
                        .ok_or(PlayerError::Busy(self.settings.max_calls))?,
                };
                self.voice.join(voice_channel).await?;
                call.set_channel(voice_channel);
                self.call = Some(call);
                self.voice_channel = Some(voice_channel);
                self.activity.alone_since = None;
            }
        }
        self.text_channel = Some(text_channel);
        let room = self
            .settings
            .max_queue
            .saturating_sub(self.queue.upcoming().len());
        if room == 0 {
            return Err(QueueError::Full(self.settings.max_queue).into());
        }
        let added = tracks.len().min(room);
        let first = if front {
            1
        } else {
            self.queue.upcoming().len() + 1
        };
        // Inserting several at the front must keep their order: insert them in reverse.
        let ordered: Vec<_> = if front {
            tracks.into_iter().take(added).rev().collect()
        } else {
            tracks.into_iter().take(added).collect()
        };
        for t in ordered {
            self.queue
                .push(t, requester.clone(), front, self.settings.max_queue)?;
        }
        if self.queue.current().is_none() {
            self.queue.advance(Advance::Skipped);
            self.start_current().await;
            return Ok(Enqueued { position: 0, added });
        }
        Ok(Enqueued {
            position: first,
            added,
        })
    }

    async fn skip(&mut self, n: usize, current: u64) -> Result<Skipped, PlayerError> {
        self.queue.expect_current(current)?;
        let skipped_title = self.current_title().ok_or(QueueError::NothingPlaying)?;
        let skipped = self.queue.skip(n.max(1))?;
        self.queue.advance(Advance::Skipped);
        self.start_current().await;
        Ok(Skipped {
            skipped,
            skipped_title,
            next: self.current_title(),
        })
    }

    /// Plays the queue's current entry; a track that cannot start is reported and skipped,
    /// so this ends either playing something or with an empty queue.
    async fn start_current(&mut self) {
        self.start_current_at(None).await;
    }

    async fn start_current_at(&mut self, mut start_at: Option<Duration>) {
        self.paused = false;
        loop {
            let Some(entry) = self.queue.current().cloned() else {
                self.stop_voice().await;
                return;
            };
            self.token += 1;
            let opts = PlayOptions {
                volume: gain(self.settings.volume),
                start_at: start_at.take(),
            };
            match self.voice.play(&entry.track, opts, self.token).await {
                Ok(()) => {
                    tracing::info!(guild = self.guild, title = %entry.track.title, "now playing");
                    self.tell(Notice::NowPlaying(entry)).await;
                    return;
                }
                Err(e) => {
                    self.track_failed(&entry.track.title, &e.to_string()).await;
                    self.queue.advance(Advance::Failed);
                }
            }
        }
    }

    async fn on_track_ended(&mut self, token: u64, outcome: TrackOutcome) {
        if token != self.token || self.queue.current().is_none() {
            return; // the end of a track we already replaced or stopped
        }
        let why = match outcome {
            TrackOutcome::Finished => Advance::Finished,
            TrackOutcome::Failed(reason) => {
                let title = self.current_title().unwrap_or_default();
                self.track_failed(&title, &reason).await;
                Advance::Failed
            }
        };
        self.queue.advance(why);
        self.start_current().await;
        if self.queue.is_idle() {
            self.tell(Notice::QueueFinished).await;
        }
        self.refresh_activity();
    }

    async fn track_failed(&self, title: &str, reason: &str) {
        tracing::warn!(
            guild = self.guild,
            title,
            reason,
            "track failed to play; skipping it"
        );
        self.tell(Notice::TrackFailed {
            title: title.to_string(),
            reason: reason.to_string(),
        })
        .await;
    }

    async fn stop_voice(&mut self) {
        self.token += 1;
        self.paused = false;
        self.voice.stop().await;
    }

    /// Hands the queue's state, with the playing track's position, to the store when it
    /// changed since the last time.
    async fn persist(&mut self) {
        let fingerprint = self.fingerprint();
        if fingerprint == self.saved {
            return;
        }
        let position = match self.queue.current() {
            Some(_) => self.voice.position().await,
            None => None,
        };
        self.store.save(self.guild, self.saved_state(position));
        self.saved = fingerprint;
    }

    /// The channels a saved queue names; `None` when there is nothing worth resuming.
    fn saved_channels(&self) -> Option<(u64, u64)> {
        let channels = (self.voice_channel?, self.text_channel?);
        (!self.queue.is_idle()).then_some(channels)
    }

    /// A hash of what [`saved_state`](Self::saved_state) holds apart from the position,
    /// computed without copying the tracks (this runs after every request).
    fn fingerprint(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let (voice_channel, text_channel) = self.saved_channels()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            voice_channel,
            text_channel,
            self.queue.loop_mode().label(),
            self.paused,
            self.settings.volume,
        )
            .hash(&mut h);
        for e in self
            .queue
            .current()
            .into_iter()
            .chain(self.queue.upcoming())
        {
            e.id.hash(&mut h);
        }
        Some(h.finish())
    }

    /// The queue as the store keeps it; `None` when there is nothing worth resuming.
    fn saved_state(&self, position: Option<Duration>) -> Option<SavedQueue> {
        let (voice_channel, text_channel) = self.saved_channels()?;
        Some(SavedQueue {
            voice_channel,
            text_channel,
            loop_mode: self.queue.loop_mode(),
            paused: self.paused,
            volume: self.settings.volume,
            position: position.unwrap_or_default(),
            playing: self.queue.current().is_some(),
            tracks: self
                .queue
                .current()
                .into_iter()
                .chain(self.queue.upcoming())
                .map(|e| ((*e.track).clone(), e.requester.clone()))
                .collect(),
        })
    }

    async fn restore(&mut self, saved: SavedQueue) -> Result<(), PlayerError> {
        if !self.queue.is_idle() || saved.tracks.is_empty() {
            return Ok(());
        }
        self.text_channel = Some(saved.text_channel);
        self.settings.volume = saved.volume;
        self.queue.set_loop_mode(saved.loop_mode);
        let call = self
            .registry
            .try_call(self.guild, saved.voice_channel, self.settings.max_calls)
            .ok_or(PlayerError::Busy(self.settings.max_calls))?;
        self.voice.join(saved.voice_channel).await?;
        self.call = Some(call);
        self.voice_channel = Some(saved.voice_channel);
        for (track, who) in saved.tracks {
            // They were accepted before the restart: the queue limit does not drop them.
            self.queue.push(Arc::new(track), who, false, usize::MAX)?;
        }
        self.queue.advance(Advance::Skipped);
        let resume_at = self
            .queue
            .current()
            .filter(|e| !e.track.is_live && !saved.position.is_zero())
            .map(|_| saved.position);
        tracing::info!(
            guild = self.guild,
            tracks = self.queue.len(),
            ?resume_at,
            "restored a saved queue"
        );
        self.start_current_at(resume_at).await;
        if saved.paused && self.queue.current().is_some() {
            self.voice.pause().await;
            self.paused = true;
        }
        self.refresh_activity();
        Ok(())
    }

    /// Clears the queue and leaves the channel, counting the cleanup and saying why in
    /// the text channel where that helps. On shutdown the queue is saved with its position
    /// instead of forgotten, so the next start resumes it.
    async fn leave(&mut self, reason: CleanupReason) {
        if reason == CleanupReason::Shutdown {
            let position = self.voice.position().await;
            if let Some(state) = self.saved_state(position) {
                self.store.save(self.guild, Some(state));
            }
        } else {
            self.store.save(self.guild, None);
        }
        self.queue.clear_all();
        self.stop_voice().await;
        self.reconnect = None;
        let Some(channel) = self.voice_channel.take() else {
            return;
        };
        self.voice.leave().await;
        self.call = None;
        self.registry.record_cleanup(reason);
        tracing::info!(
            guild = self.guild,
            channel,
            reason = reason.label(),
            "left voice"
        );
        if let Some(note) = self.leave_note(reason, channel) {
            self.tell(Notice::Left { reason: note }).await;
        }
    }

    fn leave_note(&self, reason: CleanupReason, channel: u64) -> Option<String> {
        let fmt =
            |d: Option<Duration>| humantime::format_duration(d.unwrap_or_default()).to_string();
        let policy = self.settings.idle;
        Some(match reason {
            CleanupReason::Idle => format!(
                "nothing played in <#{channel}> for {}",
                fmt(policy.idle.or(policy.paused))
            ),
            CleanupReason::Alone => format!(
                "nobody was listening in <#{channel}> for {}",
                fmt(policy.alone)
            ),
            CleanupReason::BotDisconnected => "I was disconnected from the voice channel".into(),
            CleanupReason::ChannelDeleted => "the voice channel was deleted".into(),
            CleanupReason::Admin => "an administrator ran /cleanup".into(),
            CleanupReason::Error => {
                "the voice connection was lost and could not be restored".into()
            }
            CleanupReason::Leak => "the voice connection was in an inconsistent state".into(),
            // The user who asked already got a reply; a removed guild has no channel left;
            // a shutdown is the operator's business.
            CleanupReason::User | CleanupReason::GuildRemoved | CleanupReason::Shutdown => {
                return None
            }
        })
    }

    /// Posts a notice, waiting at most [`NOTICE_WAIT`]: a slow or rate-limited Discord
    /// must not hold up the music or the commands queued behind it.
    async fn tell(&self, notice: Notice) {
        if let Some(channel) = self.text_channel {
            let post = self.notifier.notify(channel, notice);
            if tokio::time::timeout(NOTICE_WAIT, post).await.is_err() {
                tracing::warn!(
                    guild = self.guild,
                    channel,
                    "gave up posting a notice (too slow)"
                );
            }
        }
    }
}

/// What the task does after handling one message.
enum Flow {
    Continue,
    /// Leave the channel for this reason, then end.
    Leave(CleanupReason),
    /// Already left; end.
    Done,
}

/// Percent to linear gain.
pub fn gain(percent: u16) -> f32 {
    f32::from(percent.min(200)) / 100.0
}
