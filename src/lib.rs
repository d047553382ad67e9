//! ironlet: a hardening-first Kubernetes node agent.
//!
//! Data flows one way: sources produce desired pods, the pod manager keeps one worker per
//! pod, workers act on the runtime over the CRI, and the PLEG turns runtime changes into
//! events that wake workers. See ARCHITECTURE.md.
#![deny(unsafe_code)]

pub mod agent;
pub mod apiclient;
pub mod atomic_write;
pub mod budget;
pub mod cis;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod confine;
pub mod cri;
pub mod crilog;
pub mod events;
pub mod metrics;
pub mod node;
pub mod pleg;
pub mod pod;
pub mod probe;
pub mod resources;
pub mod server;
pub mod sys;
pub mod tls;
pub mod view;
pub mod volume;
