//! A flood of 100,000 distinct rate-limit keys (rotated IPv6 prefixes, made-up
//! payers) keeps the limiter's memory bounded by its key cap, and the keys
//! beyond the cap are still limited.
//!
//! Memory is measured with a counting global allocator, so this file holds a
//! single test: nothing else allocates while it measures.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::clock::FakeRelativeClock;
use paywire_facilitator::ops::{ClientKey, RateLimiter};

/// The system allocator, counting the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `layout` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (above).
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout` (above).
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FLOOD: usize = 100_000;
const CAP: usize = 10_000;
const PER_MINUTE: u32 = 60;

/// Stated bound: what a tracked key may cost, map slack included (a payer
/// key is a 42-byte string; an address key 9 bytes, inline). The limiter
/// itself (map shards, overflow state) is allowed `FIXED` on top.
const BYTES_PER_TRACKED_KEY: usize = 192;
const FIXED: usize = 64 * 1024;

/// Memory and admissions of one flood of `FLOOD` distinct keys.
struct Flood {
    live_growth: usize,
    peak_growth: usize,
    tracked: usize,
    admitted_beyond_cap: usize,
    /// Live bytes left once the flood is over and housekeeping has run.
    after_housekeeping: usize,
}

fn flood<K: std::hash::Hash + Eq + Clone>(key: impl Fn(usize) -> K) -> Flood {
    let per_minute = NonZeroU32::new(PER_MINUTE).unwrap_or(NonZeroU32::MIN);
    // Time stands still: nothing the flood tracks becomes forgettable, the
    // worst case for the cap.
    let clock = FakeRelativeClock::default();
    let limiter = RateLimiter::with_clock(per_minute, CAP, clock.clone());
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut admitted_beyond_cap = 0;
    for n in 0..FLOOD {
        let admitted = limiter.check(&key(n)).is_ok();
        if n >= CAP && admitted {
            admitted_beyond_cap += 1;
        }
        assert!(limiter.tracked_keys() <= CAP, "after key {n}");
    }
    let live_growth = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let peak_growth = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let tracked = limiter.tracked_keys();
    // A key tracked before the flood filled the table keeps its own budget.
    assert!(limiter.check(&key(0)).is_ok());
    // The flood is over: a minute later every budget is full again.
    clock.advance(std::time::Duration::from_secs(61));
    limiter.housekeep();
    assert_eq!(limiter.tracked_keys(), 0);
    Flood {
        live_growth,
        peak_growth,
        tracked,
        admitted_beyond_cap,
        after_housekeeping: LIVE.load(Ordering::Relaxed).saturating_sub(before),
    }
}

fn payer(n: usize) -> String {
    format!("0x{n:040x}")
}

fn ipv6_prefix(n: usize) -> ClientKey {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    let [hi, lo] = [(n >> 16) as u16, (n & 0xffff) as u16];
    ClientKey::of(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, hi, lo, 0, 0, 0, 1)))
}

#[test]
fn a_flood_of_distinct_keys_keeps_memory_bounded_and_stays_limited() {
    let bound = CAP * BYTES_PER_TRACKED_KEY + FIXED;
    for (name, flood) in [("payers", flood(payer)), ("IPv6 /64s", flood(ipv6_prefix))] {
        eprintln!(
            "{name}: {FLOOD} keys, {} tracked, live +{} B, peak +{} B ({} B per tracked key), \
             bound {bound} B; +{} B after housekeeping",
            flood.tracked,
            flood.live_growth,
            flood.peak_growth,
            flood.peak_growth / CAP,
            flood.after_housekeeping,
        );
        assert_eq!(flood.tracked, CAP, "{name}");
        assert!(
            flood.peak_growth <= bound,
            "{name}: {} B",
            flood.peak_growth
        );
        assert!(
            flood.live_growth <= bound,
            "{name}: {} B",
            flood.live_growth
        );
        assert!(
            flood.after_housekeeping <= FIXED,
            "{name}: {} B kept after housekeeping",
            flood.after_housekeeping
        );
        // The 90,000 keys beyond the cap shared one key's burst, no more.
        assert_eq!(
            flood.admitted_beyond_cap, PER_MINUTE as usize,
            "{name}: untracked keys must stay limited"
        );
    }
}
