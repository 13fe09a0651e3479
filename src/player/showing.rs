//! What the player shows in its now-playing panel, and when (the policy is `panel.rs`).
//! Part of the actor in `guild.rs`: it builds each look from the queue and hands it to
//! the panel's task, never waiting on Discord.

use tokio::time::Instant;

use super::guild::GuildPlayer;
use super::panel::{PanelView, PANEL_NEXT};

impl GuildPlayer {
    /// The look of the panel now; the position is asked of the driver only when shown.
    fn panel_view(&self, channel: u64) -> PanelView {
        let upcoming = self.queue.upcoming();
        PanelView {
            channel,
            current: self.queue.current().cloned(),
            position: None,
            paused: self.paused,
            upcoming: upcoming.iter().take(PANEL_NEXT).cloned().collect(),
            waiting: upcoming.len(),
            loop_mode: self.queue.loop_mode(),
            ended: false,
        }
    }

    /// After every message: shows the panel at once if what it shows changed. A track
    /// still opening keeps the last look until it plays.
    pub(super) async fn refresh_panel(&mut self) {
        let Some(channel) = self.text_channel.filter(|_| self.settings.panel) else {
            return;
        };
        if self.starting.is_some() {
            return;
        }
        let view = self.panel_view(channel);
        let shape = view.shape(self.token);
        if self
            .panel_clock
            .changed(shape, view.moving(), Instant::now())
        {
            self.show_panel().await;
        }
    }

    /// Shows the look of now, with the position (the bar's periodic move).
    pub(super) async fn show_panel(&mut self) {
        let Some(channel) = self.text_channel.filter(|_| self.settings.panel) else {
            return;
        };
        let mut view = self.panel_view(channel);
        if view.current.is_some() {
            view.position = self.voice.position().await;
        }
        self.panel.show(view);
    }

    /// The bot left (or the panel was turned off): the last look, without buttons.
    pub(super) fn end_panel(&mut self) {
        self.panel_clock.reset();
        if let Some(channel) = self.text_channel {
            let mut view = self.panel_view(channel);
            view.current = None;
            view.upcoming.clear();
            view.waiting = 0;
            view.ended = true;
            self.panel.show(view);
        }
    }

    /// `/settings panel`: off ends the panel, on shows it with the next change.
    pub(super) fn set_panel(&mut self, on: bool) {
        if self.settings.panel && !on {
            self.end_panel();
        }
        if on && !self.settings.panel {
            self.panel_clock.reset();
        }
        self.settings.panel = on;
    }
}
