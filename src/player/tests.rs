//! The queue service driven through its handle, with a recording voice call and notifier.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::voice::{PlayOptions, TrackEnded, TrackEvents, TrackOutcome, VoiceError};
use super::*;
use crate::sources::Track;

#[derive(Default)]
struct Log {
    calls: Vec<String>,
    notices: Vec<String>,
    /// (token, sender) of the most recent play.
    last: Option<(u64, TrackEvents)>,
}

type Shared = Arc<Mutex<Log>>;

struct FakeVoice(Shared);

#[async_trait]
impl VoiceCall for FakeVoice {
    async fn join(&mut self, channel: u64) -> Result<(), VoiceError> {
        self.0.lock().unwrap().calls.push(format!("join {channel}"));
        if channel == 666 {
            return Err(VoiceError::Join("missing permission".into()));
        }
        Ok(())
    }
    async fn play(
        &mut self,
        track: &Track,
        opts: PlayOptions,
        token: u64,
        events: TrackEvents,
    ) -> Result<(), VoiceError> {
        let mut log = self.0.lock().unwrap();
        log.calls
            .push(format!("play {} @{}", track.title, opts.volume));
        if track.title.starts_with("bad") {
            return Err(VoiceError::Play("no audio stream".into()));
        }
        log.last = Some((token, events));
        Ok(())
    }
    async fn pause(&mut self) {
        self.0.lock().unwrap().calls.push("pause".into());
    }
    async fn resume(&mut self) {
        self.0.lock().unwrap().calls.push("resume".into());
    }
    async fn stop(&mut self) {
        self.0.lock().unwrap().calls.push("stop".into());
    }
    async fn set_volume(&mut self, volume: f32) {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("volume {volume}"));
    }
    async fn seek(&mut self, to: Duration) -> Result<(), VoiceError> {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("seek {}", to.as_secs()));
        Ok(())
    }
    async fn position(&mut self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }
    async fn leave(&mut self) {
        self.0.lock().unwrap().calls.push("leave".into());
    }
}

struct FakeNotifier(Shared);

#[async_trait]
impl Notifier for FakeNotifier {
    async fn notify(&self, channel: u64, notice: Notice) {
        let text = match notice {
            Notice::NowPlaying(e) => format!("{channel} now playing {}", e.track.title),
            Notice::TrackFailed { title, reason } => format!("{channel} failed {title}: {reason}"),
            Notice::QueueFinished => format!("{channel} finished"),
            Notice::Left { reason } => format!("{channel} left: {reason}"),
        };
        self.0.lock().unwrap().notices.push(text);
    }
}

struct Harness {
    log: Shared,
    players: Arc<Players>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Harness {
    fn new() -> Self {
        let log: Shared = Default::default();
        let voice_log = log.clone();
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let players = Players::new(
            Arc::new(move |_guild| Box::new(FakeVoice(voice_log.clone())) as Box<dyn VoiceCall>),
            Arc::new(FakeNotifier(log.clone())),
            PlayerSettings {
                volume: 100,
                max_queue: 3,
            },
            tasks.clone(),
            shutdown.clone(),
        );
        Self {
            log,
            players,
            tasks,
            shutdown,
        }
    }

    fn player(&self) -> PlayerHandle {
        self.players.get_or_start(1)
    }

    async fn play(&self, title: &str) -> Result<Enqueued, PlayerError> {
        self.play_in(title, 10).await
    }

    async fn play_in(&self, title: &str, channel: u64) -> Result<Enqueued, PlayerError> {
        let track = Arc::new(crate::player::test_track(title));
        self.player()
            .call(|reply| Request::Enqueue {
                tracks: vec![track],
                requester: Requester {
                    id: 7,
                    name: "ann".into(),
                },
                voice_channel: channel,
                text_channel: 20,
                front: false,
                reply,
            })
            .await
    }

    /// Reports the end of the most recently started track, as the driver would.
    async fn end_current(&self, outcome: TrackOutcome) {
        let (token, tx) = self
            .log
            .lock()
            .unwrap()
            .last
            .clone()
            .expect("something played");
        tx.send(TrackEnded { token, outcome }).unwrap();
        self.settle().await;
    }

    /// Lets the player task drain what it was sent (a snapshot is answered in order).
    async fn settle(&self) {
        let _ = self.player().ask(|reply| Request::Snapshot { reply }).await;
    }

    async fn snapshot(&self) -> Snapshot {
        self.player()
            .ask(|reply| Request::Snapshot { reply })
            .await
            .unwrap()
    }

    fn calls(&self) -> Vec<String> {
        self.log.lock().unwrap().calls.clone()
    }

    fn notices(&self) -> Vec<String> {
        self.log.lock().unwrap().notices.clone()
    }
}

fn titles(s: &Snapshot) -> Vec<String> {
    s.upcoming.iter().map(|e| e.track.title.clone()).collect()
}

#[tokio::test]
async fn first_play_joins_and_starts_then_queues() {
    let h = Harness::new();
    assert_eq!(
        h.play("a").await,
        Ok(Enqueued {
            position: 0,
            added: 1
        })
    );
    assert_eq!(
        h.play("b").await,
        Ok(Enqueued {
            position: 1,
            added: 1
        })
    );
    assert_eq!(h.calls(), ["join 10", "play a @1"]);
    let s = h.snapshot().await;
    assert_eq!(s.current.as_ref().unwrap().track.title, "a");
    assert_eq!(titles(&s), ["b"]);
    assert_eq!(h.notices(), ["20 now playing a"]);
}

#[tokio::test]
async fn next_track_starts_when_one_ends_and_queue_end_is_announced() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.play("b").await.unwrap();
    h.end_current(TrackOutcome::Finished).await;
    assert_eq!(h.snapshot().await.current.unwrap().track.title, "b");
    h.end_current(TrackOutcome::Finished).await;
    let s = h.snapshot().await;
    assert!(s.current.is_none());
    assert_eq!(h.notices().last().unwrap(), "20 finished");
    assert_eq!(h.calls().last().unwrap(), "stop");
}

#[tokio::test]
async fn a_late_end_of_a_skipped_track_is_ignored() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    let (old_token, tx) = h.log.lock().unwrap().last.clone().unwrap();
    h.play("b").await.unwrap();
    h.play("c").await.unwrap();
    let skipped = h
        .player()
        .call(|reply| Request::Skip { n: 1, reply })
        .await
        .unwrap();
    assert_eq!(skipped.next.as_deref(), Some("b"));
    // the driver reports the end of "a" after we already moved on: must not skip "b"
    tx.send(TrackEnded {
        token: old_token,
        outcome: TrackOutcome::Finished,
    })
    .unwrap();
    h.settle().await;
    assert_eq!(h.snapshot().await.current.unwrap().track.title, "b");
}

#[tokio::test]
async fn failing_tracks_are_reported_and_skipped_never_wedging() {
    let h = Harness::new();
    h.play("bad-1").await.unwrap();
    let s = h.snapshot().await;
    assert!(s.current.is_none(), "a track that cannot start is dropped");
    assert!(h.notices()[0].contains("failed bad-1: could not start the track: no audio stream"));
    h.play("a").await.unwrap();
    h.play("bad-2").await.unwrap();
    h.play("c").await.unwrap();
    // "a" fails while playing: reported, then bad-2 fails to start, then c plays
    h.end_current(TrackOutcome::Failed("stream ended early".into()))
        .await;
    let s = h.snapshot().await;
    assert_eq!(s.current.unwrap().track.title, "c");
    let n = h.notices();
    assert!(
        n.iter().any(|x| x.contains("failed a: stream ended early")),
        "{n:?}"
    );
    assert!(n.iter().any(|x| x.contains("failed bad-2")), "{n:?}");
}

#[tokio::test]
async fn pause_resume_stop_and_errors_on_empty() {
    let h = Harness::new();
    let p = h.player();
    assert_eq!(
        p.call(|reply| Request::Pause { reply }).await,
        Err(PlayerError::Queue(queue::QueueError::NothingPlaying))
    );
    assert!(p.call(|reply| Request::Skip { n: 1, reply }).await.is_err());
    h.play("a").await.unwrap();
    h.play("b").await.unwrap();
    assert_eq!(p.call(|reply| Request::Pause { reply }).await.unwrap(), "a");
    assert!(h.snapshot().await.paused);
    assert_eq!(
        p.call(|reply| Request::Resume { reply }).await.unwrap(),
        "a"
    );
    assert_eq!(p.call(|reply| Request::Stop { reply }).await, Ok(2));
    let s = h.snapshot().await;
    assert!(s.current.is_none() && s.upcoming.is_empty());
    assert_eq!(s.voice_channel, Some(10), "stop stays in the channel");
}

#[tokio::test]
async fn leave_disconnects_and_ends_the_task() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.player()
        .call(|reply| Request::Leave {
            reason: Some("asked to leave".into()),
            reply,
        })
        .await
        .unwrap();
    assert!(h
        .calls()
        .ends_with(&["stop".to_string(), "leave".to_string()]));
    assert_eq!(h.notices().last().unwrap(), "20 left: asked to leave");
    h.tasks.close();
    tokio::time::timeout(Duration::from_secs(5), h.tasks.wait())
        .await
        .unwrap();
    assert!(h.players.is_empty());
    assert!(h.players.get(1).is_none());
}

#[tokio::test]
async fn the_queue_limit_and_other_channel_are_refused() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    for t in ["b", "c", "d"] {
        h.play(t).await.unwrap();
    }
    assert_eq!(
        h.play("e").await,
        Err(PlayerError::Queue(queue::QueueError::Full(3)))
    );
    assert_eq!(h.play_in("x", 11).await, Err(PlayerError::OtherChannel(10)));
}

#[tokio::test]
async fn a_failed_join_is_reported_and_nothing_is_queued() {
    let h = Harness::new();
    let r = h.play_in("a", 666).await;
    assert!(
        matches!(r, Err(PlayerError::Voice(VoiceError::Join(_)))),
        "{r:?}"
    );
    let s = h.snapshot().await;
    assert!(s.current.is_none() && s.voice_channel.is_none());
}

#[tokio::test]
async fn shutdown_leaves_every_channel() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.shutdown.cancel();
    h.tasks.close();
    tokio::time::timeout(Duration::from_secs(5), h.tasks.wait())
        .await
        .unwrap();
    assert_eq!(h.calls().last().unwrap(), "leave");
}

#[tokio::test]
async fn volume_is_bounded_and_applied() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    let p = h.player();
    assert_eq!(
        p.call(|reply| Request::SetVolume {
            percent: 250,
            reply
        })
        .await,
        Err(PlayerError::BadVolume)
    );
    assert_eq!(
        p.call(|reply| Request::SetVolume { percent: 50, reply })
            .await,
        Ok(50)
    );
    assert!(h.calls().contains(&"volume 0.5".to_string()));
    h.play("b").await.unwrap();
    h.end_current(TrackOutcome::Finished).await;
    assert_eq!(h.calls().last().unwrap(), "play b @0.5");
}
