//! Reading `/proc` and signalling processes, identified by pid *and* start time so that a
//! recycled pid in a stale pid file is never signalled.

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal, kill_process};
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// A process as recorded in a pid file: `pid start_time` (start time in clock ticks since
/// boot, field 22 of `/proc/<pid>/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcId {
    /// The live process with this pid, if any.
    pub fn of(pid: i32) -> Option<ProcId> {
        let st = stat(pid)?;
        (st.state != 'Z').then_some(ProcId {
            pid,
            start_time: st.start_time,
        })
    }

    /// Still the same process, and not a zombie.
    pub fn alive(&self) -> bool {
        ProcId::of(self.pid).is_some_and(|p| p == *self)
    }

    pub fn write_pid_file(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("pid.tmp");
        fs::write(&tmp, format!("{} {}\n", self.pid, self.start_time))
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    /// The process recorded in `path`, whether or not it still runs; `None` if the file is
    /// missing or malformed.
    pub fn read_pid_file(path: &Path) -> Option<ProcId> {
        let text = fs::read_to_string(path).ok()?;
        let mut it = text.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        let start_time = it.next()?.parse().ok()?;
        Some(ProcId { pid, start_time })
    }

    /// Sends `sig`; false if the process is gone (or was never ours to signal).
    pub fn signal(&self, sig: Signal) -> bool {
        self.alive() && Pid::from_raw(self.pid).is_some_and(|p| kill_process(p, sig).is_ok())
    }
}

/// The fields of `/proc/<pid>/stat` that we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub start_time: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `/proc/<pid>/stat`; the command name is in parentheses and may contain anything,
/// so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// The argv of a process (empty for kernel threads or if it is gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every pid currently in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live processes whose argv satisfies `pred`.
pub fn find(pred: impl Fn(&[String]) -> bool) -> Vec<ProcId> {
    all_pids()
        .into_iter()
        .filter(|&pid| pred(&cmdline(pid)))
        .filter_map(ProcId::of)
        .collect()
}

/// Live children of `parent`.
pub fn children(parent: i32) -> Vec<ProcId> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == parent && s.state != 'Z'))
        .filter_map(ProcId::of)
        .collect()
}

/// Waits until none of `procs` is alive; true if they all went within `timeout`.
pub fn wait_gone(procs: &[ProcId], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if procs.iter().all(|p| !p.alive()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait a little more. True if it is gone.
pub fn terminate(p: ProcId, grace: Duration) -> bool {
    if !p.alive() {
        return true;
    }
    p.signal(Signal::TERM);
    if wait_gone(&[p], grace) {
        return true;
    }
    p.signal(Signal::KILL);
    wait_gone(&[p], Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let line =
            "1234 (a) b (c) S 42 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let st = parse_stat(line).expect("parses");
        assert_eq!(
            st,
            Stat {
                state: 'S',
                ppid: 42,
                start_time: 987654
            }
        );
    }

    #[test]
    fn own_process_is_alive_and_round_trips_through_pid_file() {
        let me = ProcId::of(std::process::id() as i32).expect("self in /proc");
        assert!(me.alive());
        let dir = std::env::temp_dir().join(format!("xtask-procs-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("tmp dir");
        let f = dir.join("x.pid");
        me.write_pid_file(&f).expect("write");
        assert_eq!(ProcId::read_pid_file(&f), Some(me));
        let _ = fs::remove_dir_all(&dir);
        let other = ProcId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!other.alive(), "a recycled pid must not count as alive");
    }
}
