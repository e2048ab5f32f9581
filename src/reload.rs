//! What triggers a config reload: a change of the config file (its directory is watched,
//! because Kubernetes updates a ConfigMap by swapping a symlink, which a watch on the
//! file's inode would miss), and SIGHUP. `POST /reload` is in `admin`. The reload itself
//! is [`Sidecar::reload`](crate::Sidecar::reload).

use crate::sidecar::Sidecar;
use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events closer together than this are one change (editors and `kubectl` write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A burst never delays a reload longer than this, however busy the directory is.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

/// Watches the directory of `path` until `stop`, reloading after each burst of changes
/// that altered the file's content.
pub async fn watch(sidecar: Arc<Sidecar>, path: PathBuf, mut stop: watch::Receiver<bool>) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only the config file itself, or a ConfigMap's `..data` link swap, matters.
        let relevant = event.is_ok_and(|e| {
            e.paths.iter().any(|p| {
                p.file_name().is_some_and(|f| {
                    f == name.as_os_str() || f.to_string_lossy().starts_with("..data")
                })
            })
        });
        if relevant {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or POST /reload");
            return;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; reload with SIGHUP or POST /reload");
        return;
    }
    tracing::debug!(dir = %dir.display(), "watching the config directory");
    loop {
        tokio::select! {
            event = rx.recv() => {
                if event.is_none() {
                    return;
                }
                // Let the burst settle (at most DEBOUNCE_MAX), then look once.
                let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
                loop {
                    let wait = DEBOUNCE.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                    match tokio::time::timeout(wait, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let sc = sidecar.clone();
                let _ = tokio::task::spawn_blocking(move || sc.reload_if_changed()).await;
            }
            _ = crate::listener::stopped(&mut stop) => return,
        }
    }
}

/// Reloads on every SIGHUP until `stop`.
pub async fn on_sighup(sidecar: Arc<Sidecar>, mut stop: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    let sc = sidecar.clone();
                    let _ = tokio::task::spawn_blocking(move || sc.reload("SIGHUP")).await;
                }
                _ = crate::listener::stopped(&mut stop) => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = sidecar;
        crate::listener::stopped(&mut stop).await;
    }
}
