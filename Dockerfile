# token-sidecar container image.
# Build: docker build -t token-sidecar .   (no Docker engine exists on the dev machines;
# hadolint checks this file in the test command.)

# ---- build ------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
COPY proxy.yaml.example ./
RUN cargo build --release --locked --bin token-sidecar \
    && install -D -m 0755 target/release/token-sidecar /out/token-sidecar

# ---- run --------------------------------------------------------------------
# distroless/cc: glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/token-sidecar /usr/local/bin/token-sidecar
# 65532 = distroless "nonroot".
USER 65532:65532
# 4480: proxy listener (HTTP_PROXY / reverse proxy); 4481: admin (/healthz /readyz /metrics).
EXPOSE 4480 4481
ENTRYPOINT ["token-sidecar"]
CMD ["run", "-c", "/etc/token-sidecar/proxy.yaml"]
