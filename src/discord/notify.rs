//! Notices the player posts in the channel the music was requested from.

use std::sync::Arc;

use async_trait::async_trait;
use poise::serenity_prelude as serenity;

use super::format;
use super::reply::{OK, WARN};
use crate::player::{Notice, Notifier};

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
        Notice::QueueFinished => serenity::CreateEmbed::new()
            .colour(OK)
            .description("The queue is finished. Add more with /play."),
        Notice::Left { reason } => serenity::CreateEmbed::new()
            .colour(OK)
            .description(format!("Left the voice channel: {reason}.")),
    }
}

#[async_trait]
impl Notifier for ChannelNotifier {
    async fn notify(&self, text_channel: u64, notice: Notice) {
        let message = serenity::CreateMessage::new().embed(render(&notice));
        if let Err(e) = serenity::ChannelId::new(text_channel)
            .send_message(&self.http, message)
            .await
        {
            // A channel we cannot post in must not stop the music.
            tracing::warn!(channel = text_channel, error = %e, "could not post a notice");
        }
    }
}
