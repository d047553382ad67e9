//! Developer and CI tasks for ironlet, as a library so that ironlet's integration tests can
//! start the same project-owned containerd the developer uses.
//!
//! Owns: installing the node prerequisites (`prereqs`), building and importing the two local
//! images (`images`), running isolated containerd instances with their own CNI network
//! (`containerd`), the dev node (`dev`), the CI pipeline (`check`), its supply-chain checks (`deny`)
//! and the skip reports of tests that cannot judge on this machine (`skip`).
//! Must not touch: anything outside its own state directories, the host's default containerd
//! (`/run/containerd/containerd.sock`), other instances' netns, bridges or iptables rules.

pub mod check;
pub mod containerd;
pub mod deny;
pub mod dev;
pub mod fuzz;
pub mod http;
pub mod images;
pub mod netclaim;
pub mod prereqs;
pub mod procs;
pub mod run;
pub mod seccomp;
pub mod skip;
pub mod teardown;
pub mod workspace;
