//! The whole sidecar in-process on port 0, and the real binary as a child process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use token_sidecar::config::Config;
use token_sidecar::Listeners;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestSidecar {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestSidecar {
    /// Starts the sidecar with `yaml` (its `listen`/`admin_listen` are ignored).
    pub async fn start(yaml: &str) -> TestSidecar {
        let config = Config::from_text(Path::new("test.yaml"), yaml, &|_| None)
            .unwrap_or_else(|e| panic!("bad test config:\n{e}\n---\n{yaml}"));
        Self::start_config(config).await
    }

    /// Starts the sidecar from a config file (so it watches the file for reloads).
    pub async fn start_file(path: &Path) -> TestSidecar {
        let config = Config::load(path).unwrap_or_else(|e| panic!("bad test config:\n{e}"));
        Self::start_config(config).await
    }

    async fn start_config(config: Config) -> TestSidecar {
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (proxy_addr, admin_addr) = (proxy.local_addr().unwrap(), admin.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            token_sidecar::run(
                Listeners {
                    proxy,
                    admin: Some(admin),
                    proxy_workers: 1,
                },
                config,
                async {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
        });
        TestSidecar {
            proxy: proxy_addr,
            admin: admin_addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// GETs `path` on the proxy listener (reverse-proxy style) and returns the status.
    pub async fn get_status(&self, path: &str) -> u16 {
        super::direct_client()
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// GETs an admin endpoint and parses its JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let resp = super::direct_client()
            .get(self.admin_url(path))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

/// The real binary, started with a config file; killed on drop.
pub struct Binary {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub stderr_path: std::path::PathBuf,
    config_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Binary {
    /// Writes `yaml_body` (without listen addresses) plus free loopback listeners to a
    /// config file and starts `token-sidecar run -c FILE extra_args…`.
    pub fn start(yaml_body: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Binary {
        Self::start_at("127.0.0.1", "127.0.0.1", yaml_body, extra_args, env)
    }

    /// Like [`Binary::start`], with `listen` on `proxy_ip` and `admin_listen` on
    /// `admin_ip` (e.g. `0.0.0.0` for shared egress). `proxy` and `admin` still point at
    /// 127.0.0.1: tests connect over loopback only.
    ///
    /// `@PROXY_PORT@` and `@ADMIN_PORT@` in `yaml_body` become the listeners' ports.
    ///
    /// `IT_BINARY=/path/to/token-sidecar` runs another build instead (e.g. an older
    /// release, to check that a test fails there).
    pub fn start_at(
        proxy_ip: &str,
        admin_ip: &str,
        yaml_body: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Binary {
        // A port found free can be taken by another test before the child binds it:
        // then the child exits at once, and it is started again on other ports.
        for _ in 0..5 {
            let mut bin = Self::spawn(proxy_ip, admin_ip, yaml_body, extra_args, env);
            if !bin.lost_a_port_race() {
                return bin;
            }
            let _ = bin.child.wait();
        }
        panic!("could not find free ports for token-sidecar in 5 tries");
    }

    fn spawn(
        proxy_ip: &str,
        admin_ip: &str,
        yaml_body: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        let (pp, ap) = (free_port(), free_port());
        let yaml_body = yaml_body
            .replace("@PROXY_PORT@", &pp.to_string())
            .replace("@ADMIN_PORT@", &ap.to_string());
        let yaml = format!("listen: {proxy_ip}:{pp}\nadmin_listen: {admin_ip}:{ap}\n{yaml_body}");
        let cfg = dir.path().join("proxy.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let exe = std::env::var_os("IT_BINARY")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_token-sidecar").into());
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .arg("-c")
            .arg(&cfg)
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Binary {
            child,
            proxy: ([127, 0, 0, 1], pp).into(),
            admin: ([127, 0, 0, 1], ap).into(),
            stderr_path,
            config_path: cfg,
            _dir: dir,
        }
    }

    /// Waits (up to 10 s) until the admin port accepts or the child exits; true when it
    /// exited because a port was taken.
    fn lost_a_port_race(&mut self) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.stderr().contains("Address already in use");
            }
            if std::net::TcpStream::connect_timeout(&self.admin, Duration::from_millis(100)).is_ok()
            {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until the admin listener answers /healthz.
    pub async fn wait_healthy(&mut self) {
        let client = super::direct_client();
        for _ in 0..200 {
            if let Ok(r) = client
                .get(format!("http://{}/healthz", self.admin))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "token-sidecar exited early with {status}: {}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("token-sidecar did not become healthy: {}", self.stderr());
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        self.config_path.clone()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit (up to `limit`) and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// After SIGTERM: the process exits 0 within 15 s (its stderr otherwise) and its proxy
    /// port no longer accepts.
    pub async fn assert_exited_cleanly(&mut self) {
        let code = self.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(code, Some(0), "{}", self.stderr());
        assert!(
            std::net::TcpStream::connect(self.proxy).is_err(),
            "no longer accepting"
        );
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
