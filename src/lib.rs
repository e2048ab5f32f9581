//! token-sidecar: a small, fast proxy that adds OAuth2 access tokens to the outbound
//! requests of unchanged applications. See ARCHITECTURE.md for the map.

#![forbid(unsafe_code)]

pub mod admin;
pub mod background;
pub mod config;
pub mod demo;
pub mod error;
pub mod file;
pub mod intercept;
pub mod keys;
pub mod listener;
pub mod lru;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod runtime;
pub mod secret;
pub mod sender;
pub mod sidecar;
pub mod store;
pub mod token;
pub mod trust;
pub mod upstream;
pub mod workers;

pub use runtime::Runtime;
pub use sidecar::{run, Listeners};
