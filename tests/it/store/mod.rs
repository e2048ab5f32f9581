//! The shared token store against real `redis-server` processes: each test starts its
//! own servers on free ports, so they run in parallel.

mod basics;
mod lease;
mod outage;
mod setups;

use crate::support::redis::PASSWORD;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use token_sidecar::secret::Secret;
use token_sidecar::store::{unix_ms, Endpoint, Op, Outcome, Store, StoreConfig, StoredToken};

pub const KEY: &str = "store-test-encryption-key-0123456789";
pub const OTHER_KEY: &str = "another-encryption-key-9876543210-xyz";
pub const TIMEOUT: Duration = Duration::from_millis(250);

/// A store config for one server with [`PASSWORD`].
pub fn config(url: String) -> StoreConfig {
    StoreConfig {
        endpoint: Endpoint::Standalone(url),
        username: None,
        password: Some(Secret::new(PASSWORD)),
        ca_file: None,
        key_prefix: "ts-test:".into(),
        timeout: TIMEOUT,
        encryption_key: Secret::new(KEY),
    }
}

/// A token valid for `secs` from now.
pub fn token(value: &str, secs: u64) -> StoredToken {
    StoredToken {
        access_token: Secret::new(value),
        token_type: "Bearer".into(),
        scope: Some("read:orders write:orders".into()),
        expires_at_ms: unix_ms(std::time::SystemTime::now()) + secs * 1000,
        refresh_at_ms: unix_ms(std::time::SystemTime::now()) + secs * 500,
    }
}

/// Waits (up to 10 s) until `store` reports up.
pub async fn wait_up(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.up() {
        assert!(
            Instant::now() < deadline,
            "store never came up: {:?}",
            store.last_error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How often `op` ended with `outcome`.
pub fn count(store: &Store, op: Op, outcome: Outcome) -> u64 {
    store
        .operations()
        .find(|(o, out, _)| *o == op && *out == outcome)
        .map(|(_, _, n)| n)
        .unwrap_or(0)
}

/// Log lines written on this thread while the guard lives (tests on the default
/// current-thread runtime: the store's tasks run on the test's thread too).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
