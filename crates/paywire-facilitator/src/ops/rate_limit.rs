//! Rate limits per client address and per payer: `governor`'s GCRA over a
//! keyed store that tracks at most a fixed number of keys.
//!
//! Memory is bounded under a flood of distinct keys (rotated IPv6
//! addresses, made-up payers): once `max_tracked_keys` keys are tracked, a
//! new key is limited against one shared overflow state until housekeeping
//! frees room. Housekeeping ([`RateLimiter::housekeep`], run by
//! [`crate::serve`] every [`HOUSEKEEPING_INTERVAL`]) only forgets keys whose
//! state is indistinguishable from a fresh one, so a limited key is never
//! forgotten and cannot start afresh, whatever else arrives.

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::Quota;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// Default of [`RateLimiter::new`]'s `max_tracked_keys` (and of
/// `[rate_limit] max_tracked_keys`): keys tracked per limiter.
pub const DEFAULT_MAX_TRACKED_KEYS: usize = 100_000;

/// How often [`crate::serve`] forgets keys whose budget is full again.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(5);

/// What a client's address is limited by: an IPv4 address, or the /64
/// prefix of an IPv6 address.
///
/// One IPv6 host is routinely given a whole /64 and can pick any address
/// in it, so limiting single IPv6 addresses would let one host rotate
/// through 2^64 budgets. The price: hosts sharing a /64 (rare outside
/// carrier NAT64 and some hosting providers) share one budget. IPv6
/// addresses that carry an IPv4 host's address count as that IPv4 address:
/// IPv4-mapped (`::ffff:a.b.c.d`, as a dual-stack listener reports IPv4
/// peers), 6to4 (`2002:V4::/48`, whose host could otherwise pick any of 2^16
/// /64s), Teredo (`2001::/32`, whose /64 is the relay server's, shared by
/// its clients) and the NAT64 well-known prefix (`64:ff9b::/96`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u16; 4]),
}

impl ClientKey {
    /// The key `ip` is limited by.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => embedded_ipv4(v6).map_or_else(
                || {
                    let [a, b, c, d, ..] = v6.segments();
                    Self::V6Prefix([a, b, c, d])
                },
                Self::V4,
            ),
        }
    }
}

/// The IPv4 address a 6to4, Teredo or NAT64 (well-known prefix) address
/// carries.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<[u8; 4]> {
    let o = v6.octets();
    match v6.segments() {
        [0x2002, ..] => Some([o[2], o[3], o[4], o[5]]),
        // Teredo stores the client's public address inverted.
        [0x2001, 0, ..] => Some([!o[12], !o[13], !o[14], !o[15]]),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some([o[12], o[13], o[14], o[15]]),
        _ => None,
    }
}

/// A GCRA rate limit per key of type `K`: `per_minute` requests per minute
/// with bursts of up to `per_minute`, tracking at most `max_tracked_keys`
/// keys (see the module docs). Kept in memory, per process.
pub struct RateLimiter<K: Hash + Eq + Clone, C: Clock = MonotonicClock> {
    limiter: governor::RateLimiter<K, CappedStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    per_minute: NonZeroU32,
    max_tracked_keys: usize,
}

impl<K: Hash + Eq + Clone, C: Clock> fmt::Debug for RateLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_minute", &self.per_minute)
            .field("max_tracked_keys", &self.max_tracked_keys)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_minute` requests per key and minute (bursts up to
    /// `per_minute`), at most `max_tracked_keys` keys tracked.
    pub fn new(per_minute: NonZeroU32, max_tracked_keys: usize) -> Self {
        Self::with_clock(per_minute, max_tracked_keys, MonotonicClock)
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> RateLimiter<K, C> {
    /// [`Self::new`] reading time from `clock` (tests use
    /// [`governor::clock::FakeRelativeClock`]).
    pub fn with_clock(per_minute: NonZeroU32, max_tracked_keys: usize, clock: C) -> Self {
        let store = CappedStore::new(max_tracked_keys);
        let limiter =
            governor::RateLimiter::new(Quota::per_minute(per_minute), store, clock.clone());
        Self {
            limiter,
            clock,
            per_minute,
            max_tracked_keys,
        }
    }

    /// Counts one request for `key`; `Err(wait)` when over the limit, with
    /// the time until the next request of `key` is allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|refused| refused.wait_time_from(self.clock.now()))
    }

    /// Forgets the keys whose budget is full again (their state equals a
    /// fresh key's), and gives memory back once the map is mostly empty.
    /// O(tracked keys): run it off the request path, as [`crate::serve`]
    /// does.
    pub fn housekeep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many keys have a state of their own (at most
    /// `max_tracked_keys`).
    pub fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }
}

/// Runs `housekeep` on a blocking thread (a sweep over every tracked key
/// must not hold up a runtime worker serving requests) now and every
/// `interval`, until `stop` turns true or its sender is gone.
pub(crate) async fn run_housekeeping(
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    housekeep: impl Fn() + Clone + Send + 'static,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let _ = tokio::task::spawn_blocking(housekeep.clone()).await;
    }
}

/// governor's keyed state, at most `cap` keys, plus one overflow state
/// shared by every key that finds no room. Keys are added (under the map
/// shard's lock) only after reserving a slot in `count`, and removed only
/// by housekeeping, which releases the slot: `count` never exceeds `cap`.
struct CappedStore<K> {
    tracked: DashMap<K, InMemoryState>,
    count: AtomicUsize,
    cap: usize,
    overflow: InMemoryState,
}

impl<K: Hash + Eq + Clone> CappedStore<K> {
    fn new(cap: usize) -> Self {
        Self {
            tracked: DashMap::new(),
            count: AtomicUsize::new(0),
            cap,
            overflow: InMemoryState::default(),
        }
    }

    fn reserve_slot(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .is_ok()
    }
}

/// Runs governor's decision `f` on one state.
fn measure<T, E>(
    state: &InMemoryState,
    f: impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
) -> Result<T, E> {
    state.measure_and_replace(&NotKeyed::NonKey, f)
}

/// The theoretical arrival time `state` holds (`None`: never used), read
/// without changing it: the decision refuses and hands back what it saw.
fn arrival_time(state: &InMemoryState) -> Option<Nanos> {
    measure(state, Err::<((), Nanos), _>).err().flatten()
}

impl<K: Hash + Eq + Clone> StateStore for CappedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.tracked.get(key) {
            return measure(&state, f);
        }
        // Full: skip the key copy and the shard's write lock. A key added
        // meanwhile by another request still answers from the overflow
        // this once, which limits it, never frees it.
        if self.count.load(Ordering::Acquire) >= self.cap {
            return measure(&self.overflow, f);
        }
        let vacant = match self.tracked.entry(key.clone()) {
            Entry::Occupied(entry) => return measure(entry.get(), f),
            Entry::Vacant(vacant) => vacant,
        };
        if self.reserve_slot() {
            return measure(&vacant.insert(InMemoryState::default()), f);
        }
        drop(vacant);
        measure(&self.overflow, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for CappedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.tracked.retain(|_, state| {
            let keep = arrival_time(state).is_some_and(|at| at > drop_below);
            if !keep {
                self.count.fetch_sub(1, Ordering::AcqRel);
            }
            keep
        });
    }

    /// Gives memory back once at most a quarter of the map is used (after a
    /// flood), not on every sweep: at a steady load shrinking would only
    /// rehash the map to have it grow again.
    fn shrink_to_fit(&self) {
        if self.len() <= self.tracked.capacity() / 4 {
            self.tracked.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    fn limiter(
        per_minute: u32,
        cap: usize,
    ) -> (RateLimiter<String, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        (
            RateLimiter::with_clock(per_minute, cap, clock.clone()),
            clock,
        )
    }

    #[test]
    fn bursts_then_refuses_with_an_honest_wait() {
        let (limiter, clock) = limiter(3, 10);
        let key = "a".to_owned();
        for n in 0..3 {
            assert_eq!(limiter.check(&key), Ok(()), "request {n} of the burst");
        }
        let wait = limiter.check(&key).err();
        // 3 per minute: one request every 20 s.
        assert_eq!(wait, Some(Duration::from_secs(20)));
        let wait = wait.unwrap_or_default();
        clock.advance(wait.saturating_sub(Duration::from_millis(1)));
        assert!(limiter.check(&key).is_err(), "allowed before the wait");
        clock.advance(Duration::from_millis(1));
        assert_eq!(limiter.check(&key), Ok(()), "refused after the wait");
        assert!(limiter.check(&key).is_err(), "one request per 20 s");
        assert_eq!(limiter.check(&"b".to_owned()), Ok(()), "keys are separate");
    }

    #[test]
    fn keys_beyond_the_cap_share_one_overflow_budget() {
        let (limiter, _clock) = limiter(2, 3);
        for n in 0..3 {
            assert_eq!(limiter.check(&format!("tracked-{n}")), Ok(()));
        }
        assert_eq!(limiter.tracked_keys(), 3);
        let allowed = (0..100)
            .filter(|n| limiter.check(&format!("new-{n}")).is_ok())
            .count();
        assert_eq!(allowed, 2, "100 untracked keys got one key's burst");
        assert_eq!(limiter.tracked_keys(), 3);
        // Tracked keys keep their own budget.
        assert_eq!(limiter.check(&"tracked-0".to_owned()), Ok(()));
    }

    #[test]
    fn housekeeping_frees_only_replenished_keys() {
        let (limiter, clock) = limiter(60, 2);
        let (limited, idle) = ("limited".to_owned(), "idle".to_owned());
        while limiter.check(&limited).is_ok() {}
        assert_eq!(limiter.check(&idle), Ok(()));
        assert_eq!(limiter.tracked_keys(), 2);
        // 2 s later the idle key's single request is paid back; the limited
        // key (60 requests, one a second) is still 58 s in debt.
        clock.advance(Duration::from_secs(2));
        limiter.housekeep();
        assert_eq!(limiter.tracked_keys(), 1);
        assert!(limiter.check(&limited).is_ok(), "2 s earned 2 requests");
        assert!(limiter.check(&limited).is_ok());
        assert!(limiter.check(&limited).is_err(), "kept its debt");
        // Room was freed: a new key is tracked again.
        assert_eq!(limiter.check(&"new".to_owned()), Ok(()));
        assert_eq!(limiter.tracked_keys(), 2);
    }

    #[test]
    fn a_limited_key_cannot_reset_by_flooding_other_keys() {
        let (limiter, clock) = limiter(2, 50);
        let victim = "attacker".to_owned();
        while limiter.check(&victim).is_ok() {}
        for round in 0..5 {
            for n in 0..200 {
                let _ = limiter.check(&format!("flood-{round}-{n}"));
            }
            clock.advance(Duration::from_secs(1));
            limiter.housekeep();
            assert!(limiter.check(&victim).is_err(), "round {round}");
        }
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix() {
        let host = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        assert_eq!(ClientKey::of(host(1)), ClientKey::of(host(0xffff)));
        let neighbour = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert_ne!(ClientKey::of(host(1)), ClientKey::of(neighbour));
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(ClientKey::of(IpAddr::V4(v4)), ClientKey::V4([192, 0, 2, 7]));
        assert_eq!(
            ClientKey::of(IpAddr::V6(v4.to_ipv6_mapped())),
            ClientKey::of(IpAddr::V4(v4))
        );
        assert_ne!(
            ClientKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8))),
            ClientKey::of(IpAddr::V4(v4))
        );

        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(NonZeroU32::MIN, 10, clock);
        assert_eq!(limiter.check(&ClientKey::of(host(1))), Ok(()));
        assert!(limiter.check(&ClientKey::of(host(2))).is_err());
    }

    /// IPv6 forms that carry one IPv4 host's address count as that IPv4
    /// address. Keyed by /64, a 6to4 host (`2002:V4::/48`) picks any of
    /// 2^16 prefixes, so 2^16 budgets from one IPv4 address; a Teredo
    /// client's /64 is its relay server's address and flags, so clients
    /// share one another's budget while one client varies its flags; the
    /// NAT64 well-known prefix (`64:ff9b::/96`) would put every translated
    /// IPv4 client into one budget.
    #[test]
    fn ipv6_forms_embedding_an_ipv4_address_count_as_that_address() {
        let v4 = ClientKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        // 6to4: 2002:c000:0207:SUBNET::host.
        for subnet in [0, 1, 0xffff] {
            let six_to_four = Ipv6Addr::new(0x2002, 0xc000, 0x0207, subnet, 0, 0, 0, 1);
            assert_eq!(
                ClientKey::of(IpAddr::V6(six_to_four)),
                v4,
                "subnet {subnet}"
            );
        }
        // Teredo: 2001:0:SERVER:FLAGS:PORT:!CLIENT (client address inverted).
        for (server, flags) in [((0x4136, 0xe378), 0x8000), ((0x0102, 0x0304), 0x8abc)] {
            let teredo = Ipv6Addr::new(
                0x2001, 0, server.0, server.1, flags, 0x1234, !0xc000, !0x0207,
            );
            assert_eq!(ClientKey::of(IpAddr::V6(teredo)), v4, "{teredo}");
        }
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x0207);
        assert_eq!(ClientKey::of(IpAddr::V6(nat64)), v4);
        let other = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x0208);
        assert_ne!(ClientKey::of(IpAddr::V6(other)), v4);
        // Native addresses near those prefixes are still keyed by /64.
        let native = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, !0xc000, !0x0207);
        assert_eq!(
            ClientKey::of(IpAddr::V6(native)),
            ClientKey::V6Prefix([0x2001, 0xdb8, 0, 0])
        );
    }

    /// Polls `done` for up to 30 s of (paused, auto-advancing) tokio time.
    async fn eventually(done: impl Fn() -> bool) -> bool {
        for _ in 0..300 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    #[tokio::test(start_paused = true)]
    async fn housekeeping_runs_periodically_until_stopped() {
        let (limiter, clock) = limiter(60, 10);
        let limiter = Arc::new(limiter);
        let used = |key: &str| {
            assert_eq!(limiter.check(&key.to_owned()), Ok(()));
            assert_eq!(limiter.tracked_keys(), 1);
            // Paid back after 1 s; forgettable from then on.
            clock.advance(Duration::from_secs(2));
        };
        let (stop, stopped) = watch::channel(false);
        used("a");
        let task = tokio::spawn(run_housekeeping(Duration::from_secs(5), stopped, {
            let limiter = Arc::clone(&limiter);
            move || limiter.housekeep()
        }));
        assert!(
            eventually(|| limiter.tracked_keys() == 0).await,
            "first run"
        );
        used("b");
        assert!(
            eventually(|| limiter.tracked_keys() == 0).await,
            "a later run"
        );
        let _ = stop.send(true);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_ok(),
            "stops when told"
        );
        used("c");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(limiter.tracked_keys(), 1, "no run after the stop");
    }
}
