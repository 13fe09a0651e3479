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

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::player::autoplay::{Autoplay, Related};
use crate::player::filters::FilterSpec;
use crate::player::handle::{PlayerError, PlayerHandle, PlayerSettings, Request, Snapshot};
use crate::player::inbox::{Internal, Starting};
use crate::player::notices::Notices;
use crate::player::panel::{Panel, PanelClock};
use crate::player::persist::{QueueStore, Shape};
use crate::player::queue::{Advance, Queue, QueueError};
use crate::player::reconnect::{Reconnect, Step};
use crate::player::voice::{Notice, Notifier, VoiceCall, VoiceEvent, VoiceFactory};
use crate::player::votes::SkipVotes;
use crate::resources::{Activity, CallGuard, CleanupReason, Guard, Kind, Registry};

pub struct GuildPlayer {
    pub(super) guild: u64,
    pub(super) queue: Queue,
    pub(super) voice: Box<dyn VoiceCall>,
    pub(super) notices: Notices,
    /// The now-playing panel's task, and when to show it next (`showing.rs`).
    pub(super) panel: Panel,
    pub(super) panel_clock: PanelClock,
    pub(super) settings: PlayerSettings,
    pub(super) registry: Arc<Registry>,
    pub(super) voice_channel: Option<u64>,
    pub(super) text_channel: Option<u64>,
    pub(super) paused: bool,
    /// Token of the track the voice call is playing (or opening); bumped on every start
    /// and stop.
    pub(super) token: u64,
    pub(super) starting: Option<Starting>,
    /// The voice call holds a track of ours (playing or paused), which a new start stops.
    pub(super) handed: bool,
    pub(super) events: mpsc::UnboundedReceiver<VoiceEvent>,
    pub(super) inbox: mpsc::UnboundedReceiver<Internal>,
    pub(super) inbox_tx: mpsc::UnboundedSender<Internal>,
    /// Where the player's own tasks (opening, seeking, notices) run, so shutdown awaits them.
    pub(super) tasks: TaskTracker,
    /// Cancelled when the player ends: its tasks stop with it.
    pub(super) work: CancellationToken,
    pub(super) activity: Activity,
    /// Set while the voice connection is down: when to act and how often we tried.
    pub(super) reconnect: Option<Reconnect>,
    /// Registered while connected; dropping it unregisters the call.
    pub(super) call: Option<CallGuard>,
    pub(super) store: Arc<dyn QueueStore>,
    /// Fingerprint of what was last handed to the store, to save only on change.
    pub(super) saved: Option<u64>,
    /// When to save the playing track's position next; `None` unless it is playing.
    pub(super) checkpoint_at: Option<Instant>,
    /// See [`Resolving`](crate::player::handle::Resolving).
    pub(super) resolving: Arc<AtomicUsize>,
    pub(super) votes: SkipVotes,
    /// The filters on (saved with the queue; the voice call runs them).
    pub(super) filters: FilterSpec,
    /// Where autoplay's picks come from (`None`: no autoplay), and its state.
    pub(super) related: Option<Arc<dyn Related>>,
    pub(super) autoplay: Autoplay,
    /// The people in the voice channel (from the gateway), once known.
    pub(super) listeners: Option<Vec<u64>>,
    pub(super) _unit: Guard,
}

/// What the task does after handling one message.
pub(super) enum Flow {
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
    /// Where autoplay finds related tracks.
    pub related: Option<Arc<dyn Related>>,
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
            panel: Panel::start(guild, parts.notifier.clone(), &parts.tasks),
            panel_clock: PanelClock::new(parts.settings.panel_every),
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
            filters: FilterSpec::default(),
            related: parts.related,
            autoplay: Autoplay::default(),
            listeners: None,
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
                Flow::Continue => {
                    self.plan_autoplay();
                    self.persist().await;
                    self.refresh_panel().await;
                }
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
        let panel = self.panel_clock.due();
        [
            idle,
            self.reconnect.map(|r| r.at),
            self.checkpoint_at,
            panel,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Re-derives since-when the idle and paused conditions hold after any change.
    pub(super) fn refresh_activity(&mut self) {
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
        if self.panel_clock.tick(now) {
            self.show_panel().await;
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
        let (attempt, position) = match r.next(channel, seen) {
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
            Step::Rejoin(attempt) => {
                let position = self.voice.position().await;
                tracing::info!(guild = self.guild, attempt, "re-joining voice");
                // songbird treats a join of the channel it thinks it is in as done: drop the
                // dead session first so the join opens a new one (with new credentials).
                self.voice.leave().await;
                self.handed = false;
                self.reconnect = Some(r.left(position, Instant::now()));
                return Flow::Continue;
            }
            Step::Join { attempt, position } => (attempt, position),
        };
        tracing::debug!(guild = self.guild, attempt, "joining voice again");
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
            Internal::Picked { entry, result } => self.on_picked(entry, result).await,
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
                self.autoplay.reset();
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
            Request::Presence { channel, listeners } => {
                if self.voice_channel == Some(channel) {
                    let humans = listeners.len();
                    self.listeners = Some(listeners);
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
                self.settings.autoplay = settings.autoplay;
                self.settings.max_track = settings.max_track;
                self.set_panel(settings.panel);
            }
            Request::BotVoiceState { channel } => match channel {
                // The echo of a re-join's own leave: the join may go now.
                None if self.reconnect.is_some_and(|r| r.awaiting_leave()) => {
                    self.reconnect = self.reconnect.map(|r| r.leave_seen(Instant::now()));
                }
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
                    self.listeners = None;
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
                    filters: self.filters.clone(),
                });
            }
            Request::SetFilters { spec, reply } => {
                self.voice.set_filters(&spec).await;
                let old = std::mem::replace(&mut self.filters, spec);
                let _ = reply.send(Ok(old));
            }
        }
        self.refresh_activity();
        Flow::Continue
    }

    pub(super) fn current_title(&self) -> Option<String> {
        self.queue.current().map(|e| e.track.title.clone())
    }

    /// What of this player is saved.
    pub(super) fn shape(&self) -> Shape<'_> {
        Shape {
            queue: &self.queue,
            voice_channel: self.voice_channel,
            text_channel: self.text_channel,
            paused: self.paused,
            volume: self.settings.volume,
            filters: &self.filters,
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

    /// Hands a notice to the posting task (see `notices.rs`): never waits on Discord.
    pub(super) fn tell(&self, notice: Notice) {
        if let Some(channel) = self.text_channel {
            self.notices.post(channel, notice);
        }
    }
}

/// Percent to linear gain.
pub fn gain(percent: u16) -> f32 {
    f32::from(percent.min(200)) / 100.0
}
