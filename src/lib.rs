//! encore: a self-hosted Discord music bot.
//!
//! The binary (`main.rs`) is a thin CLI over this library so that tests and benchmarks run
//! exactly the code the bot runs.
//!
//! # Module map
//!
//! Imports point down this list, never up, and no file imports a file that imports it
//! back (`tests/layout.rs` checks both, and that no file passes 700 lines):
//!
//! ```text
//! main.rs      the CLI: run (default) | doctor | invite | migrate
//! app          wires everything and owns shutdown: one CancellationToken, one TaskTracker
//! ── edges: Discord, songbird, the operator ───────────────────────────────────────────
//! discord/     the poise edge only: commands/ (one file per group, shared checks apart),
//!              gateway events, who is in a channel (presence), replies and notices. The
//!              only place Discord markup (<#channel>, **bold**) is written.
//! voice/       songbird behind the player's VoiceCall trait: the call, the HTTP range
//!              reader, songbird's call inventory for the sweeper, and filters/: the DSP
//!              chain `/filter` runs on decoded PCM (passthrough when none is on)
//! status       the figures /resources shows about the bot itself (uptime, CPU, mixers)
//! doctor/      `encore doctor`;  invite: `encore invite`;  systemd: sd_notify, watchdog
//! metrics/     the optional HTTP listener: /metrics (Prometheus), /healthz, /readyz
//! health       the one probe the watchdog, /healthz and /readyz share
//! ── core: plain Rust that unit tests drive without a gateway ──────────────────────────
//! player/      one actor per guild that owns its queue and call; it never waits on the
//!              network (opening a track, a seek, a notice run in tasks that report back);
//!              the filter settings and presets, the now-playing panel's update policy,
//!              autoplay's rules and the `Related` trait its picks come through
//! cache/       metadata and audio cache; the Resolver looks queries up (cache first,
//!              yt-dlp on a miss) and decides once what plays (`Resolver::playable`);
//!              autoplay's picks (a track's mix, the server's history), implementing
//!              the player's `Related` as db/ implements its `QueueStore`
//! sources/     what a query means and where it comes from: query parsing and URL policy,
//!              yt-dlp (args, run, info, download), child processes, the managed yt-dlp,
//!              lyrics (LRCLIB, cache first, and the LRC timeline `/lyrics` follows),
//!              links (Spotify, Apple Music and Deezer pages read into tracks to search for)
//! resources/   the registry of what the bot holds (with drop guards), the idle policy,
//!              the sweeper, /resources figures
//! db/          SQLite or PostgreSQL: play history, saved queues, members' playlists,
//!              the lyrics cache;  settings: per-guild /settings
//! config       typed configuration, validated once;  logging: tracing setup
//! ```
//!
//! The path of a `/play`: `discord::commands::play` parses the query at the edge and
//! defers; `cache::Resolver` resolves it (cache first, yt-dlp on a miss); the guild's
//! `player` queues it and asks `voice` to open what `Resolver::playable` says (a cached
//! file or a stream) in a task of its own; songbird's end event comes back to the player
//! through the `VoiceCall` trait. Nothing in that path climbs back up.

pub mod app;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod db;
pub mod discord;
pub mod doctor;
pub mod health;
pub mod invite;
pub mod logging;
pub mod metrics;
pub mod player;
pub mod resources;
pub mod settings;
pub mod sources;
/// What the bot says about itself in `/resources`: uptime, CPU, mixer load, yt-dlp.
pub mod status;
pub mod systemd;
pub mod voice;
