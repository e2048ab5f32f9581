//! Refresh-token rotation across replicas: the current refresh token lives in the store
//! with a generation, and a rotation is written only by compare-and-set on that
//! generation, so of several replicas rotating from one generation exactly one wins and
//! no replica presents a refresh token another one has already used.
//!
//! The record is a hash `{prefix}{<tag>}:refresh` with `g` (the generation, plain, for
//! the script to compare) and `v` (the sealed token, bound to its key name and its
//! generation). It has no expiry: a refresh token outlives its access tokens.

use super::health::{Op, Outcome};
use super::record::{decode_refresh, encode_refresh};
use super::redis::{RefreshState, Store, TokenKeys};
use super::Unavailable;
use crate::secret::Secret;
use ::redis::cmd;

/// Writes generation ARGV[2] and value ARGV[3] only while the generation is ARGV[1]
/// (an absent record is generation 0).
const CAS_REFRESH: &str = r"
if (redis.call('HGET', KEYS[1], 'g') or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'g', ARGV[2], 'v', ARGV[3])
return 1";

impl Store {
    /// The stored refresh token and its generation.
    pub async fn get_refresh(&self, keys: &TokenKeys) -> Result<RefreshState, Unavailable> {
        let mut c = cmd("HMGET");
        c.arg(&keys.refresh).arg("g").arg("v");
        let (generation, raw): (Option<u64>, Option<Vec<u8>>) =
            self.query(Op::GetRefresh, &c).await?;
        let generation = generation.unwrap_or(0);
        let token = raw.and_then(|raw| {
            let plain = self
                .sealer
                .open(&keys.refresh, &generation_context(generation), &raw)?;
            decode_refresh(&plain)
        });
        let outcome = match (generation, &token) {
            (0, None) => Outcome::Absent,
            (_, None) => Outcome::Invalid,
            (_, Some(_)) => Outcome::Ok,
        };
        self.health.count(Op::GetRefresh, outcome);
        Ok(RefreshState { generation, token })
    }

    /// Writes `token` as generation `expected + 1` if the stored generation is still
    /// `expected`; true when it won. Of several replicas rotating from one generation,
    /// exactly one wins.
    pub async fn cas_refresh(
        &self,
        keys: &TokenKeys,
        expected: u64,
        token: &Secret,
    ) -> Result<bool, Unavailable> {
        let next = expected.saturating_add(1);
        let sealed = self.seal(
            Op::CasRefresh,
            &keys.refresh,
            &generation_context(next),
            &encode_refresh(token),
        )?;
        let mut c = cmd("EVAL");
        c.arg(CAS_REFRESH).arg(1).arg(&keys.refresh);
        c.arg(expected).arg(next).arg(&sealed);
        let won: i64 = self.query(Op::CasRefresh, &c).await?;
        let outcome = if won == 1 { Outcome::Ok } else { Outcome::Lost };
        self.health.count(Op::CasRefresh, outcome);
        Ok(won == 1)
    }
}

/// Authenticated with a refresh-token value: the generation it was written as, so a
/// value cannot be replayed under another generation.
fn generation_context(generation: u64) -> Vec<u8> {
    format!("generation {generation}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_distinct_contexts() {
        assert_ne!(generation_context(1), generation_context(11));
        assert_eq!(generation_context(0), b"generation 0");
    }
}
