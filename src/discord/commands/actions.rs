//! What the playback controls do and who may use them, once for both ways in: the slash
//! commands (`control.rs`, `edit.rs`) and the now-playing panel's buttons
//! (`crate::discord::buttons`). Each action takes a caller already found listening in the
//! bot's channel (`checks.rs`) and answers what to say; saying it is the caller's part.

use super::checks::{sentence, Listening};
use super::dj::{refusal, Standing};
use crate::discord::format::{self, bold, escape};
use crate::player::queue::QueueError;
use crate::player::{LoopMode, PlayerError, Request, Skipped};

/// What an action has to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Said {
    /// Done; the line says what.
    Done(String),
    /// A skip vote was counted; said publicly, like `/skip`'s, since it names the voter.
    Voted(String),
    /// Refused or failed; private to the caller.
    Refused(String),
}

/// Who acts: their standing (`dj.rs`) and name.
pub(crate) struct Caller {
    pub id: u64,
    pub name: String,
    pub standing: Standing,
    pub dj_role: Option<u64>,
}

impl Caller {
    /// `None` if they may control playback, else the refusal for `action`.
    fn refused(&self, action: &str) -> Option<Said> {
        (!self.standing.may_control()).then(|| Said::Refused(refusal(self.dj_role, action)))
    }
}

fn failed(e: PlayerError) -> Said {
    Said::Refused(sentence(&e))
}

pub(crate) async fn pause(l: &Listening, c: &Caller) -> Said {
    let title = l.current_title().unwrap_or_default();
    if l.snapshot.paused {
        return Said::Refused(format!(
            "{title} is already paused. Use /resume to continue."
        ));
    }
    if let Some(no) = c.refused("pause the music") {
        return no;
    }
    match l.player.call(|reply| Request::Pause { reply }).await {
        Ok(t) => Said::Done(format!("Paused {}. Use /resume to continue.", bold(&t, 80))),
        Err(e) => failed(e),
    }
}

pub(crate) async fn resume(l: &Listening, c: &Caller) -> Said {
    if !l.snapshot.paused {
        let title = l.current_title().unwrap_or_default();
        return Said::Refused(format!("{title} is not paused."));
    }
    if let Some(no) = c.refused("resume the music") {
        return no;
    }
    match l.player.call(|reply| Request::Resume { reply }).await {
        Ok(t) => Said::Done(format!("Resumed {}.", bold(&t, 80))),
        Err(e) => failed(e),
    }
}

/// Skips `n` tracks, or counts a vote when the caller may not control playback; only
/// the votes of `listeners` (the people in the channel now) count.
pub(crate) async fn skip(l: &Listening, c: &Caller, n: usize, listeners: Vec<u64>) -> Said {
    let Some(current) = l.snapshot.current.as_ref() else {
        return failed(QueueError::NothingPlaying.into());
    };
    let title = bold(&current.track.title, 80);
    let ended = || Said::Refused(format!("{title} already ended; nothing was skipped."));
    if c.standing.may_control() {
        // The track the caller saw: if it ended in between, the player refuses rather
        // than skip the next one.
        let skip = |reply| Request::Skip {
            n,
            current: current.id,
            reply,
        };
        return match l.player.call(skip).await {
            Ok(s) => Said::Done(skipped_line(&s)),
            Err(PlayerError::Queue(QueueError::Changed)) => ended(),
            Err(e) => failed(e),
        };
    }
    let here = listeners.len();
    let vote = |reply| Request::VoteSkip {
        current: current.id,
        voter: c.id,
        listeners,
        reply,
    };
    let voted = match l.player.call(vote).await {
        Ok(v) => v,
        Err(PlayerError::Queue(QueueError::Changed)) => return ended(),
        Err(e) => return failed(e),
    };
    let tally = voted.tally;
    if let Some(s) = voted.skipped {
        return Said::Done(format!(
            "Vote passed ({}/{here}): {}",
            tally.votes,
            skipped_line(&s)
        ));
    }
    if !tally.new {
        return Said::Refused(format!(
            "You already voted to skip {title} ({}/{} votes).",
            tally.votes, tally.needed
        ));
    }
    Said::Voted(format!(
        "{} voted to skip {title}: {}/{} votes, {} more needed.",
        escape(&c.name),
        tally.votes,
        tally.needed,
        tally.needed - tally.votes
    ))
}

/// "Skipped X; now playing Y."
fn skipped_line(s: &Skipped) -> String {
    let what = match s.skipped {
        1 => format!("Skipped {}", bold(&s.skipped_title, 80)),
        n => format!(
            "Skipped {n} tracks ({} and {} more)",
            bold(&s.skipped_title, 60),
            n - 1
        ),
    };
    let next = match &s.next {
        Some(t) => format!("; now playing {}", bold(t, 80)),
        None => "; the queue is empty".into(),
    };
    format!("{what}{next}.")
}

pub(crate) async fn back(l: &Listening, c: &Caller) -> Said {
    if let Some(no) = c.refused("go back to the previous track") {
        return no;
    }
    match l.player.call(|reply| Request::Back { reply }).await {
        Ok(t) => Said::Done(format!("Back to {}.", bold(&t, 80))),
        Err(e) => failed(e),
    }
}

pub(crate) async fn stop(l: &Listening, c: &Caller) -> Said {
    if let Some(no) = c.refused("stop the music") {
        return no;
    }
    let title = l.current_title();
    match l.player.call(|reply| Request::Stop { reply }).await {
        Ok(n) => Said::Done(match title {
            Some(t) => format!(
                "Stopped {t} and cleared the queue ({} removed).",
                format::tracks(n)
            ),
            None => format!("Stopped and cleared {}.", format::tracks(n)),
        }),
        Err(e) => failed(e),
    }
}

pub(crate) async fn set_loop(l: &Listening, c: &Caller, mode: LoopMode) -> Said {
    if let Some(no) = c.refused("change the loop mode") {
        return no;
    }
    match l
        .player
        .call(|reply| Request::SetLoop { mode, reply })
        .await
    {
        Ok(LoopMode::Off) => Said::Done("Loop is off: the queue plays once.".into()),
        Ok(LoopMode::Track) => Said::Done(match l.current_title() {
            Some(t) => format!("Looping {t}: it repeats until /skip or /loop off."),
            None => "Looping each track: it repeats until /skip or /loop off.".into(),
        }),
        Ok(LoopMode::Queue) => {
            let n = l.snapshot.upcoming.len() + usize::from(l.snapshot.current.is_some());
            Said::Done(format!(
                "Looping the queue ({}): finished tracks go back to the end.",
                format::tracks(n)
            ))
        }
        Err(e) => failed(e),
    }
}

const NOTHING_TO_SHUFFLE: &str = "There is nothing to shuffle: fewer than two tracks are waiting.";

pub(crate) async fn shuffle(l: &Listening, c: &Caller) -> Said {
    if l.snapshot.upcoming.len() < 2 {
        return Said::Refused(NOTHING_TO_SHUFFLE.into());
    }
    if let Some(no) = c.refused("shuffle the queue") {
        return no;
    }
    match l.player.call(|reply| Request::Shuffle { reply }).await {
        Ok(n) => {
            let next = l
                .player
                .ask(|reply| Request::Snapshot { reply })
                .await
                .ok()
                .and_then(|s| s.upcoming.first().map(|e| bold(&e.track.title, 80)))
                .map(|t| format!("; up next: {t}"))
                .unwrap_or_default();
            Said::Done(format!("Shuffled {}{next}.", format::tracks(n)))
        }
        Err(PlayerError::Queue(QueueError::Empty)) => Said::Refused(NOTHING_TO_SHUFFLE.into()),
        Err(e) => Said::Refused(sentence(&e)),
    }
}

/// The caller of a slash command.
pub(super) fn caller(ctx: crate::discord::bot::Context<'_>, l: &Listening) -> Caller {
    Caller {
        id: ctx.author().id.get(),
        name: ctx.author().display_name().to_string(),
        standing: super::dj::standing(ctx, Some(&l.snapshot)),
        dj_role: ctx.data().settings.get(l.guild).dj_role,
    }
}

/// Says it as a command's reply: refusals privately, the rest publicly.
pub(super) async fn say(
    ctx: crate::discord::bot::Context<'_>,
    said: Said,
) -> Result<(), crate::discord::bot::Error> {
    match said {
        Said::Done(line) | Said::Voted(line) => crate::discord::reply::ok(ctx, line).await,
        Said::Refused(line) => crate::discord::reply::error(ctx, line).await,
    }
}
