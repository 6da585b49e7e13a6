//! The store lease held while one process fetches a token for every process sharing the store.

use smart_fhir_store::{Lease, SharedTokenStore, TokenStore};

/// A held lease, released when the fetch is done — also when the future holding it is dropped
/// mid-fetch (the caller gave up), so that the next caller need not wait for it to expire.
pub(super) struct LeaseGuard {
    pub(super) store: SharedTokenStore,
    pub(super) lease: Option<Lease>,
}

impl LeaseGuard {
    pub(super) async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            // A lease that cannot be released expires by itself.
            let _ = self.store.release_lease(lease).await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let store = self.store.clone();
                runtime.spawn(async move {
                    let _ = store.release_lease(lease).await;
                });
            }
        }
    }
}
