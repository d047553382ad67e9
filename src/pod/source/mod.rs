//! Sources of desired pods. Each source sends complete sets (not deltas), so a lost
//! message can never leave a stale pod behind. Today: static pod manifests on disk.

pub mod file;
