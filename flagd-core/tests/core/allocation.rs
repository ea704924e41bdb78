//! Evaluation on the common paths allocates nothing: counted by a wrapping allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use flagd_core::EvaluationContext;
use serde_json::json;

use crate::support::ruleset;

/// Counts allocations made by the current thread (tests run on several threads).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the only addition is
// a thread-local counter that is const-initialised, so counting never allocates itself.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn common_evaluations_do_not_allocate() {
    let rs = ruleset(json!({
        "segments": [{"key": "pilot", "companies": ["7"]}],
        "flags": [
            {"key": "static", "state": "ENABLED", "fallthrough": {"variant": "on"}},
            {"key": "killed"},
            {"key": "listed", "state": "ENABLED", "allow": ["42"], "deny": ["13"]},
            {"key": "rollout", "state": "ENABLED",
             "fallthrough": {"rollout": {"variants": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}]}}},
            {"key": "by_user", "state": "ENABLED",
             "fallthrough": {"rollout": {"bucketBy": "userId", "variants": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}]}}},
            {"key": "fractional", "state": "ENABLED", "fallthrough": {"targeting": {"fractional": [
                {"cat": [{"var": "$flagd.flagKey"}, {"var": "companyId"}]}, ["on", 50], ["off", 50]]}}},
            {"key": "fractional_by_user", "state": "ENABLED", "fallthrough": {"targeting": {"fractional": [
                ["on", 25], ["off", 75]]}}},
            {"key": "rules", "state": "ENABLED", "rules": [
                {"segments": ["pilot"], "serve": {"variant": "on"}},
                {"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]},
                                {"attribute": "appVersion", "op": "semver_gte", "value": "2.0.0"},
                                {"attribute": "country", "op": "not_in", "value": ["xx"]}], "serve": {"variant": "on"}}]}
        ]
    }));
    let ctx = EvaluationContext::new()
        .with_company(42)
        .with_targeting_key("user-1")
        .with_attribute("plan", "pro")
        .with_attribute("appVersion", "2.3.1")
        .with_attribute("country", "de")
        .with_attribute("userId", 991);
    let count = allocations_during(|| {
        for key in ["static", "killed", "listed", "rollout", "by_user", "fractional", "fractional_by_user", "rules"] {
            let r = rs.evaluate(key, &ctx);
            assert!(r.error.is_none(), "{key}: {r:?}");
            std::hint::black_box(r);
        }
        std::hint::black_box(rs.evaluate_all(&ctx).count());
    });
    assert_eq!(count, 0, "evaluation allocated {count} times");
}
