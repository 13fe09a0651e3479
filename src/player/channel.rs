//! The player's voice channel: joining it for a first `/play` (taking a call slot first,
//! so a refusal leaves nothing half-joined), restoring a queue saved before a restart, and
//! leaving (saving the queue on shutdown, forgetting it otherwise, and saying why in the
//! text channel). Part of the actor in `guild.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::guild::GuildPlayer;
use super::handle::{Enqueued, PlayerError};
use super::queue::{Advance, QueueError, Requester};
use super::voice::Notice;
use crate::resources::CleanupReason;
use crate::sources::Track;

impl GuildPlayer {
    pub(super) async fn enqueue(
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

    pub(super) async fn restore(
        &mut self,
        saved: crate::player::persist::SavedQueue,
    ) -> Result<(), PlayerError> {
        if !self.queue.is_idle() || saved.tracks.is_empty() {
            return Ok(());
        }
        self.text_channel = Some(saved.text_channel);
        self.settings.volume = saved.volume;
        self.voice.set_filters(&saved.filters).await;
        self.filters = saved.filters.clone();
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
    /// the text channel where that helps. On shutdown or a hand-off the queue is saved
    /// with its position instead of forgotten, so the next start (or the next owner of
    /// the guild's shard) resumes it.
    pub(super) async fn leave(&mut self, reason: CleanupReason) {
        if reason.keeps_queue() {
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
        self.end_panel();
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
            CleanupReason::User
            | CleanupReason::GuildRemoved
            | CleanupReason::Shutdown
            | CleanupReason::HandOff => None,
            _ => Some(None),
        }
    }
}
