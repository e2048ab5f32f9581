//! The shape of a config file: every block (YAML mapping) the parser reads, named as
//! `docs/config.md` names it, with the field list serde derived for its raw struct.
//!
//! Unknown keys are judged against these lists, and a unit test holds `docs/config.md` to
//! them, so neither the messages nor the reference can drift from the parser.

use super::raw::{
    RawClient, RawConfig, RawDpop, RawLimits, RawLog, RawMatch, RawProvider, RawRedis, RawRetries,
    RawRoute, RawSign, RawSubjectFrom, RawTlsIntercept, RawTokenStore,
};
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// One mapping of the config file.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// `top level`, `log`, `providers.<name>`, `routes[].match`, ...
    pub name: &'static str,
    pub fields: &'static [&'static str],
}

pub const TOP: &str = "top level";

/// Every block, in the order of `docs/config.md`.
pub fn blocks() -> [Block; 14] {
    [
        block::<RawConfig>(TOP),
        block::<RawLog>("log"),
        block::<RawLimits>("limits"),
        block::<RawTlsIntercept>("tls_intercept"),
        block::<RawTokenStore>("token_store"),
        block::<RawRedis>("token_store.redis"),
        block::<RawClient>("clients.<name>"),
        block::<RawProvider>("providers.<name>"),
        block::<RawRetries>("providers.<name>.retries"),
        block::<RawSubjectFrom>("providers.<name>.subject_token_from"),
        block::<RawDpop>("providers.<name>.dpop"),
        block::<RawRoute>("routes[]"),
        block::<RawMatch>("routes[].match"),
        block::<RawSign>("routes[].sign"),
    ]
}

/// The block called `name` (one of [`blocks`]).
pub fn block_named(name: &str) -> Block {
    blocks()
        .into_iter()
        .find(|b| b.name == name)
        .unwrap_or(Block {
            name: "",
            fields: &[],
        })
}

/// Keys whose new value takes effect only when the process restarts: a reload keeps the
/// old one (the listeners, the runtime and the log subscriber are built once). Everything
/// else applies to the next request after a reload.
pub const RESTART_ONLY: &[&str] = &[
    "listen",
    "admin_listen",
    "workers",
    "shutdown_grace",
    "log.format",
    "log.level",
    "limits.header_read_timeout",
    "limits.idle_timeout",
    "limits.max_connections",
];

/// Keys SPEC.md specifies that are not built yet, by block, with where they are planned.
/// Empty since issues 11 and 14: every key SPEC.md specifies is built. The mechanism
/// stays for the next key the contract names before it is built.
pub(super) const NOT_BUILT: &[(&str, &str, &str)] = &[];

fn block<T: for<'de> Deserialize<'de>>(name: &'static str) -> Block {
    Block {
        name,
        fields: fields_of::<T>(),
    }
}

/// The field names serde derived for `T` (its `deserialize_struct` call), so unknown keys
/// are judged by exactly the list the deserializer would use.
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("probe"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests;
