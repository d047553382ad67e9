//! Resources: quantities, QoS, oom_score_adj, CPU math, pod cgroups, node allocatable and
//! admission.
//!
//! Owns: everything derived from `resources.requests`/`limits` and the node's capacity, and
//! the pod cgroups under `cgroupRoot`. Must not talk to the CRI or the API server, and must
//! not touch cgroups outside `cgroupRoot` (see [`cgroup`]).
//!
//! Flow for one pod: [`PodResources::from_spec`] parses and validates once (a bad quantity
//! becomes that pod's error); [`admit`] checks it fits; [`PodCgroups::create_pod_cgroup`]
//! with [`pod_cgroup_limits`] makes its cgroup before the sandbox, whose `cgroup_parent` is
//! [`PodCgroups::pod_cgroup_parent`]; each container gets [`container_resources`]; after the
//! sandbox is removed, [`PodCgroups::remove_pod_cgroup`].
//!
//! Everything but `cgroup` and [`Capacity::measure`] is pure.

pub mod admission;
pub mod allocatable;
pub mod cgroup;
pub mod cpu;
pub mod oom;
pub mod qos;
pub mod quantity;
pub mod requirements;

pub use admission::{Rejection, admit};
pub use allocatable::{
    Allocatable, AllocatableError, Capacity, HardEviction, Reserved, Threshold, allocatable,
    node_allocatable_limits,
};
pub use cgroup::{
    CgroupError, CgroupFs, CgroupLayout, CgroupVersion, Hierarchy, PodCgroup, PodCgroups, PodLimits,
};
pub use cpu::{container_resources, pod_cgroup_limits};
pub use oom::container_oom_score_adj;
pub use qos::QosClass;
pub use quantity::{QuantityError, QuantityValue};
pub use requirements::{ContainerResources, PodResources, ResourceError};
