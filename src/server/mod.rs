//! The agent's HTTP listeners. Today: the plain-HTTP healthz listener (loopback by default).
//! The secure 10250 API comes with its own change; until then no port 10250 is opened at
//! all (failing closed rather than serving anything unauthenticated).

pub mod authz;
pub mod healthz;
