//! One task per guild owns that guild's queue and voice call. Commands are messages to it
//! (`handle.rs`), so queue state has exactly one writer and no lock is held across an await
//! on Discord.
//!
//! The loop never waits on the network. Starting a track (a yt-dlp lookup when its link
//! expired, then opening the media) and waiting for a seek run in tasks of their own that
//! report back through the player's inbox with the token of the track they were for; a
//! report for a track that was replaced meanwhile is dropped. Notices are posted by another
//! task (`notices.rs`). What is left in the loop is moving state and handing things to the
//! voice driver, so every request is answered at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::player::handle::{
    Enqueued, PlayerError, PlayerHandle, PlayerSettings, Request, Skipped, Snapshot, Voted,
};
use crate::player::notices::Notices;
use crate::player::persist::{QueueStore, Shape};
use crate::player::queue::{Advance, LoopMode, Queue, QueueError, Requester};
use crate::player::reconnect::{Reconnect, Step};
use crate::player::voice::{
    Notice, Notifier, PlayOptions, Ready, SeekOutcome, TrackOutcome, VoiceCall, VoiceError,
    VoiceEvent, VoiceFactory,
};
use crate::player::votes::SkipVotes;
use crate::resources::{Activity, CallGuard, CleanupReason, Guard, Kind, Registry};
use crate::sources::Track;

/// What the player's own tasks report back.
enum Internal {
    /// The track started with `token` was opened (or could not be).
    Opened {
        token: u64,
        result: Result<Ready, VoiceError>,
    },
    /// A seek of the track `token` ended; `before` is where it was, to go back on failure.
    Seeked {
        token: u64,
        to: Duration,
        before: Option<Duration>,
        outcome: SeekOutcome,
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
}

/// The current entry is being opened; it plays when [`Internal::Opened`] with this token
/// arrives.
struct Starting {
    token: u64,
    start_at: Option<Duration>,
    /// Post "Now playing" once it plays (not for a quiet re-open after a seek).
    announce: bool,
    /// Dropping it (the track was replaced, the player left) stops the opening task.
    _cancel: DropGuard,
}

pub struct GuildPlayer {
    guild: u64,
    queue: Queue,
    voice: Box<dyn VoiceCall>,
    notices: Notices,
    settings: PlayerSettings,
    registry: Arc<Registry>,
    voice_channel: Option<u64>,
    text_channel: Option<u64>,
    paused: bool,
    /// Token of the track the voice call is playing (or opening); bumped on every start
    /// and stop.
    token: u64,
    starting: Option<Starting>,
    /// The voice call holds a track of ours (playing or paused), which a new start stops.
    handed: bool,
    events: mpsc::UnboundedReceiver<VoiceEvent>,
    inbox: mpsc::UnboundedReceiver<Internal>,
    inbox_tx: mpsc::UnboundedSender<Internal>,
    /// Where the player's own tasks (opening, seeking, notices) run, so shutdown awaits them.
    tasks: TaskTracker,
    /// Cancelled when the player ends: its tasks stop with it.
    work: CancellationToken,
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
    /// See [`Resolving`](crate::player::handle::Resolving).
    resolving: Arc<AtomicUsize>,
    votes: SkipVotes,
    _unit: Guard,
}

/// What the task does after handling one message.
enum Flow {
    Continue,
    /// Leave the channel for this reason, then end.
    Leave(CleanupReason),
    /// Already left; end.
    Done,
}

/// Everything a player task is made from.
pub struct PlayerParts {
    pub guild: u64,
    pub notifier: Arc<dyn Notifier>,
    pub settings: PlayerSettings,
    pub registry: Arc<Registry>,
    pub store: Arc<dyn QueueStore>,
    /// Runs the player's own tasks (opening tracks, seeks, notices).
    pub tasks: TaskTracker,
}

impl GuildPlayer {
    /// Creates the player task's state and its handle. Run it with [`GuildPlayer::run`].
    pub fn new(
        voice: &VoiceFactory,
        parts: PlayerParts,
    ) -> (Self, PlayerHandle, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let resolving = Arc::new(AtomicUsize::new(0));
        let guild = parts.guild;
        let player = Self {
            guild,
            queue: Queue::new(),
            voice: voice(guild, events_tx),
            notices: Notices::start(guild, parts.notifier, &parts.tasks),
            settings: parts.settings,
            _unit: parts.registry.acquire(Kind::Player),
            registry: parts.registry,
            voice_channel: None,
            text_channel: None,
            paused: false,
            token: 0,
            starting: None,
            handed: false,
            events,
            inbox,
            inbox_tx,
            tasks: parts.tasks,
            work: CancellationToken::new(),
            activity: Activity::default(),
            reconnect: None,
            call: None,
            store: parts.store,
            saved: None,
            checkpoint_at: None,
            resolving: resolving.clone(),
            votes: SkipVotes::default(),
        };
        (player, PlayerHandle::new(tx, resolving), rx)
    }

    /// Serves requests, voice events, its own tasks' reports and timers until the player
    /// leaves (asked to, a timeout, a lost connection), every handle is dropped, or
    /// `shutdown` fires. Always leaves the voice channel on the way out.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        let _stop_tasks = self.work.clone().drop_guard();
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
                Some(done) = self.inbox.recv() => self.on_internal(done).await,
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

    /// When the next timer (idle, alone, paused, reconnect, checkpoint) is due.
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
            VoiceEvent::TrackEnded { token, outcome } => self.on_track_ended(token, outcome).await,
            VoiceEvent::Connected => {
                if self.reconnect.take().is_some() {
                    tracing::info!(guild = self.guild, "voice connection restored");
                }
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
                    self.reconnect = Some(Reconnect::after_drop(code, Instant::now()));
                }
            }
        }
        Flow::Continue
    }

    /// The connection did not come back by itself: act on what `reconnect.rs` says (re-join
    /// the same channel, or give up and clean up so a later `/play` starts fresh).
    async fn try_rejoin(&mut self, r: Reconnect) -> Flow {
        let Some(channel) = self.voice_channel else {
            self.reconnect = None;
            return Flow::Continue;
        };
        let seen = match r.needs_view() {
            true => self.voice.current_channel().await,
            false => Some(channel),
        };
        let attempt = match r.next(channel, seen) {
            Step::Moved => {
                self.reconnect = None;
                return Flow::Continue;
            }
            Step::Leave(reason) => {
                if reason == CleanupReason::Error {
                    tracing::warn!(guild = self.guild, "voice connection lost for good");
                }
                return Flow::Leave(reason);
            }
            Step::Rejoin(attempt) => attempt,
        };
        let position = self.voice.position().await;
        tracing::info!(guild = self.guild, attempt, "re-joining voice");
        // songbird treats a join of the channel it thinks it is in as done: drop the dead
        // session first so the join opens a new one.
        self.voice.leave().await;
        self.handed = false;
        match self.voice.join(channel).await {
            Ok(()) => {
                self.reconnect = None;
                if self.queue.current().is_some() {
                    let paused = self.paused;
                    self.start_current_at(position, true).await;
                    self.paused = paused;
                }
            }
            Err(e) => {
                tracing::warn!(guild = self.guild, error = %e, "re-join failed");
                self.reconnect = Some(r.retry(Instant::now()));
            }
        }
        Flow::Continue
    }

    async fn on_internal(&mut self, done: Internal) -> Flow {
        match done {
            Internal::Opened { token, result } => self.on_opened(token, result).await,
            Internal::Seeked {
                token,
                to,
                before,
                outcome,
                reply,
            } => {
                let r = self.on_seeked(token, to, before, outcome).await;
                let _ = reply.send(r);
            }
        }
        self.refresh_activity();
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
            Request::VoteSkip {
                current,
                voter,
                listeners,
                reply,
            } => {
                let r = self.vote_skip(current, voter, &listeners).await;
                let _ = reply.send(r);
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
                self.set_loop(mode);
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
            Request::Seek { to, reply } => self.seek(to, reply).await,
            Request::Snapshot { reply } => {
                let position = match self.queue.current() {
                    Some(_) => self.voice.position().await,
                    None => None,
                };
                let _ = reply.send(Snapshot {
                    current: self.queue.current().cloned(),
                    position,
                    starting: self.starting.is_some(),
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

    fn set_loop(&mut self, mode: LoopMode) {
        self.queue.set_loop_mode(mode);
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

    /// Counts a vote against entry `current`; skips it when half of `listeners` voted.
    async fn vote_skip(
        &mut self,
        current: u64,
        voter: u64,
        listeners: &[u64],
    ) -> Result<Voted, PlayerError> {
        self.queue.expect_current(current)?;
        let tally = self.votes.vote(current, voter, listeners);
        let skipped = match tally.passed() {
            true => Some(self.skip(1, current).await?),
            false => None,
        };
        Ok(Voted { tally, skipped })
    }

    /// Starts the queue's current entry (see [`start_current_at`](Self::start_current_at)).
    async fn start_current(&mut self) {
        self.start_current_at(None, true).await;
    }

    /// Stops what plays and starts opening the queue's current entry in a task of its own;
    /// it plays from `start_at` when [`Internal::Opened`] comes back. A track that cannot be
    /// opened is reported and skipped then, so the queue never wedges.
    async fn start_current_at(&mut self, start_at: Option<Duration>, announce: bool) {
        self.stop_voice().await;
        self.votes.clear();
        let Some(entry) = self.queue.current() else {
            return;
        };
        let token = self.token;
        let cancel = self.work.child_token();
        let opening = self.voice.open(entry.track.clone());
        let inbox = self.inbox_tx.clone();
        let stop = cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                result = opening => {
                    let _ = inbox.send(Internal::Opened { token, result });
                }
                _ = stop.cancelled() => {}
            }
        });
        self.starting = Some(Starting {
            token,
            start_at,
            announce,
            _cancel: cancel.drop_guard(),
        });
    }

    /// The current entry was opened (or not): play it, or report it and go on.
    async fn on_opened(&mut self, token: u64, result: Result<Ready, VoiceError>) {
        if self.starting.as_ref().map(|s| s.token) != Some(token) {
            return; // opened for a track that was replaced or stopped meanwhile
        }
        let Some(starting) = self.starting.take() else {
            return;
        };
        let Some(entry) = self.queue.current().cloned() else {
            return;
        };
        let opts = PlayOptions {
            volume: gain(self.settings.volume),
            start_at: starting.start_at,
            paused: self.paused,
        };
        let played = match result {
            Ok(ready) => self.voice.play(ready, opts, token).await,
            Err(e) => Err(e),
        };
        self.handed = played.is_ok();
        match played {
            Ok(()) => {
                tracing::info!(guild = self.guild, title = %entry.track.title, "now playing");
                if starting.announce {
                    self.tell(Notice::NowPlaying(entry));
                }
            }
            Err(e) => {
                self.track_failed(&entry.track.title, &e.to_string());
                self.next_after(Advance::Failed).await;
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
                self.track_failed(&title, &reason);
                Advance::Failed
            }
        };
        self.next_after(why).await;
        self.refresh_activity();
    }

    /// Moves on from the current track (it ended or failed) and says so when the queue ran
    /// out.
    async fn next_after(&mut self, why: Advance) {
        self.queue.advance(why);
        self.start_current().await;
        if self.queue.is_idle() {
            self.tell(Notice::QueueFinished);
        }
    }

    /// Starts a seek and answers once it lands; the wait runs in a task of its own.
    async fn seek(&mut self, to: Duration, reply: oneshot::Sender<Result<String, PlayerError>>) {
        let Some(title) = self.current_title() else {
            let _ = reply.send(Err(QueueError::NothingPlaying.into()));
            return;
        };
        if let Some(starting) = &mut self.starting {
            // Not playing yet: it starts there.
            starting.start_at = Some(to);
            let _ = reply.send(Ok(title));
            return;
        }
        // songbird only seeks a track whose connection is up: it would just wait.
        if self.reconnect.is_some() {
            let _ = reply.send(Err(PlayerError::Reconnecting));
            return;
        }
        let before = self.voice.position().await;
        let seeking = match self.voice.seek(to).await {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        let (token, inbox, stop) = (self.token, self.inbox_tx.clone(), self.work.clone());
        self.tasks.spawn(async move {
            tokio::select! {
                outcome = seeking => {
                    let _ = inbox.send(Internal::Seeked { token, to, before, outcome, reply });
                }
                _ = stop.cancelled() => {}
            }
        });
    }

    /// A seek ended: a dropped one re-opens the track at `to`, a failed one where it was.
    async fn on_seeked(
        &mut self,
        token: u64,
        to: Duration,
        before: Option<Duration>,
        outcome: SeekOutcome,
    ) -> Result<String, PlayerError> {
        if token != self.token {
            return Err(QueueError::Changed.into());
        }
        let title = self.current_title().ok_or(QueueError::NothingPlaying)?;
        let paused = self.paused;
        let r = match outcome {
            SeekOutcome::Done => {
                self.voice.seek_settled().await;
                return Ok(title);
            }
            SeekOutcome::Dropped => {
                tracing::debug!(
                    guild = self.guild,
                    ?to,
                    "seek dropped while the track opened; reopening there"
                );
                self.start_current_at(Some(to), false).await;
                Ok(title)
            }
            SeekOutcome::Failed(why) => {
                tracing::info!(
                    guild = self.guild,
                    ?to,
                    why,
                    "seek failed; restarting the track where it was"
                );
                self.start_current_at(before, false).await;
                Err(VoiceError::Play(why).into())
            }
        };
        self.paused = paused;
        r
    }

    fn track_failed(&self, title: &str, reason: &str) {
        tracing::warn!(
            guild = self.guild,
            title,
            reason,
            "track failed to play; skipping it"
        );
        self.tell(Notice::TrackFailed {
            title: title.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Stops what plays (or is being opened): its end will not be reported.
    async fn stop_voice(&mut self) {
        self.token += 1;
        self.paused = false;
        self.starting = None;
        if std::mem::take(&mut self.handed) {
            self.voice.stop().await;
        }
    }

    /// What of this player is saved.
    fn shape(&self) -> Shape<'_> {
        Shape {
            queue: &self.queue,
            voice_channel: self.voice_channel,
            text_channel: self.text_channel,
            paused: self.paused,
            volume: self.settings.volume,
        }
    }

    /// Hands the queue's state, with the playing track's position, to the store when it
    /// changed since the last time.
    async fn persist(&mut self) {
        let fingerprint = self.shape().fingerprint();
        if fingerprint == self.saved {
            return;
        }
        let position = match self.queue.current() {
            Some(_) => self.voice.position().await,
            None => None,
        };
        self.store.save(self.guild, self.shape().state(position));
        self.saved = fingerprint;
    }

    async fn restore(
        &mut self,
        saved: crate::player::persist::SavedQueue,
    ) -> Result<(), PlayerError> {
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
        self.start_current_at(resume_at, true).await;
        // It starts paused once opened.
        self.paused = saved.paused && self.queue.current().is_some();
        self.refresh_activity();
        Ok(())
    }

    /// Clears the queue and leaves the channel, counting the cleanup and saying why in
    /// the text channel where that helps. On shutdown the queue is saved with its position
    /// instead of forgotten, so the next start resumes it.
    async fn leave(&mut self, reason: CleanupReason) {
        if reason == CleanupReason::Shutdown {
            // A track still opening has not moved: it resumes where it was to start.
            let position = match &self.starting {
                Some(s) => s.start_at,
                None => self.voice.position().await,
            };
            if let Some(state) = self.shape().state(position) {
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
        if let Some(after) = self.worth_telling(reason) {
            self.tell(Notice::Left {
                reason,
                channel,
                after,
            });
        }
    }

    /// Whether a leave for `reason` is worth a notice, and the timeout that ran out.
    /// The user who asked already got a reply; a removed guild has no channel left; a
    /// shutdown is the operator's business.
    fn worth_telling(&self, reason: CleanupReason) -> Option<Option<Duration>> {
        let policy = self.settings.idle;
        match reason {
            CleanupReason::Idle => Some(policy.idle.or(policy.paused)),
            CleanupReason::Alone => Some(policy.alone),
            CleanupReason::User | CleanupReason::GuildRemoved | CleanupReason::Shutdown => None,
            _ => Some(None),
        }
    }

    /// Hands a notice to the posting task (see `notices.rs`): never waits on Discord.
    fn tell(&self, notice: Notice) {
        if let Some(channel) = self.text_channel {
            self.notices.post(channel, notice);
        }
    }
}

/// Percent to linear gain.
pub fn gain(percent: u16) -> f32 {
    f32::from(percent.min(200)) / 100.0
}
