//! encore: a self-hosted Discord music bot.
//!
//! The binary (`main.rs`) is a thin CLI over this library so that tests and benchmarks run
//! exactly the code the bot runs. See `app` for how the parts are wired.

pub mod app;
pub mod cache;
pub mod config;
pub mod db;
pub mod discord;
pub mod doctor;
pub mod invite;
pub mod logging;
pub mod player;
pub mod resources;
pub mod settings;
pub mod sources;
/// What the bot says about itself in `/resources`: uptime, CPU, mixer load, yt-dlp.
pub mod status;
pub mod systemd;
pub mod voice;
