//! Allocates pod-network indexes (198.18.N.0/24, bridge `ilbrN`) to concurrent test
//! processes.
//!
//! Each index is an exclusive `flock` on `/run/ironlet-test-nets/N.lock`. The kernel drops
//! the lock when its holder exits however it exits, so a crashed test never leaks an index
//! and there is no pid-reuse race in reclaiming one. Lock files are never deleted: deleting
//! a lock file while another process has it open would let two holders lock two inodes.
//! (Locks are per open file, so two claims in one process also exclude each other.)

use anyhow::{Context, Result, bail};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// Where test processes coordinate.
pub const TEST_NETS_DIR: &str = "/run/ironlet-test-nets";
/// Index 0 is the dev node; tests use the rest.
pub const TEST_RANGE: RangeInclusive<u8> = 1..=254;

/// An exclusively held network index; released on drop.
#[derive(Debug)]
pub struct NetClaim {
    index: u8,
    path: PathBuf,
    // Holding the open, locked file is the claim.
    _lock: File,
}

impl NetClaim {
    pub fn index(&self) -> u8 {
        self.index
    }

    pub fn lock_path(&self) -> &Path {
        &self.path
    }
}

/// Claims a free index in 1..=254 under [`TEST_NETS_DIR`].
pub fn claim_test_net_index() -> Result<NetClaim> {
    claim_in(Path::new(TEST_NETS_DIR), TEST_RANGE)
}

/// Claims the first free index of `range` in `dir`. Starts at an offset derived from the pid
/// so concurrent processes rarely contend for the same lock.
pub fn claim_in(dir: &Path, range: RangeInclusive<u8>) -> Result<NetClaim> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (lo, hi) = (*range.start(), *range.end());
    if lo > hi {
        bail!("empty index range");
    }
    let n = u32::from(hi - lo) + 1;
    let offset = std::process::id() % n;
    for i in 0..n {
        let index = lo + u8::try_from((offset + i) % n).context("index overflow")?;
        let path = dir.join(format!("{index}.lock"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                // For people inspecting the directory; the lock is what counts.
                let _ = file.set_len(0);
                let _ = writeln!(file, "{}", std::process::id());
                return Ok(NetClaim {
                    index,
                    path,
                    _lock: file,
                });
            }
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
    bail!(
        "all network indexes {lo}..={hi} under {} are in use",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-netclaim-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn claims_are_exclusive_and_released_on_drop() {
        let d = scratch("excl");
        let a = claim_in(&d, 1..=3).expect("a");
        let b = claim_in(&d, 1..=3).expect("b");
        let c = claim_in(&d, 1..=3).expect("c");
        let mut got = vec![a.index(), b.index(), c.index()];
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
        assert!(claim_in(&d, 1..=3).is_err(), "range exhausted");

        let freed = b.index();
        drop(b);
        let again = claim_in(&d, 1..=3).expect("reclaimed");
        assert_eq!(again.index(), freed);
        drop((a, c, again));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn concurrent_threads_get_distinct_indexes() {
        let d = scratch("threads");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || claim_in(&d, 10..=40).expect("claim"))
            })
            .collect();
        let claims: Vec<NetClaim> = handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect();
        let mut idx: Vec<u8> = claims.iter().map(NetClaim::index).collect();
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), 8);
        assert!(idx.iter().all(|i| (10..=40).contains(i)));
        drop(claims);
        let _ = fs::remove_dir_all(&d);
    }
}
