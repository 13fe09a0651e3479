//! What Linux says about a process, the machine and the loopback UDP socket, from /proc.

use std::time::{Duration, Instant};

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcUsage {
    pub rss_bytes: u64,
    /// utime + stime.
    pub cpu: Duration,
    pub threads: u64,
    pub fds: u64,
    /// Of `fds`, the sockets (gateway, pooled HTTP connections, voice).
    pub sockets: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Fields after `(comm)` of a stat line: index 0 is the state (field 3).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let f = stat_fields(stat)?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks(),
    ))
}

/// `pid` = None: this process.
pub fn usage(pid: Option<u32>) -> ProcUsage {
    let base = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".into(),
    };
    let mut u = ProcUsage::default();
    if let Ok(status) = std::fs::read_to_string(format!("{base}/status")) {
        for line in status.lines() {
            let num = || {
                line.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                u.rss_bytes = num() * 1024;
            } else if line.starts_with("Threads:") {
                u.threads = num();
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string(format!("{base}/stat")) {
        u.cpu = cpu_of_stat(&stat).unwrap_or_default();
    }
    if let Ok(dir) = std::fs::read_dir(format!("{base}/fd")) {
        for e in dir.flatten() {
            u.fds += 1;
            let is_socket = std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
            u.sockets += u64::from(is_socket);
        }
    }
    u
}

/// Live (non-zombie) children of `pid`: (pid, command name).
pub fn children(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let comm = stat[stat.find('(')? + 1..stat.rfind(')')?].to_string();
            let f = stat_fields(&stat)?;
            let ppid: u32 = f.get(1)?.parse().ok()?;
            (ppid == pid && f.first() != Some(&"Z")).then_some((p, comm))
        })
        .collect()
}

/// Processes whose command line mentions `needle` (used to find anything a bot under test
/// left behind in its private data directory).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != me)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Whole-machine CPU counters from /proc/stat: (busy, total) in ticks, all cores.
pub fn machine_cpu() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Busy share of the whole machine between two [`machine_cpu`] readings, in cores.
pub fn machine_busy_cores(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1) as f64;
    if total <= 0.0 {
        return 0.0;
    }
    b.0.saturating_sub(a.0) as f64 / total * cores() as f64
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `MemTotal` in bytes.
pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The soft limit on open files this process (and so the bot) has.
pub fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        0
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A CPU reading of a process with its wall-clock time.
#[derive(Clone, Copy)]
pub struct CpuMark {
    pub at: Instant,
    pub cpu: Duration,
}

impl CpuMark {
    pub fn now(pid: Option<u32>) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            cpu: usage(pid).cpu,
        }
    }

    /// Percent of one core used since `self`.
    pub fn percent_to(&self, later: &CpuMark) -> f64 {
        let wall = later.at.saturating_duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        later.cpu.saturating_sub(self.cpu).as_secs_f64() / wall * 100.0
    }
}

// ------------------------------------------------------------------ the emulator's UDP socket

/// `/proc/net/udp` entry of the IPv4 socket bound to `port`: (inode, drops).
fn udp_socket(port: u16) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let want = format!(":{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if !f.get(1)?.ends_with(&want) {
            return None;
        }
        let inode = f.get(9)?.parse().ok()?;
        let drops = f.last()?.parse().ok()?;
        Some((inode, drops))
    })
}

/// Datagrams the kernel dropped at the socket bound to `port` (receive buffer full).
pub fn udp_drops(port: u16) -> u64 {
    udp_socket(port).map(|(_, d)| d).unwrap_or(0)
}

/// Grows the receive buffer of this process's UDP socket bound to `port`. The emulator's one
/// socket takes every call's packets; songbird's mixer threads send them in bursts, and the
/// default buffer (208 KiB) overflows at a few hundred calls, which would count as the bot's
/// deficit. Returns the size the kernel granted.
pub fn grow_udp_rcvbuf(port: u16, bytes: i32) -> Option<i32> {
    let (inode, _) = udp_socket(port)?;
    let target = format!("socket:[{inode}]");
    let fd = std::fs::read_dir("/proc/self/fd").ok()?.find_map(|e| {
        let e = e.ok()?;
        let link = std::fs::read_link(e.path()).ok()?;
        (link.to_string_lossy() == target)
            .then(|| e.file_name().to_str()?.parse::<i32>().ok())
            .flatten()
    })?;
    let set = |opt: i32| {
        // SAFETY: plain setsockopt on a socket fd this process owns, with an int argument.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &bytes as *const i32 as *const libc::c_void,
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        }
    };
    // SO_RCVBUFFORCE passes net.core.rmem_max when privileged; otherwise the capped one.
    if set(libc::SO_RCVBUFFORCE) != 0 {
        set(libc::SO_RCVBUF);
    }
    let mut got: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt into a local int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &mut got as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0).then_some(got)
}
