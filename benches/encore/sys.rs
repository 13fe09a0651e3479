//! What Linux says about a process, the machine and the loopback UDP socket, from /proc.

use std::time::{Duration, Instant};

pub use encore::resources::system::{child_processes_of as children, ProcessUsage};
use encore::resources::system::{cpu_percent, usage, usage_of};

/// `pid` = None: this process.
pub fn process_usage(pid: Option<u32>) -> ProcessUsage {
    pid.map_or_else(usage, usage_of)
}

/// How many of `pid`'s open descriptors are sockets (gateway, pooled HTTP connections,
/// voice).
pub fn sockets(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count() as u64
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
            cpu: process_usage(pid).cpu_time,
        }
    }

    /// Percent of one core used since `self`.
    pub fn percent_to(&self, later: &CpuMark) -> f64 {
        cpu_percent((self.at, self.cpu), (later.at, later.cpu))
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
