//! `ironlet pods`: the running agent's pods as `kubectl get pods` shows them, or as a v1
//! PodList with `-o json`. Reads the agent's local view; needs no listener.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;

use super::RootDirArg;
use crate::pod::status::display_status;
use crate::view;

#[derive(clap::Args, Debug)]
pub struct PodsArgs {
    #[command(flatten)]
    pub root: RootDirArg,
    /// Output format: table (default), wide or json
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

pub fn run(args: PodsArgs) -> anyhow::Result<()> {
    let root = &args.root.root_dir;
    if let Ok(agent) = view::read_agent(root) {
        let now = now_unix();
        if now - agent.heartbeat_unix > 3.0 * view::HEARTBEAT.as_secs_f64() {
            eprintln!(
                "warning: the agent (pid {}) has not updated its state for {:.0}s; it may not be running",
                agent.pid,
                now - agent.heartbeat_unix
            );
        }
    }
    let list = view::read_pods(root)?;
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&list)?),
        "table" => print!("{}", table(&list.items, false, now_unix())),
        "wide" => print!("{}", table(&list.items, true, now_unix())),
        other => anyhow::bail!("--output {other:?}: expected table, wide or json"),
    }
    Ok(())
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// kubectl's age format: 45s, 12m, 3h, 2d.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Renders the pod table.
pub fn table(pods: &[Pod], wide: bool, now: f64) -> String {
    let mut rows = vec![{
        let mut h = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
        if wide {
            h.extend(["IP", "NODE"]);
        }
        h.into_iter().map(str::to_string).collect::<Vec<_>>()
    }];
    for p in pods {
        let status = p.status.clone().unwrap_or_default();
        let cs = status.container_statuses.clone().unwrap_or_default();
        let ready = cs.iter().filter(|c| c.ready).count();
        let total = p.spec.as_ref().map_or(cs.len(), |s| s.containers.len());
        let restarts: i32 = cs.iter().map(|c| c.restart_count).sum();
        let started = status
            .start_time
            .as_ref()
            .map(|t| t.0.as_second() as f64)
            .unwrap_or(now);
        let mut row = vec![
            p.metadata.name.clone().unwrap_or_default(),
            format!("{ready}/{total}"),
            display_status(&status),
            restarts.to_string(),
            age(now - started),
        ];
        if wide {
            row.push(status.pod_ip.clone().unwrap_or_else(|| "<none>".into()));
            row.push(
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
            );
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(5.0), "5s");
        assert_eq!(age(600.0), "10m");
        assert_eq!(age(3.0 * 3600.0), "3h");
        assert_eq!(age(3.0 * 86400.0), "3d");
    }

    #[test]
    fn table_has_kubectl_columns() {
        let t = table(&[], false, 0.0);
        assert_eq!(t, "NAME   READY   STATUS   RESTARTS   AGE\n");
    }
}
