//! Sources of desired pods. Each source sends complete sets (not deltas), so a lost
//! message can never leave a stale pod behind: static pod manifests on disk (`file`) and
//! the API server (`api`). `merge` joins them into the one desired set the manager follows.

pub mod api;
pub mod file;

use tokio::sync::mpsc;

use super::{DesiredPod, DesiredSet};

/// Joins the latest set of each source and sends the union on every change. The set is
/// marked `sources_ready` once every source has sent at least once; until then the manager
/// runs what it is given but treats no runtime pod as an orphan (a restart with the API
/// server unreachable must not kill the API's pods, while static pods still start).
pub async fn merge(sources: Vec<mpsc::Receiver<Vec<DesiredPod>>>, tx: mpsc::Sender<DesiredSet>) {
    let n = sources.len();
    let (in_tx, mut in_rx) = mpsc::channel::<(usize, Vec<DesiredPod>)>(16);
    for (i, mut rx) in sources.into_iter().enumerate() {
        let in_tx = in_tx.clone();
        tokio::spawn(async move {
            while let Some(set) = rx.recv().await {
                if in_tx.send((i, set)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(in_tx);
    let mut latest: Vec<Option<Vec<DesiredPod>>> = vec![None; n];
    if n == 0 {
        let _ = tx
            .send(DesiredSet {
                pods: Vec::new(),
                sources_ready: true,
            })
            .await;
        tx.closed().await;
        return;
    }
    while let Some((i, set)) = in_rx.recv().await {
        latest[i] = Some(set);
        let sources_ready = latest.iter().all(Option::is_some);
        let pods = latest.iter().flatten().flatten().cloned().collect();
        if tx
            .send(DesiredSet {
                pods,
                sources_ready,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pod(name: &str) -> DesiredPod {
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - {{name: c, image: b:1}}\n"
        );
        super::super::manifest::parse(Path::new("/m/x.yaml"), y.as_bytes(), "n", "t").unwrap()
    }

    #[tokio::test]
    async fn union_of_sources_ready_when_all_have_sent() {
        let (a_tx, a_rx) = mpsc::channel(4);
        let (b_tx, b_rx) = mpsc::channel(4);
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(merge(vec![a_rx, b_rx], tx));
        a_tx.send(vec![pod("a")]).await.unwrap();
        let s = rx.recv().await.unwrap();
        assert_eq!((s.pods.len(), s.sources_ready), (1, false));
        b_tx.send(vec![pod("b"), pod("c")]).await.unwrap();
        let s = rx.recv().await.unwrap();
        assert_eq!((s.pods.len(), s.sources_ready), (3, true));
        a_tx.send(Vec::new()).await.unwrap();
        let s = rx.recv().await.unwrap();
        assert_eq!((s.pods.len(), s.sources_ready), (2, true));
    }
}
