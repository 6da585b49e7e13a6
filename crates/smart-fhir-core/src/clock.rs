use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// A source of wall-clock time. Injected everywhere time matters, so tests never sleep.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place that reads the wall clock.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told to move; for tests.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<Mutex<SystemTime>>);

impl FixedClock {
    /// A clock fixed at `at`.
    pub fn new(at: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// A clock fixed at `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Moves the clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }

    /// Sets the clock (and every clone of it).
    pub fn set(&self, at: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cheaply cloneable, shared [`Clock`].
#[derive(Debug, Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    /// Wraps a clock.
    pub fn new(clock: impl Clock + 'static) -> Self {
        // One setter takes a value or an already shared one: the latter is not wrapped again.
        let any = &clock as &dyn std::any::Any;
        if let Some(shared) = any.downcast_ref::<Self>() {
            return shared.clone();
        }
        // Every system clock is the same clock: one shared instance, so that what is kept per
        // clock (server clock offsets) is shared by every component on the system clock.
        if any.is::<SystemClock>() {
            return Self::system();
        }
        Self(Arc::new(clock))
    }

    /// The system clock, one instance shared by the process.
    fn system() -> Self {
        static SYSTEM: OnceLock<SharedClock> = OnceLock::new();
        SYSTEM.get_or_init(|| Self(Arc::new(SystemClock))).clone()
    }

    /// Whether `self` and `other` are the same clock (clones of one shared clock; every
    /// system clock is one), for state kept per clock.
    pub fn same_clock(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Seconds since the Unix epoch (0 for a clock set before 1970).
    pub fn unix_seconds(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock for SharedClock {
    fn now(&self) -> SystemTime {
        self.0.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told_and_clones_share_time() {
        let c = FixedClock::at_unix(1_000);
        let shared = SharedClock::new(c.clone());
        assert_eq!(shared.unix_seconds(), 1_000);
        c.advance(Duration::from_secs(5));
        assert_eq!(shared.unix_seconds(), 1_005);
        c.set(SystemTime::UNIX_EPOCH);
        assert_eq!(shared.unix_seconds(), 0);
    }

    #[test]
    fn every_system_clock_is_one_shared_clock_and_others_are_told_apart() {
        assert!(SharedClock::default().same_clock(&SharedClock::new(SystemClock)));
        let fixed = SharedClock::new(FixedClock::at_unix(1));
        assert!(fixed.same_clock(&fixed.clone()));
        assert!(fixed.same_clock(&SharedClock::new(fixed.clone())));
        assert!(!fixed.same_clock(&SharedClock::new(FixedClock::at_unix(1))));
        assert!(!fixed.same_clock(&SharedClock::default()));
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SharedClock::default().unix_seconds() > 1_577_836_800);
    }
}
