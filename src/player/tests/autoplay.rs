//! Autoplay in the player: the pick is asked for when the last queued track starts, goes
//! in when the queue runs out, gives way to what the user queues, and never comes while
//! nobody listens.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::player::autoplay::{Ask, Origin, Pick, Related};

/// Answers every ask with "pickN" by "artistN" after `delay`, and keeps the asks.
#[derive(Default)]
struct FakeRelated {
    asks: Mutex<Vec<Ask>>,
    delay: Duration,
}

#[async_trait]
impl Related for FakeRelated {
    async fn pick(&self, ask: Ask) -> Result<Pick, String> {
        let n = {
            let mut asks = self.asks.lock().unwrap();
            asks.push(ask.clone());
            asks.len()
        };
        // No timer for an instant answer: `drain` yields, and a zero sleep still waits
        // for the runtime's timer to turn, which made the answer late now and then.
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut t = crate::player::test_track(&format!("pick{n}"));
        t.uploader = Some(format!("artist{n}"));
        Ok(Pick {
            track: Arc::new(t),
            origin: Origin::Mix {
                seed: ask.seed.title.clone(),
            },
        })
    }
}

fn with_related(delay: Duration) -> (Harness, Arc<FakeRelated>) {
    let h = Harness::new();
    let related = Arc::new(FakeRelated {
        delay,
        ..Default::default()
    });
    h.players.set_related(related.clone());
    (h, related)
}

async fn listeners(h: &Harness, who: Vec<u64>) {
    h.player()
        .send(Request::Presence {
            channel: 10,
            listeners: who,
        })
        .await;
    drain(h).await;
}

/// Lets the pick's task answer and the player take the answer (bounded rounds).
async fn drain(h: &Harness) {
    for _ in 0..20 {
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        h.settle().await;
    }
}

fn seeds(r: &FakeRelated) -> Vec<String> {
    let asks = r.asks.lock().unwrap();
    asks.iter().map(|a| a.seed.title.clone()).collect()
}

#[tokio::test]
async fn the_pick_is_asked_as_the_last_track_starts_and_plays_when_it_ends() {
    let (h, related) = with_related(Duration::ZERO);
    h.play("a").await.unwrap();
    listeners(&h, vec![7]).await;
    assert_eq!(seeds(&related), ["a"], "asked while a still plays");
    {
        let asks = related.asks.lock().unwrap();
        assert!(asks[0]
            .recent
            .contains(&"https://example.com/a".to_string()));
        assert_eq!(asks[0].listeners, Some(vec![7]));
    }
    assert!(
        titles(&h.snapshot().await).is_empty(),
        "held, not queued yet"
    );
    h.end_current(TrackOutcome::Finished).await;
    assert_eq!(h.snapshot().await.current.unwrap().track.title, "pick1");
    assert!(h.calls().contains(&"play pick1 @1".to_string()));
    assert!(
        h.notices()
            .contains(&"20 autoplay pick1 Mix { seed: \"a\" }".to_string()),
        "{:?}",
        h.notices()
    );
    assert!(!h.notices().contains(&"20 finished".to_string()));
    // The next pick is asked for the pick, avoiding what played and its artist.
    assert_eq!(seeds(&related), ["a", "pick1"]);
    let asks = related.asks.lock().unwrap();
    assert_eq!(asks[1].avoid_artists, ["artist1"]);
    assert!(asks[1]
        .recent
        .contains(&"https://example.com/a".to_string()));
    assert!(asks[1]
        .recent
        .contains(&"https://example.com/pick1".to_string()));
}

#[tokio::test]
async fn a_track_queued_meanwhile_goes_first_and_the_pick_is_asked_again() {
    let (h, related) = with_related(Duration::ZERO);
    h.play("a").await.unwrap();
    listeners(&h, vec![7]).await;
    h.play("b").await.unwrap();
    h.end_current(TrackOutcome::Finished).await;
    drain(&h).await;
    assert_eq!(h.snapshot().await.current.unwrap().track.title, "b");
    assert_eq!(
        seeds(&related),
        ["a", "b"],
        "asked again for the new last track"
    );
    h.end_current(TrackOutcome::Finished).await;
    assert_eq!(h.snapshot().await.current.unwrap().track.title, "pick2");
    assert!(
        !h.calls().iter().any(|c| c.contains("pick1")),
        "{:?}",
        h.calls()
    );
}

#[tokio::test]
async fn no_pick_while_nobody_listens() {
    let (h, related) = with_related(Duration::ZERO);
    h.play("a").await.unwrap();
    assert!(seeds(&related).is_empty(), "who listens is not known yet");
    listeners(&h, vec![7]).await;
    assert_eq!(seeds(&related), ["a"]);
    // Everyone leaves while a plays: the pick held is dropped.
    listeners(&h, vec![]).await;
    h.end_current(TrackOutcome::Finished).await;
    assert!(h.snapshot().await.current.is_none());
    assert_eq!(h.notices().last().unwrap(), "20 finished");
    assert!(!h.notices().iter().any(|n| n.contains("autoplay")));
}

#[tokio::test]
async fn no_pick_when_autoplay_is_off_or_a_loop_is_on() {
    let (h, related) = with_related(Duration::ZERO);
    h.play("a").await.unwrap();
    let p = h.player();
    p.call(|reply| Request::SetLoop {
        mode: LoopMode::Queue,
        reply,
    })
    .await
    .unwrap();
    listeners(&h, vec![7]).await;
    assert!(seeds(&related).is_empty());
    let mut off = h.players.settings_for(1);
    off.autoplay = false;
    p.send(Request::Configure { settings: off }).await;
    p.call(|reply| Request::SetLoop {
        mode: LoopMode::Off,
        reply,
    })
    .await
    .unwrap();
    h.settle().await;
    assert!(seeds(&related).is_empty());
    h.end_current(TrackOutcome::Finished).await;
    assert_eq!(h.notices().last().unwrap(), "20 finished");
}

#[tokio::test(start_paused = true)]
async fn a_pick_that_comes_after_the_queue_ran_out_still_plays_unless_stopped() {
    let (h, related) = with_related(Duration::from_secs(5));
    h.play("a").await.unwrap();
    listeners(&h, vec![7]).await;
    h.end_current(TrackOutcome::Finished).await;
    assert!(h.snapshot().await.current.is_none());
    tokio::time::sleep(Duration::from_secs(6)).await;
    h.settle().await;
    assert_eq!(h.snapshot().await.current.unwrap().track.title, "pick1");

    // /stop while the next pick is on its way: nothing starts after it.
    assert_eq!(seeds(&related), ["a", "pick1"]);
    h.player()
        .call(|reply| Request::Stop { reply })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    h.settle().await;
    assert!(h.snapshot().await.current.is_none());
}
