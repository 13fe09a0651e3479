//! The queue service: one player task per guild (see `guild.rs`) over a voice call, and the
//! registry that finds or starts it.

pub mod guild;
pub mod queue;
pub mod voice;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use guild::{
    Enqueued, GuildPlayer, PlayerError, PlayerHandle, PlayerSettings, Request, Skipped, Snapshot,
};
pub use queue::{Entry, LoopMode, Requester};
pub use voice::{Notice, Notifier, VoiceCall, VoiceFactory};

/// Finds the player task of a guild or starts one. Tasks are tracked so shutdown can wait
/// for every one of them to leave its channel.
pub struct Players {
    live: Mutex<HashMap<u64, PlayerHandle>>,
    voice: VoiceFactory,
    notifier: Arc<dyn Notifier>,
    settings: PlayerSettings,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Players {
    pub fn new(
        voice: VoiceFactory,
        notifier: Arc<dyn Notifier>,
        settings: PlayerSettings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            live: Mutex::new(HashMap::new()),
            voice,
            notifier,
            settings,
            tasks,
            shutdown,
        })
    }

    /// The running player of `guild`, if any.
    pub fn get(&self, guild: u64) -> Option<PlayerHandle> {
        let live = self.live.lock().expect("players lock");
        live.get(&guild).filter(|h| !h.is_closed()).cloned()
    }

    /// The running player of `guild`, started if needed.
    pub fn get_or_start(self: &Arc<Self>, guild: u64) -> PlayerHandle {
        let mut live = self.live.lock().expect("players lock");
        if let Some(h) = live.get(&guild).filter(|h| !h.is_closed()) {
            return h.clone();
        }
        let (player, handle, requests) = GuildPlayer::new(
            guild,
            (self.voice)(guild),
            self.notifier.clone(),
            self.settings.clone(),
        );
        live.insert(guild, handle.clone());
        let this = Arc::downgrade(self);
        let shutdown = self.shutdown.child_token();
        self.tasks.spawn(async move {
            player.run(requests, shutdown).await;
            // Forget this guild's entry unless a newer player already replaced it.
            if let Some(players) = this.upgrade() {
                let mut live = players.live.lock().expect("players lock");
                if live.get(&guild).is_some_and(|h| h.is_closed()) {
                    live.remove(&guild);
                }
            }
        });
        handle
    }

    /// Guilds with a player task.
    pub fn guilds(&self) -> Vec<u64> {
        let live = self.live.lock().expect("players lock");
        live.iter()
            .filter(|(_, h)| !h.is_closed())
            .map(|(g, _)| *g)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.guilds().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A plain track for unit tests.
#[cfg(test)]
pub(crate) fn test_track(name: &str) -> crate::sources::Track {
    crate::sources::Track {
        title: name.into(),
        page_url: format!("https://example.com/{name}"),
        stream_url: format!("https://cdn.example.com/{name}.webm"),
        http_headers: Vec::new(),
        duration: Some(std::time::Duration::from_secs(60)),
        extractor: "generic".into(),
        id: name.into(),
        is_live: false,
        uploader: None,
        thumbnail: None,
        ext: Some("webm".into()),
        acodec: Some("opus".into()),
        stream_expires: None,
    }
}

#[cfg(test)]
mod tests;
