use std::time::Duration;

use poise::serenity_prelude as serenity;

use super::{reply, Context, Error};
use crate::discord::format;
use crate::discord::reply::OK;
use crate::player::queue::{durations, page_of};
use crate::player::{Request, Snapshot};

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

/// Show what is playing and what comes next
#[poise::command(slash_command, guild_only)]
pub async fn queue(
    ctx: Context<'_>,
    #[description = "Page number"]
    #[min = 1]
    page: Option<usize>,
) -> Result<(), Error> {
    let Some(s) = snapshot(ctx).await? else {
        return Ok(());
    };
    let per_page = ctx.data().config.player.page_size;
    reply::embed(ctx, queue_embed(&s, page.unwrap_or(1), per_page)).await
}

/// The `/queue` page: now playing, then the upcoming tracks with durations and the total.
pub fn queue_embed(s: &Snapshot, page: usize, per_page: usize) -> serenity::CreateEmbed {
    let cur = s.current.as_ref().expect("checked by caller");
    let pos = s.position.unwrap_or_default();
    let mut text = format!(
        "**Now playing:** {} `{} / {}`{}\n",
        format::link(&cur.track, 60),
        format::clock(pos),
        format::length(&cur.track),
        if s.paused { " (paused)" } else { "" }
    );
    let p = page_of(s.upcoming.len(), page, per_page);
    if s.upcoming.is_empty() {
        text.push_str("\nNothing queued after this.");
    } else {
        text.push_str("\n**Up next:**\n");
        for (i, e) in s.upcoming[p.start..p.end].iter().enumerate() {
            text.push_str(&format!(
                "`{}.` {} `{}` · {}\n",
                p.start + i + 1,
                format::link(&e.track, 50),
                format::length(&e.track),
                format::escape(&e.requester.name)
            ));
        }
    }
    let (sum, unknown) = durations(s.upcoming.iter());
    let remaining = cur
        .track
        .duration
        .map(|d| d.saturating_sub(pos))
        .unwrap_or(Duration::ZERO);
    serenity::CreateEmbed::new()
        .colour(OK)
        .title("Queue")
        .description(text)
        .footer(serenity::CreateEmbedFooter::new(format!(
            "Page {}/{} · {} queued · total {} · loop {}",
            p.number,
            p.pages,
            s.upcoming.len(),
            format::total(sum + remaining, unknown),
            s.loop_mode.label()
        )))
}

/// Show the track that is playing now
#[poise::command(slash_command, guild_only, rename = "nowplaying")]
pub async fn nowplaying(ctx: Context<'_>) -> Result<(), Error> {
    let Some(s) = snapshot(ctx).await? else {
        return Ok(());
    };
    let cur = s.current.as_ref().expect("checked");
    let pos = s.position.unwrap_or_default();
    let bar = match cur.track.duration {
        Some(total) if !cur.track.is_live => format!(
            "{} `{} / {}`",
            format::progress_bar(pos, total, 16),
            format::clock(pos),
            format::clock(total)
        ),
        _ => format!("`{}` ({})", format::clock(pos), format::length(&cur.track)),
    };
    let embed = serenity::CreateEmbed::new()
        .colour(OK)
        .title("Now playing")
        .description(format!(
            "{}{}\n{bar}\nRequested by {}",
            format::link(&cur.track, 80),
            if s.paused { " (paused)" } else { "" },
            format::escape(&cur.requester.name)
        ))
        .footer(serenity::CreateEmbedFooter::new(format!(
            "Volume {}% · loop {} · {} queued",
            s.volume,
            s.loop_mode.label(),
            s.upcoming.len()
        )));
    reply::embed(ctx, embed).await
}
