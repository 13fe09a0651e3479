//! The queue service driven through its handle, with a recording voice call and notifier.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::persist::{QueueStore, SavedQueue};
use super::voice::{
    Opening, PlayOptions, Ready, SeekOutcome, Seeking, TrackOutcome, VoiceError, VoiceEvent,
    VoiceEvents,
};
use super::*;
use crate::resources::{CleanupReason, IdlePolicy, Kind, Registry};
use crate::sources::Track;

mod autoplay;

#[derive(Default)]
struct Log {
    calls: Vec<String>,
    notices: Vec<String>,
    /// Token of the most recent play.
    last: Option<u64>,
    events: Option<VoiceEvents>,
    /// What the voice layer says it is connected to.
    channel: Option<u64>,
    /// Joins fail while this is set.
    refuse_joins: bool,
    /// Where the playing track is, when a test needs other than 5 s.
    position: Option<Duration>,
    /// Posting a notice never completes while this is set (Discord hangs).
    stall_notices: bool,
}

type Shared = Arc<Mutex<Log>>;

const SAVE_POSITION_EVERY: Duration = Duration::from_secs(15);

struct FakeVoice(Shared);

#[async_trait]
impl VoiceCall for FakeVoice {
    async fn join(&mut self, channel: u64) -> Result<(), VoiceError> {
        let mut log = self.0.lock().unwrap();
        log.calls.push(format!("join {channel}"));
        if channel == 666 || log.refuse_joins {
            return Err(VoiceError::Join("missing permission".into()));
        }
        log.channel = Some(channel);
        Ok(())
    }
    /// "bad…" tracks fail to open (a dead link); "hang…" tracks never finish opening (a
    /// lookup or a media server that does not answer).
    fn open(&self, track: Arc<Track>) -> Opening {
        Box::pin(async move {
            if track.title.starts_with("hang") {
                std::future::pending::<()>().await;
            }
            if track.title.starts_with("bad") {
                return Err(VoiceError::Play("no audio stream".into()));
            }
            Ok(Ready::new(track))
        })
    }
    async fn play(
        &mut self,
        ready: Ready,
        opts: PlayOptions,
        token: u64,
    ) -> Result<(), VoiceError> {
        let track = ready.take::<Arc<Track>>().expect("opened by the fake");
        let mut log = self.0.lock().unwrap();
        let from = opts
            .start_at
            .map(|at| format!(" from {}", at.as_secs()))
            .unwrap_or_default();
        let paused = if opts.paused { " paused" } else { "" };
        log.calls.push(format!(
            "play {} @{}{from}{paused}",
            track.title, opts.volume
        ));
        log.last = Some(token);
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
    async fn seek(&mut self, to: Duration) -> Result<Seeking, VoiceError> {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("seek {}", to.as_secs()));
        Ok(Box::pin(async { SeekOutcome::Done }))
    }
    async fn seek_settled(&mut self) {}
    async fn position(&mut self) -> Option<Duration> {
        Some(
            self.0
                .lock()
                .unwrap()
                .position
                .unwrap_or(Duration::from_secs(5)),
        )
    }
    async fn current_channel(&mut self) -> Option<u64> {
        self.0.lock().unwrap().channel
    }
    async fn leave(&mut self) {
        let mut log = self.0.lock().unwrap();
        log.calls.push("leave".into());
        log.channel = None;
    }
}

struct FakeNotifier(Shared);

#[async_trait]
impl Notifier for FakeNotifier {
    async fn notify(&self, channel: u64, notice: Notice) {
        let text = match notice {
            Notice::NowPlaying(e) => format!("{channel} now playing {}", e.track.title),
            Notice::TrackFailed { title, reason } => format!("{channel} failed {title}: {reason}"),
            Notice::EndedEarly { title, reason } => {
                format!("{channel} ended early {title}: {reason}")
            }
            Notice::QueueFinished => format!("{channel} finished"),
            Notice::Autoplay { title, origin } => format!("{channel} autoplay {title} {origin:?}"),
            Notice::Left {
                reason,
                channel: voice,
                after,
            } => format!(
                "{channel} left: {}",
                crate::discord::notify::leave_reason(reason, voice, after)
            ),
        };
        let stall = {
            let mut log = self.0.lock().unwrap();
            log.notices.push(text);
            log.stall_notices
        };
        if stall {
            std::future::pending::<()>().await;
        }
    }
}

/// Keeps the latest saved state per guild, as the SQLite writer would.
#[derive(Default)]
struct MemStore(Mutex<std::collections::HashMap<u64, Option<SavedQueue>>>);

impl QueueStore for MemStore {
    fn save(&self, guild: u64, state: Option<SavedQueue>) {
        self.0.lock().unwrap().insert(guild, state);
    }
    fn checkpoint(&self, guild: u64, position: Duration) {
        if let Some(Some(s)) = self.0.lock().unwrap().get_mut(&guild) {
            s.position = position;
        }
    }
}

impl MemStore {
    fn get(&self, guild: u64) -> Option<SavedQueue> {
        self.0.lock().unwrap().get(&guild).cloned().flatten()
    }
}

struct Harness {
    store: Arc<MemStore>,
    log: Shared,
    players: Arc<Players>,
    registry: Arc<Registry>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Harness {
    fn new() -> Self {
        Self::with_policy(IdlePolicy::default())
    }

    fn with_policy(idle: IdlePolicy) -> Self {
        let log: Shared = Default::default();
        let voice_log = log.clone();
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let registry = Registry::new();
        let store = Arc::new(MemStore::default());
        let players = Players::new(
            Arc::new(move |_guild, events| {
                voice_log.lock().unwrap().events = Some(events);
                Box::new(FakeVoice(voice_log.clone())) as Box<dyn VoiceCall>
            }),
            Arc::new(FakeNotifier(log.clone())),
            Arc::new(move |_| PlayerSettings {
                volume: 100,
                max_queue: 3,
                idle,
                max_calls: 10,
                save_position_every: Some(SAVE_POSITION_EVERY),
                panel: false,
                panel_every: std::time::Duration::from_secs(15),
                autoplay: true,
                max_track: None,
            }),
            registry.clone(),
            store.clone(),
            tasks.clone(),
            shutdown.clone(),
        );
        Self {
            store,
            log,
            players,
            registry,
            tasks,
            shutdown,
        }
    }

    /// Sends a voice event as the driver would.
    async fn voice_event(&self, ev: VoiceEvent) {
        let tx = self
            .log
            .lock()
            .unwrap()
            .events
            .clone()
            .expect("player started");
        tx.send(ev).unwrap();
        self.settle().await;
    }

    /// Waits (bounded) until the player task has ended.
    async fn ended(&self) {
        self.tasks.close();
        tokio::time::timeout(Duration::from_secs(3600), self.tasks.wait())
            .await
            .expect("the player ends");
    }

    fn player(&self) -> PlayerHandle {
        self.players.get_or_start(1)
    }

    /// A `/play` after the previous player ended: a fresh player task starts.
    async fn play_after_end(&self, title: &str) -> Enqueued {
        self.log.lock().unwrap().channel = None;
        self.play(title).await.unwrap()
    }

    async fn play(&self, title: &str) -> Result<Enqueued, PlayerError> {
        self.play_in(title, 10).await
    }

    async fn play_in(&self, title: &str, channel: u64) -> Result<Enqueued, PlayerError> {
        let track = Arc::new(crate::player::test_track(title));
        let r = self
            .player()
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
            .await;
        self.settle().await;
        r
    }

    /// Reports the end of the most recently started track, as the driver would.
    async fn end_current(&self, outcome: TrackOutcome) {
        let token = self.log.lock().unwrap().last.expect("something played");
        self.voice_event(VoiceEvent::TrackEnded { token, outcome })
            .await;
    }

    /// Lets the player task drain what it was sent (a snapshot is answered in order), the
    /// track it is opening start (unless it hangs), and the notice task post what it was
    /// handed. Bounded: a hanging track leaves it after a few rounds.
    async fn settle(&self) {
        for _ in 0..20 {
            let starting = self
                .player()
                .ask(|reply| Request::Snapshot { reply })
                .await
                .map(|s| s.starting)
                .unwrap_or(false);
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            if !starting {
                return;
            }
        }
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
    let old_token = h.log.lock().unwrap().last.unwrap();
    h.play("b").await.unwrap();
    h.play("c").await.unwrap();
    let current = h.snapshot().await.current.unwrap().id;
    let skipped = h
        .player()
        .call(|reply| Request::Skip {
            n: 1,
            current,
            reply,
        })
        .await
        .unwrap();
    assert_eq!(skipped.next.as_deref(), Some("b"));
    // the driver reports the end of "a" after we already moved on: must not skip "b"
    h.voice_event(VoiceEvent::TrackEnded {
        token: old_token,
        outcome: TrackOutcome::Finished,
    })
    .await;
    assert_eq!(h.snapshot().await.current.unwrap().track.title, "b");
}

#[tokio::test]
async fn a_skip_or_edit_decided_before_the_track_ended_hits_nothing_else() {
    let h = Harness::new();
    for t in ["a", "b", "c", "d"] {
        h.play(t).await.unwrap();
    }
    let seen = h.snapshot().await; // a playing; b c d waiting
    let a = seen.current.unwrap().id;
    let (b, c) = (seen.upcoming[0].id, seen.upcoming[1].id);
    h.end_current(TrackOutcome::Finished).await; // b plays now; c d wait
    let p = h.player();
    let stale: Result<(), _> = Err(PlayerError::Queue(queue::QueueError::Changed));
    let skip = p
        .call(|reply| Request::Skip {
            n: 1,
            current: a,
            reply,
        })
        .await
        .map(|_| ());
    assert_eq!(skip, stale, "a skip vote on a must not skip b");
    let remove = p
        .call(|reply| Request::Remove {
            from: 2,
            to: 2,
            ids: vec![c],
            reply,
        })
        .await
        .map(|_| ());
    assert_eq!(remove, stale, "position 2 is d now, not c");
    let moved = p
        .call(|reply| Request::Move {
            from: 1,
            to: 2,
            id: b,
            reply,
        })
        .await
        .map(|_| ());
    assert_eq!(moved, stale);
    let s = h.snapshot().await;
    assert_eq!(s.current.as_ref().unwrap().track.title, "b");
    assert_eq!(titles(&s), ["c", "d"]);
    let gone = p
        .call(|reply| Request::Remove {
            from: 1,
            to: 1,
            ids: vec![c],
            reply,
        })
        .await
        .unwrap();
    assert_eq!(gone[0].track.title, "c");
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
    assert!(p
        .call(|reply| Request::Skip {
            n: 1,
            current: 1,
            reply
        })
        .await
        .is_err());
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
            reason: CleanupReason::Idle,
            reply,
        })
        .await
        .unwrap();
    assert!(h
        .calls()
        .ends_with(&["stop".to_string(), "leave".to_string()]));
    assert!(h
        .notices()
        .last()
        .unwrap()
        .starts_with("20 left: nothing played"));
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

// ---- lifecycle: timeouts and lost connections (time is paused, so no real waiting) ----

fn policy(idle: u64, alone: u64, paused: u64) -> IdlePolicy {
    IdlePolicy::from_config(
        Duration::from_secs(idle),
        Duration::from_secs(alone),
        Duration::from_secs(paused),
    )
}

#[tokio::test(start_paused = true)]
async fn leaves_after_the_idle_timeout_and_says_why() {
    let h = Harness::with_policy(policy(300, 60, 600));
    h.play("a").await.unwrap();
    h.end_current(TrackOutcome::Finished).await;
    tokio::time::sleep(Duration::from_secs(299)).await;
    h.settle().await;
    assert_eq!(
        h.calls().last().unwrap(),
        "stop",
        "still connected at 4m59s"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.ended().await;
    assert_eq!(h.calls().last().unwrap(), "leave");
    assert_eq!(
        h.notices().last().unwrap(),
        "20 left: nothing played in <#10> for 5m"
    );
    assert_eq!(h.registry.cleanups().by_reason[&CleanupReason::Idle], 1);
    assert_eq!(h.registry.stats(Kind::Call).current, 0);
    assert_eq!(h.registry.stats(Kind::Player).current, 0);
}

#[tokio::test(start_paused = true)]
async fn a_new_play_cancels_the_idle_leave() {
    let h = Harness::with_policy(policy(300, 60, 600));
    h.play("a").await.unwrap();
    h.end_current(TrackOutcome::Finished).await;
    tokio::time::sleep(Duration::from_secs(200)).await;
    h.play("b").await.unwrap();
    tokio::time::sleep(Duration::from_secs(200)).await;
    h.settle().await;
    assert!(
        !h.calls().contains(&"leave".to_string()),
        "playing is not idle"
    );
    h.end_current(TrackOutcome::Finished).await;
    tokio::time::sleep(Duration::from_secs(299)).await;
    h.settle().await;
    assert!(
        !h.calls().contains(&"leave".to_string()),
        "the idle clock restarted"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.ended().await;
}

#[tokio::test(start_paused = true)]
async fn alone_timer_runs_only_while_nobody_listens() {
    let h = Harness::with_policy(policy(0, 60, 0));
    h.play("a").await.unwrap();
    let p = h.player();
    p.send(Request::Presence {
        channel: 10,
        listeners: vec![],
    })
    .await;
    tokio::time::sleep(Duration::from_secs(50)).await;
    // someone comes back: the timer is cancelled
    p.send(Request::Presence {
        channel: 10,
        listeners: vec![7],
    })
    .await;
    // an update about another channel changes nothing
    p.send(Request::Presence {
        channel: 99,
        listeners: vec![],
    })
    .await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    h.settle().await;
    assert!(!h.calls().contains(&"leave".to_string()));
    p.send(Request::Presence {
        channel: 10,
        listeners: vec![],
    })
    .await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.ended().await;
    assert_eq!(
        h.notices().last().unwrap(),
        "20 left: nobody was listening in <#10> for 1m"
    );
    assert_eq!(h.registry.cleanups().by_reason[&CleanupReason::Alone], 1);
}

#[tokio::test(start_paused = true)]
async fn paused_too_long_counts_as_idle_and_zero_means_never() {
    let h = Harness::with_policy(policy(0, 0, 600));
    h.play("a").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    h.settle().await;
    assert!(
        !h.calls().contains(&"leave".to_string()),
        "no idle timeout while playing"
    );
    h.player()
        .call(|reply| Request::Pause { reply })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(601)).await;
    h.ended().await;
    assert_eq!(h.registry.cleanups().by_reason[&CleanupReason::Idle], 1);
}

#[tokio::test(start_paused = true)]
async fn a_moderator_disconnect_cleans_up_but_a_stale_update_does_not() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    // a stale "left" from an earlier connection while the voice layer is still connected
    h.player()
        .send(Request::BotVoiceState { channel: None })
        .await;
    h.settle().await;
    assert!(h.snapshot().await.current.is_some());
    // a real disconnect: the voice layer dropped the call
    h.log.lock().unwrap().channel = None;
    h.player()
        .send(Request::BotVoiceState { channel: None })
        .await;
    h.ended().await;
    assert_eq!(
        h.registry.cleanups().by_reason[&CleanupReason::BotDisconnected],
        1
    );
    assert!(h.notices().last().unwrap().contains("disconnected"));
    assert_eq!(h.registry.stats(Kind::Call).current, 0);
    // a later /play starts a fresh player and works
    assert_eq!(h.play_after_end("b").await.position, 0);
}

#[tokio::test(start_paused = true)]
async fn being_moved_keeps_playing_in_the_new_channel() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.log.lock().unwrap().channel = Some(11);
    h.player()
        .send(Request::BotVoiceState { channel: Some(11) })
        .await;
    let s = h.snapshot().await;
    assert_eq!(s.voice_channel, Some(11));
    assert_eq!(s.current.unwrap().track.title, "a");
    assert_eq!(h.registry.calls()[0].channel, 11);
    assert!(!h.calls().contains(&"leave".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_resumable_drop_that_recovers_changes_nothing() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.voice_event(VoiceEvent::Disconnected {
        code: Some(4015),
        reason: "server crashed".into(),
    })
    .await;
    let p = h.player();
    let seek = |secs| {
        p.call(move |reply| Request::Seek {
            to: Duration::from_secs(secs),
            reply,
        })
    };
    assert_eq!(seek(30).await, Err(PlayerError::Reconnecting));
    h.voice_event(VoiceEvent::Connected).await;
    assert_eq!(seek(40).await.unwrap(), "a");
    tokio::time::sleep(Duration::from_secs(60)).await;
    h.settle().await;
    assert_eq!(h.calls(), ["join 10", "play a @1", "seek 40"]);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_session_rejoins_and_resumes_the_track() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.voice_event(VoiceEvent::Disconnected {
        code: Some(4006),
        reason: "session invalid".into(),
    })
    .await;
    // The grace period, the leave, then the join once Discord echoes the leave (at most
    // 1 s without an echo).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    h.settle().await;
    assert_eq!(
        h.calls()[2..],
        ["leave".to_string()],
        "no join before the echo"
    );
    h.player()
        .send(Request::BotVoiceState { channel: None })
        .await;
    h.settle().await;
    assert_eq!(
        h.calls()[2..],
        [
            "leave".to_string(),
            "join 10".to_string(),
            "play a @1 from 5".to_string()
        ]
    );
    assert!(h.snapshot().await.current.is_some());
}

#[tokio::test(start_paused = true)]
async fn rejoining_gives_up_with_backoff_then_cleans_up() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.log.lock().unwrap().refuse_joins = true;
    h.voice_event(VoiceEvent::Disconnected {
        code: None,
        reason: "io".into(),
    })
    .await;
    // grace 2s, then attempts at +0, +1s, +2s, then give up at +4s
    tokio::time::sleep(Duration::from_secs(30)).await;
    h.ended().await;
    let joins = h.calls().iter().filter(|c| c.starts_with("join")).count();
    assert_eq!(joins, 1 + 3, "first join plus three bounded attempts");
    assert_eq!(h.registry.cleanups().by_reason[&CleanupReason::Error], 1);
    assert_eq!(h.registry.stats(Kind::Call).current, 0);
}

#[tokio::test(start_paused = true)]
async fn cleanup_spares_a_playing_call_unless_forced() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    assert!(!h.players.cleanup(1, CleanupReason::Admin, true).await);
    assert!(h.players.cleanup(1, CleanupReason::Admin, false).await);
    h.ended().await;
    assert_eq!(h.registry.cleanups().forced, 1);
}

#[tokio::test(start_paused = true)]
async fn close_4014_without_a_move_ends_the_call() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.voice_event(VoiceEvent::Disconnected {
        code: Some(4014),
        reason: "disconnected".into(),
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.ended().await;
    assert_eq!(
        h.calls().iter().filter(|c| c.starts_with("join")).count(),
        1,
        "no re-join after 4014"
    );
    assert_eq!(
        h.registry.cleanups().by_reason[&CleanupReason::BotDisconnected],
        1
    );
}

// ---- persistence ----

#[tokio::test(start_paused = true)]
async fn every_change_is_saved_and_leaving_forgets_it() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.play("b").await.unwrap();
    h.settle().await;
    let saved = h.store.get(1).expect("saved");
    let titles: Vec<_> = saved.tracks.iter().map(|(t, _)| t.title.as_str()).collect();
    assert_eq!(titles, ["a", "b"]);
    assert_eq!(
        (saved.voice_channel, saved.text_channel, saved.playing),
        (10, 20, true)
    );
    h.end_current(TrackOutcome::Finished).await;
    h.settle().await;
    assert_eq!(h.store.get(1).unwrap().tracks.len(), 1);
    h.player()
        .call(|reply| Request::Leave {
            reason: CleanupReason::User,
            reply,
        })
        .await
        .unwrap();
    assert!(
        h.store.get(1).is_none(),
        "a queue that was left is not resumed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_play_still_looking_up_keeps_an_idle_bot_in_the_channel() {
    let h = Harness::with_policy(policy(300, 60, 600));
    h.play("a").await.unwrap();
    h.end_current(TrackOutcome::Finished).await;
    tokio::time::sleep(Duration::from_secs(290)).await;
    // A /play arrives at 4m50s and its lookup is slow.
    let lookup = h.player().resolving();
    tokio::time::sleep(Duration::from_secs(60)).await;
    h.settle().await;
    assert!(
        !h.calls().contains(&"leave".to_string()),
        "waits for the /play"
    );
    assert!(
        !h.players.cleanup(1, CleanupReason::Admin, true).await,
        "/cleanup of idle calls spares it too"
    );
    // The lookup failed: the idle clock runs again, from when the wait began.
    drop(lookup);
    tokio::time::sleep(Duration::from_secs(300)).await;
    h.ended().await;
    assert_eq!(h.calls().last().unwrap(), "leave");
    assert_eq!(h.registry.cleanups().by_reason[&CleanupReason::Idle], 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_discord_does_not_hold_up_the_player() {
    let h = Harness::new();
    h.log.lock().unwrap().stall_notices = true;
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        h.play("a").await.unwrap(); // its "now playing" notice never gets through
        h.play("b").await.unwrap();
        h.end_current(TrackOutcome::Finished).await;
        h.snapshot().await
    })
    .await
    .expect("the player keeps answering");
    assert_eq!(answered.current.unwrap().track.title, "b");
    // The notices are posted in order, each given up after its bound (virtual time).
    tokio::time::sleep(super::notices::NOTICE_WAIT * 2).await;
    assert_eq!(h.notices(), ["20 now playing a", "20 now playing b"]);
}

#[tokio::test(start_paused = true)]
async fn a_playing_track_saves_its_position_now_and_then_for_a_crash() {
    let h = Harness::new();
    let at = |secs| h.log.lock().unwrap().position = Some(Duration::from_secs(secs));
    let saved_at = || h.store.get(1).expect("saved").position.as_secs();
    at(0);
    h.play("a").await.unwrap();
    h.play("b").await.unwrap();
    assert_eq!(saved_at(), 0);
    at(12);
    tokio::time::sleep(SAVE_POSITION_EVERY + Duration::from_secs(1)).await;
    h.settle().await;
    assert_eq!(saved_at(), 12, "a SIGKILL now resumes at 12 s, not 0");
    // A queue change saves the position too, instead of resetting it.
    at(14);
    h.play("c").await.unwrap();
    assert_eq!(saved_at(), 14);
    // Paused, the position does not move: nothing to save, however long it waits.
    h.player()
        .call(|reply| Request::Pause { reply })
        .await
        .unwrap();
    assert_eq!(saved_at(), 14);
    at(99);
    tokio::time::sleep(SAVE_POSITION_EVERY * 4).await;
    h.settle().await;
    assert_eq!(saved_at(), 14);
}

#[tokio::test(start_paused = true)]
async fn shutdown_saves_the_position_and_restore_resumes_there() {
    let h = Harness::new();
    h.play("a").await.unwrap();
    h.play("b").await.unwrap();
    h.shutdown.cancel();
    h.ended().await;
    let saved = h.store.get(1).expect("kept for the restart");
    assert_eq!(saved.position, Duration::from_secs(5));

    let h2 = Harness::new();
    h2.player()
        .call(|reply| Request::Restore {
            saved: saved.clone(),
            reply,
        })
        .await
        .unwrap();
    assert_eq!(h2.calls(), ["join 10", "play a @1 from 5"]);
    let s = h2.snapshot().await;
    assert_eq!(s.upcoming.len(), 1);
    assert_eq!(s.upcoming[0].track.title, "b");
}
