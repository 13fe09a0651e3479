//! `/lyrics [query]`: the words of the current track (or of a query) from LRCLIB. Synced
//! lyrics of the current track follow the song: the message is edited as it plays, the
//! line being sung in bold, at most once per `lyrics.edit_every`, reading the player's
//! position each time (so a `/seek` moves it too). The follow ends when the track changes,
//! the bot leaves, the bot stops, or the interaction token is about to expire.

use std::sync::Arc;
use std::time::Duration;

use poise::serenity_prelude as serenity;
use tokio_util::sync::CancellationToken;

use crate::discord::bot::{Context, Error};
use crate::discord::format::{bold, escape, trim};
use crate::discord::reply;
use crate::discord::retry;
use crate::player::{PlayerHandle, Request};
use crate::sources::lyrics::{Record, Timeline, Wanted};

/// Discord lets an interaction's token edit its response for 15 minutes.
const TOKEN_LIFE: Duration = Duration::from_secs(14 * 60);
/// An embed's description holds 4096 characters.
const MAX_TEXT: usize = 3900;
/// Lines shown before and after the one being sung.
const BEFORE: usize = 2;
const AFTER: usize = 4;

/// Show the lyrics of the current track, following along when they are synced
#[poise::command(slash_command, guild_only)]
pub async fn lyrics(
    ctx: Context<'_>,
    #[description = "A song to look up instead of the current track (artist and title)"]
    #[max_length = 200]
    query: Option<String>,
) -> Result<(), Error> {
    let bot = ctx.data().clone();
    let guild = ctx.guild_id().expect("guild_only").get();
    // What to look for: the words given, else the current track.
    let (wanted, playing) = match query.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => (Wanted::Query(q.to_string()), None),
        None => {
            let current = match bot.players.get(guild) {
                Some(p) => p
                    .ask(|reply| Request::Snapshot { reply })
                    .await
                    .ok()
                    .and_then(|s| s.current.map(|c| (p, c))),
                None => None,
            };
            let Some((player, entry)) = current else {
                return reply::error(
                    ctx,
                    "Nothing is playing. Name a song: `/lyrics query: artist title`.",
                )
                .await;
            };
            let t = &entry.track;
            let wanted = Wanted::from_track(&t.title, t.uploader.as_deref(), t.duration);
            (wanted, Some((player, entry.id)))
        }
    };
    // LRCLIB may take a moment: past Discord's three-second window.
    ctx.defer().await?;
    let found = match bot.lyrics.find(&wanted).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(guild, error = %e, "lyrics lookup failed");
            return reply::error_after_defer(
                ctx,
                "I couldn't reach the lyrics service (LRCLIB); try again in a moment.",
            )
            .await;
        }
    };
    let Some(record) = found.record else {
        return reply::error_after_defer(
            ctx,
            format!("No lyrics found for {}.", bold(&describe(&wanted), 100)),
        )
        .await;
    };
    let poise::Context::Application(app) = ctx else {
        return Ok(());
    };
    let http = ctx.serenity_context().http.clone();
    let interaction = app.interaction.clone();
    let title = format!("{} – {}", record.artist_name, record.track_name);
    let timeline = record.synced_lyrics.as_deref().and_then(Timeline::parse);
    match (timeline, playing) {
        (Some(timeline), Some((player, entry))) if !record.instrumental => {
            let position = position_of(&player, entry).await.unwrap_or_default();
            let current = timeline.index_at(position);
            let text = window(&timeline, current);
            interaction
                .edit_response(&http, edit(&title, text, FOLLOWING))
                .await?;
            let follow = Follow {
                http,
                interaction,
                player,
                entry,
                timeline,
                title,
                every: bot.config.lyrics.edit_every,
                shown: Some(current),
            };
            start_follow(ctx, guild, follow);
            Ok(())
        }
        (timeline, _) => {
            let text = if record.instrumental {
                "♪ (instrumental)".to_string()
            } else {
                plain(&record, timeline.as_ref())
            };
            interaction
                .edit_response(&http, edit(&title, text, FROM))
                .await?;
            Ok(())
        }
    }
}

const FROM: &str = "Lyrics from LRCLIB";
const FOLLOWING: &str = "Follows the song · lyrics from LRCLIB";

/// What was looked for, in words.
fn describe(w: &Wanted) -> String {
    match w {
        Wanted::Song {
            artist: Some(a),
            title,
            ..
        } => format!("{a} – {title}"),
        Wanted::Song { title, .. } => title.clone(),
        Wanted::Query(q) => q.clone(),
    }
}

fn edit(title: &str, text: String, footer: &str) -> serenity::EditInteractionResponse {
    let embed = serenity::CreateEmbed::new()
        .colour(reply::OK)
        .title(trim(title, 200))
        .description(text)
        .footer(serenity::CreateEmbedFooter::new(footer));
    serenity::EditInteractionResponse::new().embed(embed)
}

/// The whole text: plain lyrics, else the synced lines without their times.
fn plain(record: &Record, timeline: Option<&Timeline>) -> String {
    let text = match (record.plain_lyrics.as_deref(), timeline) {
        (Some(p), _) if !p.trim().is_empty() => p.to_string(),
        (_, Some(t)) => t
            .lines()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    let escaped = escape(text.trim());
    if escaped.chars().count() > MAX_TEXT {
        format!(
            "{}\n*(cut: too long for one message)*",
            trim(&escaped, MAX_TEXT)
        )
    } else {
        escaped
    }
}

/// The lines around `current`, the one being sung in bold with a marker.
fn window(timeline: &Timeline, current: Option<usize>) -> String {
    let lines = timeline.lines();
    let (from, to) = match current {
        Some(i) => (i.saturating_sub(BEFORE), (i + AFTER + 1).min(lines.len())),
        None => (0, (AFTER + 1).min(lines.len())),
    };
    let mut out = Vec::new();
    if current.is_none() {
        out.push("▶ ♪".to_string());
    }
    for (i, (_, line)) in lines.iter().enumerate().take(to).skip(from) {
        let line = if line.trim().is_empty() {
            "♪".to_string()
        } else {
            escape(&trim(line, 200))
        };
        out.push(if Some(i) == current {
            format!("▶ **{line}**")
        } else {
            line
        });
    }
    out.join("\n")
}

/// The player's position in entry `entry`, while it is still the current one.
async fn position_of(player: &PlayerHandle, entry: u64) -> Option<Duration> {
    let s = player.ask(|reply| Request::Snapshot { reply }).await.ok()?;
    match s.current {
        Some(c) if c.id == entry => Some(s.position.unwrap_or_default()),
        _ => None,
    }
}

/// One following message.
struct Follow {
    http: Arc<serenity::Http>,
    interaction: serenity::CommandInteraction,
    player: PlayerHandle,
    entry: u64,
    timeline: Timeline,
    title: String,
    every: Duration,
    /// The line index last shown (`Some(None)`: before the first line).
    shown: Option<Option<usize>>,
}

/// Runs `follow` under the app's tracker; a newer `/lyrics` in the guild replaces it.
fn start_follow(ctx: Context<'_>, guild: u64, follow: Follow) {
    let bot = ctx.data().clone();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stop = bot.shutdown.child_token();
    if let Some((_, old)) = bot
        .lyrics_follows
        .lock()
        .expect("follows lock")
        .insert(guild, (number, stop.clone()))
    {
        old.cancel();
    }
    let unit = bot.registry.acquire(crate::resources::Kind::Task);
    let tasks = bot.tasks.clone();
    tasks.spawn(async move {
        let _unit = unit;
        let reason = tokio::time::timeout(TOKEN_LIFE, follow.run(&stop))
            .await
            .unwrap_or("the interaction expires");
        tracing::debug!(guild, reason, "stopped following lyrics");
        let mut follows = bot.lyrics_follows.lock().expect("follows lock");
        if follows.get(&guild).is_some_and(|(n, _)| *n == number) {
            follows.remove(&guild);
        }
    });
}

impl Follow {
    /// Edits the message whenever the line being sung changes, at most once per `every`;
    /// returns why it stopped.
    async fn run(mut self, stop: &CancellationToken) -> &'static str {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return "stopped",
                _ = tick.tick() => {}
            }
            let Some(position) = position_of(&self.player, self.entry).await else {
                return "the track changed or the player left";
            };
            let current = self.timeline.index_at(position);
            if self.shown == Some(current) {
                continue;
            }
            let text = window(&self.timeline, current);
            match self
                .interaction
                .edit_response(&self.http, edit(&self.title, text, FOLLOWING))
                .await
            {
                Ok(_) => self.shown = Some(current),
                // The message was deleted.
                Err(serenity::Error::Http(e)) if e.status_code().is_some_and(|s| s == 404) => {
                    return "the message is gone";
                }
                // Discord lets an interaction's answer be edited for 15 minutes only.
                Err(e) if retry::code(&e) == Some(retry::EXPIRED_TOKEN) => {
                    return "the interaction's 15 minutes ran out";
                }
                Err(e) => tracing::warn!(error = %e, "could not update the lyrics message"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sung_line_is_bold_among_its_neighbours() {
        let t = Timeline::parse("[00:01.00]a\n[00:02.00]b\n[00:03.00]\n[00:04.00]d*\n").unwrap();
        assert_eq!(window(&t, None), "▶ ♪\na\nb\n♪\nd\\*");
        assert_eq!(window(&t, Some(1)), "a\n▶ **b**\n♪\nd\\*");
        assert_eq!(window(&t, Some(3)), "b\n♪\n▶ **d\\***");
    }
}
