//! The now-playing panel: one message per guild that shows what plays, how far along it
//! is, what comes next, and buttons to control it. This file is its policy, plain Rust:
//! when the player publishes a new look ([`PanelClock`]), and how one message is kept up
//! to date with it ([`Panel`]): posted once, then edited in place, re-posted once when
//! someone deleted it, never more often than [`MIN_GAP`]. How it looks and the Discord
//! calls are the edge's (`crate::discord::panel`), through [`Notifier`].
//!
//! The player never waits on Discord: it hands each look to the panel's own task, which
//! keeps only the newest one when Discord is slower than the music.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::notices::NOTICE_WAIT;
#[cfg(test)]
use super::queue::{Entry, LoopMode};
use super::voice::Notifier;
pub use super::voice::{PanelError, PanelView};

/// Upcoming entries the panel lists.
pub const PANEL_NEXT: usize = 5;

/// Least time between two requests about the panel. Discord allows about five message
/// requests per five seconds in a channel, and the notices share that budget: at one
/// every two seconds the panel never spends more than half of it, however fast people
/// press its buttons.
pub const MIN_GAP: Duration = Duration::from_secs(2);

/// When the player publishes a new look: at once when what it shows changed, and every
/// `every` while a track plays so the bar moves.
#[derive(Debug)]
pub struct PanelClock {
    every: Duration,
    shape: Option<u64>,
    tick_at: Option<Instant>,
}

impl PanelClock {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            shape: None,
            tick_at: None,
        }
    }

    /// A look with `shape` is what the player has now: true if it is worth publishing.
    pub fn changed(&mut self, shape: u64, moving: bool, now: Instant) -> bool {
        let new = self.shape != Some(shape);
        self.shape = Some(shape);
        self.tick_at = match (moving, new, self.tick_at) {
            (false, _, _) => None,
            (true, true, _) | (true, false, None) => Some(now + self.every),
            (true, false, at) => at,
        };
        new
    }

    /// When the bar is due to move next.
    pub fn due(&self) -> Option<Instant> {
        self.tick_at
    }

    /// True if the bar is due now; the next tick is counted from here.
    pub fn tick(&mut self, now: Instant) -> bool {
        match self.tick_at {
            Some(at) if at <= now => {
                self.tick_at = Some(now + self.every);
                true
            }
            _ => false,
        }
    }

    /// Forgets what was published (the panel was turned off): the next look is new.
    pub fn reset(&mut self) {
        self.shape = None;
        self.tick_at = None;
    }
}

/// What to do with the next look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Post,
    Edit(u64),
    Nothing,
}

/// The one message a panel is: where it is, and whether people want it gone.
#[derive(Debug, Default)]
struct Message {
    /// `(channel, message)` of the panel, once posted.
    at: Option<(u64, u64)>,
    /// The entry whose panel was deleted twice: it is not posted again until the next
    /// track (a third post would be fighting whoever deletes it).
    unwanted: Option<u64>,
    /// The entry whose panel was deleted once.
    deleted: Option<u64>,
}

impl Message {
    fn step(&self, view: &PanelView) -> Step {
        let entry = view.current.as_ref().map(|e| e.id);
        match self.at {
            Some((channel, id)) if channel == view.channel => Step::Edit(id),
            // Nothing to show, or shown where the music is no more: nothing to post.
            _ if entry.is_none() || view.ended => Step::Nothing,
            _ if entry == self.unwanted => Step::Nothing,
            _ => Step::Post,
        }
    }

    fn gone(&mut self, view: &PanelView) {
        self.at = None;
        let entry = view.current.as_ref().map(|e| e.id);
        if entry.is_some() && entry == self.deleted {
            self.unwanted = entry;
        }
        self.deleted = entry;
    }
}

/// The panel's task: shows each look the player publishes, newest first.
pub struct Panel {
    tx: mpsc::UnboundedSender<PanelView>,
}

impl Panel {
    /// Starts `guild`'s panel task on `tasks`; it ends once the player drops this and
    /// the last look is shown.
    pub fn start(guild: u64, notifier: Arc<dyn Notifier>, tasks: &TaskTracker) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.spawn(run(guild, notifier, rx));
        Self { tx }
    }

    /// Hands the task a new look; never waits.
    pub fn show(&self, view: PanelView) {
        let _ = self.tx.send(view);
    }
}

async fn run(guild: u64, notifier: Arc<dyn Notifier>, mut rx: mpsc::UnboundedReceiver<PanelView>) {
    let mut message = Message::default();
    let mut last: Option<Instant> = None;
    while let Some(mut view) = rx.recv().await {
        // Keep the distance from the last request; the last look (the bot left) goes at
        // once, so that a leave or a shutdown does not wait on the panel.
        if let (Some(at), false) = (last, view.ended) {
            tokio::time::sleep_until(at + MIN_GAP).await;
        }
        // Only the newest look matters.
        while let Ok(newer) = rx.try_recv() {
            view = newer;
        }
        let step = message.step(&view);
        if step == Step::Nothing {
            continue;
        }
        last = Some(Instant::now());
        let shown = tokio::time::timeout(NOTICE_WAIT, show(&*notifier, &mut message, step, &view));
        if shown.await.is_err() {
            tracing::warn!(guild, "gave up updating the panel (too slow)");
        }
    }
}

async fn show(notifier: &dyn Notifier, message: &mut Message, step: Step, view: &PanelView) {
    if let Step::Edit(id) = step {
        match notifier.edit_panel(view.channel, id, view).await {
            Ok(()) => return,
            Err(PanelError::Gone) => {
                tracing::info!(channel = view.channel, "the panel was deleted");
                message.gone(view);
                if message.step(view) != Step::Post {
                    return;
                }
            }
            Err(PanelError::Failed(e)) => {
                tracing::warn!(
                    channel = view.channel,
                    error = e,
                    "could not edit the panel"
                );
                return;
            }
        }
    }
    match notifier.post_panel(view.channel, view).await {
        Ok(id) => message.at = Some((view.channel, id)),
        Err(e) => tracing::warn!(channel = view.channel, error = ?e, "could not post the panel"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::player::queue::Requester;
    use crate::player::voice::Notice;
    use std::sync::Mutex;

    fn entry(id: u64) -> Entry {
        Entry {
            id,
            track: Arc::new(crate::player::test_track(&format!("t{id}"))),
            requester: Requester {
                id: 1,
                name: "ann".into(),
            },
        }
    }

    fn view(current: Option<u64>) -> PanelView {
        PanelView {
            channel: 7,
            current: current.map(entry),
            position: Some(Duration::ZERO),
            paused: false,
            upcoming: Vec::new(),
            waiting: 0,
            loop_mode: LoopMode::Off,
            ended: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bar_moves_every_period_and_changes_show_at_once() {
        let every = Duration::from_secs(15);
        let mut c = PanelClock::new(every);
        let t0 = Instant::now();
        let playing = view(Some(1));
        assert!(c.changed(playing.shape(1), true, t0), "a new track shows");
        assert!(
            !c.changed(playing.shape(1), true, t0),
            "the same look waits"
        );
        assert_eq!(c.due(), Some(t0 + every));
        assert!(!c.tick(t0 + Duration::from_secs(14)));
        tokio::time::advance(every).await;
        assert!(c.tick(Instant::now()), "the bar moves after the period");
        assert_eq!(c.due(), Some(Instant::now() + every));
        let mut paused = playing.clone();
        paused.paused = true;
        assert!(c.changed(paused.shape(1), false, Instant::now()));
        assert_eq!(c.due(), None, "a paused bar does not move");
        assert!(
            c.changed(playing.shape(2), true, Instant::now()),
            "a restart"
        );
    }

    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<(Instant, String)>>,
        /// Messages deleted "by someone": an edit of them is answered Gone.
        deleted: Mutex<Vec<u64>>,
        next: Mutex<u64>,
    }

    #[async_trait::async_trait]
    impl Notifier for Recorder {
        async fn notify(&self, _: u64, _: Notice) {}
        async fn post_panel(&self, _: u64, v: &PanelView) -> Result<u64, PanelError> {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            let what = format!("post {} {:?}", *next, v.current.as_ref().map(|e| e.id));
            self.log.lock().unwrap().push((Instant::now(), what));
            Ok(*next)
        }
        async fn edit_panel(&self, _: u64, id: u64, v: &PanelView) -> Result<(), PanelError> {
            if self.deleted.lock().unwrap().contains(&id) {
                return Err(PanelError::Gone);
            }
            let what = format!(
                "edit {id} {:?} ended={}",
                v.current.as_ref().map(|e| e.id),
                v.ended
            );
            self.log.lock().unwrap().push((Instant::now(), what));
            Ok(())
        }
    }

    fn log(r: &Recorder) -> Vec<String> {
        r.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_message_edited_in_place_at_a_bounded_rate_reposted_once_when_deleted() {
        let rec = Arc::new(Recorder::default());
        let tasks = TaskTracker::new();
        let panel = Panel::start(1, rec.clone(), &tasks);
        panel.show(view(None)); // nothing to show yet: no empty panel is posted
        panel.show(view(Some(1)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // A burst of looks while the gap runs: only the newest is shown.
        for id in [2, 3, 4] {
            panel.show(view(Some(id)));
        }
        tokio::time::sleep(MIN_GAP * 2).await;
        assert_eq!(log(&rec), ["post 1 Some(1)", "edit 1 Some(4) ended=false"]);
        let times: Vec<Instant> = rec.log.lock().unwrap().iter().map(|(t, _)| *t).collect();
        assert!(times[1] - times[0] >= MIN_GAP, "edits keep their distance");

        // Someone deletes it: the next look posts it again, once.
        rec.deleted.lock().unwrap().push(1);
        panel.show(view(Some(4)));
        tokio::time::sleep(MIN_GAP).await;
        assert_eq!(log(&rec).last().unwrap(), "post 2 Some(4)");
        // Deleted again during the same track: left alone until the next track.
        rec.deleted.lock().unwrap().push(2);
        panel.show(view(Some(4)));
        tokio::time::sleep(MIN_GAP).await;
        panel.show(view(Some(4)));
        tokio::time::sleep(MIN_GAP).await;
        assert_eq!(log(&rec).len(), 3, "{:?}", log(&rec));
        panel.show(view(Some(5)));
        tokio::time::sleep(MIN_GAP).await;
        assert_eq!(log(&rec).last().unwrap(), "post 3 Some(5)");

        // The player goes: its last look strips the buttons and the task ends.
        let mut last = view(None);
        last.ended = true;
        panel.show(last);
        drop(panel);
        tasks.close();
        tokio::time::timeout(Duration::from_secs(10), tasks.wait())
            .await
            .expect("the panel task ends with its player");
        assert_eq!(log(&rec).last().unwrap(), "edit 3 None ended=true");
    }
}
