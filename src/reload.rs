//! Config reloads: [`Reloader::reload`] (load, compile, swap, or keep the old config and
//! count the error) and what triggers it: a change of the config file (its directory is
//! watched, because Kubernetes updates a ConfigMap by swapping a symlink, which a watch on
//! the file's inode would miss), SIGHUP, and `POST /reload` (in `admin`).

use crate::config::Config;
use crate::runtime::Runtime;
use crate::secret::{fingerprint, Fingerprint};
use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Reloads the config file the runtime's current snapshot came from.
pub struct Reloader {
    runtime: Arc<Runtime>,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// Fingerprint of the config text last loaded (or rejected), so the file watcher
    /// reloads only on real changes.
    loaded: Mutex<Option<Fingerprint>>,
}

/// What a successful reload changed.
#[derive(Debug, Serialize)]
pub struct ReloadSummary {
    pub outcome: &'static str,
    pub providers_added: Vec<String>,
    pub providers_removed: Vec<String>,
    pub routes: usize,
}

impl Reloader {
    pub fn new(runtime: Arc<Runtime>) -> Arc<Self> {
        let loaded = Mutex::new(file_fingerprint(&runtime.snapshot().config.source));
        Arc::new(Reloader {
            runtime,
            reloading: Mutex::new(()),
            loaded,
        })
    }

    /// Reloads the config file. A file that does not compile changes nothing: the old
    /// config keeps serving. Blocking (reads files): call it off the runtime.
    pub fn reload(&self, trigger: &str) -> Result<ReloadSummary, Vec<String>> {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.runtime.snapshot();
        let path = old.config.source.clone();
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = file_fingerprint(&path);
        let result = Config::load(&path)
            .map_err(|e| e.problems)
            .and_then(|config| {
                warn_about(&old.config, &config);
                self.runtime.replace(config).map_err(|e| vec![e.0])
            });
        let metrics = &self.runtime.metrics;
        match result {
            Ok(()) => {
                let new = self.runtime.snapshot();
                let before: BTreeSet<&String> = old.providers.keys().collect();
                let after: BTreeSet<&String> = new.providers.keys().collect();
                let summary = ReloadSummary {
                    outcome: "success",
                    providers_added: after.difference(&before).map(|s| s.to_string()).collect(),
                    providers_removed: before.difference(&after).map(|s| s.to_string()).collect(),
                    routes: new.routes.len(),
                };
                metrics.reload(true);
                tracing::info!(trigger, routes = summary.routes, "config reloaded");
                tracing::info!(
                    target: "audit",
                    event = "config_reloaded",
                    outcome = "success",
                    providers_added = %summary.providers_added.join(","),
                    providers_removed = %summary.providers_removed.join(","),
                    routes = summary.routes,
                );
                Ok(summary)
            }
            Err(problems) => {
                metrics.reload(false);
                for p in &problems {
                    tracing::error!(trigger, "config reload rejected: {p}");
                }
                tracing::warn!(target: "audit", event = "config_reloaded", outcome = "error", problems = problems.len());
                Err(problems)
            }
        }
    }

    /// Reloads when the config file's content differs from what was last loaded (called
    /// by the watcher). Blocking.
    fn reload_if_changed(&self) {
        let path = self.runtime.snapshot().config.source.clone();
        let now = file_fingerprint(&path);
        if now.is_some() && now != *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = self.reload("file change");
        }
    }
}

/// Keys in `config::RESTART_ONLY` take effect only after a restart: say so when a reload
/// changes one.
fn warn_about(old: &Config, new: &Config) {
    let changed = restart_only_changes(old, new);
    if !changed.is_empty() {
        tracing::warn!(
            keys = %changed.join(", "),
            "these settings take effect only after a restart"
        );
    }
    for w in &new.warnings {
        tracing::warn!("{w}");
    }
}

fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    [
        ("listen", new.listen != old.listen),
        ("admin_listen", new.admin_listen != old.admin_listen),
        ("workers", new.workers != old.workers),
        ("shutdown_grace", new.shutdown_grace != old.shutdown_grace),
        ("log.format", new.log.format != old.log.format),
        ("log.level", new.log.level != old.log.level),
        (
            "limits.header_read_timeout",
            new.limits.header_read_timeout != old.limits.header_read_timeout,
        ),
        (
            "limits.idle_timeout",
            new.limits.idle_timeout != old.limits.idle_timeout,
        ),
        (
            "limits.max_connections",
            new.limits.max_connections != old.limits.max_connections,
        ),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect()
}

fn file_fingerprint(path: &std::path::Path) -> Option<Fingerprint> {
    std::fs::read(path).ok().map(|t| fingerprint(&t))
}

/// Events closer together than this are one change (editors and `kubectl` write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A burst never delays a reload longer than this, however busy the directory is.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

/// Watches the directory of `path` until `stop`, reloading after each burst of changes
/// that altered the file's content.
pub async fn watch(reloader: Arc<Reloader>, path: PathBuf, mut stop: watch::Receiver<bool>) {
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
                let r = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload_if_changed()).await;
            }
            _ = crate::listener::stopped(&mut stop) => return,
        }
    }
}

/// Reloads on every SIGHUP until `stop`.
pub async fn on_sighup(reloader: Arc<Reloader>, mut stop: watch::Receiver<bool>) {
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
                    let r = reloader.clone();
                    let _ = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await;
                }
                _ = crate::listener::stopped(&mut stop) => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        crate::listener::stopped(&mut stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_reload_names_every_restart_only_key_it_changes() {
        let load = |text: &str| Config::from_text(Path::new("t.yaml"), text, &|_| None).unwrap();
        let old = load("providers: {}\nroutes: []\n");
        let new = load(
            "listen: 127.0.0.1:4490\nadmin_listen: 127.0.0.1:4491\nworkers: 3\nshutdown_grace: 3s\n\
             log: { format: json, level: debug }\n\
             limits: { header_read_timeout: 5s, idle_timeout: 7s, max_connections: 9 }\n\
             providers: {}\nroutes: []\n",
        );
        assert_eq!(
            restart_only_changes(&old, &new),
            crate::config::RESTART_ONLY
        );
        assert!(restart_only_changes(&old, &old).is_empty());
    }
}
