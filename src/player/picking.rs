//! The player's side of autoplay (rules and state in `autoplay.rs`): asking for a pick
//! when the last queued track starts, taking the answer, and queueing it the moment the
//! queue runs out. Part of the actor in `guild.rs`; the lookup runs in a task of its own.

use tokio::time::Instant;

use super::autoplay::{requester, Ask, Pick};
use super::guild::GuildPlayer;
use super::inbox::Internal;
use super::queue::{Advance, LoopMode};
use super::voice::Notice;

impl GuildPlayer {
    /// Whether autoplay may add a track now: on, not looping, and someone listening (the
    /// people in the channel are known and there is at least one).
    fn autoplay_allowed(&self) -> bool {
        self.related.is_some()
            && self.settings.autoplay
            && self.queue.loop_mode() == LoopMode::Off
            && self.listeners.as_ref().is_some_and(|l| !l.is_empty())
    }

    /// Run after every change: asks for a pick as soon as the last queued track plays, and
    /// drops the pick asked or held once it no longer fits (the user queued something,
    /// autoplay went off, a loop mode came on, nobody listens).
    pub(super) fn plan_autoplay(&mut self) {
        if !self.autoplay_allowed() || !self.queue.upcoming().is_empty() {
            self.autoplay.reset();
            return;
        }
        // The queue ran out: a pick still on its way starts when it comes (`on_picked`).
        let Some(current) = self.queue.current() else {
            return;
        };
        if self.autoplay.for_entry == Some(current.id) {
            return;
        }
        let (Some(related), entry, seed) =
            (self.related.clone(), current.id, current.track.clone())
        else {
            return;
        };
        let ask = Ask {
            guild: self.guild,
            recent: self.autoplay.recent(Instant::now(), [&*seed]),
            seed,
            listeners: self.listeners.clone(),
            avoid_artists: self.autoplay.avoid_artists(),
            max_duration: self.settings.max_track,
        };
        self.autoplay.reset();
        let cancel = self.work.child_token();
        let (inbox, stop) = (self.inbox_tx.clone(), cancel.clone());
        self.tasks.spawn(async move {
            tokio::select! {
                result = related.pick(ask) => {
                    let _ = inbox.send(Internal::Picked { entry, result });
                }
                _ = stop.cancelled() => {}
            }
        });
        self.autoplay.for_entry = Some(entry);
        self.autoplay.lookup = Some(cancel.drop_guard());
    }

    /// The pick asked for queue entry `entry` came back. Held until the queue runs out, or
    /// started at once if it already has.
    pub(super) async fn on_picked(&mut self, entry: u64, result: Result<Pick, String>) {
        if self.autoplay.for_entry != Some(entry) {
            return; // asked for a queue that changed meanwhile
        }
        self.autoplay.lookup = None;
        match result {
            Ok(pick) => {
                tracing::info!(guild = self.guild, title = %pick.track.title, origin = ?pick.origin, "autoplay picked");
                self.autoplay.held = Some(pick);
                if self.queue.is_idle() && self.voice_channel.is_some() && self.autoplay_fill() {
                    self.queue.advance(Advance::Finished);
                    self.start_current().await;
                }
            }
            Err(why) => {
                tracing::info!(
                    guild = self.guild,
                    why,
                    "autoplay found nothing to play next"
                );
            }
        }
    }

    /// The queue is about to run out: the held pick goes in as a queued track (and the
    /// channel is told where it came from). True if it did.
    pub(super) fn autoplay_fill(&mut self) -> bool {
        if !self.autoplay_allowed() || !self.queue.upcoming().is_empty() {
            return false;
        }
        let Some(pick) = self.autoplay.take() else {
            return false;
        };
        let max = self.settings.max_queue.max(1);
        if self
            .queue
            .push(pick.track.clone(), requester(), false, max)
            .is_err()
        {
            return false;
        }
        self.tell(Notice::Autoplay {
            title: pick.track.title.clone(),
            origin: pick.origin,
        });
        true
    }
}
