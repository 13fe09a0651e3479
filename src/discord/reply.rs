//! How the bot answers: one short embed per reply; errors are private to the caller.

use poise::serenity_prelude as serenity;
use poise::CreateReply;

use super::bot::{Context, Error};
use super::retry;

pub const OK: u32 = 0x5865F2;
pub const WARN: u32 = 0xED4245;

/// The embed of a public answer: one line in the bot's colour.
fn ok_embed(text: impl Into<String>) -> serenity::CreateEmbed {
    serenity::CreateEmbed::new()
        .colour(OK)
        .description(text.into())
}

/// A public answer with a one-line description.
pub async fn ok(ctx: Context<'_>, text: impl Into<String>) -> Result<(), Error> {
    send(ctx, CreateReply::default().embed(ok_embed(text))).await
}

/// Sends a reply, again if Discord answered a server error.
async fn send(ctx: Context<'_>, reply: CreateReply) -> Result<(), Error> {
    retry::on_server_error("a reply", || ctx.send(reply.clone())).await?;
    Ok(())
}

/// Shows how far a deferred command has come, in its own reply (edited in place).
/// Best effort: a failed edit is logged and the work goes on.
pub async fn progress(ctx: Context<'_>, text: impl Into<String>) {
    if let poise::Context::Application(app) = ctx {
        let edit = serenity::EditInteractionResponse::new().embed(ok_embed(text));
        if let Err(e) = app.interaction.edit_response(ctx.http(), edit).await {
            tracing::debug!(error = %e, "could not show progress");
        }
    }
}

/// [`ok`] for a deferred command that showed [`progress`]: the answer replaces that
/// message (once the original was edited, a follow-up would be a second message).
pub async fn ok_replacing(ctx: Context<'_>, text: impl Into<String>) -> Result<(), Error> {
    let poise::Context::Application(app) = ctx else {
        return ok(ctx, text).await;
    };
    let text = text.into();
    let edit = serenity::EditInteractionResponse::new().embed(ok_embed(text.clone()));
    let edited = retry::on_server_error("an answer", || {
        app.interaction.edit_response(ctx.http(), edit.clone())
    })
    .await;
    match edited {
        Ok(_) => Ok(()),
        // The work took longer than the token lives: the answer goes to the channel.
        Err(e) if retry::code(&e) == Some(retry::EXPIRED_TOKEN) => {
            tracing::info!(
                command = %ctx.command().qualified_name,
                "the interaction expired before its answer; answering in the channel"
            );
            let answer = serenity::CreateMessage::new()
                .embed(ok_embed(format!("<@{}>: {text}", ctx.author().id)));
            retry::post(ctx.http(), ctx.channel_id().get(), answer, "an answer").await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A public answer with a prepared embed.
pub async fn embed(ctx: Context<'_>, embed: serenity::CreateEmbed) -> Result<(), Error> {
    send(ctx, CreateReply::default().embed(embed)).await
}

/// A refusal or failure, shown only to the caller and logged.
pub async fn error(ctx: Context<'_>, text: impl Into<String>) -> Result<(), Error> {
    let text = text.into();
    tracing::info!(
        command = %ctx.command().qualified_name,
        user = %ctx.author().id,
        reason = %text,
        "refused"
    );
    let embed = serenity::CreateEmbed::new().colour(WARN).description(text);
    send(ctx, CreateReply::default().embed(embed).ephemeral(true)).await
}

/// [`error`] for a command that already deferred publicly: the "thinking" message is
/// removed first so the refusal can still be private.
pub async fn error_after_defer(ctx: Context<'_>, text: impl Into<String>) -> Result<(), Error> {
    if let poise::Context::Application(app) = ctx {
        if let Err(e) = app.interaction.delete_response(ctx.http()).await {
            tracing::debug!(error = %e, "could not remove the deferred response");
        }
    }
    error(ctx, text).await
}
