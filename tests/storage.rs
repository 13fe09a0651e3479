//! When the bot's SQLite database cannot be written: locked by another process, or on a
//! full disk. The music never waits on the database (the
//! queue writer commits in the background and retries), commands still answer, and once
//! the database can be written again the saved queue catches up with the last change:
//! nothing is lost. Each test prints how long the saved queue took to catch up.
//!
//! The full disk is a 16 MiB tmpfs mounted for the test, which needs root
//! (CI runs as root); without it the test fails and says so.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::audio::longest_silence;
use support::world::*;

/// The longest silence a listener may hear while the database is failing: none, beyond
/// the jitter of a loaded test machine.
const NO_BREAK: Duration = Duration::from_millis(500);

/// Starts the bot with its database at `db` and a 30 s tone playing.
async fn playing_with_database(db: &Path) -> World {
    let database = db.display().to_string();
    let w = World::start_with(move |c| {
        c.data.database = Some(database);
        c.cache.audio = false;
    })
    .await;
    w.tone("steady", 330.0, 30.0);
    w.tone("next", 550.0, 3.0);
    let r = w.play(ANN, &w.files.url("steady.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_audio_frames(GUILD, 25, T).await;
    w
}

/// Titles of the queue the bot saved for the test guild, read through its own pool.
async fn saved_titles(w: &World) -> Option<Vec<String>> {
    match encore::db::queues::load(&w.bot.stores.db, GUILD).await {
        Ok(q) => q.map(|q| q.tracks.iter().map(|(t, _)| t.title.clone()).collect()),
        Err(_) => None,
    }
}

/// Waits (bounded) until the saved queue holds `n` tracks; returns when it did.
async fn saved_reaches(w: &World, n: usize) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if saved_titles(w).await.is_some_and(|t| t.len() == n) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the saved queue never reached {n} tracks: {:?}",
            saved_titles(w).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/play next` while the database is failing: the command answers, the music goes on,
/// and the change is not saved yet. Returns when the command was sent.
async fn queue_while_failing(w: &World) -> Instant {
    let sent = Instant::now();
    let r = w.play(ANN, &w.files.url("next.wav")).await;
    assert!(
        r.text().contains("Added") || r.text().contains("Queued"),
        "{}",
        r.text()
    );
    sent
}

fn assert_music_went_on(w: &World, from: Instant) {
    let silence = longest_silence(&w.emu.audio(GUILD), from, Instant::now());
    assert!(
        silence < NO_BREAK,
        "the music stopped for {silence:?} while the database failed"
    );
}

/// Another process holds SQLite's write lock longer than the bot's busy timeout (5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_delays_saves_but_not_the_music() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("encore.db");
    let w = playing_with_database(&db).await;
    saved_reaches(&w, 1).await;

    // Another process: sqlite3's own locking, through a separate connection, held until
    // the test says (a line on its stdin).
    let mut other = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys\n\
             c=sqlite3.connect(sys.argv[1],isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\nsys.stdin.readline()\n\
             c.execute('COMMIT')",
        ])
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(other.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    // The /play meets the lock past the busy timeout (5 s) on each write it tries.
    let from = queue_while_failing(&w).await;
    assert_eq!(
        saved_titles(&w).await.map(|t| t.len()),
        Some(1),
        "the lock held the save back"
    );
    drop(other.stdin.take());
    let released = tokio::task::spawn_blocking(move || {
        other.wait().unwrap();
        Instant::now()
    })
    .await
    .unwrap();
    let saved = saved_reaches(&w, 2).await;
    assert_music_went_on(&w, from);
    // From the lock's release to the change saved.
    support::recovered("locked database", saved.saturating_duration_since(released));
    w.stop().await;
}

/// A tmpfs of 16 MiB, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=16m",
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        );
        SmallDisk { dir, _tmp: tmp }
    }

    /// Fills the disk to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..1024 {
            if f.write_all(&chunk).is_err() {
                return path;
            }
        }
        panic!("a 16 MiB disk took 64 MiB");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// The disk fills up: the change made meanwhile is saved once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_delays_saves_but_not_the_music() {
    let disk = SmallDisk::mount();
    let w = playing_with_database(&disk.dir.join("encore.db")).await;
    saved_reaches(&w, 1).await;

    let filler = disk.fill();
    let from = queue_while_failing(&w).await;
    assert_eq!(saved_titles(&w).await.map(|t| t.len()), Some(1));
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let saved = saved_reaches(&w, 2).await;
    assert_music_went_on(&w, from);
    // From space freed to the change saved.
    support::recovered("full disk", saved.saturating_duration_since(freed));

    w.stop().await;
}

/// An ext4 filesystem in a file, on a loop device, mounted with `errors=remount-ro`: the
/// kernel turns it read-only on its first error, open files or not, as a failing disk
/// does on a host. Unmounted (and its loop device freed) when dropped.
struct FragileDisk {
    image: PathBuf,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl FragileDisk {
    fn mount() -> FragileDisk {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("disk.img");
        let dir = tmp.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        let disk = FragileDisk {
            image,
            dir,
            _tmp: tmp,
        };
        disk.mount_again();
        disk
    }

    fn mount_again(&self) {
        run(
            "mount",
            &[
                "-o",
                "loop,errors=remount-ro",
                self.image.to_str().unwrap(),
                self.dir.to_str().unwrap(),
            ],
        );
    }

    fn options(&self) -> String {
        let out = std::process::Command::new("findmnt")
            .args(["-n", "-o", "OPTIONS"])
            .arg(&self.dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// An ext4 error (the kernel's own test hook): the filesystem goes read-only. What was
    /// written is flushed first: the disk fails some time after the last save reached it
    /// (SQLite's WAL commits without an fsync each, so a save still in the page cache
    /// when the disk fails is lost with it; a process crash loses none: tests/kill.rs).
    fn fail(&self) {
        run("sync", &["-f", self.dir.to_str().unwrap()]);
        let out = std::process::Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let device = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let name = device.rsplit('/').next().unwrap();
        std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "1")
            .expect("ext4's trigger_fs_error (needs root)");
        // Recent kernels show it as `emergency_ro` and keep `rw` in the list.
        assert!(
            self.options()
                .split(',')
                .any(|o| o == "ro" || o == "emergency_ro"),
            "still writable: {}",
            self.options()
        );
    }

    /// What a host does: unmount, check and repair, mount again (read-write).
    fn repair(&self) {
        // The stopped bot's last write may still sit in SQLite's busy wait (5 s) on its
        // own thread, holding the file: the host's umount waits for it, bounded.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::process::Command::new("umount")
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| !o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "the database stayed open after the bot stopped"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let fsck = std::process::Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(&self.image)
            .status()
            .expect("e2fsck runs");
        // 0: clean, 1: errors corrected.
        assert!(matches!(fsck.code(), Some(0 | 1)), "e2fsck: {fsck:?}");
        self.mount_again();
    }
}

impl Drop for FragileDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (Debian: apt-get install e2fsprogs mount)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed (these tests mount filesystems, a tmpfs or ext4 on a loop \
         device, and need root; CI runs as root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The filesystem under the database turns read-only (ext4 remounts itself after an
/// error): the music goes on and `/play` answers, the bot exits cleanly when stopped, and
/// once the host has repaired the disk the restarted bot resumes the queue as last saved
/// before the failure (the change made on the read-only disk could not be kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_turned_read_only_keeps_the_music_and_a_restart_resumes_the_last_save() {
    let disk = FragileDisk::mount();
    let mut w = playing_with_database(&disk.dir.join("encore.db")).await;
    saved_reaches(&w, 1).await;

    disk.fail();
    let from = queue_while_failing(&w).await;
    let next = w.files.url("next.wav");
    let r = w.cmd(ANN, "queue", serde_json::json!([])).await;
    assert!(
        r.text().contains("next"),
        "the queue holds it: {}",
        r.text()
    );
    w.emu
        .wait_for("two more seconds of music", T, |e| {
            e.audio(GUILD)
                .last()
                .is_some_and(|f| f.at >= from + Duration::from_secs(2))
        })
        .await;
    assert_music_went_on(&w, from);

    let heard = w.emu.audio(GUILD).len();
    let down = Instant::now();
    w.restart_with(|| disk.repair()).await;
    w.emu.wait_audio_frames(GUILD, heard + 50, T).await;
    // From the bot's stop, through the repair, to the music heard again.
    support::recovered("read-only disk, repaired", down.elapsed());
    assert_eq!(
        saved_titles(&w).await,
        Some(vec!["steady".to_owned()]),
        "the queue saved before the failure (not {next})"
    );
    w.stop().await;
}
