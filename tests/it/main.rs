//! token-sidecar integration tests: real sockets on loopback, in-process fakes, the real
//! binary where the command line matters. One module per feature.

mod support;

mod admin;
mod binary;
mod client_auth;
mod connect_plain;
mod demo;
mod dpop;
mod egress_proxy;
mod fleet;
mod forward;
mod grants;
mod grpc;
mod hardening;
mod intercept;
mod lifecycle;
mod logs;
mod packaging;
mod reload;
mod replay;
mod reverse;
mod scrubbing;
mod shutdown;
mod sign;
mod store;
mod tokens;
mod trust;
mod workers;
