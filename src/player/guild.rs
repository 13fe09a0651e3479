//! One task per guild owns that guild's queue and voice call. Commands are messages to it,
//! so queue state has exactly one writer and no lock is held across an await on Discord.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::player::queue::{Advance, Entry, LoopMode, Queue, QueueError, Requester};
use crate::player::voice::{
    Notice, Notifier, PlayOptions, TrackEnded, TrackOutcome, VoiceCall, VoiceError,
};
use crate::sources::Track;

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
    Skip {
        n: usize,
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
        reason: Option<String>,
        reply: oneshot::Sender<Result<(), PlayerError>>,
    },
    Remove {
        from: usize,
        to: usize,
        reply: oneshot::Sender<Result<Vec<Entry>, PlayerError>>,
    },
    Move {
        from: usize,
        to: usize,
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
}

/// The cheap, clonable address of a guild's player task.
#[derive(Clone, Debug)]
pub struct PlayerHandle {
    tx: mpsc::Sender<Request>,
}

impl PlayerHandle {
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
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
    voice_channel: Option<u64>,
    text_channel: Option<u64>,
    paused: bool,
    /// Token of the track the voice call is playing; bumped on every start and stop.
    token: u64,
    events_tx: mpsc::UnboundedSender<TrackEnded>,
    events_rx: mpsc::UnboundedReceiver<TrackEnded>,
}

impl GuildPlayer {
    /// Creates the player task's state and its handle. Run it with [`GuildPlayer::run`].
    pub fn new(
        guild: u64,
        voice: Box<dyn VoiceCall>,
        notifier: Arc<dyn Notifier>,
        settings: PlayerSettings,
    ) -> (Self, PlayerHandle, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let player = Self {
            guild,
            queue: Queue::new(),
            voice,
            notifier,
            settings,
            voice_channel: None,
            text_channel: None,
            paused: false,
            token: 0,
            events_tx,
            events_rx,
        };
        (player, PlayerHandle { tx }, rx)
    }

    /// Serves requests and track events until told to leave, every handle is dropped, or
    /// `shutdown` fires. Always leaves the voice channel on the way out.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                req = requests.recv() => match req {
                    None => break,
                    Some(Request::Leave { reason, reply }) => {
                        self.leave(reason).await;
                        let _ = reply.send(Ok(()));
                        return;
                    }
                    Some(req) => self.handle(req).await,
                },
                Some(ev) = self.events_rx.recv() => self.on_track_ended(ev).await,
            }
        }
        self.leave(None).await;
    }

    async fn handle(&mut self, req: Request) {
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
            Request::Skip { n, reply } => {
                let _ = reply.send(self.skip(n).await);
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
            Request::Leave { .. } => unreachable!("handled in run"),
            Request::Remove { from, to, reply } => {
                let _ = reply.send(self.queue.remove_range(from, to).map_err(Into::into));
            }
            Request::Move { from, to, reply } => {
                let r = self.queue.move_entry(from, to).cloned().map_err(Into::into);
                let _ = reply.send(r);
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
                self.voice.join(voice_channel).await?;
                self.voice_channel = Some(voice_channel);
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

    async fn skip(&mut self, n: usize) -> Result<Skipped, PlayerError> {
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
        self.paused = false;
        loop {
            let Some(entry) = self.queue.current().cloned() else {
                self.stop_voice().await;
                return;
            };
            self.token += 1;
            let opts = PlayOptions {
                volume: gain(self.settings.volume),
                start_at: None,
            };
            let started = self
                .voice
                .play(&entry.track, opts, self.token, self.events_tx.clone())
                .await;
            match started {
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

    async fn on_track_ended(&mut self, ev: TrackEnded) {
        if ev.token != self.token || self.queue.current().is_none() {
            return; // the end of a track we already replaced or stopped
        }
        let why = match ev.outcome {
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

    async fn leave(&mut self, reason: Option<String>) {
        self.queue.clear_all();
        self.stop_voice().await;
        if self.voice_channel.take().is_some() {
            self.voice.leave().await;
            if let Some(reason) = reason {
                self.tell(Notice::Left { reason }).await;
            }
        }
    }

    async fn tell(&self, notice: Notice) {
        if let Some(channel) = self.text_channel {
            self.notifier.notify(channel, notice).await;
        }
    }
}

/// Percent to linear gain.
pub fn gain(percent: u16) -> f32 {
    f32::from(percent.min(200)) / 100.0
}
