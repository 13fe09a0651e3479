//! What the operating system says about this process, from /proc (Linux).

use std::time::Duration;

/// A reading of a process's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    pub rss_bytes: u64,
    /// User + system CPU time used since start.
    pub cpu_time: Duration,
    pub threads: u64,
    pub open_fds: u64,
}

/// Reads /proc/self; zeros where a file is unreadable (not Linux, or restricted).
pub fn usage() -> ProcessUsage {
    read_usage("/proc/self")
}

/// The same for another process (the benchmarks read the bot they started).
pub fn usage_of(pid: u32) -> ProcessUsage {
    read_usage(&format!("/proc/{pid}"))
}

fn read_usage(base: &str) -> ProcessUsage {
    let mut u = ProcessUsage::default();
    if let Ok(status) = std::fs::read_to_string(format!("{base}/status")) {
        for line in status.lines() {
            let num = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                u.rss_bytes = num(line) * 1024;
            } else if line.starts_with("Threads:") {
                u.threads = num(line);
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string(format!("{base}/stat")) {
        u.cpu_time = cpu_time_from_stat(&stat).unwrap_or_default();
    }
    u.open_fds = std::fs::read_dir(format!("{base}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    u
}

/// utime + stime from a /proc/<pid>/stat line (fields 14 and 15, after the `(comm)`).
fn cpu_time_from_stat(stat: &str) -> Option<Duration> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so utime (14) is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Live (non-zombie) children of process `parent`, as the OS sees them: (pid, command
/// name).
pub fn child_processes_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = stat[open + 1..close].to_string();
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // fields[0] = state, [1] = ppid
            let ppid: u32 = fields.get(1)?.parse().ok()?;
            (ppid == parent && fields.first() != Some(&"Z")).then_some((pid, comm))
        })
        .collect()
}

/// Whether any process of process group `pgid` is still alive (zombies excluded).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // fields[0] = state, [1] = ppid, [2] = pgrp
            fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
        })
}

/// CPU use between two readings, as a percentage of one core.
pub fn cpu_percent(
    before: (std::time::Instant, Duration),
    after: (std::time::Instant, Duration),
) -> f64 {
    let wall = after.0.saturating_duration_since(before.0).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    after.1.saturating_sub(before.1).as_secs_f64() / wall * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        let t = cpu_time_from_stat(line).unwrap();
        assert_eq!(t, Duration::from_secs_f64(300.0 / clock_ticks() as f64));
    }

    #[test]
    fn reads_this_process() {
        let u = usage();
        assert!(u.rss_bytes > 0);
        assert!(u.threads >= 1);
        assert!(u.open_fds >= 3);
    }

    #[test]
    fn sees_a_child_it_started() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        let seen = child_processes_of(std::process::id())
            .iter()
            .any(|(p, c)| *p == pid && c == "sleep");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(seen);
    }
}
