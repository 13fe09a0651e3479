//! The player's tracks: starting one (opened in a task of its own, played when it reports
//! back), moving on when one ends or fails, skipping, skip votes, and seeking (waited for
//! in a task of its own too). Part of the actor in `guild.rs`; nothing here waits on the
//! network.

use std::time::Duration;

use tokio::sync::oneshot;

use super::guild::{gain, GuildPlayer};
use super::handle::{PlayerError, Skipped, Voted};
use super::inbox::{Internal, Starting};
use super::queue::{Advance, QueueError};
use super::voice::{Notice, PlayOptions, Ready, SeekOutcome, TrackOutcome, VoiceError};

impl GuildPlayer {
    pub(super) async fn skip(&mut self, n: usize, current: u64) -> Result<Skipped, PlayerError> {
        self.queue.expect_current(current)?;
        let skipped_title = self.current_title().ok_or(QueueError::NothingPlaying)?;
        let skipped = self.queue.skip(n.max(1))?;
        self.autoplay_fill();
        self.queue.advance(Advance::Skipped);
        self.start_current().await;
        Ok(Skipped {
            skipped,
            skipped_title,
            next: self.current_title(),
        })
    }

    /// Counts a vote against entry `current`; skips it when half of `listeners` voted.
    pub(super) async fn vote_skip(
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
    pub(super) async fn start_current(&mut self) {
        self.start_current_at(None, true).await;
    }

    /// Stops what plays and starts opening the queue's current entry in a task of its own;
    /// it plays from `start_at` when [`Internal::Opened`] comes back. A track that cannot be
    /// opened is reported and skipped then, so the queue never wedges.
    pub(super) async fn start_current_at(&mut self, start_at: Option<Duration>, announce: bool) {
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
            since: tokio::time::Instant::now(),
            _cancel: cancel.drop_guard(),
        });
    }

    /// The current entry was opened (or not): play it, or report it and go on.
    pub(super) async fn on_opened(&mut self, token: u64, result: Result<Ready, VoiceError>) {
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
                    self.autoplay
                        .played(&entry.track, tokio::time::Instant::now());
                }
                // A new track's turn, not a seek's quiet re-open.
                if let (true, Some(t)) = (starting.announce, self.registry.timings()) {
                    t.first_audio(starting.since.elapsed());
                }
                // The panel, when shown, says it instead (`showing.rs`).
                if starting.announce && !self.settings.panel {
                    self.tell(Notice::NowPlaying(entry));
                }
            }
            Err(e) => {
                self.track_failed(&entry.track.title, &e.to_string());
                self.next_after(Advance::Failed).await;
            }
        }
    }

    pub(super) async fn on_track_ended(&mut self, token: u64, outcome: TrackOutcome) {
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
            TrackOutcome::EndedEarly(reason) => {
                let title = self.current_title().unwrap_or_default();
                tracing::warn!(guild = self.guild, title, reason, "track ended early");
                self.tell(Notice::EndedEarly { title, reason });
                // Never looped: it would break at the same place again.
                Advance::Failed
            }
        };
        self.next_after(why).await;
        self.refresh_activity();
    }

    /// Moves on from the current track (it ended or failed) and says so when the queue ran
    /// out.
    pub(super) async fn next_after(&mut self, why: Advance) {
        self.autoplay_fill();
        self.queue.advance(why);
        self.start_current().await;
        if self.queue.is_idle() {
            self.tell(Notice::QueueFinished);
        }
    }

    /// Starts a seek and answers once it lands; the wait runs in a task of its own.
    pub(super) async fn seek(
        &mut self,
        to: Duration,
        reply: oneshot::Sender<Result<String, PlayerError>>,
    ) {
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
    pub(super) async fn on_seeked(
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

    pub(super) fn track_failed(&self, title: &str, reason: &str) {
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
    pub(super) async fn stop_voice(&mut self) {
        self.token += 1;
        self.paused = false;
        self.starting = None;
        if std::mem::take(&mut self.handed) {
            self.voice.stop().await;
        }
    }
}
