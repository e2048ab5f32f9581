//! The keys for a proxy that others share (SPEC §4, §7): `limits`, `clients`,
//! `tunnel_ports`, `server_names`, `admin_token_file`, and a route's `clients` and
//! `allowed_origins`.

use super::super::raw::RawLimits;
use super::{
    format_duration, interp, normalize_origin, parse_server_name, parse_size, BTreeSet, Cx,
    Duration, Limits, Parsed, PathBuf, ProxyClient, RawRoute, Secret, Text, TunnelPorts, YamlPath,
};

const HOUR: Duration = Duration::from_secs(3600);
const MAX_CONNECTIONS: usize = 1_000_000;
const MAX_BUFFERED_BODIES: u64 = 16 << 30;
/// Shorter admin tokens are worth a warning: they can be guessed.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The compiled top-level keys of this file, for [`Config`].
pub(super) struct Egress {
    pub limits: Limits,
    pub clients: Vec<ProxyClient>,
    pub tunnel_ports: TunnelPorts,
    pub server_names: Vec<String>,
    pub admin_token_file: Option<PathBuf>,
    pub admin_token: Option<Secret>,
}

impl Cx<'_> {
    /// The top-level keys above; `shared` tells whether `listen` is not loopback.
    pub(super) fn egress(&mut self, parsed: &Parsed, shared: bool) -> Egress {
        let root = YamlPath::default();
        let raw = &parsed.top;
        let (admin_token_file, admin_token) = self
            .admin_token(&root.key("admin_token_file"), &raw.admin_token_file)
            .unzip();
        let tunnel_ports = match &raw.tunnel_ports {
            Some(list) => self.tunnel_ports(&root.key("tunnel_ports"), list),
            None if shared => TunnelPorts::Only(vec![443]),
            None => TunnelPorts::Any,
        };
        Egress {
            limits: self.limits(&root.key("limits"), raw.limits.as_ref()),
            clients: self.clients(&root.key("clients"), parsed),
            tunnel_ports,
            server_names: self.server_names(&root.key("server_names"), &raw.server_names),
            admin_token_file,
            admin_token,
        }
    }

    /// `limits`: each value greater than zero and not absurdly large.
    fn limits(&mut self, path: &YamlPath, raw: Option<&RawLimits>) -> Limits {
        let d = Limits::default();
        let Some(raw) = raw else {
            return d;
        };
        Limits {
            header_read_timeout: self.bounded_duration(
                &path.key("header_read_timeout"),
                &raw.header_read_timeout,
                d.header_read_timeout,
                HOUR,
            ),
            body_read_timeout: self.bounded_duration(
                &path.key("body_read_timeout"),
                &raw.body_read_timeout,
                d.body_read_timeout,
                HOUR,
            ),
            idle_timeout: self.bounded_duration(
                &path.key("idle_timeout"),
                &raw.idle_timeout,
                d.idle_timeout,
                24 * HOUR,
            ),
            max_connections: self.max_connections(&path.key("max_connections"), raw),
            max_buffered_bodies: self.max_buffered_bodies(&path.key("max_buffered_bodies"), raw),
        }
    }

    fn bounded_duration(
        &mut self,
        path: &YamlPath,
        raw: &Option<Text>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        let d = self.positive_duration(path, raw, default);
        if d > max {
            self.problem(path, format!("must be at most {}", format_duration(max)));
            return default;
        }
        d
    }

    fn max_connections(&mut self, path: &YamlPath, raw: &RawLimits) -> usize {
        let default = Limits::default().max_connections;
        let Some(t) = self.text(path, &raw.max_connections) else {
            return default;
        };
        match t.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) => n,
            _ => {
                self.problem(
                    path,
                    format!("invalid connection count {t:?}: expected a whole number from 1 to {MAX_CONNECTIONS}"),
                );
                default
            }
        }
    }

    fn max_buffered_bodies(&mut self, path: &YamlPath, raw: &RawLimits) -> u64 {
        let default = Limits::default().max_buffered_bodies;
        let Some(t) = self.text(path, &raw.max_buffered_bodies) else {
            return default;
        };
        match parse_size(&t) {
            Ok(0) => self.problem(path, "must be greater than zero"),
            Ok(n) if n > MAX_BUFFERED_BODIES => self.problem(path, "must be at most 16GiB"),
            Ok(n) => return n,
            Err(e) => self.problem(path, e),
        }
        default
    }

    /// `clients`: name → password, as `name: { password: ... }` or `name: password`.
    fn clients(&mut self, path: &YamlPath, parsed: &Parsed) -> Vec<ProxyClient> {
        let Some(map) = &parsed.clients else {
            return Vec::new();
        };
        if map.is_empty() && parsed.broken_clients.is_empty() {
            self.problem(
                path,
                "no clients are defined, so no request could authenticate: define one, or remove `clients`",
            );
        }
        let mut clients = Vec::new();
        for (name, raw) in map {
            // `parse` has refused invalid names already.
            let entry = path.key(name);
            let at = if raw.short {
                entry
            } else {
                entry.key("password")
            };
            if let Some(password) = self.required(&at, &raw.password, "the client's password") {
                clients.push(ProxyClient {
                    name: name.clone(),
                    password: Secret::new(password),
                });
            }
        }
        clients
    }

    fn tunnel_ports(&mut self, path: &YamlPath, list: &[Text]) -> TunnelPorts {
        let mut ports = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let p = path.index(i);
            let Some(s) = self.text(&p, &Some(t.clone())) else {
                continue;
            };
            match s.trim().parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => self.problem(&p, format!("invalid port {s:?}: expected 1 to 65535")),
            }
        }
        ports.sort_unstable();
        ports.dedup();
        TunnelPorts::Only(ports)
    }

    fn server_names(&mut self, path: &YamlPath, raw: &Option<Vec<Text>>) -> Vec<String> {
        let mut names = Vec::new();
        for (i, t) in raw.iter().flatten().enumerate() {
            let p = path.index(i);
            let Some(s) = self.text(&p, &Some(t.clone())) else {
                continue;
            };
            match parse_server_name(&s) {
                Ok(name) if !names.contains(&name) => names.push(name),
                Ok(_) => {}
                Err(e) => self.problem(&p, e),
            }
        }
        names
    }

    /// `admin_token_file`, read now (so every reload reads it again). Messages name the
    /// file, never its content.
    fn admin_token(&mut self, path: &YamlPath, raw: &Option<Text>) -> Option<(PathBuf, Secret)> {
        raw.as_ref()?;
        let file = self.required(path, raw, "the path of a file holding the admin token")?;
        let file = PathBuf::from(file.trim());
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                let reason = interp::io_reason(&e);
                let msg = format!(
                    "cannot read the admin token file {}: {reason}",
                    file.display()
                );
                self.problem(path, msg);
                return None;
            }
        };
        let token = text.trim();
        if token.is_empty() {
            self.problem(
                path,
                format!("the admin token file {} is empty", file.display()),
            );
            return None;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.problem(
                path,
                format!("the admin token in {} holds spaces or characters that an Authorization header cannot carry", file.display()),
            );
            return None;
        }
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            self.warn(
                path,
                format!("the admin token in {} is shorter than {MIN_ADMIN_TOKEN_LEN} characters: easy to guess", file.display()),
            );
        }
        Some((file, Secret::new(token)))
    }

    /// A route's `clients` (names from top-level `clients`) and `allowed_origins`.
    pub(super) fn route_audience(
        &mut self,
        path: &YamlPath,
        raw: &RawRoute,
        defined: Option<&BTreeSet<&str>>,
    ) -> (Option<Vec<String>>, Vec<String>) {
        let clients = raw
            .clients
            .as_ref()
            .map(|list| self.route_clients(&path.key("clients"), list, defined));
        let mut origins = Vec::new();
        for (i, t) in raw.allowed_origins.iter().flatten().enumerate() {
            let p = path.key("allowed_origins").index(i);
            match self
                .text(&p, &Some(t.clone()))
                .map(|o| normalize_origin(&o))
            {
                Some(Ok(o)) if !origins.contains(&o) => origins.push(o),
                Some(Ok(_)) | None => {}
                Some(Err(e)) => self.problem(&p, e),
            }
        }
        (clients, origins)
    }

    fn route_clients(
        &mut self,
        path: &YamlPath,
        list: &[Text],
        defined: Option<&BTreeSet<&str>>,
    ) -> Vec<String> {
        let Some(defined) = defined else {
            self.problem(
                path,
                "there are no top-level `clients` to choose from: define them, or remove this list",
            );
            return Vec::new();
        };
        if list.is_empty() {
            self.problem(
                path,
                "an empty list serves no client: name clients, or remove `clients` to serve all of them",
            );
        }
        let mut names = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let p = path.index(i);
            let Some(name) = self.text(&p, &Some(t.clone())) else {
                continue;
            };
            if !defined.contains(name.as_str()) {
                let known: Vec<&str> = defined.iter().copied().collect();
                self.problem(
                    &p,
                    format!("unknown client {name:?} (defined: {})", known.join(", ")),
                );
            } else if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}
