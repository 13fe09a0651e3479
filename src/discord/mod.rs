//! The Discord edge: the poise framework, its commands, the gateway event handler, and how
//! replies and channel notices look. Everything below `crate::player` and `crate::sources`
//! is plain Rust; this module turns Discord events into calls on it.

pub mod access;
pub mod bot;
pub mod buttons;
pub mod commands;
pub mod events;
pub mod format;
pub mod gateway;
pub mod notify;
pub mod panel;
pub mod presence;
pub mod reply;
pub mod restore;
pub mod retry;
pub mod shards;

use poise::serenity_prelude as serenity;

pub use bot::{Bot, Context, Data, Error};

/// Builds the poise framework; commands are registered once the gateway is ready.
pub fn framework(bot: Data) -> poise::Framework<Data, Error> {
    let dev_guild = bot.config.discord.dev_guild;
    poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: commands::all(),
            on_error: |err| Box::pin(on_error(err)),
            event_handler: |framework, event| Box::pin(events::on_event(framework, event)),
            ..Default::default()
        })
        .initialize_owners(false)
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                let commands = &framework.options().commands;
                match dev_guild {
                    Some(g) => {
                        poise::builtins::register_in_guild(ctx, commands, serenity::GuildId::new(g))
                            .await?
                    }
                    None => poise::builtins::register_globally(ctx, commands).await?,
                }
                tracing::info!(
                    user = %ready.user.name,
                    guilds = ready.guilds.len(),
                    commands = commands.len(),
                    "connected to Discord and registered commands"
                );
                bot.ready.send_replace(true);
                Ok(bot)
            })
        })
        .build()
}

/// Errors from commands are logged with their context and answered with a short,
/// private message; nothing a user types ends in an unanswered interaction.
async fn on_error(err: poise::FrameworkError<'_, Data, Error>) {
    match err {
        poise::FrameworkError::Command { error, ctx, .. } => {
            tracing::error!(command = %ctx.command().qualified_name, error = %error, "command failed");
            let _ = reply::error(ctx, "Something went wrong on my side; it has been logged.").await;
        }
        // The check already told the caller why.
        poise::FrameworkError::CommandCheckFailed { error: None, .. } => {}
        poise::FrameworkError::ArgumentParse { error, ctx, .. } => {
            tracing::info!(command = %ctx.command().qualified_name, error = %error, "bad arguments");
            let _ = reply::error(ctx, format!("I couldn't read that: {error}")).await;
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::error!(error = %e, "while handling a framework error");
            }
        }
    }
}
