//! Node capacity, measured from the machine, and allocatable = capacity - kubeReserved -
//! systemReserved - hard eviction thresholds, floored at 0 (KK
//! `pkg/kubelet/cm/node_container_manager_linux.go`, `GetNodeAllocatableReservation`).
//!
//! Owns: reading `/proc/meminfo` and the cpu lists in sysfs/cgroupfs, parsing
//! `kubeReserved`/`systemReserved` and the `memory.available`/`nodefs.available` entries
//! of `evictionHard`, and the `kubepods` cgroup limits for `enforceNodeAllocatable: [pods]`.
//! The arithmetic is pure; only [`Capacity::measure`] reads files.
//!
//! - cpu: the cpus in the root cpuset (`cpuset.cpus.effective` on v2,
//!   `cpuset/cpuset.effective_cpus` on v1), else `/sys/devices/system/cpu/online`, else
//!   `available_parallelism`. Upstream (cAdvisor) counts online cpus; the root cpuset is the
//!   same set on a host, and the truthful one for a node agent in a container.
//! - memory: `MemTotal` of `/proc/meminfo`, as cAdvisor.
//! - pods: `maxPods`, or `podsPerCore` × cpus if that is set and lower.
//! - ephemeral-storage: the caller passes the size of the file system holding the root dir
//!   (statvfs needs `nix`/`rustix`, not yet a dependency); `None` leaves it out of capacity,
//!   allocatable and admission.

use std::collections::BTreeMap;
use std::path::Path;

use super::cgroup::PodLimits;
use super::cpu::milli_cpu_to_shares;
use super::quantity::{QuantityError, QuantityValue};
use super::requirements::{CPU, EPHEMERAL_STORAGE, MEMORY};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocatableError {
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("{field}: {source}")]
    Quantity {
        field: String,
        #[source]
        source: QuantityError,
    },
    #[error("{field}: invalid value {value:?}: {why}")]
    Invalid {
        field: String,
        value: String,
        why: &'static str,
    },
}

/// What the node has (`status.capacity`), for the resources ironlet accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_milli: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: Option<i64>,
    pub pods: i64,
}

/// What pods may request in total (`status.allocatable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_milli: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: Option<i64>,
    pub pods: i64,
}

/// `kubeReserved` or `systemReserved`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_milli: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
    /// `pid`: accepted as upstream does; ironlet does not enforce pid reservations yet.
    pub pids: i64,
}

/// A hard eviction threshold: an absolute quantity or a fraction of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Bytes(i64),
    /// 0..=1, kept as the `f32` upstream parses it into.
    Percentage(f32),
}

impl Threshold {
    /// Upstream `GetThresholdQuantity`: `int64(float64(capacity) * float64(percentage))`.
    pub fn of(self, capacity: i64) -> i64 {
        match self {
            Threshold::Bytes(b) => b,
            // `as` saturates; the product is within ±capacity.
            Threshold::Percentage(p) => (capacity as f64 * f64::from(p)) as i64,
        }
    }
}

/// The `evictionHard` signals that reduce allocatable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HardEviction {
    pub memory_available: Option<Threshold>,
    pub nodefs_available: Option<Threshold>,
    /// `pid.available` (a count; `Bytes` holds it). Upstream's default has none.
    pub pid_available: Option<Threshold>,
}

impl Default for HardEviction {
    /// Upstream's Linux defaults: `memory.available<100Mi`, `nodefs.available<10%`.
    fn default() -> Self {
        HardEviction {
            memory_available: Some(Threshold::Bytes(100 << 20)),
            nodefs_available: Some(Threshold::Percentage(10.0 / 100.0)),
            pid_available: None,
        }
    }
}

impl HardEviction {
    /// Reads the two signals from an `evictionHard` map (other signals are the eviction
    /// manager's business). As upstream: `"0%"` and `"100%"` disable a signal, a percentage
    /// must be within 0..=100, a quantity must be positive. NaN and infinities are refused
    /// (upstream lets NaN through).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, AllocatableError> {
        let get = |signal: &str| -> Result<Option<Threshold>, AllocatableError> {
            map.get(signal)
                .map(|v| parse_threshold(&format!("evictionHard[{signal}]"), v))
                .transpose()
                .map(Option::flatten)
        };
        Ok(HardEviction {
            memory_available: get("memory.available")?,
            nodefs_available: get("nodefs.available")?,
            pid_available: get("pid.available")?,
        })
    }
}

fn parse_threshold(field: &str, value: &str) -> Result<Option<Threshold>, AllocatableError> {
    let invalid = |why| AllocatableError::Invalid {
        field: field.to_owned(),
        value: value.to_owned(),
        why,
    };
    if value.ends_with('%') {
        if value == "0%" || value == "100%" {
            return Ok(None);
        }
        // Go: ParseFloat(strings.TrimRight(v, "%"), 32), then float32 / 100.
        let number: f32 = value
            .trim_end_matches('%')
            .parse()
            .map_err(|_| invalid("not a percentage"))?;
        if !number.is_finite() {
            return Err(invalid("not a percentage"));
        }
        let fraction = number / 100.0;
        if fraction < 0.0 {
            return Err(invalid("percentage must be >= 0%"));
        }
        if fraction > 1.0 {
            return Err(invalid("percentage must be <= 100%"));
        }
        return Ok(Some(Threshold::Percentage(fraction)));
    }
    let q = QuantityValue::parse(value).map_err(|source| AllocatableError::Quantity {
        field: field.to_owned(),
        source,
    })?;
    if !q.is_positive() {
        return Err(invalid("eviction threshold must be positive"));
    }
    let bytes = q.value().ok_or_else(|| invalid("too large"))?;
    Ok(Some(Threshold::Bytes(bytes)))
}

impl Reserved {
    /// Parses a `kubeReserved`/`systemReserved` map. Keys other than cpu, memory,
    /// ephemeral-storage and pid are refused, as upstream validation does.
    pub fn from_map(field: &str, map: &BTreeMap<String, String>) -> Result<Self, AllocatableError> {
        let mut r = Reserved::default();
        for (name, value) in map {
            let at = format!("{field}[{name}]");
            let q = QuantityValue::parse(value).map_err(|source| AllocatableError::Quantity {
                field: at.clone(),
                source,
            })?;
            let invalid = |why| AllocatableError::Invalid {
                field: at.clone(),
                value: value.clone(),
                why,
            };
            if q.is_negative() {
                return Err(invalid("must be greater than or equal to 0"));
            }
            let units = || q.value().ok_or_else(|| invalid("too large"));
            match name.as_str() {
                CPU => r.cpu_milli = q.milli_value().ok_or_else(|| invalid("too large"))?,
                MEMORY => r.memory_bytes = units()?,
                EPHEMERAL_STORAGE => r.ephemeral_storage_bytes = units()?,
                "pid" => r.pids = units()?,
                _ => {
                    return Err(invalid(
                        "only cpu, memory, ephemeral-storage and pid can be reserved",
                    ));
                }
            }
        }
        Ok(r)
    }
}

/// capacity - kube - system - eviction, each floored at 0; pods are not reserved.
pub fn allocatable(
    capacity: &Capacity,
    kube_reserved: &Reserved,
    system_reserved: &Reserved,
    eviction: &HardEviction,
) -> Allocatable {
    let left = |cap: i64, parts: &[i64]| {
        parts
            .iter()
            .fold(cap, |acc, p| acc.saturating_sub(*p))
            .max(0)
    };
    let memory_eviction = eviction
        .memory_available
        .map_or(0, |t| t.of(capacity.memory_bytes));
    Allocatable {
        cpu_milli: left(
            capacity.cpu_milli,
            &[kube_reserved.cpu_milli, system_reserved.cpu_milli],
        ),
        memory_bytes: left(
            capacity.memory_bytes,
            &[
                kube_reserved.memory_bytes,
                system_reserved.memory_bytes,
                memory_eviction,
            ],
        ),
        ephemeral_storage_bytes: capacity.ephemeral_storage_bytes.map(|cap| {
            let nodefs = eviction.nodefs_available.map_or(0, |t| t.of(cap));
            left(
                cap,
                &[
                    kube_reserved.ephemeral_storage_bytes,
                    system_reserved.ephemeral_storage_bytes,
                    nodefs,
                ],
            )
        }),
        pods: capacity.pods,
    }
}

/// The `kubepods` cgroup's limits with `enforceNodeAllocatable: [pods]`: upstream uses
/// capacity minus the reservations, *without* the eviction thresholds (so the eviction
/// manager acts before the kernel's OOM killer). A limit that would be 0 is not set.
pub fn node_allocatable_limits(
    capacity: &Capacity,
    kube_reserved: &Reserved,
    system_reserved: &Reserved,
) -> PodLimits {
    let cpu = capacity
        .cpu_milli
        .saturating_sub(kube_reserved.cpu_milli)
        .saturating_sub(system_reserved.cpu_milli);
    let memory = capacity
        .memory_bytes
        .saturating_sub(kube_reserved.memory_bytes)
        .saturating_sub(system_reserved.memory_bytes);
    PodLimits {
        cpu_shares: Some(milli_cpu_to_shares(cpu)),
        memory_limit: (memory > 0).then_some(memory),
        ..PodLimits::default()
    }
}

/// The limits of a reserved cgroup under enforceNodeAllocatable `kube-reserved` or
/// `system-reserved`: shares from the reserved cpu and a memory limit of the reserved
/// memory (upstream's enforceExistingCgroup). Unset reservations set nothing.
pub fn reserved_cgroup_limits(reserved: &Reserved) -> PodLimits {
    PodLimits {
        cpu_shares: (reserved.cpu_milli > 0).then(|| milli_cpu_to_shares(reserved.cpu_milli)),
        memory_limit: (reserved.memory_bytes > 0).then_some(reserved.memory_bytes),
        pids_limit: (reserved.pids > 0).then_some(reserved.pids),
        ..PodLimits::default()
    }
}

impl Capacity {
    /// Measures cpu and memory on this machine; `ephemeral_storage_bytes` is the size of the
    /// root dir's file system if the caller knows it.
    pub fn measure(
        max_pods: u32,
        pods_per_core: u32,
        ephemeral_storage_bytes: Option<i64>,
    ) -> Result<Self, AllocatableError> {
        let meminfo_path = "/proc/meminfo";
        let meminfo =
            std::fs::read_to_string(meminfo_path).map_err(|e| AllocatableError::Read {
                path: meminfo_path.into(),
                message: e.to_string(),
            })?;
        let memory_bytes = parse_mem_total(&meminfo).ok_or_else(|| AllocatableError::Read {
            path: meminfo_path.into(),
            message: "no MemTotal line".into(),
        })?;
        let cpus = measure_cpus();
        Ok(Capacity::new(
            cpus,
            memory_bytes,
            ephemeral_storage_bytes,
            max_pods,
            pods_per_core,
        ))
    }

    /// Capacity from measured values.
    pub fn new(
        cpus: u32,
        memory_bytes: i64,
        ephemeral_storage_bytes: Option<i64>,
        max_pods: u32,
        pods_per_core: u32,
    ) -> Self {
        let mut pods = i64::from(max_pods);
        if pods_per_core > 0 {
            pods = pods.min(i64::from(pods_per_core) * i64::from(cpus));
        }
        Capacity {
            cpu_milli: i64::from(cpus) * 1000,
            memory_bytes,
            ephemeral_storage_bytes,
            pods,
        }
    }
}

fn measure_cpus() -> u32 {
    let candidates = [
        "/sys/fs/cgroup/cpuset.cpus.effective",
        "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
        "/sys/devices/system/cpu/online",
    ];
    candidates
        .iter()
        .filter_map(|p| std::fs::read_to_string(Path::new(p)).ok())
        .find_map(|text| parse_cpu_list(&text))
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .and_then(|n| u32::try_from(n.get()).ok())
        })
        .unwrap_or(1)
}

/// `MemTotal` in bytes from `/proc/meminfo` (`MemTotal:  24684092 kB`).
pub fn parse_mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let kib: i64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => kib.checked_mul(1024),
        None => Some(kib),
        Some(_) => None,
    }
}

/// The number of cpus in a kernel cpu list (`0-3,8,10-11`); `None` if malformed or empty.
pub fn parse_cpu_list(list: &str) -> Option<u32> {
    let list = list.trim();
    if list.is_empty() {
        return None;
    }
    let mut count: u32 = 0;
    for part in list.split(',') {
        let n = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)?.checked_add(1)?
            }
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
        count = count.checked_add(n)?;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: i64 = 1 << 20;
    const GI: i64 = 1 << 30;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_proc_and_sys_formats() {
        let meminfo = "MemTotal:       24684092 kB\nMemFree:        17532540 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24_684_092 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: x kB\n"), None);
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(parse_cpu_list("5"), Some(1));
        for bad in ["", "\n", "3-1", "a", "0-", "1,,2"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn measures_this_machine() {
        let cap = match Capacity::measure(110, 0, None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(
            cap.cpu_milli >= 1000 && cap.cpu_milli % 1000 == 0,
            "{cap:?}"
        );
        assert!(cap.memory_bytes > 64 * MI, "{cap:?}");
        assert_eq!(cap.pods, 110);
        assert_eq!(cap.ephemeral_storage_bytes, None);
    }

    #[test]
    fn pods_per_core_caps_max_pods() {
        assert_eq!(Capacity::new(4, GI, None, 110, 10).pods, 40);
        assert_eq!(Capacity::new(64, GI, None, 110, 10).pods, 110);
        assert_eq!(Capacity::new(4, GI, None, 110, 0).pods, 110);
    }

    /// Upstream `TestNodeAllocatableReservationForScheduling` shapes.
    #[test]
    fn allocatable_subtracts_reservations_and_eviction() {
        let cap = Capacity::new(10, 10 * GI, Some(100 * GI), 110, 0);
        let kube = Reserved {
            cpu_milli: 100,
            memory_bytes: 100 * MI,
            ephemeral_storage_bytes: GI,
            pids: 0,
        };
        let system = Reserved {
            cpu_milli: 50,
            memory_bytes: 50 * MI,
            ..Reserved::default()
        };
        let a = allocatable(&cap, &kube, &system, &HardEviction::default());
        assert_eq!(a.cpu_milli, 9850);
        assert_eq!(a.memory_bytes, 10 * GI - 250 * MI);
        // 10% as a float32 is a hair over 0.1: 10737418400 bytes, not 10737418240, as upstream.
        assert_eq!(
            a.ephemeral_storage_bytes,
            Some(100 * GI - GI - 10_737_418_400)
        );
        assert_eq!(a.pods, 110);

        // Percentage of memory, and floors at zero.
        let eviction = HardEviction {
            memory_available: Some(Threshold::Percentage(0.5)),
            nodefs_available: None,
            pid_available: None,
        };
        let a = allocatable(&cap, &Reserved::default(), &Reserved::default(), &eviction);
        assert_eq!(a.memory_bytes, 5 * GI);
        assert_eq!(a.ephemeral_storage_bytes, Some(100 * GI));
        let huge = Reserved {
            cpu_milli: 20_000,
            memory_bytes: 20 * GI,
            ephemeral_storage_bytes: 200 * GI,
            pids: 0,
        };
        let a = allocatable(&cap, &huge, &Reserved::default(), &eviction);
        assert_eq!(
            (a.cpu_milli, a.memory_bytes, a.ephemeral_storage_bytes),
            (0, 0, Some(0))
        );
    }

    #[test]
    fn eviction_map_as_upstream() {
        let e = match HardEviction::from_map(&map(&[
            ("memory.available", "500Mi"),
            ("nodefs.available", "5%"),
            ("imagefs.available", "15%"),
        ])) {
            Ok(e) => e,
            Err(err) => panic!("{err}"),
        };
        assert_eq!(e.memory_available, Some(Threshold::Bytes(500 * MI)));
        assert_eq!(e.nodefs_available, Some(Threshold::Percentage(0.05)));
        // Setting evictionHard without a signal leaves it unset (merging defaults is config's job).
        let e = HardEviction::from_map(&map(&[("nodefs.available", "0%")]));
        assert_eq!(
            e,
            Ok(HardEviction {
                memory_available: None,
                nodefs_available: None,
                pid_available: None,
            })
        );
        for (v, want) in [
            ("-1%", "percentage must be >= 0%"),
            ("101%", "percentage must be <= 100%"),
            ("NaN%", "not a percentage"),
            ("0", "eviction threshold must be positive"),
            ("-5Mi", "eviction threshold must be positive"),
        ] {
            let err = HardEviction::from_map(&map(&[("memory.available", v)]))
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(
                    |e| e.ends_with(want) && e.contains("evictionHard[memory.available]")
                ),
                "{v}: {err:?}"
            );
        }
        let err = HardEviction::from_map(&map(&[("memory.available", "lots")]))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("quantity \"lots\"")));
    }

    #[test]
    fn reserved_map_as_upstream() {
        let r = Reserved::from_map(
            "kubeReserved",
            &map(&[
                ("cpu", "250m"),
                ("memory", "1Gi"),
                ("ephemeral-storage", "2Gi"),
                ("pid", "1000"),
            ]),
        );
        assert_eq!(
            r,
            Ok(Reserved {
                cpu_milli: 250,
                memory_bytes: GI,
                ephemeral_storage_bytes: 2 * GI,
                pids: 1000,
            })
        );
        let err = Reserved::from_map("systemReserved", &map(&[("nvidia.com/gpu", "1")]))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("systemReserved[nvidia.com/gpu]")));
        let err = Reserved::from_map("kubeReserved", &map(&[("memory", "-1")]))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.ends_with("must be greater than or equal to 0")));
    }

    #[test]
    fn kubepods_limits_exclude_eviction() {
        let cap = Capacity::new(4, 8 * GI, None, 110, 0);
        let kube = Reserved {
            cpu_milli: 500,
            memory_bytes: GI,
            ..Reserved::default()
        };
        let l = node_allocatable_limits(&cap, &kube, &Reserved::default());
        assert_eq!(l.cpu_shares, Some(3584));
        assert_eq!(l.memory_limit, Some(7 * GI));
        assert_eq!(l.cpu_quota, None);
        let all = Reserved {
            memory_bytes: 8 * GI,
            ..Reserved::default()
        };
        assert_eq!(
            node_allocatable_limits(&cap, &all, &Reserved::default()).memory_limit,
            None
        );
    }
}
