//! The one cross-process lease protocol: whoever holds the lease on a key does the work (renews
//! a token, refreshes a session); the others wait, with backoff, for its result in the store.
//!
//! * **Acquire with expiry**: a lease is taken for a time-to-live; a holder that dies (killed,
//!   partitioned) leaves a lease that expires, and the next waiter takes over cleanly.
//! * **Release only by the holder**: a lease carries a random owner token; releasing compares it,
//!   so a holder whose lease expired and was taken cannot release the new holder's.
//! * **Bounded wait with backoff**: a waiter looks for the result, then tries the lease, sleeping
//!   25 ms, 50 ms, … up to 500 ms in between, for at most [`LeaseOptions::max_wait`].
//! * **Released on drop**: a [`LeaseGuard`] dropped without [`release`](LeaseGuard::release)
//!   (its future was cancelled) releases the lease in a task, so others need not wait for it to
//!   expire.
//!
//! The protocol is written once, over the primitives of a [`LeaseBackend`]:
//! [`TokenStoreLease`] (a key of a [`TokenStore`], its `try_acquire_lease`/`release_lease`) and
//! [`SessionStoreLease`] (a key of a session in a [`SessionStore`], by compare-and-swap).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::{Lease, SessionStore, SharedSessionStore, SharedTokenStore, StoreError, TokenStore};

/// The pause between two looks at the store while another process holds the lease, for the
/// first [`FAST_POLLING`] of a wait: most holders finish within it (a token request takes tens of
/// milliseconds), and a follower should see the result within one pause of it being stored.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(25);
/// How long a waiter looks every [`FIRST_BACKOFF`] before it backs off exponentially.
pub const FAST_POLLING: Duration = Duration::from_secs(1);
/// The longest pause between two looks.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// The primitives of one lease: take it if free or expired, release it if still held.
#[async_trait]
pub trait LeaseBackend: Clone + Send + Sync + 'static {
    /// What proves holding the lease (its owner token).
    type Held: Send + Sync + 'static;

    /// Takes the lease for `ttl` if no one holds an unexpired one; `None` otherwise.
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Self::Held>, StoreError>;

    /// Releases the lease if `held` is still the current one; otherwise does nothing.
    async fn release(&self, held: Self::Held) -> Result<(), StoreError>;
}

/// The lease on a key of a [`TokenStore`] (Backend Services token renewal).
#[derive(Clone)]
pub struct TokenStoreLease {
    store: SharedTokenStore,
    key: String,
}

impl TokenStoreLease {
    /// The lease on `key` of `store`.
    pub fn new(store: SharedTokenStore, key: impl Into<String>) -> Self {
        Self {
            store,
            key: key.into(),
        }
    }
}

impl fmt::Debug for TokenStoreLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStoreLease")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl LeaseBackend for TokenStoreLease {
    type Held = Lease;

    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.store.try_acquire_lease(&self.key, ttl).await
    }

    async fn release(&self, held: Lease) -> Result<(), StoreError> {
        self.store.release_lease(held).await
    }
}

/// The lease on one key of one session in a [`SessionStore`] (App Launch session refresh):
/// taken by a compare-and-swap from absent to a random owner token, released by a
/// compare-and-swap from that token to nothing.
#[derive(Clone)]
pub struct SessionStoreLease {
    store: SharedSessionStore,
    session_id: String,
    key: String,
}

impl SessionStoreLease {
    /// The lease stored under (`session_id`, `key`) of `store`.
    pub fn new(
        store: SharedSessionStore,
        session_id: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            store,
            session_id: session_id.into(),
            key: key.into(),
        }
    }
}

impl fmt::Debug for SessionStoreLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session id is a bearer credential of the user: not shown.
        f.debug_struct("SessionStoreLease")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl LeaseBackend for SessionStoreLease {
    type Held = Value;

    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Value>, StoreError> {
        let holder = json!({ "holder": Lease::random_token()? });
        let taken = self
            .store
            .compare_and_swap(&self.session_id, &self.key, None, holder.clone(), ttl)
            .await?;
        Ok(taken.then_some(holder))
    }

    async fn release(&self, held: Value) -> Result<(), StoreError> {
        // A zero time-to-live removes the entry.
        self.store
            .compare_and_swap(
                &self.session_id,
                &self.key,
                Some(&held),
                Value::Null,
                Duration::ZERO,
            )
            .await
            .map(|_| ())
    }
}

/// How long a lease is taken for and how long a waiter waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// The lease's time-to-live: how long a dead holder blocks the others.
    pub ttl: Duration,
    /// The longest a waiter waits for the holder's result or the lease.
    pub max_wait: Duration,
}

/// What [`acquire_or_wait`] ended with.
#[derive(Debug)]
pub enum Acquired<T, B: LeaseBackend> {
    /// The result was found in the store (another holder produced it, or it was there).
    Ready(T),
    /// This caller holds the lease and does the work.
    Held(LeaseGuard<B>),
    /// Neither within [`LeaseOptions::max_wait`].
    WaitedOut,
}

/// The protocol: look for the result (`ready`); if absent, try the lease; if another holds it,
/// sleep with backoff and look again, for at most `options.max_wait`.
///
/// `ready` is called before every attempt at the lease, so a waiter sees the holder's result as
/// soon as it is stored, and once more just after the lease is taken, so that a holder that
/// stored its result and released the lease between that look and the acquisition is not
/// followed by a second holder doing the same work again; its errors end the wait.
pub async fn acquire_or_wait<B, T, E, F, Fut>(
    backend: &B,
    options: LeaseOptions,
    mut ready: F,
) -> Result<Acquired<T, B>, E>
where
    B: LeaseBackend,
    E: From<StoreError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let mut waited = Duration::ZERO;
    let mut step = FIRST_BACKOFF;
    loop {
        if let Some(value) = ready().await? {
            return Ok(Acquired::Ready(value));
        }
        if let Some(held) = backend.try_acquire(options.ttl).await? {
            let guard = LeaseGuard {
                backend: backend.clone(),
                held: Some(held),
            };
            // The previous holder may have stored its result and released the lease between
            // the look above and this acquisition: look once more, so that the work is never
            // done twice. (An error here drops the guard, which releases the lease.)
            if let Some(value) = ready().await? {
                guard.release().await;
                return Ok(Acquired::Ready(value));
            }
            return Ok(Acquired::Held(guard));
        }
        if waited >= options.max_wait {
            return Ok(Acquired::WaitedOut);
        }
        let pause = step.min(options.max_wait - waited);
        tokio::time::sleep(pause).await;
        waited += pause;
        if waited >= FAST_POLLING {
            step = (step * 2).min(MAX_BACKOFF);
        }
    }
}

/// A held lease. Release it with [`release`](Self::release) once the result is stored (so that
/// the next holder finds it); dropped unreleased (the work was cancelled), it is released in a
/// task on the current Tokio runtime, or left to expire when there is none.
#[must_use = "a lease blocks other holders until it is released or expires"]
pub struct LeaseGuard<B: LeaseBackend> {
    backend: B,
    held: Option<B::Held>,
}

impl<B: LeaseBackend> fmt::Debug for LeaseGuard<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("held", &self.held.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: LeaseBackend> LeaseGuard<B> {
    /// Releases the lease if still held; a lease that cannot be released expires by itself.
    pub async fn release(mut self) {
        if let Some(held) = self.held.take() {
            let _ = self.backend.release(held).await;
        }
    }
}

impl<B: LeaseBackend> Drop for LeaseGuard<B> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let backend = self.backend.clone();
                runtime.spawn(async move {
                    let _ = backend.release(held).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use smart_fhir_core::{FixedClock, SharedClock};

    use super::*;
    use crate::{MemorySessionStore, MemoryTokenStore};

    const OPTIONS: LeaseOptions = LeaseOptions {
        ttl: Duration::from_secs(30),
        max_wait: Duration::from_secs(2),
    };

    fn backends() -> (TokenStoreLease, SessionStoreLease, FixedClock) {
        let clock = FixedClock::at_unix(1_700_000_000);
        let tokens = SharedTokenStore::new(
            MemoryTokenStore::new().with_clock(SharedClock::new(clock.clone())),
        );
        let sessions = SharedSessionStore::new(
            MemorySessionStore::new().with_clock(SharedClock::new(clock.clone())),
        );
        (
            TokenStoreLease::new(tokens, "k"),
            SessionStoreLease::new(sessions, "s", "lease"),
            clock,
        )
    }

    async fn exclusive_then_released<B: LeaseBackend + fmt::Debug>(backend: B) {
        let none = || async { Ok::<Option<()>, StoreError>(None) };
        let Acquired::Held(guard) = acquire_or_wait(&backend, OPTIONS, none).await.unwrap() else {
            panic!("{backend:?}: a free lease is taken");
        };
        assert!(
            backend.try_acquire(OPTIONS.ttl).await.unwrap().is_none(),
            "{backend:?}: held"
        );
        guard.release().await;
        assert!(
            backend.try_acquire(OPTIONS.ttl).await.unwrap().is_some(),
            "{backend:?}: released"
        );
    }

    /// P12: both stores' leases are exclusive until the holder releases them.
    #[tokio::test]
    async fn p12_a_lease_is_exclusive_until_released() {
        let (tokens, sessions, _) = backends();
        exclusive_then_released(tokens).await;
        exclusive_then_released(sessions).await;
    }

    async fn takeover_after_expiry<B: LeaseBackend + fmt::Debug>(backend: B, clock: &FixedClock) {
        let dead = backend.try_acquire(OPTIONS.ttl).await.unwrap().unwrap();
        clock.advance(OPTIONS.ttl);
        let taken = backend.try_acquire(OPTIONS.ttl).await.unwrap();
        assert!(
            taken.is_some(),
            "{backend:?}: an expired lease is taken over"
        );
        // The dead holder's late release leaves the new holder's lease alone.
        backend.release(dead).await.unwrap();
        assert!(
            backend.try_acquire(OPTIONS.ttl).await.unwrap().is_none(),
            "{backend:?}: only the holder releases"
        );
    }

    /// P12: a holder that dies leaves a lease that expires; the next one takes over, and the
    /// old holder cannot release the new lease.
    #[tokio::test]
    async fn p12_clean_takeover_when_the_holder_dies() {
        let (tokens, sessions, clock) = backends();
        takeover_after_expiry(tokens, &clock).await;
        takeover_after_expiry(sessions, &clock).await;
    }

    /// P12: a waiter sees the holder's result, and gives up after the bounded wait.
    #[tokio::test(start_paused = true)]
    async fn p12_waiters_see_the_result_or_give_up_in_bounded_time() {
        let (tokens, _, _) = backends();
        let _held = tokens.try_acquire(OPTIONS.ttl).await.unwrap().unwrap();
        let looks = AtomicUsize::new(0);
        let found = acquire_or_wait(&tokens, OPTIONS, || async {
            let n = looks.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StoreError>((n == 3).then_some("stored"))
        })
        .await
        .unwrap();
        assert!(matches!(found, Acquired::Ready("stored")));
        let started = tokio::time::Instant::now();
        let none = || async { Ok::<Option<()>, StoreError>(None) };
        let out = acquire_or_wait(&tokens, OPTIONS, none).await.unwrap();
        assert!(matches!(out, Acquired::WaitedOut));
        assert_eq!(started.elapsed(), OPTIONS.max_wait);
    }

    /// P12: the previous holder stores its result and releases the lease between a waiter's
    /// look and its acquisition: the waiter, now holding the lease, looks again, takes the
    /// result and releases the lease instead of doing the work a second time.
    #[tokio::test]
    async fn p12_a_lease_taken_just_after_the_result_was_stored_is_given_back() {
        let (tokens, sessions, _) = backends();
        race_then_ready(tokens).await;
        race_then_ready(sessions).await;
    }

    async fn race_then_ready<B: LeaseBackend + fmt::Debug>(backend: B) {
        let looks = AtomicUsize::new(0);
        // The first look finds nothing; the holder's result lands before the second.
        let out = acquire_or_wait(&backend, OPTIONS, || async {
            let n = looks.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StoreError>((n >= 1).then_some("stored"))
        })
        .await
        .unwrap();
        assert!(
            matches!(out, Acquired::Ready("stored")),
            "{backend:?}: {out:?}"
        );
        assert_eq!(looks.load(Ordering::SeqCst), 2);
        assert!(
            backend.try_acquire(OPTIONS.ttl).await.unwrap().is_some(),
            "{backend:?}: the lease was given back"
        );
    }

    /// P12: a guard dropped unreleased (its work cancelled) frees the lease in a task.
    #[tokio::test]
    async fn p12_a_dropped_guard_releases_the_lease() {
        let (_, sessions, _) = backends();
        let none = || async { Ok::<Option<()>, StoreError>(None) };
        let Acquired::Held(guard) = acquire_or_wait(&sessions, OPTIONS, none).await.unwrap() else {
            panic!("free");
        };
        drop(guard);
        let released = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            if sessions.try_acquire(OPTIONS.ttl).await.unwrap().is_some() {
                released.fetch_add(1, Ordering::SeqCst);
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(released.load(Ordering::SeqCst), 1);
    }
}
