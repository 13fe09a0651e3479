//! The now-playing panel's buttons (`panel.rs` draws them). A press is a component
//! interaction that may come long after the panel was posted, so nothing is kept per
//! panel: the button's id says what it asks for, and the same checks and actions as the
//! slash commands (`commands::checks`, `commands::dj`, `commands::actions`) decide, with
//! the state of the player at the press.
//!
//! Discord wants an answer within three seconds: the whole decision is bounded by
//! [`ANSWER_WITHIN`]. What was done is shown by the panel itself (the press is only
//! acknowledged), a skip vote is said publicly as `/skip`'s is, and a refusal privately.

use std::time::Duration;

use poise::serenity_prelude as serenity;

use super::bot::Bot;
use super::commands::actions::{self, Caller, Said};
use super::commands::checks::{channel_of, listening_in, listening_to_something_in, sentence};
use super::commands::dj;
use super::panel::{next_loop, Button};
use super::presence::humans_in;
use super::reply::{OK, WARN};
use crate::player::PlayerError;

/// Longest a press takes to decide, inside Discord's three-second window.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(2500);

/// Handles a press of a panel button (its `custom_id` starts with `panel::PREFIX`).
pub async fn pressed(ctx: &serenity::Context, bot: &Bot, press: &serenity::ComponentInteraction) {
    let (Some(button), Some(guild)) = (Button::parse(&press.data.custom_id), press.guild_id) else {
        return;
    };
    let decide = act(ctx, bot, guild.get(), press, button);
    let said = tokio::time::timeout(ANSWER_WITHIN, decide)
        .await
        .unwrap_or_else(|_| Said::Refused(sentence(&PlayerError::Slow)));
    let message = |colour, line: String| {
        serenity::CreateInteractionResponseMessage::new().embed(
            serenity::CreateEmbed::new()
                .colour(colour)
                .description(line),
        )
    };
    let response = match said {
        Said::Done(_) => serenity::CreateInteractionResponse::Acknowledge,
        Said::Voted(line) => serenity::CreateInteractionResponse::Message(message(OK, line)),
        Said::Refused(line) => {
            tracing::info!(guild = guild.get(), user = %press.user.id, ?button, reason = %line, "panel button refused");
            serenity::CreateInteractionResponse::Message(message(WARN, line).ephemeral(true))
        }
    };
    if let Err(e) = press.create_response(&ctx.http, response).await {
        tracing::warn!(guild = guild.get(), error = %e, "could not answer a panel button");
    }
}

async fn act(
    ctx: &serenity::Context,
    bot: &Bot,
    guild: u64,
    press: &serenity::ComponentInteraction,
    button: Button,
) -> Said {
    let user = press.user.id.get();
    let voice = channel_of(&ctx.cache, guild, user);
    let found = match button {
        Button::Pause | Button::Resume | Button::Skip => {
            listening_to_something_in(&bot.players, guild, voice).await
        }
        _ => listening_in(&bot.players, guild, voice).await,
    };
    let l = match found {
        Ok(l) => l,
        Err(why) => return Said::Refused(why),
    };
    let caller = Caller {
        id: user,
        name: press.user.display_name().to_string(),
        standing: dj::standing_in(bot, guild, user, press.member.as_ref(), Some(&l.snapshot)),
        dj_role: bot.settings.get(guild).dj_role,
    };
    match button {
        Button::Pause => actions::pause(&l, &caller).await,
        Button::Resume => actions::resume(&l, &caller).await,
        Button::Skip => {
            let listeners = humans_in(ctx, guild.into(), l.channel.into());
            actions::skip(&l, &caller, 1, listeners).await
        }
        Button::Back => actions::back(&l, &caller).await,
        Button::Stop => actions::stop(&l, &caller).await,
        Button::Loop => actions::set_loop(&l, &caller, next_loop(l.snapshot.loop_mode)).await,
        Button::Shuffle => actions::shuffle(&l, &caller).await,
    }
}
