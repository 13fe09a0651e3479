//! The queue service: one player task per guild over a voice call, and the registry that
//! finds or starts it.
//!
//! - `queue.rs`: the queue itself, a pure model (order, loop modes, skip, move, shuffle).
//! - `handle.rs`: the messages ([`Request`]), their answers and errors, and
//!   [`PlayerHandle`], the address callers send them to.
//! - `guild.rs`: the actor loop that owns one guild's queue and call; it never waits on
//!   the network. Its parts: `playback.rs` (starting, ending, skipping and seeking
//!   tracks), `channel.rs` (joining, restoring, leaving), `inbox.rs` (what its own tasks
//!   report back), `reconnect.rs` (a dropped voice connection), `persist.rs` (what
//!   survives a restart); `notices.rs` posts what it tells the channel, `panel.rs`
//!   keeps its now-playing panel up to date.
//! - `voice.rs`: what the player needs of a voice connection and a text channel (traits,
//!   implemented by `crate::voice` and `crate::discord`).
//! - `autoplay.rs`: the rules of `/autoplay` and what a source of related tracks must do
//!   ([`autoplay::Related`]); `picking.rs` asks for a pick and queues it in time.
//! - `votes.rs`: skip votes.
//! - `filters.rs`: a guild's `/filter` settings, the presets and their limits (the DSP that
//!   applies them is `crate::voice::filters`).

pub mod autoplay;
mod channel;
pub mod filters;
pub mod guild;
pub mod handle;
mod inbox;
mod notices;
pub mod panel;
pub mod persist;
mod picking;
mod playback;
pub mod queue;
mod reconnect;
mod showing;
pub mod voice;
pub mod votes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::resources::sweeper::PlayerInventory;
use crate::resources::{CleanupReason, Registry};

pub use guild::{gain, GuildPlayer, PlayerParts};
pub use handle::{
    Enqueued, PlayerError, PlayerHandle, PlayerSettings, Request, Skipped, Snapshot, Voted,
    ASK_WAIT, JOIN_WAIT,
};
pub use queue::{Entry, LoopMode, Requester};
pub use voice::{Notice, Notifier, VoiceCall, VoiceFactory};
pub use votes::Tally;

/// Finds the player task of a guild or starts one. Tasks are tracked so shutdown can wait
/// for every one of them to leave its channel.
pub struct Players {
    live: Mutex<HashMap<u64, PlayerHandle>>,
    voice: VoiceFactory,
    notifier: Arc<dyn Notifier>,
    settings: SettingsFor,
    registry: Arc<Registry>,
    store: Arc<dyn persist::QueueStore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Where autoplay finds related tracks; without it autoplay never adds anything.
    related: std::sync::OnceLock<Arc<dyn autoplay::Related>>,
}

/// The settings a new player of a guild starts with.
pub type SettingsFor = Arc<dyn Fn(u64) -> PlayerSettings + Send + Sync>;

impl Players {
    pub fn new(
        voice: VoiceFactory,
        notifier: Arc<dyn Notifier>,
        settings: SettingsFor,
        registry: Arc<Registry>,
        store: Arc<dyn persist::QueueStore>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            live: Mutex::new(HashMap::new()),
            voice,
            notifier,
            settings,
            registry,
            store,
            tasks,
            shutdown,
            related: std::sync::OnceLock::new(),
        })
    }

    /// Gives autoplay its source of related tracks (once; players started later use it).
    pub fn set_related(&self, related: Arc<dyn autoplay::Related>) {
        let _ = self.related.set(related);
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Tells a guild's player to leave for `reason`; true if it did.
    pub async fn cleanup(&self, guild: u64, reason: CleanupReason, only_if_idle: bool) -> bool {
        let Some(player) = self.get(guild) else {
            return false;
        };
        player
            .ask_within(JOIN_WAIT, |reply| Request::Cleanup {
                reason,
                only_if_idle,
                reply,
            })
            .await
            .unwrap_or(false)
    }

    /// The settings a new player of `guild` would start with.
    pub fn settings_for(&self, guild: u64) -> PlayerSettings {
        (self.settings)(guild)
    }

    /// Hands a guild's running player its settings again, after `/settings` or another
    /// command changed them.
    pub async fn reconfigure(&self, guild: u64) {
        let settings = self.settings_for(guild);
        self.tell(guild, Request::Configure { settings }).await;
    }

    /// Sends a message to a guild's player if it runs (no reply expected).
    pub async fn tell(&self, guild: u64, req: Request) {
        if let Some(player) = self.get(guild) {
            player.send(req).await;
        }
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
        let parts = PlayerParts {
            guild,
            notifier: self.notifier.clone(),
            settings: (self.settings)(guild),
            registry: self.registry.clone(),
            store: self.store.clone(),
            tasks: self.tasks.clone(),
            related: self.related.get().cloned(),
        };
        let (player, handle, requests) = GuildPlayer::new(&self.voice, parts);
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

#[async_trait]
impl PlayerInventory for Players {
    fn guilds(&self) -> Vec<u64> {
        Players::guilds(self)
    }

    async fn cleanup(&self, guild: u64, reason: CleanupReason, only_if_idle: bool) -> bool {
        Players::cleanup(self, guild, reason, only_if_idle).await
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
