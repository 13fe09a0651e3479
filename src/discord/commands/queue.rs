//! `/queue` (paged, with buttons) and `/nowplaying`.

use std::time::Duration;

use futures::StreamExt;
use poise::serenity_prelude as serenity;
use poise::CreateReply;

use crate::discord::bot::{Context, Error};
use crate::discord::format;
use crate::discord::reply;
use crate::discord::reply::OK;
use crate::player::queue::{durations, page_of};
use crate::player::{Request, Snapshot};
use crate::resources::Kind;

/// How long `/queue`'s page buttons keep working.
pub const BUTTONS_FOR: Duration = Duration::from_secs(5 * 60);
/// Discord's limit for an embed description is 4096 characters; stay under it.
const MAX_DESCRIPTION: usize = 3900;

async fn snapshot(ctx: Context<'_>) -> Result<Option<Snapshot>, Error> {
    let guild = ctx.guild_id().expect("guild_only").get();
    let snap = match ctx.data().players.get(guild) {
        Some(p) => p.ask(|reply| Request::Snapshot { reply }).await.ok(),
        None => None,
    };
    match snap {
        Some(s) if s.current.is_some() => Ok(Some(s)),
        _ => {
            reply::error(ctx, "Nothing is playing. Start something with /play.").await?;
            Ok(None)
        }
    }
}

async fn fresh_snapshot(ctx: Context<'_>) -> Option<Snapshot> {
    let guild = ctx.guild_id()?.get();
    let p = ctx.data().players.get(guild)?;
    p.ask(|reply| Request::Snapshot { reply })
        .await
        .ok()
        .filter(|s| s.current.is_some())
}

/// A button press on a `/queue` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    First,
    Previous,
    Next,
    Last,
}

impl Turn {
    const ALL: [Turn; 4] = [Turn::First, Turn::Previous, Turn::Next, Turn::Last];

    fn key(self) -> &'static str {
        match self {
            Turn::First => "first",
            Turn::Previous => "prev",
            Turn::Next => "next",
            Turn::Last => "last",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Turn::First => "⏮ First",
            Turn::Previous => "◀ Previous",
            Turn::Next => "Next ▶",
            Turn::Last => "Last ⏭",
        }
    }

    fn from_key(key: &str) -> Option<Turn> {
        Turn::ALL.into_iter().find(|t| t.key() == key)
    }

    /// The page this press leads to from `page` of `pages`.
    pub fn apply(self, page: usize, pages: usize) -> usize {
        let pages = pages.max(1);
        match self {
            Turn::First => 1,
            Turn::Previous => page.saturating_sub(1).max(1),
            Turn::Next => (page + 1).min(pages),
            Turn::Last => pages,
        }
    }

    /// Whether the button does anything on `page` of `pages`.
    pub fn enabled(self, page: usize, pages: usize) -> bool {
        self.apply(page, pages) != page
    }
}

/// The four page buttons, ids prefixed with `prefix`.
fn buttons(prefix: &str, page: usize, pages: usize) -> Vec<serenity::CreateActionRow> {
    vec![serenity::CreateActionRow::Buttons(
        Turn::ALL
            .into_iter()
            .map(|t| {
                serenity::CreateButton::new(format!("{prefix}{}", t.key()))
                    .label(t.label())
                    .style(serenity::ButtonStyle::Secondary)
                    .disabled(!t.enabled(page, pages))
            })
            .collect(),
    )]
}

/// Show what is playing and what comes next
#[poise::command(slash_command, guild_only)]
pub async fn queue(
    ctx: Context<'_>,
    #[description = "Page number"]
    #[min = 1]
    page: Option<i64>,
) -> Result<(), Error> {
    let Some(s) = snapshot(ctx).await? else {
        return Ok(());
    };
    let bot = ctx.data().clone();
    let per_page = bot.config.player.page_size;
    let mut page = usize::try_from(page.unwrap_or(1)).unwrap_or(1).max(1);
    let pages = page_of(s.upcoming.len(), page, per_page).pages;
    page = page.min(pages);
    let embed = queue_embed(&s, page, per_page);
    if pages <= 1 {
        return reply::embed(ctx, embed).await;
    }
    let prefix = format!("queue:{}:", ctx.id());
    // Listen before the message exists, and for every press with one registration: a quick
    // click must not slip between two collectors.
    let filter_prefix = prefix.clone();
    let mut presses = Box::pin(
        serenity::ComponentInteractionCollector::new(ctx.serenity_context())
            .filter(move |i| i.data.custom_id.starts_with(&filter_prefix))
            .timeout(BUTTONS_FOR)
            .stream(),
    );
    let handle = ctx
        .send(
            CreateReply::default()
                .embed(embed)
                .components(buttons(&prefix, page, pages)),
        )
        .await?;
    let _unit = bot.registry.acquire(Kind::Task);
    let author = ctx.author().id;
    let mut last = queue_embed(&s, page, per_page);
    loop {
        let pressed = tokio::select! {
            p = presses.next() => p,
            _ = bot.shutdown.cancelled() => None,
        };
        let Some(press) = pressed else { break };
        if press.user.id != author {
            let msg = serenity::CreateInteractionResponseMessage::new()
                .ephemeral(true)
                .embed(
                    serenity::CreateEmbed::new()
                        .colour(crate::discord::reply::WARN)
                        .description(format!(
                            "Only <@{author}> can turn these pages. Use /queue to get your own."
                        )),
                );
            if let Err(e) = press
                .create_response(ctx, serenity::CreateInteractionResponse::Message(msg))
                .await
            {
                tracing::debug!(error = %e, "could not refuse a queue button");
            }
            continue;
        }
        let turn = press
            .data
            .custom_id
            .strip_prefix(&prefix)
            .and_then(Turn::from_key);
        let response = match fresh_snapshot(ctx).await {
            Some(s) => {
                let pages = page_of(s.upcoming.len(), page, per_page).pages;
                page = turn
                    .map(|t| t.apply(page, pages))
                    .unwrap_or(page)
                    .min(pages);
                last = queue_embed(&s, page, per_page);
                let rows = if pages > 1 {
                    buttons(&prefix, page, pages)
                } else {
                    Vec::new()
                };
                serenity::CreateInteractionResponseMessage::new()
                    .embed(last.clone())
                    .components(rows)
            }
            None => {
                last = serenity::CreateEmbed::new()
                    .colour(OK)
                    .title("Queue")
                    .description("Nothing is playing any more. Start something with /play.");
                serenity::CreateInteractionResponseMessage::new()
                    .embed(last.clone())
                    .components(Vec::new())
            }
        };
        if let Err(e) = press
            .create_response(
                ctx,
                serenity::CreateInteractionResponse::UpdateMessage(response),
            )
            .await
        {
            tracing::debug!(error = %e, "could not turn a queue page");
        }
    }
    // The buttons stop working: take them away.
    let done = CreateReply::default().embed(last).components(Vec::new());
    if let Err(e) = handle.edit(ctx, done).await {
        tracing::debug!(error = %e, "could not remove the queue buttons");
    }
    Ok(())
}

/// The `/queue` page: now playing, then the upcoming tracks with their length, who asked
/// and when each starts; the footer has the page, the count and the total time.
pub fn queue_embed(s: &Snapshot, page: usize, per_page: usize) -> serenity::CreateEmbed {
    let cur = s.current.as_ref().expect("checked by caller");
    let pos = s.position.unwrap_or_default();
    let left = match (cur.track.is_live, cur.track.duration) {
        (false, Some(d)) => Some(d.saturating_sub(pos)),
        _ => None,
    };
    let mut text = format!(
        "**Now playing:** {} `{} / {}`{} · {}\n",
        format::link(&cur.track, 60),
        format::clock(pos),
        format::length(&cur.track),
        state_note(s),
        format::escape(&format::trim(&cur.requester.name, 32))
    );
    let p = page_of(s.upcoming.len(), page, per_page);
    if s.upcoming.is_empty() {
        text.push_str("\nNothing queued after this.");
    } else {
        text.push_str("\n**Up next:**\n");
        let starts = format::start_times(
            left,
            s.upcoming
                .iter()
                .map(|e| e.track.duration.filter(|_| !e.track.is_live)),
        );
        for (i, e) in s.upcoming[p.start..p.end].iter().enumerate() {
            let n = p.start + i;
            let when = match starts[n] {
                Some(d) if d.is_zero() => "next".to_string(),
                Some(d) => format!("in {}", format::clock(d)),
                None => "later".to_string(),
            };
            let row = format!(
                "`{}.` {} `{}` · {} · {when}\n",
                n + 1,
                format::link(&e.track, 50),
                format::length(&e.track),
                format::escape(&format::trim(&e.requester.name, 32))
            );
            if text.len() + row.len() > MAX_DESCRIPTION {
                text.push_str("…\n");
                break;
            }
            text.push_str(&row);
        }
    }
    let (sum, unknown) = durations(s.upcoming.iter());
    let remaining = left.unwrap_or(Duration::ZERO);
    let unknown = unknown + usize::from(left.is_none());
    serenity::CreateEmbed::new()
        .colour(OK)
        .title("Queue")
        .description(text)
        .footer(serenity::CreateEmbedFooter::new(format!(
            "Page {}/{} · {} queued · total {} · loop {} · volume {}%",
            p.number,
            p.pages,
            s.upcoming.len(),
            format::total(sum + remaining, unknown),
            s.loop_mode.label(),
            s.volume
        )))
}

/// Show the track that is playing now
#[poise::command(slash_command, guild_only, rename = "nowplaying")]
pub async fn nowplaying(ctx: Context<'_>) -> Result<(), Error> {
    let Some(s) = snapshot(ctx).await? else {
        return Ok(());
    };
    reply::embed(ctx, nowplaying_embed(&s)).await
}

/// What the current track is doing besides playing: still being looked up or opened
/// (it has not started; a slow site or media server), or paused.
fn state_note(s: &Snapshot) -> &'static str {
    match (s.starting, s.paused) {
        (true, true) => " (starting, then paused)",
        (true, false) => " (starting…)",
        (false, true) => " (paused)",
        (false, false) => "",
    }
}

/// `/nowplaying`: the title (linked), a progress bar with elapsed / total, who asked, the
/// source link.
pub fn nowplaying_embed(s: &Snapshot) -> serenity::CreateEmbed {
    let cur = s.current.as_ref().expect("checked by caller");
    let pos = s.position.unwrap_or_default();
    let bar = match cur.track.duration {
        Some(total) if !cur.track.is_live && !total.is_zero() => format!(
            "{} `{} / {}`",
            format::progress_bar(pos, total, 16),
            format::clock(pos),
            format::clock(total)
        ),
        _ => format!(
            "`{}` elapsed ({})",
            format::clock(pos),
            format::length(&cur.track)
        ),
    };
    let source = format!("[{}]({})", source_name(&cur.track), cur.track.page_url);
    serenity::CreateEmbed::new()
        .colour(OK)
        .title("Now playing")
        .description(format!(
            "{}{}\n{bar}\nRequested by {} · {source}",
            format::link(&cur.track, 80),
            state_note(s),
            format::escape(&format::trim(&cur.requester.name, 32))
        ))
        .footer(serenity::CreateEmbedFooter::new(format!(
            "Volume {}% · loop {} · {} queued",
            s.volume,
            s.loop_mode.label(),
            s.upcoming.len()
        )))
}

/// "YouTube", "SoundCloud", or the link's host.
fn source_name(track: &crate::sources::Track) -> String {
    match track.extractor.as_str() {
        e if e.starts_with("youtube") => "YouTube".into(),
        e if e.starts_with("soundcloud") => "SoundCloud".into(),
        e if e.starts_with("bandcamp") => "Bandcamp".into(),
        _ => url::Url::parse(&track.page_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .map(|h| format::escape(&h))
            .unwrap_or_else(|| "source".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::player::{Entry, LoopMode, Requester};

    fn entry(id: u64, name: &str, secs: Option<u64>) -> Entry {
        let mut t = crate::player::test_track(name);
        t.duration = secs.map(Duration::from_secs);
        Entry {
            id,
            track: Arc::new(t),
            requester: Requester {
                id: 1,
                name: "ann".into(),
            },
        }
    }

    fn snap(upcoming: usize) -> Snapshot {
        Snapshot {
            current: Some(entry(0, "now", Some(100))),
            position: Some(Duration::from_secs(40)),
            starting: false,
            upcoming: (1..=upcoming as u64)
                .map(|i| entry(i, &format!("t{i}"), Some(30)))
                .collect(),
            loop_mode: LoopMode::Off,
            paused: false,
            volume: 100,
            voice_channel: Some(1),
            filters: Default::default(),
        }
    }

    fn text(e: &serenity::CreateEmbed) -> String {
        serde_json::to_string(e).unwrap()
    }

    #[test]
    fn page_buttons_turn_and_clamp() {
        assert_eq!(Turn::Next.apply(1, 3), 2);
        assert_eq!(Turn::Next.apply(3, 3), 3);
        assert_eq!(Turn::Previous.apply(1, 3), 1);
        assert_eq!(Turn::Previous.apply(3, 3), 2);
        assert_eq!(Turn::First.apply(3, 3), 1);
        assert_eq!(Turn::Last.apply(1, 3), 3);
        assert_eq!(Turn::Last.apply(1, 0), 1);
        assert!(!Turn::First.enabled(1, 3) && !Turn::Previous.enabled(1, 3));
        assert!(Turn::Next.enabled(1, 3) && Turn::Last.enabled(1, 3));
        assert!(!Turn::Next.enabled(3, 3) && !Turn::Last.enabled(3, 3));
        assert_eq!(Turn::from_key("prev"), Some(Turn::Previous));
        assert_eq!(Turn::from_key("nope"), None);
    }

    #[test]
    fn queue_pages_show_when_each_track_starts() {
        let s = snap(12);
        let first = text(&queue_embed(&s, 1, 5));
        // 60 s left of the current track, then 30 s each
        assert!(
            first.contains("`1.`") && first.contains("in 1:00"),
            "{first}"
        );
        assert!(
            first.contains("`2.`") && first.contains("in 1:30"),
            "{first}"
        );
        assert!(!first.contains("`6.`"), "{first}");
        assert!(first.contains("Page 1/3"), "{first}");
        assert!(first.contains("total 7:00"), "{first}");
        let last = text(&queue_embed(&s, 3, 5));
        assert!(last.contains("`11.`") && last.contains("`12.`"), "{last}");
        assert!(last.contains("in 6:00"), "{last}");
        assert!(last.contains("Page 3/3"), "{last}");
        // past the end clamps to the last page
        assert!(text(&queue_embed(&s, 9, 5)).contains("Page 3/3"));
    }

    #[test]
    fn unknown_lengths_make_later_starts_unknown() {
        let mut s = snap(3);
        Arc::make_mut(&mut s.upcoming[1].track).duration = None;
        let t = text(&queue_embed(&s, 1, 10));
        assert!(t.contains("in 1:00") && t.contains("in 1:30"), "{t}");
        assert!(t.contains("later"), "{t}");
        assert!(t.contains("1 of unknown length"), "{t}");
    }

    #[test]
    fn a_long_page_stays_within_discords_limit() {
        let mut s = snap(25);
        for e in &mut s.upcoming {
            Arc::make_mut(&mut e.track).title = "x".repeat(300);
            Arc::make_mut(&mut e.track).page_url =
                format!("https://example.com/{}", "y".repeat(200));
        }
        let e = serde_json::to_value(queue_embed(&s, 1, 25)).unwrap();
        assert!(e["description"].as_str().unwrap().chars().count() <= 4096);
    }

    #[test]
    fn a_track_still_opening_says_so() {
        let mut s = snap(1);
        assert!(!text(&nowplaying_embed(&s)).contains("starting"));
        s.starting = true;
        assert!(text(&nowplaying_embed(&s)).contains("(starting…)"));
        assert!(text(&queue_embed(&s, 1, 5)).contains("(starting…)"));
        s.paused = true;
        assert!(text(&queue_embed(&s, 1, 5)).contains("(starting, then paused)"));
    }

    #[test]
    fn nowplaying_has_a_bar_times_requester_and_source() {
        let s = snap(0);
        let t = text(&nowplaying_embed(&s));
        assert!(t.contains("🔘"), "{t}");
        assert!(t.contains("0:40 / 1:40"), "{t}");
        assert!(t.contains("Requested by ann"), "{t}");
        assert!(t.contains("(https://example.com/now)"), "{t}");
        let mut s = snap(0);
        s.current = Some(entry(0, "live", None));
        let t = text(&nowplaying_embed(&s));
        assert!(t.contains("0:40") && t.contains("unknown length"), "{t}");
    }
}
