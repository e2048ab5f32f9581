//! Real `redis-server` processes for the store tests (Debian package `redis-server`,
//! which test.sh installs): each on free loopback ports, in its own temp dir, without
//! persistence, killed on drop. Standalone with a password, TLS with an ACL user, or a
//! 3-node Redis Cluster built with `redis-cli --cluster create`.

use super::tls::TestCa;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of [`RedisServer::with_password`] and of the ACL user `sidecar`.
pub const PASSWORD: &str = "redis-pw-4c1d";
pub const ACL_USER: &str = "sidecar";

/// One `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    tls: bool,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server that requires [`PASSWORD`] (`requirepass`, the `default` user).
    pub async fn with_password() -> RedisServer {
        Self::start(|_| vec!["--requirepass".into(), PASSWORD.into()], false).await
    }

    /// A TLS-only server (`--port 0`) with a certificate for 127.0.0.1 from `ca`, and
    /// the ACL user [`ACL_USER`] / [`PASSWORD`]; the `default` user is off.
    pub async fn with_tls_and_acl(ca: &TestCa) -> RedisServer {
        Self::with_tls_and_acl_rule(ca, "~* &* +@all").await
    }

    /// Like [`with_tls_and_acl`](Self::with_tls_and_acl), with the ACL user's rules
    /// (key patterns, channels, commands) as given, e.g. the README's least-privilege
    /// rule.
    pub async fn with_tls_and_acl_rule(ca: &TestCa, rule: &str) -> RedisServer {
        let (cert, key) = leaf_for_localhost(ca);
        let rule = rule.to_string();
        Self::start(
            move |dir| {
                std::fs::write(dir.join("redis.crt"), &cert).unwrap();
                std::fs::write(dir.join("redis.key"), &key).unwrap();
                let mut args: Vec<String> = vec!["--tls-cert-file", "redis.crt"]
                    .into_iter()
                    .chain(["--tls-key-file", "redis.key", "--tls-auth-clients", "no"])
                    .map(String::from)
                    .collect();
                args.extend(acl_args(&rule));
                args
            },
            true,
        )
        .await
    }

    /// A cluster-enabled node (slots are assigned by [`RedisCluster`]).
    async fn cluster_node() -> RedisServer {
        Self::start(
            |_| {
                let bus = free_port().to_string();
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ]
                .into_iter()
                .map(String::from)
                .chain(["--cluster-node-timeout".into(), "3000".into()])
                .chain(["--cluster-port".into(), bus])
                .collect()
            },
            false,
        )
        .await
    }

    /// Starts a server with `extra` arguments (given its temp dir); retries on another
    /// port if the chosen one was taken in the meantime.
    async fn start(extra: impl Fn(&Path) -> Vec<String>, tls: bool) -> RedisServer {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut args: Vec<String> = vec![
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
                "--daemonize".into(),
                "no".into(),
                "--dir".into(),
                dir.path().display().to_string(),
                "--logfile".into(),
                "redis.log".into(),
            ];
            if tls {
                args.extend(["--port".into(), "0".into(), "--tls-port".into()]);
            } else {
                args.push("--port".into());
            }
            args.push(port.to_string());
            args.extend(extra(dir.path()));
            let mut server = RedisServer {
                child: None,
                port,
                tls,
                args,
                dir,
            };
            if server.spawn().await {
                return server;
            }
        }
        panic!("redis-server did not start on five ports in a row");
    }

    /// Spawns the process and waits until it accepts connections (this start's log
    /// line); false if it exited or did not get there in 10 s.
    async fn spawn(&mut self) -> bool {
        let log = self.dir.path().join("redis.log");
        let ready_before = ready_lines(&log);
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (test.sh installs the Debian package)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ready_lines(&log) > ready_before {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port` (`rediss://` for TLS), without credentials.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): no goodbye to clients, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered, as in
    /// a stalled node. [`resume`](Self::resume) continues it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// Starts the server again on the same port (empty: no persistence).
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn().await, "redis-server did not restart");
    }

    /// A direct client for looking at raw contents (not through the store).
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", self.port);
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three cluster nodes, all 16384 slots assigned, `cluster_state:ok` on each.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let nodes = vec![
            RedisServer::cluster_node().await,
            RedisServer::cluster_node().await,
            RedisServer::cluster_node().await,
        ];
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(addrs);
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let out = redis_cli(args).await;
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok().await;
        cluster
    }

    /// Waits until every node reports `cluster_state:ok`.
    pub async fn wait_ok(&self) {
        for n in &self.nodes {
            wait_cluster_ok(n.port()).await;
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}

async fn wait_cluster_ok(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = redis_cli(["-p", &port.to_string(), "cluster", "info"].map(String::from)).await;
        if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cluster node {port} never reached cluster_state:ok");
}

/// Runs `redis-cli` with `args` (off the runtime's thread) and returns its output.
pub async fn redis_cli(args: impl IntoIterator<Item = String>) -> std::process::Output {
    let args: Vec<String> = args.into_iter().collect();
    tokio::task::spawn_blocking(move || {
        Command::new("redis-cli")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed (with redis-server)")
    })
    .await
    .unwrap()
}

/// The ACL: user `sidecar` with [`PASSWORD`] and `rule` (keys, channels, commands);
/// `default` off, so only the ACL user gets in.
fn acl_args(rule: &str) -> Vec<String> {
    let user = format!("{ACL_USER} on >{PASSWORD} {rule}");
    let mut args = vec!["--user".to_string()];
    args.extend(user.split(' ').map(String::from));
    args.extend(["--user", "default", "off"].map(String::from));
    args
}

/// A server certificate and key (PEM) for 127.0.0.1, signed by `ca`.
fn leaf_for_localhost(ca: &TestCa) -> (String, String) {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca.key_path()).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ready_lines(log: &PathBuf) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.matches("Ready to accept connections").count())
        .unwrap_or(0)
}
