//! Autoplay (`/autoplay on`): when the queue runs out, a related track plays next.
//!
//! The player asks for the pick as soon as the last queued track starts (not when it
//! ends), through [`Related`], in a task of its own that reports back through its inbox;
//! the pick comes back resolved (metadata and stream URL, as a `/play` resolves), is held
//! here, and goes into the queue the moment the last track ends, so it is opened exactly
//! as a queued track would be and starts as quickly. A track the user queues meanwhile goes
//! first: the pick is dropped and asked again for whatever is then the last track.
//!
//! Where picks come from is [`Related`]'s business (the mix of a YouTube track, else the
//! server's history; `crate::cache::related`); the rules every pick follows are here, pure:
//! never a track played in the last hour ([`RECENT`]), never the artist of the last two
//! picks, and none while nobody listens.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::DropGuard;

use crate::player::queue::Requester;
use crate::sources::Track;

/// A track played within this long is never picked again.
pub const RECENT: Duration = Duration::from_secs(3600);

/// How many of the last picks' artists the next pick must differ from.
pub const ARTIST_MEMORY: usize = 2;

/// Where a pick came from; said in the channel with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The mix of the track titled `seed`.
    Mix { seed: String },
    /// The tracks the people in the channel played most.
    History,
}

/// A related track, resolved and ready to queue.
#[derive(Debug, Clone)]
pub struct Pick {
    pub track: Arc<Track>,
    pub origin: Origin,
}

/// What a pick is asked for.
#[derive(Debug, Clone)]
pub struct Ask {
    pub guild: u64,
    /// The last queued track: its mix is tried first.
    pub seed: Arc<Track>,
    /// The people in the voice channel, when known.
    pub listeners: Option<Vec<u64>>,
    /// Page URLs and cache keys of what played in the last hour, and of what is queued.
    pub recent: Vec<String>,
    /// The artists of the last picks (see [`artist`]).
    pub avoid_artists: Vec<String>,
    /// The server's longest track, when it has a limit.
    pub max_duration: Option<Duration>,
}

impl Ask {
    /// Whether `track` breaks a rule: played lately, by an artist just picked, or longer
    /// than the server allows (live, or of unknown length once resolved, under a limit,
    /// as `/play` judges it).
    pub fn refuses(&self, track: &Track) -> bool {
        let played = self
            .recent
            .iter()
            .any(|r| *r == track.page_url || *r == track.cache_key());
        let too_long = self.max_duration.is_some_and(|max| match track.duration {
            _ if track.is_live => true,
            Some(d) => d > max,
            None => track.is_resolved(),
        });
        played || too_long || artist(track).is_some_and(|a| self.avoid_artists.contains(&a))
    }
}

/// Finds a related track and resolves it. Runs off the player's loop; may take seconds.
#[async_trait]
pub trait Related: Send + Sync {
    /// A pick for `ask`, or why there is none (logged, never shown).
    async fn pick(&self, ask: Ask) -> Result<Pick, String>;
}

/// Who a pick is queued for: nobody in the channel (so no member may skip it as "their"
/// track), named so `/queue` says where it came from.
pub fn requester() -> Requester {
    Requester {
        id: 0,
        name: "Autoplay".into(),
    }
}

/// The artist of a track, as the picks compare it: its uploader, case and spacing aside.
pub fn artist(track: &Track) -> Option<String> {
    let a = track.uploader.as_deref()?.trim().to_lowercase();
    (!a.is_empty()).then_some(a)
}

/// The player's autoplay state: what played lately, the pick asked or held, and the
/// artists of the last picks.
#[derive(Default)]
pub(super) struct Autoplay {
    /// Page URL and cache key of each track that started, with when; none older than
    /// [`RECENT`].
    played: VecDeque<(Instant, String, String)>,
    /// The queue entry the pick under way or held is for (the last queued track).
    pub(super) for_entry: Option<u64>,
    /// Stops the lookup under way when dropped.
    pub(super) lookup: Option<DropGuard>,
    pub(super) held: Option<Pick>,
    artists: VecDeque<String>,
}

impl Autoplay {
    /// Remembers that `track` started playing at `now`.
    pub(super) fn played(&mut self, track: &Track, now: Instant) {
        self.forget_old(now);
        self.played
            .push_back((now, track.page_url.clone(), track.cache_key()));
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .played
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= RECENT)
        {
            self.played.pop_front();
        }
    }

    /// What the next pick must not be: played in the last hour, or `queued`.
    pub(super) fn recent<'a>(
        &mut self,
        now: Instant,
        queued: impl IntoIterator<Item = &'a Track>,
    ) -> Vec<String> {
        self.forget_old(now);
        let mut out: Vec<String> = self
            .played
            .iter()
            .flat_map(|(_, url, key)| [url.clone(), key.clone()])
            .collect();
        for t in queued {
            out.push(t.page_url.clone());
            out.push(t.cache_key());
        }
        out.sort();
        out.dedup();
        out
    }

    pub(super) fn avoid_artists(&self) -> Vec<String> {
        self.artists.iter().cloned().collect()
    }

    /// Drops the pick asked or held (the queue changed, autoplay went off, nobody listens).
    pub(super) fn reset(&mut self) {
        self.for_entry = None;
        self.lookup = None;
        self.held = None;
    }

    /// Takes the held pick to queue it, remembering its artist.
    pub(super) fn take(&mut self) -> Option<Pick> {
        let pick = self.held.take()?;
        self.for_entry = None;
        if let Some(a) = artist(&pick.track) {
            if self.artists.len() == ARTIST_MEMORY {
                self.artists.pop_front();
            }
            self.artists.push_back(a);
        }
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(name: &str, uploader: Option<&str>) -> Track {
        let mut t = crate::player::test_track(name);
        t.uploader = uploader.map(str::to_owned);
        t
    }

    fn ask(recent: Vec<String>, avoid: Vec<String>) -> Ask {
        Ask {
            guild: 1,
            seed: Arc::new(track("seed", None)),
            listeners: None,
            recent,
            avoid_artists: avoid,
            max_duration: None,
        }
    }

    #[test]
    fn a_track_played_lately_or_queued_is_refused() {
        let now = Instant::now();
        let mut a = Autoplay::default();
        a.played(&track("old", None), now);
        a.played(&track("mid", None), now + Duration::from_secs(1800));
        let later = now + RECENT + Duration::from_secs(1);
        let queued = track("queued", None);
        let recent = a.recent(later, [&queued]);
        let ask = ask(recent, Vec::new());
        assert!(!ask.refuses(&track("old", None)), "played over an hour ago");
        assert!(ask.refuses(&track("mid", None)), "played half an hour ago");
        assert!(ask.refuses(&track("queued", None)), "already queued");
        // The same track under another page URL is known by its cache key.
        let mut moved = track("mid", None);
        moved.page_url = "https://example.com/elsewhere".into();
        assert!(ask.refuses(&moved));
        assert!(!ask.refuses(&track("fresh", None)));
    }

    #[test]
    fn the_artists_of_the_last_two_picks_are_refused() {
        let mut a = Autoplay::default();
        for (name, by) in [("a", "Artist X"), ("b", " artist y "), ("c", "Artist Z")] {
            a.held = Some(Pick {
                track: Arc::new(track(name, Some(by))),
                origin: Origin::History,
            });
            assert!(a.take().is_some());
        }
        let avoid = a.avoid_artists();
        assert_eq!(avoid, ["artist y", "artist z"]);
        let ask = ask(Vec::new(), avoid);
        assert!(ask.refuses(&track("d", Some("ARTIST Y"))));
        assert!(ask.refuses(&track("e", Some("Artist Z"))));
        assert!(
            !ask.refuses(&track("f", Some("Artist X"))),
            "three picks ago"
        );
        assert!(!ask.refuses(&track("g", None)), "no known artist");
        assert!(!ask.refuses(&track("h", Some("  "))));
    }

    #[test]
    fn the_servers_length_limit_applies() {
        let mut ask = ask(Vec::new(), Vec::new());
        let mut t = track("t", None); // 60 s
        assert!(!ask.refuses(&t), "no limit");
        ask.max_duration = Some(Duration::from_secs(59));
        assert!(ask.refuses(&t));
        ask.max_duration = Some(Duration::from_secs(60));
        assert!(!ask.refuses(&t));
        t.duration = None;
        assert!(ask.refuses(&t), "unknown length, resolved");
        t.stream_url.clear();
        assert!(
            !ask.refuses(&t),
            "a mix entry not looked up yet is judged later"
        );
        t.is_live = true;
        assert!(ask.refuses(&t));
    }

    #[test]
    fn reset_drops_the_pick_but_not_the_memory() {
        let mut a = Autoplay {
            for_entry: Some(3),
            held: Some(Pick {
                track: Arc::new(track("a", Some("X"))),
                origin: Origin::History,
            }),
            ..Default::default()
        };
        a.played(&track("p", None), Instant::now());
        a.reset();
        assert!(a.take().is_none() && a.for_entry.is_none());
        assert!(!a.recent(Instant::now(), []).is_empty());
    }
}
