//! Slash commands, one file per group; the checks they share live in `checks.rs`.

pub(crate) mod actions;
pub(crate) mod admin;
mod autocomplete;
mod autoplay;
pub(crate) mod checks;
mod control;
pub mod dj;
mod edit;
mod filter;
mod lyrics;
pub mod parse;
mod play;
mod playlist;
mod queue;

/// The figures `/resources` shows, gathered at one moment (`/metrics` serves the same).
pub use admin::gather;

use super::bot::{Data, Error};

pub fn all() -> Vec<poise::Command<Data, Error>> {
    vec![
        play::play(),
        queue::queue(),
        queue::nowplaying(),
        control::skip(),
        control::back(),
        control::pause(),
        control::resume(),
        control::stop(),
        control::leave(),
        control::seek(),
        control::volume(),
        control::loop_(),
        autoplay::autoplay(),
        filter::filter(),
        filter::filters(),
        edit::remove(),
        edit::move_(),
        edit::shuffle(),
        edit::clear(),
        lyrics::lyrics(),
        playlist::playlist(),
        admin::resources(),
        admin::cleanup(),
        admin::settings(),
    ]
}
