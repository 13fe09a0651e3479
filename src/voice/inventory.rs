//! songbird's calls, as the sweeper sees them: it reconciles them with the player registry
//! both ways (a call no player owns is dropped).

use std::sync::Arc;

use async_trait::async_trait;
use serenity::all::GuildId;
use songbird::Songbird;

/// songbird's calls, as the sweeper reconciles them.
pub struct SongbirdInventory(pub Arc<Songbird>);

#[async_trait]
impl crate::resources::sweeper::CallInventory for SongbirdInventory {
    fn guilds(&self) -> Vec<u64> {
        // `iter` holds songbird's locks: collect ids here, act on them elsewhere.
        self.0.iter().map(|(g, _)| g.0.get()).collect()
    }

    async fn drop_call(&self, guild: u64) {
        if let Err(e) = self.0.remove(GuildId::new(guild)).await {
            tracing::warn!(guild, error = %e, "could not drop an orphan call");
        }
    }
}
