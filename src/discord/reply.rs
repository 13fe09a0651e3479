//! How the bot answers: one short embed per reply; errors are private to the caller.

use poise::serenity_prelude as serenity;
use poise::CreateReply;

use super::bot::{Context, Error};

pub const OK: u32 = 0x5865F2;
pub const WARN: u32 = 0xED4245;

/// A public answer with a one-line description.
pub async fn ok(ctx: Context<'_>, text: impl Into<String>) -> Result<(), Error> {
    let embed = serenity::CreateEmbed::new()
        .colour(OK)
        .description(text.into());
    ctx.send(CreateReply::default().embed(embed)).await?;
    Ok(())
}

/// A public answer with a prepared embed.
pub async fn embed(ctx: Context<'_>, embed: serenity::CreateEmbed) -> Result<(), Error> {
    ctx.send(CreateReply::default().embed(embed)).await?;
    Ok(())
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
    ctx.send(CreateReply::default().embed(embed).ephemeral(true))
        .await?;
    Ok(())
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
