//! `/playlist save|load|list|show|delete|rename`: playlists members keep in the database.
//! A playlist is its owner's; shared, the server may see and load it, and still only its
//! owner may change, rename or delete it. `load` queues it with `/play`'s limits (queue
//! length, `player.max_playlist`, the server's track length).

use std::sync::Arc;

use super::checks::{caller_channel, sentence};
use super::play::{enqueue, precheck, refusal, room, too_long, Target};
use crate::db::playlists::{self, Limits, Mode, Owner, PlaylistError, Summary};
use crate::discord::bot::{Context, Error};
use crate::discord::format::{self, bold};
use crate::discord::reply;
use crate::player::{PlayerError, Request, Requester, Snapshot};

/// Longest playlist name, in characters.
pub const MAX_NAME: usize = 50;
/// Tracks per page of `/playlist show`, and playlists `/playlist list` shows.
const PAGE: usize = 15;
const LIST_MAX: usize = 25;

/// Your saved playlists: save the queue, load it later, share it with the server
#[poise::command(
    slash_command,
    guild_only,
    subcommands("save", "load", "list", "show", "delete", "rename"),
    subcommand_required
)]
pub async fn playlist(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
pub enum What {
    #[name = "the whole queue (replaces a playlist of that name)"]
    Queue,
    #[name = "only the current track (added at the end)"]
    Track,
}

/// A name as typed, checked once: trimmed, 1 to 50 characters, one line.
fn parse_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Give the playlist a name.".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("Playlist names are at most {MAX_NAME} characters."));
    }
    if name.chars().any(char::is_control) {
        return Err("Playlist names are one line of text.".into());
    }
    Ok(name.to_string())
}

fn limits(ctx: Context<'_>) -> Limits {
    let p = &ctx.data().config.playlists;
    Limits {
        max_per_member: p.max_per_member,
        max_tracks: p.max_tracks,
    }
}

fn guild(ctx: Context<'_>) -> u64 {
    ctx.guild_id().expect("guild_only").get()
}

/// "**Road trip**" or "**Road trip** (ben's)".
fn label(p: &Summary, caller: u64) -> String {
    if p.owner_id == caller {
        bold(&p.name, 60)
    } else {
        format!(
            "{} ({}'s)",
            bold(&p.name, 60),
            format::escape(&p.owner_name)
        )
    }
}

fn not_found(name: &str) -> String {
    format!(
        "You have no playlist called {} and nobody shared one by that name here; \
         `/playlist list` shows what you can load.",
        bold(name, 60)
    )
}

/// The guild's player state, if a player runs.
async fn snapshot(ctx: Context<'_>) -> Option<Snapshot> {
    let player = ctx.data().players.get(guild(ctx))?;
    player.ask(|reply| Request::Snapshot { reply }).await.ok()
}

/// The caller's playlist `name` (the one they own), or the refusal to show.
async fn owned(ctx: Context<'_>, name: &str) -> Result<Result<Summary, String>, Error> {
    let caller = ctx.author().id.get();
    let found = playlists::find(&ctx.data().stores.db, guild(ctx), caller, name).await?;
    Ok(match found {
        Some(p) if p.owner_id == caller => Ok(p),
        Some(p) => Err(format!(
            "{} belongs to {}: only they can change it.",
            bold(&p.name, 60),
            format::escape(&p.owner_name)
        )),
        None => Err(not_found(name)),
    })
}

/// Save the queue (or add the current track) as one of your playlists
#[poise::command(slash_command, guild_only)]
async fn save(
    ctx: Context<'_>,
    #[description = "The playlist's name"]
    #[max_length = 50]
    name: String,
    #[description = "What to save (the whole queue by default)"] what: Option<What>,
    #[description = "Let everyone in this server see and load it"] shared: Option<bool>,
) -> Result<(), Error> {
    let name = match parse_name(&name) {
        Ok(n) => n,
        Err(e) => return reply::error(ctx, e).await,
    };
    let Some(s) = snapshot(ctx).await.filter(|s| s.current.is_some()) else {
        return reply::error(ctx, "Nothing is playing: there is nothing to save.").await;
    };
    let current = s.current.iter();
    let (tracks, mode): (Vec<_>, _) = match what.unwrap_or(What::Queue) {
        What::Queue => (
            current
                .chain(s.upcoming.iter())
                .map(|e| (*e.track).clone())
                .collect(),
            Mode::Replace,
        ),
        What::Track => (current.map(|e| (*e.track).clone()).collect(), Mode::Append),
    };
    let owner = Owner {
        guild: guild(ctx),
        id: ctx.author().id.get(),
        name: ctx.author().display_name().to_string(),
    };
    let db = &ctx.data().stores.db;
    let saved = match playlists::save(db, &owner, &name, &tracks, mode, shared, limits(ctx)).await {
        Ok(s) => s,
        Err(PlaylistError::TooMany(n)) => {
            return reply::error(
                ctx,
                format!(
                    "You already have {n} playlists here, the most this bot keeps per member. \
                     Delete one with `/playlist delete` first."
                ),
            )
            .await
        }
        Err(PlaylistError::TooLong(n)) => {
            return reply::error(
                ctx,
                format!(
                    "A playlist holds at most {}; {} would pass that.",
                    format::tracks(n),
                    bold(&name, 60)
                ),
            )
            .await
        }
        Err(e) => return Err(e.into()),
    };
    let who = if saved.shared {
        "shared with the server"
    } else {
        "only you can load it"
    };
    let text = match (mode, saved.created) {
        (Mode::Append, _) => format!(
            "Added {} to {}: {} ({who}).",
            bold(&tracks[0].title, 80),
            bold(&name, 60),
            format::tracks(saved.tracks)
        ),
        (Mode::Replace, true) => format!(
            "Saved {} as {} ({who}).",
            format::tracks(saved.tracks),
            bold(&name, 60)
        ),
        (Mode::Replace, false) => format!(
            "Replaced {} with the queue: {} ({who}).",
            bold(&name, 60),
            format::tracks(saved.tracks)
        ),
    };
    reply::ok(ctx, text).await
}

/// Queue one of your playlists, or one shared in this server
#[poise::command(slash_command, guild_only)]
async fn load(
    ctx: Context<'_>,
    #[description = "The playlist's name"]
    #[max_length = 50]
    name: String,
) -> Result<(), Error> {
    let bot = ctx.data().clone();
    let guild = guild(ctx);
    let name = match parse_name(&name) {
        Ok(n) => n,
        Err(e) => return reply::error(ctx, e).await,
    };
    let Some(voice_channel) = caller_channel(ctx) else {
        return reply::error(ctx, "Join a voice channel first, then load a playlist.").await;
    };
    let max = bot.config.limits.max_calls;
    if !bot.registry.has_call(guild) && bot.registry.calls().len() >= max {
        return reply::error(ctx, sentence(&PlayerError::Busy(max))).await;
    }
    let settings = bot.settings.get(guild);
    let snap = snapshot(ctx).await;
    if let Some(s) = &snap {
        if let Err(text) = precheck(s, voice_channel, settings.max_queue) {
            return reply::error(ctx, text).await;
        }
    }
    let caller = ctx.author().id.get();
    let Some(found) = playlists::find(&bot.stores.db, guild, caller, &name).await? else {
        return reply::error(ctx, not_found(&name)).await;
    };
    let saved = playlists::tracks(&bot.stores.db, found.id).await?;
    if saved.is_empty() {
        return reply::error(ctx, format!("{} is empty.", label(&found, caller))).await;
    }
    let total = saved.len();
    let fitting: Vec<_> = saved
        .into_iter()
        .filter(|t| too_long(t, &settings).is_none())
        .map(Arc::new)
        .collect();
    let too_long_count = total - fitting.len();
    let take = room(snap.as_ref(), &settings).min(bot.config.player.max_playlist);
    let tracks: Vec<_> = fitting.into_iter().take(take).collect();
    if tracks.is_empty() {
        let why = if too_long_count == total {
            "is too long for this server's track length limit".to_string()
        } else {
            "doesn't fit: the queue is full".to_string()
        };
        return reply::error(ctx, format!("{} {why}.", label(&found, caller))).await;
    }
    // Joining the voice channel can take a moment.
    ctx.defer().await?;
    let target = Target {
        guild,
        voice_channel,
        front: false,
        requester: Requester {
            id: caller,
            name: ctx.author().display_name().to_string(),
        },
    };
    let wanted = tracks.len();
    match enqueue(ctx, &target, tracks.clone()).await {
        Ok(done) => {
            let mut notes = String::new();
            if too_long_count > 0 {
                notes.push_str(&format!(" · {too_long_count} skipped (too long or live)"));
            }
            let left = total - too_long_count - done.added.min(wanted);
            if left > 0 {
                notes.push_str(&format!(" · {left} left out (the queue's limits)"));
            }
            let start = match done.position {
                0 => format!("; playing {} now", bold(&tracks[0].title, 60)),
                p => format!(", starting at position {p}"),
            };
            reply::ok(
                ctx,
                format!(
                    "Queued {} from {}{start}{notes}.",
                    format::tracks(done.added),
                    label(&found, caller)
                ),
            )
            .await
        }
        Err(e) => reply::error_after_defer(ctx, refusal(&e, &settings)).await,
    }
}

/// Your playlists and those shared in this server
#[poise::command(slash_command, guild_only)]
async fn list(ctx: Context<'_>) -> Result<(), Error> {
    let caller = ctx.author().id.get();
    let all = playlists::visible(&ctx.data().stores.db, guild(ctx), caller).await?;
    if all.is_empty() {
        return reply::error(
            ctx,
            "No playlists yet. Save the queue with `/playlist save`.",
        )
        .await;
    }
    let line = |p: &Summary| {
        let share = if p.owner_id == caller && p.shared {
            " · shared"
        } else {
            ""
        };
        format!("{} · {}{share}", label(p, caller), format::tracks(p.tracks))
    };
    let (mine, others): (Vec<_>, Vec<_>) = all.iter().partition(|p| p.owner_id == caller);
    let mut text = String::new();
    for (head, group) in [("Yours", &mine), ("Shared in this server", &others)] {
        if group.is_empty() {
            continue;
        }
        text.push_str(&format!("**{head}**\n"));
        for p in group.iter().take(LIST_MAX) {
            text.push_str(&format!("{}\n", line(p)));
        }
        if group.len() > LIST_MAX {
            text.push_str(&format!("… and {} more\n", group.len() - LIST_MAX));
        }
    }
    reply::ok(ctx, text.trim_end()).await
}

/// The tracks of a playlist
#[poise::command(slash_command, guild_only)]
async fn show(
    ctx: Context<'_>,
    #[description = "The playlist's name"]
    #[max_length = 50]
    name: String,
    #[description = "Page"]
    #[min = 1]
    page: Option<u32>,
) -> Result<(), Error> {
    let name = match parse_name(&name) {
        Ok(n) => n,
        Err(e) => return reply::error(ctx, e).await,
    };
    let caller = ctx.author().id.get();
    let db = &ctx.data().stores.db;
    let Some(found) = playlists::find(db, guild(ctx), caller, &name).await? else {
        return reply::error(ctx, not_found(&name)).await;
    };
    let tracks = playlists::tracks(db, found.id).await?;
    let pages = tracks.len().div_ceil(PAGE).max(1);
    let page = (page.unwrap_or(1) as usize).clamp(1, pages);
    let mut text = format!(
        "{} · {} · page {page}/{pages}\n",
        label(&found, caller),
        format::tracks(tracks.len())
    );
    for (i, t) in tracks.iter().enumerate().skip((page - 1) * PAGE).take(PAGE) {
        text.push_str(&format!(
            "{}. {} ({})\n",
            i + 1,
            format::link(t, 70),
            format::length(t)
        ));
    }
    reply::ok(ctx, text.trim_end()).await
}

/// Delete one of your playlists
#[poise::command(slash_command, guild_only)]
async fn delete(
    ctx: Context<'_>,
    #[description = "The playlist's name"]
    #[max_length = 50]
    name: String,
) -> Result<(), Error> {
    let name = match parse_name(&name) {
        Ok(n) => n,
        Err(e) => return reply::error(ctx, e).await,
    };
    let p = match owned(ctx, &name).await? {
        Ok(p) => p,
        Err(why) => return reply::error(ctx, why).await,
    };
    if !playlists::delete(&ctx.data().stores.db, p.id, ctx.author().id.get()).await? {
        return reply::error(ctx, not_found(&name)).await;
    }
    reply::ok(
        ctx,
        format!(
            "Deleted {} ({}).",
            bold(&p.name, 60),
            format::tracks(p.tracks)
        ),
    )
    .await
}

/// Rename one of your playlists
#[poise::command(slash_command, guild_only)]
async fn rename(
    ctx: Context<'_>,
    #[description = "The playlist's name now"]
    #[max_length = 50]
    name: String,
    #[description = "Its new name"]
    #[max_length = 50]
    new_name: String,
) -> Result<(), Error> {
    let (name, new_name) = match (parse_name(&name), parse_name(&new_name)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return reply::error(ctx, e).await,
    };
    let p = match owned(ctx, &name).await? {
        Ok(p) => p,
        Err(why) => return reply::error(ctx, why).await,
    };
    let owner = Owner {
        guild: guild(ctx),
        id: ctx.author().id.get(),
        name: ctx.author().display_name().to_string(),
    };
    match playlists::rename(&ctx.data().stores.db, p.id, &owner, &new_name).await {
        Ok(true) => {
            reply::ok(
                ctx,
                format!("Renamed {} to {}.", bold(&p.name, 60), bold(&new_name, 60)),
            )
            .await
        }
        Ok(false) => reply::error(ctx, not_found(&name)).await,
        Err(PlaylistError::Taken) => {
            reply::error(
                ctx,
                format!(
                    "You already have a playlist called {}.",
                    bold(&new_name, 60)
                ),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once() {
        assert_eq!(parse_name("  Road trip ").unwrap(), "Road trip");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"x".repeat(51)).unwrap_err().contains("50"));
        assert!(parse_name(&"é".repeat(50)).is_ok());
        assert!(parse_name("a\nb").is_err());
    }
}
