//! The budget for replay buffers (`limits.max_buffered_bodies`), shared by every
//! connection and kept across snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// All replay buffers together may hold at most `limit` bytes (`max_buffered_bodies`);
/// past it, bodies stream and are not replayable. Shared by every connection, so it is a
/// pair of atomics, never a lock.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicU64,
    limit: AtomicU64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(BodyBudget {
            used: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
        })
    }

    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `n` bytes, or `None` when they do not fit.
    pub fn reserve(self: &Arc<Self>, n: u64) -> Option<Reservation> {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used.checked_add(n).is_none_or(|total| total > limit) {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        budget: self.clone(),
                        n,
                    })
                }
                Err(now) => used = now,
            }
        }
    }
}

/// Bytes of the budget held by one replay buffer; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    n: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_accounted_and_given_back() {
        let budget = BodyBudget::new(100);
        let a = budget.reserve(60).expect("fits");
        assert!(budget.reserve(41).is_none(), "60 + 41 > 100");
        let b = budget.reserve(40).expect("exactly fills");
        assert_eq!(budget.used(), 100);
        assert!(budget.reserve(1).is_none());
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(budget.reserve(60).is_some_and(|r| r.n == 60));
        assert_eq!(
            budget.used(),
            40,
            "the temporary reservation was given back"
        );
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.reserve(u64::MAX).is_none(), "no overflow");
    }

    #[test]
    fn a_lower_limit_applies_to_new_reservations() {
        let budget = BodyBudget::new(100);
        let _held = budget.reserve(50).unwrap();
        budget.set_limit(40);
        assert!(budget.reserve(1).is_none());
        budget.set_limit(100);
        assert!(budget.reserve(50).is_some());
    }
}
