//! The `token-sidecar` binary: command line, logging, runtime, signals and exit codes.
//! Everything else lives in the library.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use token_sidecar::config::{Config, LogFormat};
use token_sidecar::token::TokenSource;
use token_sidecar::Listeners;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "token-sidecar",
    version,
    about = "Adds OAuth2 access tokens to the outbound requests of unchanged applications"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file [default: $TOKEN_SIDECAR_CONFIG, then ./proxy.yaml]
    #[arg(short, long, global = true, env = "TOKEN_SIDECAR_CONFIG")]
    config: Option<PathBuf>,
    /// Log format, overriding the config file's `log.format`
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Log level (trace, debug, info, warn, error, off), overriding `log.level` and RUST_LOG
    #[arg(long, global = true, value_parser = ["trace", "debug", "info", "warn", "error", "off"])]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default)
    Run,
    /// Check the config file: exit 0 when valid, 1 with every problem listed
    Validate,
    /// Fetch one token for PROVIDER and print its metadata as JSON
    Token {
        provider: String,
        /// Also print the token itself
        #[arg(long)]
        print_token: bool,
    },
    /// Start a self-contained demo on loopback (IdP, API and proxy)
    Demo,
    /// Certificate authority for HTTPS interception
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Write ca.crt and ca.key into DIR
    Init {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("proxy.yaml"));
    let command = cli.command.as_ref().unwrap_or(&Command::Run);
    let needs_config = matches!(
        command,
        Command::Run | Command::Validate | Command::Token { .. }
    );
    if let Some(hint) = needs_config
        .then(|| missing_default_config(cli.config.is_some(), &config_path))
        .flatten()
    {
        eprintln!("{hint}");
        return ExitCode::FAILURE;
    }
    let result = match command {
        Command::Run => run(&cli, &config_path),
        Command::Validate => validate(&config_path),
        Command::Token {
            provider,
            print_token,
        } => token(&cli, &config_path, provider, *print_token),
        Command::Demo => demo(&cli),
        Command::Ca {
            command: CaCommand::Init { out, force },
        } => ca_init(out, *force),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config, printing every problem; `None` when it is invalid.
fn load(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            for p in &e.problems {
                eprintln!("{p}");
            }
            eprintln!(
                "{}: {} problem(s); nothing was started",
                path.display(),
                e.problems.len()
            );
            None
        }
    }
}

/// Without `-c` (or `$TOKEN_SIDECAR_CONFIG`), a missing `./proxy.yaml` most likely means
/// a first run: say how to pass a config, and that the demo needs none.
fn missing_default_config(explicit: bool, path: &Path) -> Option<String> {
    if explicit || path.exists() {
        return None;
    }
    Some(format!(
        "error: no config file: {} does not exist
  pass one with `-c FILE` (or set TOKEN_SIDECAR_CONFIG=FILE); proxy.yaml.example shows every key,
  docs/config.md describes them; check one with `token-sidecar validate -c FILE`
  or run `token-sidecar demo`: a self-contained demo (IdP, API and proxy on loopback) that needs
  no config file",
        path.display()
    ))
}

/// `validate`: every problem (or warning) as `error: FILE:LINE:COL: path: message`, the
/// way a compiler lists them, then a summary line.
fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let (report, summary, valid) = validate_report(path, Config::load(path));
    for line in report {
        eprintln!("{line}");
    }
    match valid {
        true => println!("{summary}"),
        false => eprintln!("{summary}"),
    }
    Ok(match valid {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

/// What `validate` prints for `result`: the problem or warning lines, the summary, and
/// whether the config is valid.
fn validate_report(
    path: &Path,
    result: Result<Config, token_sidecar::config::ConfigError>,
) -> (Vec<String>, String, bool) {
    let count = |n: usize, what: &str| match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    };
    match result {
        Err(e) => {
            // SPEC §2: each problem as `FILE:LINE:COLUMN: message`, nothing before it.
            let lines = e.problems.iter().map(|p| p.to_string()).collect();
            let summary = format!(
                "{}: not valid, {}",
                path.display(),
                count(e.problems.len(), "problem")
            );
            (lines, summary, false)
        }
        Ok(config) => {
            let lines = config
                .warnings
                .iter()
                .map(|w| format!("warning: {w}"))
                .collect();
            let mut summary = format!(
                "{}: valid ({} providers, {} routes)",
                path.display(),
                config.providers.len(),
                config.routes.len()
            );
            if !config.warnings.is_empty() {
                summary.push_str(&format!(", {}", count(config.warnings.len(), "warning")));
            }
            (lines, summary, true)
        }
    }
}

fn run(cli: &Cli, path: &Path) -> anyhow::Result<ExitCode> {
    let Some(config) = load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    init_tracing(cli, config.log.format, &config.log.level);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    // A current-thread runtime: with one worker it serves everything; with more, each
    // worker thread runs one of its own for the proxy listener (`workers` module) and this
    // one keeps the admin listener, reloads and token refresh (measured in bench/: fewer
    // CPU microseconds per request than a multi-thread runtime either way).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let proxy = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let admin = match config.admin_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("cannot listen on {a} (admin_listen)"))?,
            ),
            None => None,
        };
        tracing::info!(
            listen = %proxy.local_addr()?,
            admin = %admin
                .as_ref()
                .and_then(|a| a.local_addr().ok())
                .map_or("-".to_string(), |a| a.to_string()),
            workers,
            providers = config.providers.len(),
            routes = config.routes.len(),
            "token-sidecar started"
        );
        token_sidecar::run(
            Listeners {
                proxy,
                admin,
                proxy_workers: workers,
            },
            config,
            shutdown_signal(),
        )
        .await?;
        tracing::info!("token-sidecar stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn token(cli: &Cli, path: &Path, provider: &str, print_token: bool) -> anyhow::Result<ExitCode> {
    let Some(config) = load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    init_tracing(cli, config.log.format, "warn");
    let Some(p) = config.provider(provider).cloned() else {
        let known: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        anyhow::bail!(
            "no provider named {provider:?} in {} (defined: {})",
            path.display(),
            known.join(", ")
        );
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let source = TokenSource::new(p).map_err(anyhow::Error::msg)?;
        let t = source
            .refresh_now()
            .await
            .map_err(|e| anyhow::anyhow!("provider {provider}: {e}"))?;
        let mut out = serde_json::json!({
            "provider": provider,
            "token_type": t.token_type,
            "expires_in": t.lifetime.as_secs(),
            "scope": t.scope,
        });
        if let Some(claims) = token_sidecar::token::jwt::claims(t.secret().expose()) {
            out["claims"] = serde_json::Value::Object(claims);
        }
        if print_token {
            out["access_token"] = serde_json::Value::String(t.secret().expose().to_string());
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        Ok(ExitCode::SUCCESS)
    })
}

fn demo(cli: &Cli) -> anyhow::Result<ExitCode> {
    init_tracing(cli, LogFormat::Text, "info");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(token_sidecar::demo::run_demo(shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// `ca init`: a CA for `tls_intercept`, and how to make apps trust it.
fn ca_init(out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let (crt, key) = token_sidecar::intercept::write_ca(out, force).map_err(anyhow::Error::msg)?;
    let (c, k) = (crt.display(), key.display());
    println!(
        "wrote {c} and {k} (mode 0600; keep it secret: it can sign certificates your apps will trust)

1. Configure the sidecar:
     tls_intercept:
       ca_cert_file: {c}
       ca_key_file: {k}

2. Make the app trust the CA, and send HTTPS through the sidecar:
     export HTTPS_PROXY=http://127.0.0.1:4480
     curl:            curl --cacert {c} https://api.example.com/   (or CURL_CA_BUNDLE={c})
     Python requests: export REQUESTS_CA_BUNDLE={c}
     Node.js:         export NODE_EXTRA_CA_CERTS={c}
     Go, OpenSSL:     export SSL_CERT_FILE={c}   (replaces the system bundle: cat both into one file)
     Debian/Ubuntu:   cp {c} /usr/local/share/ca-certificates/token-sidecar.crt && update-ca-certificates

3. Kubernetes: store both files in a Secret (kubectl create secret generic token-sidecar-ca
   --from-file=ca.crt={c} --from-file=ca.key={k}), mount ca.crt (only) into the app container
   and point the variables above at it; mount both into the sidecar."
    );
    Ok(ExitCode::SUCCESS)
}

/// Dependencies never log above `info`, whatever level is asked for: their debug and
/// trace output can include request heads, and tokens must never reach a log.
const DEPENDENCY_CAPS: &[&str] = &[
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "reqwest=info",
    "rustls=info",
    "tower=info",
];

fn init_tracing(cli: &Cli, file_format: LogFormat, file_level: &str) {
    use tracing_subscriber::EnvFilter;
    let format = match cli.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => file_format,
    };
    let base = match (&cli.log_level, std::env::var("RUST_LOG")) {
        (Some(level), _) => level.clone(),
        (None, Ok(env)) if !env.trim().is_empty() => env,
        _ => file_level.to_string(),
    };
    // Audit events are kept at info whatever the general level, unless the filter names
    // the `audit` target itself.
    let audit = if base.contains("audit") {
        None
    } else {
        Some("audit=info")
    };
    let directives = std::iter::once(base.as_str())
        .chain(audit)
        .chain(DEPENDENCY_CAPS.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("warning: invalid log level {base:?} ({e}); using info");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_default_config_gets_a_hint() {
        let missing = Path::new("/nonexistent/proxy.yaml");
        let hint = missing_default_config(false, missing).unwrap();
        assert!(hint.starts_with("error: no config file: /nonexistent/proxy.yaml does not exist"));
        assert!(
            hint.contains("-c FILE") && hint.contains("token-sidecar demo"),
            "{hint}"
        );
        // Named on purpose (`-c`, or the variable): the plain "cannot read" error applies.
        assert_eq!(missing_default_config(true, missing), None);
        assert_eq!(missing_default_config(false, Path::new("Cargo.toml")), None);
    }

    #[test]
    fn validate_lists_problems_and_warnings_like_a_compiler() {
        let p = Path::new("p.yaml");
        let env = |_: &str| None;
        let bad = Config::from_text(p, "unmatched: forwrd\nlog: { level: loud }\n", &env);
        let (lines, summary, valid) = validate_report(p, bad);
        assert!(!valid);
        assert_eq!(
            lines,
            [
                "p.yaml:1:12: unmatched: unknown value: expected `forward` or `deny`; did you mean `forward`?",
                "p.yaml:2:15: log.level: unknown value: expected `trace`, `debug`, `info`, `warn` or `error`",
            ]
        );
        assert_eq!(summary, "p.yaml: not valid, 2 problems");
        let (lines, summary, valid) = validate_report(p, Config::from_text(p, "", &env));
        assert!(valid);
        assert_eq!(
            lines,
            ["warning: p.yaml: no routes: every request is handled by `unmatched`"]
        );
        assert_eq!(summary, "p.yaml: valid (0 providers, 0 routes), 1 warning");
    }
}
