use super::{listening_player, reply, sentence, Context, Error};
use crate::discord::format::escape;
use crate::player::Request;

/// Skip the track that is playing
#[poise::command(slash_command, guild_only)]
pub async fn skip(ctx: Context<'_>) -> Result<(), Error> {
    let Some(player) = listening_player(ctx).await? else {
        return Ok(());
    };
    match player.call(|reply| Request::Skip { n: 1, reply }).await {
        Ok(s) => {
            let next = match s.next {
                Some(t) => format!("; now playing **{}**", escape(&t)),
                None => "; the queue is empty".into(),
            };
            reply::ok(
                ctx,
                format!("Skipped **{}**{next}.", escape(&s.skipped_title)),
            )
            .await
        }
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}

/// Pause the music
#[poise::command(slash_command, guild_only)]
pub async fn pause(ctx: Context<'_>) -> Result<(), Error> {
    let Some(player) = listening_player(ctx).await? else {
        return Ok(());
    };
    match player.call(|reply| Request::Pause { reply }).await {
        Ok(t) => {
            reply::ok(
                ctx,
                format!("Paused **{}**. Use /resume to continue.", escape(&t)),
            )
            .await
        }
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}

/// Resume paused music
#[poise::command(slash_command, guild_only)]
pub async fn resume(ctx: Context<'_>) -> Result<(), Error> {
    let Some(player) = listening_player(ctx).await? else {
        return Ok(());
    };
    match player.call(|reply| Request::Resume { reply }).await {
        Ok(t) => reply::ok(ctx, format!("Resumed **{}**.", escape(&t))).await,
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}

/// Stop the music and clear the queue
#[poise::command(slash_command, guild_only)]
pub async fn stop(ctx: Context<'_>) -> Result<(), Error> {
    let Some(player) = listening_player(ctx).await? else {
        return Ok(());
    };
    match player.call(|reply| Request::Stop { reply }).await {
        Ok(n) => {
            reply::ok(
                ctx,
                format!(
                    "Stopped and cleared {n} track{}.",
                    if n == 1 { "" } else { "s" }
                ),
            )
            .await
        }
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}

/// Leave the voice channel
#[poise::command(slash_command, guild_only)]
pub async fn leave(ctx: Context<'_>) -> Result<(), Error> {
    let Some(player) = listening_player(ctx).await? else {
        return Ok(());
    };
    match player
        .call(|reply| Request::Leave {
            reason: None,
            reply,
        })
        .await
    {
        Ok(()) => reply::ok(ctx, "Left the voice channel. Bye!").await,
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}
