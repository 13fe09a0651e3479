//! songbird behind the player's [`VoiceCall`](crate::player::VoiceCall) trait.
//!
//! - `call.rs`: one guild's call over songbird: open a track (the cache decides, through
//!   [`Resolver::playable`](crate::cache::Resolver::playable), whether a cached file or a
//!   stream plays), play it, seek, and forward the driver's events to the player;
//! - `http.rs`: the HTTP media source that seeks with byte ranges;
//! - `inventory.rs`: songbird's calls as the sweeper reconciles them.
//!
//! Arrows: `voice` depends on `player` (the trait it implements), `cache` and `sources`;
//! nothing below it depends on it, and only `app` builds it.

mod call;
pub mod filters;
pub mod http;
mod inventory;

pub use call::factory;
pub use inventory::SongbirdInventory;
