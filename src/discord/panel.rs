//! How the now-playing panel looks: one embed (the track, who asked, a progress bar, what
//! comes next) and its buttons. Pure functions over the player's [`PanelView`]; the
//! buttons are handled in `buttons.rs`, the posting in `notify.rs`.

use poise::serenity_prelude as serenity;

use super::format::{self, escape};
use super::reply::OK;
use crate::player::panel::PanelView;
use crate::player::LoopMode;

/// Every panel button's `custom_id` starts with this (the gateway handler's filter).
pub const PREFIX: &str = "panel:";

/// Cells of the progress bar.
const BAR: usize = 16;

/// A panel button: what it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    Pause,
    Resume,
    Skip,
    Back,
    Stop,
    Loop,
    Shuffle,
}

impl Button {
    const ALL: [Button; 7] = [
        Button::Pause,
        Button::Resume,
        Button::Skip,
        Button::Back,
        Button::Stop,
        Button::Loop,
        Button::Shuffle,
    ];

    fn key(self) -> &'static str {
        match self {
            Button::Pause => "pause",
            Button::Resume => "resume",
            Button::Skip => "skip",
            Button::Back => "back",
            Button::Stop => "stop",
            Button::Loop => "loop",
            Button::Shuffle => "shuffle",
        }
    }

    pub fn custom_id(self) -> String {
        format!("{PREFIX}{}", self.key())
    }

    /// The button a `custom_id` names, if it is one of the panel's.
    pub fn parse(custom_id: &str) -> Option<Self> {
        let key = custom_id.strip_prefix(PREFIX)?;
        Self::ALL.into_iter().find(|b| b.key() == key)
    }
}

/// The loop mode the Loop button moves to: off, track, queue, off.
pub fn next_loop(mode: LoopMode) -> LoopMode {
    match mode {
        LoopMode::Off => LoopMode::Track,
        LoopMode::Track => LoopMode::Queue,
        LoopMode::Queue => LoopMode::Off,
    }
}

fn loop_label(mode: LoopMode) -> &'static str {
    match mode {
        LoopMode::Off => "off",
        LoopMode::Track => "track",
        LoopMode::Queue => "queue",
    }
}

/// The panel's embed.
pub fn embed(view: &PanelView) -> serenity::CreateEmbed {
    let e = serenity::CreateEmbed::new().colour(OK);
    let Some(cur) = view.current.as_ref() else {
        let said = match view.ended {
            true => "I left the voice channel. Start something with /play.",
            false => "The queue is finished. Add more with /play.",
        };
        return e.title("Nothing is playing").description(said);
    };
    let title = if view.paused { "Paused" } else { "Now playing" };
    let at = view.position.unwrap_or_default();
    let bar = match (cur.track.is_live, cur.track.duration) {
        (false, Some(total)) => format!(
            "`{}` {} `{}`",
            format::clock(at.min(total)),
            format::progress_bar(at, total, BAR),
            format::clock(total)
        ),
        _ => format!("`{}` · {}", format::clock(at), format::length(&cur.track)),
    };
    let description = format!(
        "{}\nRequested by {}\n\n{bar}",
        format::link(&cur.track, 80),
        escape(&cur.requester.name)
    );
    let mut e = e.title(title).description(description);
    if !view.upcoming.is_empty() {
        let mut next: Vec<String> = view
            .upcoming
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "{}. {} ({})",
                    i + 1,
                    format::link(&n.track, 50),
                    format::length(&n.track)
                )
            })
            .collect();
        if view.waiting > view.upcoming.len() {
            next.push(format!("… and {} more", view.waiting - view.upcoming.len()));
        }
        e = e.field("Up next", next.join("\n"), false);
    }
    e.footer(serenity::CreateEmbedFooter::new(format!(
        "Loop: {} · {} waiting",
        loop_label(view.loop_mode),
        format::tracks(view.waiting)
    )))
}

/// The panel's buttons: none once nothing plays.
pub fn buttons(view: &PanelView) -> Vec<serenity::CreateActionRow> {
    if view.current.is_none() || view.ended {
        return Vec::new();
    }
    let b = |button: Button, label: &str, style| {
        serenity::CreateButton::new(button.custom_id())
            .label(label)
            .style(style)
    };
    use serenity::ButtonStyle::{Danger, Primary, Secondary};
    let toggle = match view.paused {
        true => b(Button::Resume, "Resume", Primary),
        false => b(Button::Pause, "Pause", Primary),
    };
    vec![
        serenity::CreateActionRow::Buttons(vec![
            toggle,
            b(Button::Skip, "Skip", Secondary),
            b(Button::Back, "Back", Secondary),
            b(Button::Stop, "Stop", Danger),
        ]),
        serenity::CreateActionRow::Buttons(vec![
            b(
                Button::Loop,
                &format!("Loop: {}", loop_label(view.loop_mode)),
                Secondary,
            ),
            b(Button::Shuffle, "Shuffle", Secondary).disabled(view.waiting < 2),
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::player::{Entry, Requester};
    use std::sync::Arc;
    use std::time::Duration;

    fn entry(id: u64, name: &str) -> Entry {
        Entry {
            id,
            track: Arc::new(crate::player::test_track(name)),
            requester: Requester {
                id: 1,
                name: "ann_b".into(),
            },
        }
    }

    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn the_panel_shows_track_requester_bar_and_next() {
        let view = PanelView {
            channel: 1,
            current: Some(entry(1, "song")),
            position: Some(Duration::from_secs(30)),
            paused: false,
            upcoming: (2..7).map(|i| entry(i, &format!("n{i}"))).collect(),
            waiting: 7,
            loop_mode: LoopMode::Queue,
            ended: false,
        };
        let e = json(&embed(&view));
        for want in [
            "Now playing",
            "[song](https://example.com/song)",
            "ann\\\\_b",
            "`0:30`",
            "`1:00`",
            "🔘",
            "1. [n2]",
            "5. [n6]",
            "and 2 more",
            "Loop: queue · 7 tracks waiting",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        let rows = json(&buttons(&view));
        for id in ["panel:pause", "panel:skip", "panel:back", "panel:stop"] {
            assert!(rows.contains(id), "{id} in {rows}");
        }
        assert!(rows.contains("Loop: queue"));
        assert!(!rows.contains("panel:resume"));

        let paused = PanelView {
            paused: true,
            ..view.clone()
        };
        assert!(json(&embed(&paused)).contains("Paused"));
        assert!(json(&buttons(&paused)).contains("panel:resume"));
        let ended = PanelView {
            current: None,
            ended: true,
            ..view
        };
        assert!(buttons(&ended).is_empty(), "no buttons once it left");
        assert!(json(&embed(&ended)).contains("left the voice channel"));
    }

    #[test]
    fn buttons_round_trip_and_loop_cycles() {
        for b in Button::ALL {
            assert_eq!(Button::parse(&b.custom_id()), Some(b));
        }
        assert_eq!(Button::parse("panel:dance"), None);
        assert_eq!(Button::parse("queue:1:next"), None);
        assert_eq!(next_loop(LoopMode::Off), LoopMode::Track);
        assert_eq!(next_loop(LoopMode::Track), LoopMode::Queue);
        assert_eq!(next_loop(LoopMode::Queue), LoopMode::Off);
    }
}
