//! Notices the player posts in the channel the music was requested from.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use poise::serenity_prelude as serenity;

use super::format;
use super::reply::{OK, WARN};
use super::retry;
use crate::player::autoplay::Origin;
use crate::player::panel::{PanelError, PanelView};
use crate::player::{Notice, Notifier};
use crate::resources::CleanupReason;

pub struct ChannelNotifier {
    http: Arc<serenity::Http>,
}

impl ChannelNotifier {
    pub fn new(http: Arc<serenity::Http>) -> Self {
        Self { http }
    }
}

/// The embed a notice becomes.
pub fn render(notice: &Notice) -> serenity::CreateEmbed {
    match notice {
        Notice::NowPlaying(e) => serenity::CreateEmbed::new().colour(OK).description(format!(
            "Now playing {} ({}), requested by {}",
            format::link(&e.track, 80),
            format::length(&e.track),
            format::escape(&e.requester.name)
        )),
        Notice::TrackFailed { title, reason } => serenity::CreateEmbed::new()
            .colour(WARN)
            .description(format!(
                "Couldn't play **{}**: {reason}. Skipping it.",
                format::escape(title)
            )),
        Notice::EndedEarly { title, reason } => serenity::CreateEmbed::new()
            .colour(WARN)
            .description(format!(
                "**{}** ended early: {reason}.",
                format::escape(title)
            )),
        Notice::QueueFinished => serenity::CreateEmbed::new()
            .colour(OK)
            .description("The queue is finished. Add more with /play."),
        Notice::Autoplay { title, origin } => {
            let from = match origin {
                Origin::Mix { seed } => format!("from the mix of {}", format::escape(seed)),
                Origin::History => "from this server's history".into(),
            };
            serenity::CreateEmbed::new()
                .colour(OK)
                .description(format!("Autoplay: **{}** ({from})", format::escape(title)))
        }
        Notice::Left {
            reason,
            channel,
            after,
        } => serenity::CreateEmbed::new().colour(OK).description(format!(
            "Left the voice channel: {}.",
            leave_reason(*reason, *channel, *after)
        )),
    }
}

/// Why the bot left `channel`, for the channel the music was asked from.
pub fn leave_reason(reason: CleanupReason, channel: u64, after: Option<Duration>) -> String {
    let after = humantime::format_duration(after.unwrap_or_default());
    match reason {
        CleanupReason::Idle => format!("nothing played in <#{channel}> for {after}"),
        CleanupReason::Alone => format!("nobody was listening in <#{channel}> for {after}"),
        CleanupReason::BotDisconnected => "I was disconnected from the voice channel".into(),
        CleanupReason::ChannelDeleted => "the voice channel was deleted".into(),
        CleanupReason::Admin => "an administrator ran /cleanup".into(),
        CleanupReason::Error => "the voice connection was lost and could not be restored".into(),
        CleanupReason::Leak => "the voice connection was in an inconsistent state".into(),
        CleanupReason::User => format!("someone asked me to leave <#{channel}>"),
        CleanupReason::GuildRemoved => "I was removed from this server".into(),
        CleanupReason::Shutdown => "I'm restarting".into(),
        CleanupReason::HandOff => "another of my nodes takes over".into(),
    }
}

#[async_trait]
impl Notifier for ChannelNotifier {
    async fn notify(&self, text_channel: u64, notice: Notice) {
        let message = serenity::CreateMessage::new().embed(render(&notice));
        if let Err(e) = retry::post(&self.http, text_channel, message, "a notice").await {
            // A channel we cannot post in must not stop the music.
            tracing::warn!(channel = text_channel, error = %e, "could not post a notice");
        }
    }

    async fn post_panel(&self, text_channel: u64, view: &PanelView) -> Result<u64, PanelError> {
        let message = serenity::CreateMessage::new()
            .embed(super::panel::embed(view))
            .components(super::panel::buttons(view));
        retry::post(&self.http, text_channel, message, "the panel")
            .await
            .map(|m| m.id.get())
            .map_err(panel_error)
    }

    async fn edit_panel(
        &self,
        text_channel: u64,
        message: u64,
        view: &PanelView,
    ) -> Result<(), PanelError> {
        let edit = serenity::EditMessage::new()
            .embed(super::panel::embed(view))
            .components(super::panel::buttons(view));
        let (channel, message) = (
            serenity::ChannelId::new(text_channel),
            serenity::MessageId::new(message),
        );
        retry::on_server_error("a panel edit", || {
            channel.edit_message(&self.http, message, edit.clone())
        })
        .await
        .map(|_| ())
        .map_err(panel_error)
    }
}

/// Discord's "Unknown Message" (someone deleted the panel) is [`PanelError::Gone`].
fn panel_error(e: serenity::Error) -> PanelError {
    const UNKNOWN_MESSAGE: isize = 10008;
    match retry::code(&e) {
        Some(UNKNOWN_MESSAGE) => PanelError::Gone,
        _ => PanelError::Failed(e.to_string()),
    }
}
