//! `token_store` (SPEC §9): the Redis that replicas share tokens through. Checked here as
//! the store checks it when it is built (URLs, trust roots, key length), so `validate`
//! reports what would fail at start-up. No message holds a URL (it may carry a
//! password), a password or the key.

use super::{Arc, Cx, Duration, PathBuf, ProviderConfig, Secret, TokenOrigin, YamlPath};
use crate::config::raw::{RawRedis, RawTokenStore, Text};
use crate::config::{format_duration, TokenStoreConfig};
use crate::store::{Endpoint, StoreConfig, StoreError, MIN_KEY_LEN};

const DEFAULT_PREFIX: &str = "token-sidecar:";
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_LEASE: Duration = Duration::from_secs(15);

impl Cx<'_> {
    /// `token_store`, checked against the providers whose fetches it leases.
    pub(super) fn token_store(
        &mut self,
        path: &YamlPath,
        raw: &RawTokenStore,
        providers: &[Arc<ProviderConfig>],
    ) -> Option<TokenStoreConfig> {
        let before = self.problems.len();
        let redis_path = path.key("redis");
        let redis = match &raw.redis {
            Some(r) => self.redis(&redis_path, r),
            None => {
                self.problem(
                    &redis_path,
                    "missing required field (the Redis to share tokens through: url, or urls with cluster: true)",
                );
                None
            }
        };
        let key_path = path.key("encryption_key");
        let key = self.required(&key_path, &raw.encryption_key, "the encryption key");
        if let Some(k) = &key {
            if k.len() < MIN_KEY_LEN {
                self.problem(
                    &key_path,
                    format!(
                        "must hold at least {MIN_KEY_LEN} bytes of secret (it has {}); for example `openssl rand -base64 48`",
                        k.len()
                    ),
                );
            }
        }
        let lease_path = path.key("lease");
        let lease = self.positive_duration(&lease_path, &raw.lease, DEFAULT_LEASE);
        self.lease_covers_fetches(&lease_path, raw.lease.is_some(), lease, providers);
        let (redis, key) = (redis?, key?);
        if self.problems.len() > before {
            return None;
        }
        let store = StoreConfig {
            endpoint: redis.endpoint,
            username: redis.username,
            password: redis.password,
            ca_file: redis.ca_file,
            key_prefix: redis.key_prefix,
            timeout: redis.timeout,
            encryption_key: Secret::new(key),
        };
        if let Err(e) = crate::store::check(&store) {
            let (at, msg) = match e {
                StoreError::CaFile(m) => (redis_path.key("ca_file"), m),
                StoreError::Url(m) => (url_path(&redis_path, &m), m),
                other => (path.clone(), other.to_string()),
            };
            self.problem(&at, msg);
            return None;
        }
        Some(TokenStoreConfig::new(store, lease))
    }

    fn redis(&mut self, path: &YamlPath, raw: &RawRedis) -> Option<Redis> {
        let before = self.problems.len();
        let endpoint = self.endpoint(path, raw);
        let username = self.optional_nonempty(&path.key("username"), &raw.username);
        let password = self
            .optional_nonempty(&path.key("password"), &raw.password)
            .map(Secret::new);
        let ca_file = self
            .optional_nonempty(&path.key("ca_file"), &raw.ca_file)
            .map(PathBuf::from);
        let prefix_path = path.key("key_prefix");
        let key_prefix = self
            .text(&prefix_path, &raw.key_prefix)
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        // Braces would change the key's cluster hash tag (the store puts each token's keys
        // in one slot with its own `{tag}`); control characters and spaces are a typo.
        if key_prefix
            .chars()
            .any(|c| c == '{' || c == '}' || c.is_control() || c.is_whitespace())
        {
            self.problem(
                &prefix_path,
                "must not contain `{`, `}`, spaces or control characters",
            );
        }
        let timeout_path = path.key("timeout");
        let timeout = self.positive_duration(&timeout_path, &raw.timeout, DEFAULT_TIMEOUT);
        if timeout > MAX_TIMEOUT {
            self.problem(
                &timeout_path,
                format!("must be at most {}", format_duration(MAX_TIMEOUT)),
            );
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Redis {
            endpoint: endpoint?,
            username,
            password,
            ca_file,
            key_prefix,
            timeout,
        })
    }

    /// `url` for one server, `urls` with `cluster: true`.
    fn endpoint(&mut self, path: &YamlPath, raw: &RawRedis) -> Option<Endpoint> {
        let cluster = raw.cluster.unwrap_or(false);
        match (cluster, &raw.url, &raw.urls) {
            (false, Some(_), None) => {
                let url = self.required(&path.key("url"), &raw.url, "the Redis URL")?;
                Some(Endpoint::Standalone(url.trim().to_string()))
            }
            (false, _, Some(_)) => {
                self.problem(
                    &path.key("urls"),
                    "only with cluster: true (one server: url)",
                );
                None
            }
            (false, None, None) => {
                self.problem(
                    &path.key("url"),
                    "missing required field (redis:// or rediss:// URL; or urls with cluster: true)",
                );
                None
            }
            (true, Some(_), _) => {
                self.problem(
                    &path.key("url"),
                    "with cluster: true, list the seed nodes in urls",
                );
                None
            }
            (true, None, None) => {
                self.problem(
                    &path.key("urls"),
                    "missing required field (the seed nodes of the Redis Cluster)",
                );
                None
            }
            (true, None, Some(list)) => {
                let urls_path = path.key("urls");
                if list.is_empty() {
                    self.problem(&urls_path, "needs at least one seed node");
                    return None;
                }
                let urls: Vec<Option<String>> = list
                    .iter()
                    .enumerate()
                    .map(|(i, u)| {
                        let raw = Some(u.clone());
                        self.required(&urls_path.index(i), &raw, "a seed node URL")
                    })
                    .collect();
                let urls: Option<Vec<String>> = urls.into_iter().collect();
                Some(Endpoint::Cluster(
                    urls?.into_iter().map(|u| u.trim().to_string()).collect(),
                ))
            }
        }
    }

    /// The lease must outlast a whole fetch of every provider that uses the store, or a
    /// second replica could take it over while the first still fetches.
    fn lease_covers_fetches(
        &mut self,
        lease_path: &YamlPath,
        written: bool,
        lease: Duration,
        providers: &[Arc<ProviderConfig>],
    ) {
        let leased = providers
            .iter()
            .filter(|p| !matches!(p.origin, TokenOrigin::StaticFile { .. }));
        for p in leased.filter(|p| p.timeout >= lease) {
            let timeout = format_duration(p.timeout);
            if written {
                self.problem(
                    lease_path,
                    format!(
                        "must exceed every provider's timeout: provider {} has timeout {timeout}",
                        p.name
                    ),
                );
            } else {
                let at = YamlPath::default()
                    .key("providers")
                    .key(&p.name)
                    .key("timeout");
                self.problem(
                    &at,
                    format!(
                        "must be shorter than token_store.lease ({} by default): raise the lease",
                        format_duration(lease)
                    ),
                );
            }
        }
    }

    /// An optional text that, when given, must not be empty.
    fn optional_nonempty(&mut self, path: &YamlPath, raw: &Option<Text>) -> Option<String> {
        let v = self.text(path, raw)?;
        if v.trim().is_empty() {
            self.problem(path, "must not be empty (leave the key out instead)");
            return None;
        }
        Some(v)
    }
}

/// `token_store.redis` as checked, before the key joins it.
struct Redis {
    endpoint: Endpoint,
    username: Option<String>,
    password: Option<Secret>,
    ca_file: Option<PathBuf>,
    key_prefix: String,
    timeout: Duration,
}

/// Where a URL problem the store found belongs: `urls[i]` when it names one, else `url`
/// or `urls`.
fn url_path(redis: &YamlPath, msg: &str) -> YamlPath {
    if let Some(rest) = msg.strip_prefix("urls[") {
        if let Some(i) = rest.split(']').next().and_then(|i| i.parse().ok()) {
            return redis.key("urls").index(i);
        }
    }
    match msg.starts_with("url") && !msg.starts_with("urls") {
        true => redis.key("url"),
        false => redis.key("urls"),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::store::Endpoint;
    use std::path::Path;
    use std::time::Duration;

    const KEY: &str = "0123456789abcdef0123456789abcdef-key";

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some(KEY.into()),
            "SHORT" => Some("short-secret-key".into()),
            "PW" => Some("redis-password-value".into()),
            _ => None,
        }
    }

    fn load(store: &str) -> Result<Config, Vec<String>> {
        let yaml = format!(
            "providers:\n  crm:\n    token_url: https://idp.example.com/t\n    client_id: c\n    client_secret: s\n  file:\n    kind: static_file\n    token_file: /t\n{store}"
        );
        Config::from_text(Path::new("proxy.yaml"), &yaml, &env).map_err(|e| e.problems)
    }

    #[test]
    fn defaults_and_a_full_standalone_store() {
        let c = load(
            "token_store:\n  redis: { url: redis://127.0.0.1:6379/2 }\n  encryption_key: ${KEY}\n",
        )
        .unwrap();
        let t = c.token_store.unwrap();
        assert_eq!(t.lease, Duration::from_secs(15));
        assert_eq!(t.store.key_prefix, "token-sidecar:");
        assert_eq!(t.store.timeout, Duration::from_millis(250));
        assert_eq!(
            t.store.endpoint,
            Endpoint::Standalone("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(t.store.encryption_key.expose(), KEY);
        let c = load("token_store:\n  redis:\n    url: redis://h:1\n    username: sidecar\n    password: ${PW}\n    key_prefix: \"fleet-a:\"\n    timeout: 1s\n  encryption_key: ${KEY}\n  lease: 30s\n").unwrap();
        let t = c.token_store.unwrap();
        assert_eq!(t.lease, Duration::from_secs(30));
        assert_eq!(t.store.username.as_deref(), Some("sidecar"));
        assert_eq!(t.store.password.unwrap().expose(), "redis-password-value");
        assert_eq!(
            (t.store.key_prefix.as_str(), t.store.timeout),
            ("fleet-a:", Duration::from_secs(1))
        );
        assert!(load("").unwrap().token_store.is_none());
    }

    #[test]
    fn a_cluster_lists_its_seed_nodes() {
        let c = load("token_store:\n  redis: { cluster: true, urls: [redis://a:1, redis://b:2] }\n  encryption_key: ${KEY}\n").unwrap();
        assert_eq!(
            c.token_store.unwrap().store.endpoint,
            Endpoint::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
    }

    #[test]
    fn problems_name_file_line_and_field_and_never_a_secret() {
        let cases: &[(&str, &str)] = &[
            ("token_store:\n  encryption_key: ${KEY}\n", "token_store.redis: missing required field"),
            ("token_store:\n  redis: { url: redis://h:1 }\n", "token_store.encryption_key: missing required field"),
            ("token_store:\n  redis: { url: redis://h:1 }\n  encryption_key: ${SHORT}\n", "proxy.yaml:11:19: token_store.encryption_key: must hold at least 32 bytes of secret (it has 16)"),
            ("token_store:\n  redis: { url: \"http://u:${PW}@h:1\" }\n  encryption_key: ${KEY}\n", "proxy.yaml:10:17: token_store.redis.url: url is not a redis:// or rediss:// URL"),
            ("token_store:\n  redis: { urls: [redis://a:1] }\n  encryption_key: ${KEY}\n", "proxy.yaml:10:18: token_store.redis.urls: only with cluster: true"),
            ("token_store:\n  redis: { cluster: true, url: redis://a:1 }\n  encryption_key: ${KEY}\n", "token_store.redis.url: with cluster: true, list the seed nodes in urls"),
            ("token_store:\n  redis: { cluster: true, urls: [redis://a:1, \"redis:/${PW}\"] }\n  encryption_key: ${KEY}\n", "token_store.redis.urls[1]: urls[1] is not a redis:// or rediss:// URL"),
            ("token_store:\n  redis: { url: redis://h:1, ca_file: /nonexistent.pem }\n  encryption_key: ${KEY}\n", "token_store.redis.ca_file: is only used with rediss://"),
            ("token_store:\n  redis: { url: redis://h:1, key_prefix: \"a{b}\" }\n  encryption_key: ${KEY}\n", "token_store.redis.key_prefix: must not contain"),
            ("token_store:\n  redis: { url: redis://h:1, timeout: 0s }\n  encryption_key: ${KEY}\n", "token_store.redis.timeout: must be greater than zero"),
            ("token_store:\n  redis: { url: redis://h:1, password: \"\" }\n  encryption_key: ${KEY}\n", "token_store.redis.password: must not be empty"),
            ("token_store:\n  redis: { url: redis://h:1, passwd: x }\n  encryption_key: ${KEY}\n", "token_store.redis.passwd: unknown field `passwd`; did you mean `password`?"),
            ("token_store:\n  redis: { url: redis://h:1 }\n  encryption_key: ${KEY}\n  leese: 1s\n", "token_store.leese: unknown field `leese`; did you mean `lease`?"),
            ("token_store:\n  redis: { url: redis://h:1 }\n  encryption_key: ${KEY}\n  lease: 10s\n", "proxy.yaml:12:10: token_store.lease: must exceed every provider's timeout: provider crm has timeout 10s"),
        ];
        for (store, want) in cases {
            let problems = load(store).expect_err(store);
            let all = problems.join("\n");
            assert!(all.contains(want), "{store}\n got: {all}\nwant: {want}");
            for secret in ["redis-password-value", "short-secret-key", KEY] {
                assert!(!all.contains(secret), "{store}: {all}");
            }
        }
    }

    #[test]
    fn a_default_lease_shorter_than_a_timeout_points_at_the_timeout() {
        let yaml = "providers:\n  slow:\n    token_url: https://idp.example.com/t\n    client_id: c\n    client_secret: s\n    timeout: 20s\ntoken_store:\n  redis: { url: redis://h:1 }\n  encryption_key: ${KEY}\n";
        let problems = Config::from_text(Path::new("proxy.yaml"), yaml, &env)
            .unwrap_err()
            .problems;
        assert_eq!(
            problems,
            ["proxy.yaml:6:14: providers.slow.timeout: must be shorter than token_store.lease (15s by default): raise the lease"]
        );
        // A static_file provider's timeout does not count: it never uses the store.
        let ok = "providers:\n  f: { kind: static_file, token_file: /t }\ntoken_store:\n  redis: { url: redis://h:1 }\n  encryption_key: ${KEY}\n  lease: 1s\n";
        assert!(Config::from_text(Path::new("p.yaml"), ok, &env).is_ok());
    }
}
