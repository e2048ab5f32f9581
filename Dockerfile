# token-sidecar container image.
# Build: docker build -t token-sidecar .   (no Docker engine exists on the dev machines;
# hadolint and tests/it/packaging/image.rs check this file in the test command.)
#
# The binary is dynamically linked against glibc (it is not a static binary); the run
# stage is distroless/cc, which provides glibc, libgcc and CA certificates (plus a few
# runtime libraries and tzdata), and no shell or package manager.

# ---- build ------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies in a layer of their own: the real Cargo.toml and Cargo.lock with empty
# crate roots, so that a change under src/ rebuilds token-sidecar only, not its
# dependencies.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin token-sidecar \
    && rm -rf src

# The real sources. `touch`: COPY keeps the files' modification times, which may be
# older than the placeholder build, and cargo would then take its output as up to date.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin token-sidecar \
    && install -D -m 0755 target/release/token-sidecar /out/token-sidecar

# ---- run --------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/token-sidecar /usr/local/bin/token-sidecar
# 65532 = distroless "nonroot".
USER 65532:65532
# 4480: proxy listener (http_proxy / reverse proxy); 4481: admin (/healthz /readyz /metrics).
EXPOSE 4480 4481
ENTRYPOINT ["token-sidecar"]
# The image holds no config: every useful one names your IdP and APIs. Mount a directory
# holding your proxy.yaml where the Helm chart mounts its ConfigMap (a directory rather
# than the file, so an edited file, even one replaced by an editor, reaches hot reload):
#   docker run -v "$PWD/config:/etc/token-sidecar/config:ro" -p 127.0.0.1:4480:4480 ...
# Inside a container the config must say `listen: 0.0.0.0:4480` (and `admin_listen:
# 0.0.0.0:4481`) for `docker run -p` to reach it: the binary's defaults are loopback,
# which is right for a sidecar and unreachable through a published port.
CMD ["run", "-c", "/etc/token-sidecar/config/proxy.yaml"]
