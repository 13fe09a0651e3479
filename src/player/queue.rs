//! The queue model: what is playing, what comes next, what already played. Pure data and
//! rules (loop modes, positions, paging), so every rule is unit-tested without a voice call.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::sources::Track;

/// Who asked for a track; shown in `/queue` and `/nowplaying`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requester {
    pub id: u64,
    pub name: String,
}

/// One queued track. `id` is unique within its queue and never reused, so a late event
/// about an entry can be told apart from a later entry of the same song.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: u64,
    pub track: Arc<Track>,
    pub requester: Requester,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoopMode {
    #[default]
    Off,
    /// Repeat the current track until skipped.
    Track,
    /// Finished tracks go to the back of the queue.
    Queue,
}

impl LoopMode {
    pub fn label(self) -> &'static str {
        match self {
            LoopMode::Off => "off",
            LoopMode::Track => "track",
            LoopMode::Queue => "queue",
        }
    }
}

/// Why the current track is being left behind; decides what loop modes do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// It played to the end: `loop track` plays it again.
    Finished,
    /// A user skipped it: loop track moves on anyway.
    Skipped,
    /// It could not be played: never repeated, never re-queued.
    Failed,
}

/// How many finished tracks `/back` can reach.
const HISTORY: usize = 50;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("the queue is full ({0} tracks)")]
    Full(usize),
    #[error("there is no track at position {0}")]
    NoSuchPosition(usize),
    #[error("nothing is playing")]
    NothingPlaying,
    #[error("the queue is empty")]
    Empty,
    #[error("there is no previous track")]
    NoHistory,
    /// The command was decided on a view of the queue that no longer holds (a track ended
    /// or someone else edited it in between); acting anyway could hit the wrong track.
    #[error("the queue changed meanwhile; check /queue and try again")]
    Changed,
}

#[derive(Debug, Default)]
pub struct Queue {
    current: Option<Entry>,
    upcoming: VecDeque<Entry>,
    history: VecDeque<Entry>,
    loop_mode: LoopMode,
    next_id: u64,
}

impl Queue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn current(&self) -> Option<&Entry> {
        self.current.as_ref()
    }

    pub fn upcoming(&self) -> &VecDeque<Entry> {
        &self.upcoming
    }

    pub fn history(&self) -> &VecDeque<Entry> {
        &self.history
    }

    pub fn loop_mode(&self) -> LoopMode {
        self.loop_mode
    }

    pub fn set_loop_mode(&mut self, mode: LoopMode) {
        self.loop_mode = mode;
    }

    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.upcoming.is_empty()
    }

    /// Tracks waiting plus the one playing.
    pub fn len(&self) -> usize {
        self.upcoming.len() + usize::from(self.current.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry(&mut self, track: Arc<Track>, requester: Requester) -> Entry {
        self.next_id += 1;
        Entry {
            id: self.next_id,
            track,
            requester,
        }
    }

    /// Appends (or, with `front`, inserts as the next track). Returns the 1-based position
    /// in the upcoming list, where 0 would mean "playing now".
    pub fn push(
        &mut self,
        track: Arc<Track>,
        requester: Requester,
        front: bool,
        max_len: usize,
    ) -> Result<usize, QueueError> {
        if self.upcoming.len() >= max_len {
            return Err(QueueError::Full(max_len));
        }
        let entry = self.entry(track, requester);
        if front {
            self.upcoming.push_front(entry);
            Ok(1)
        } else {
            self.upcoming.push_back(entry);
            Ok(self.upcoming.len())
        }
    }

    /// Moves on from the current track and returns the one that should play now, if any.
    pub fn advance(&mut self, why: Advance) -> Option<&Entry> {
        if let Some(done) = self.current.take() {
            match (why, self.loop_mode) {
                (Advance::Finished, LoopMode::Track) => {
                    self.current = Some(done);
                    return self.current.as_ref();
                }
                (Advance::Finished | Advance::Skipped, LoopMode::Queue) => {
                    self.remember(done.clone());
                    self.upcoming.push_back(done);
                }
                _ => self.remember(done),
            }
        }
        self.current = self.upcoming.pop_front();
        self.current.as_ref()
    }

    fn remember(&mut self, entry: Entry) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(entry);
    }

    /// Skips the current track and `n - 1` upcoming ones; returns how many were skipped.
    /// The next `advance` starts whatever is then first.
    pub fn skip(&mut self, n: usize) -> Result<usize, QueueError> {
        let current = self.current.take().ok_or(QueueError::NothingPlaying)?;
        let extra = n.saturating_sub(1).min(self.upcoming.len());
        let skipped = std::iter::once(current)
            .chain(self.upcoming.drain(..extra))
            .collect::<Vec<_>>();
        for e in skipped {
            if self.loop_mode == LoopMode::Queue {
                self.upcoming.push_back(e.clone());
            }
            self.remember(e);
        }
        Ok(extra + 1)
    }

    /// Puts the previous track back in front and the current one right after it, so the
    /// caller's next `advance(Skipped)` lands on the previous track.
    pub fn back(&mut self) -> Result<(), QueueError> {
        let prev = self.history.pop_back().ok_or(QueueError::NoHistory)?;
        if let Some(cur) = self.current.take() {
            self.upcoming.push_front(cur);
        }
        self.upcoming.push_front(prev);
        Ok(())
    }

    /// Fails with [`QueueError::Changed`] unless the current track is still `id`.
    pub fn expect_current(&self, id: u64) -> Result<(), QueueError> {
        match &self.current {
            None => Err(QueueError::NothingPlaying),
            Some(e) if e.id == id => Ok(()),
            Some(_) => Err(QueueError::Changed),
        }
    }

    /// Fails with [`QueueError::Changed`] unless upcoming positions `from..` (1-based) still
    /// hold the entries `ids`, in that order.
    pub fn expect_upcoming(&self, from: usize, ids: &[u64]) -> Result<(), QueueError> {
        let held = self
            .upcoming
            .iter()
            .skip(from.saturating_sub(1))
            .take(ids.len())
            .map(|e| e.id);
        match from >= 1 && held.eq(ids.iter().copied()) {
            true => Ok(()),
            false => Err(QueueError::Changed),
        }
    }

    /// Removes upcoming tracks `from..=to` (1-based); returns them.
    pub fn remove_range(&mut self, from: usize, to: usize) -> Result<Vec<Entry>, QueueError> {
        let len = self.upcoming.len();
        if from == 0 || from > len {
            return Err(QueueError::NoSuchPosition(from));
        }
        if to < from || to > len {
            return Err(QueueError::NoSuchPosition(to));
        }
        Ok(self.upcoming.drain(from - 1..to).collect())
    }

    /// Moves the upcoming track at `from` to position `to` (both 1-based).
    pub fn move_entry(&mut self, from: usize, to: usize) -> Result<&Entry, QueueError> {
        let len = self.upcoming.len();
        for p in [from, to] {
            if p == 0 || p > len {
                return Err(QueueError::NoSuchPosition(p));
            }
        }
        let e = self.upcoming.remove(from - 1).expect("checked");
        self.upcoming.insert(to - 1, e);
        Ok(&self.upcoming[to - 1])
    }

    pub fn shuffle(&mut self, rng: &mut impl rand::Rng) -> Result<(), QueueError> {
        if self.upcoming.len() < 2 {
            return Err(QueueError::Empty);
        }
        use rand::seq::SliceRandom;
        self.upcoming.make_contiguous().shuffle(rng);
        Ok(())
    }

    /// Drops everything waiting; the current track keeps playing.
    pub fn clear_upcoming(&mut self) -> usize {
        let n = self.upcoming.len();
        self.upcoming.clear();
        n
    }

    /// Drops everything, current track included.
    pub fn clear_all(&mut self) -> usize {
        let n = self.len();
        self.upcoming.clear();
        if let Some(cur) = self.current.take() {
            self.remember(cur);
        }
        n
    }

    /// Sum of known durations of the upcoming tracks, and how many have none (live, unknown).
    pub fn upcoming_duration(&self) -> (Duration, usize) {
        durations(self.upcoming.iter())
    }

    /// One page of the upcoming list (pages are 1-based; out-of-range pages clamp).
    pub fn page(&self, page: usize, per_page: usize) -> Page {
        page_of(self.upcoming.len(), page, per_page)
    }
}

/// Total of known durations and a count of unknown ones.
pub fn durations<'a>(entries: impl Iterator<Item = &'a Entry>) -> (Duration, usize) {
    entries.fold((Duration::ZERO, 0), |(sum, unknown), e| {
        match e.track.duration {
            Some(d) => (sum + d, unknown),
            None => (sum, unknown + 1),
        }
    })
}

/// Which slice of a list one page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number after clamping.
    pub number: usize,
    pub pages: usize,
    /// Index range into the list.
    pub start: usize,
    pub end: usize,
}

pub fn page_of(len: usize, page: usize, per_page: usize) -> Page {
    let per_page = per_page.max(1);
    let pages = len.div_ceil(per_page).max(1);
    let number = page.clamp(1, pages);
    let start = ((number - 1) * per_page).min(len);
    let end = (start + per_page).min(len);
    Page {
        number,
        pages,
        start,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn track(name: &str, secs: Option<u64>) -> Arc<Track> {
        Arc::new(Track {
            duration: secs.map(Duration::from_secs),
            ..crate::player::test_track(name)
        })
    }

    fn who() -> Requester {
        Requester {
            id: 1,
            name: "ann".into(),
        }
    }

    fn queue_of(names: &[&str]) -> Queue {
        let mut q = Queue::new();
        for n in names {
            q.push(track(n, Some(60)), who(), false, 100).unwrap();
        }
        q
    }

    fn titles(q: &Queue) -> Vec<String> {
        q.upcoming().iter().map(|e| e.track.title.clone()).collect()
    }

    fn playing(q: &Queue) -> Option<String> {
        q.current().map(|e| e.track.title.clone())
    }

    #[test]
    fn plays_in_order_then_stops() {
        let mut q = queue_of(&["a", "b"]);
        assert_eq!(q.advance(Advance::Finished).unwrap().track.title, "a");
        assert_eq!(q.advance(Advance::Finished).unwrap().track.title, "b");
        assert!(q.advance(Advance::Finished).is_none());
        assert!(q.is_idle());
        assert_eq!(q.history().len(), 2);
    }

    #[test]
    fn push_reports_positions_and_respects_the_limit() {
        let mut q = Queue::new();
        assert_eq!(q.push(track("a", None), who(), false, 2), Ok(1));
        assert_eq!(q.push(track("b", None), who(), false, 2), Ok(2));
        assert_eq!(
            q.push(track("c", None), who(), false, 2),
            Err(QueueError::Full(2))
        );
        q.advance(Advance::Finished);
        assert_eq!(q.push(track("n", None), who(), true, 2), Ok(1));
        assert_eq!(titles(&q), ["n", "b"]);
        let ids: Vec<u64> = q.upcoming().iter().map(|e| e.id).collect();
        assert!(ids.iter().all(|&i| i != q.current().unwrap().id));
    }

    #[test]
    fn loop_track_repeats_until_skipped() {
        let mut q = queue_of(&["a", "b"]);
        q.set_loop_mode(LoopMode::Track);
        q.advance(Advance::Finished);
        assert_eq!(q.advance(Advance::Finished).unwrap().track.title, "a");
        assert_eq!(q.advance(Advance::Skipped).unwrap().track.title, "b");
    }

    #[test]
    fn loop_queue_cycles_but_drops_failures() {
        let mut q = queue_of(&["a", "b", "c"]);
        q.set_loop_mode(LoopMode::Queue);
        q.advance(Advance::Finished);
        q.advance(Advance::Finished); // a to the back
        assert_eq!(titles(&q), ["c", "a"]);
        q.advance(Advance::Failed); // b failed: gone
        assert_eq!(playing(&q).unwrap(), "c");
        assert_eq!(titles(&q), ["a"]);
    }

    #[test]
    fn skip_many_and_back() {
        let mut q = queue_of(&["a", "b", "c", "d"]);
        assert_eq!(q.skip(1), Err(QueueError::NothingPlaying));
        q.advance(Advance::Finished);
        assert_eq!(q.skip(3), Ok(3)); // a, b, c
        assert_eq!(q.advance(Advance::Skipped).unwrap().track.title, "d");
        q.back().unwrap();
        assert_eq!(titles(&q), ["c", "d"]);
        assert_eq!(q.advance(Advance::Skipped).unwrap().track.title, "c");
        assert_eq!(q.skip(99), Ok(2));
        assert!(q.advance(Advance::Skipped).is_none());
        q.back().unwrap();
        assert_eq!(q.advance(Advance::Skipped).unwrap().track.title, "d");
    }

    #[test]
    fn remove_move_and_clear() {
        let mut q = queue_of(&["a", "b", "c", "d", "e"]);
        assert_eq!(q.remove_range(0, 0), Err(QueueError::NoSuchPosition(0)));
        assert_eq!(q.remove_range(2, 9), Err(QueueError::NoSuchPosition(9)));
        assert_eq!(q.remove_range(3, 2), Err(QueueError::NoSuchPosition(2)));
        let gone = q.remove_range(2, 3).unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(titles(&q), ["a", "d", "e"]);
        assert_eq!(q.move_entry(3, 1).unwrap().track.title, "e");
        assert_eq!(titles(&q), ["e", "a", "d"]);
        assert_eq!(q.move_entry(4, 1), Err(QueueError::NoSuchPosition(4)));
        q.advance(Advance::Finished);
        assert_eq!(q.clear_upcoming(), 2);
        assert_eq!(playing(&q).unwrap(), "e");
        assert_eq!(q.clear_all(), 1);
        assert!(q.is_idle());
    }

    #[test]
    fn edits_decided_on_a_stale_view_are_refused() {
        let mut q = queue_of(&["a", "b", "c", "d"]);
        assert_eq!(q.expect_current(1), Err(QueueError::NothingPlaying));
        q.advance(Advance::Finished);
        let a = q.current().unwrap().id;
        let ids: Vec<u64> = q.upcoming().iter().map(|e| e.id).collect(); // b c d
        assert_eq!(q.expect_current(a), Ok(()));
        assert_eq!(q.expect_upcoming(2, &ids[1..3]), Ok(()));
        assert_eq!(q.expect_upcoming(0, &ids[..1]), Err(QueueError::Changed));
        assert_eq!(q.expect_upcoming(3, &ids[2..]), Ok(()));
        assert_eq!(q.expect_upcoming(3, &ids[1..]), Err(QueueError::Changed));
        // "a" ends on its own: what was position 2 is now position 1.
        q.advance(Advance::Finished);
        assert_eq!(q.expect_current(a), Err(QueueError::Changed));
        assert_eq!(q.expect_upcoming(2, &ids[1..2]), Err(QueueError::Changed));
        assert_eq!(q.expect_upcoming(1, &ids[1..2]), Ok(()));
    }

    #[test]
    fn shuffle_keeps_every_track() {
        let mut q = queue_of(&["a", "b", "c", "d", "e", "f"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        q.shuffle(&mut rng).unwrap();
        let mut t = titles(&q);
        assert_ne!(t, ["a", "b", "c", "d", "e", "f"]);
        t.sort();
        assert_eq!(t, ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(queue_of(&["a"]).shuffle(&mut rng), Err(QueueError::Empty));
    }

    #[test]
    fn durations_count_unknowns() {
        let mut q = queue_of(&["a", "b"]);
        q.push(track("live", None), who(), false, 10).unwrap();
        assert_eq!(q.upcoming_duration(), (Duration::from_secs(120), 1));
    }

    #[test]
    fn pagination_clamps() {
        assert_eq!(
            page_of(0, 1, 10),
            Page {
                number: 1,
                pages: 1,
                start: 0,
                end: 0
            }
        );
        assert_eq!(
            page_of(25, 3, 10),
            Page {
                number: 3,
                pages: 3,
                start: 20,
                end: 25
            }
        );
        assert_eq!(page_of(25, 9, 10).number, 3);
        assert_eq!(page_of(25, 0, 10).number, 1);
        assert_eq!(page_of(10, 2, 10).number, 1);
        assert_eq!(
            page_of(11, 2, 10),
            Page {
                number: 2,
                pages: 2,
                start: 10,
                end: 11
            }
        );
    }
}
