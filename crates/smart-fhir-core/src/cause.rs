//! Finding a cause of a given type in an error's `source()` chain.
//!
//! Errors that single flight hands to every waiter are `Clone`, so they keep their causes behind
//! an `Arc` (and some behind a `Box`): a plain `downcast_ref::<T>()` on each link misses those.
//! [`find_cause`] looks through both.

use std::error::Error;
use std::sync::Arc;

/// The first error of type `T` in `error`'s chain (`error` itself included), also where a link
/// holds it as `Arc<T>` or `Box<T>`.
pub fn find_cause<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut link = Some(error);
    while let Some(e) = link {
        if let Some(t) = e
            .downcast_ref::<T>()
            .or_else(|| e.downcast_ref::<Arc<T>>().map(|a| &**a))
            .or_else(|| e.downcast_ref::<Box<T>>().map(|b| &**b))
        {
            return Some(t);
        }
        link = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("shared")]
        Shared(#[source] Arc<Inner>),
        #[error("boxed")]
        Boxed(#[source] Box<Inner>),
        #[error("plain")]
        Plain(#[source] Inner),
        #[error("none")]
        None,
    }

    #[test]
    fn finds_a_cause_plain_boxed_or_shared() {
        for e in [
            Outer::Shared(Arc::new(Inner)),
            Outer::Boxed(Box::new(Inner)),
            Outer::Plain(Inner),
        ] {
            assert!(find_cause::<Inner>(&e).is_some(), "{e}");
            assert!(find_cause::<Outer>(&e).is_some());
        }
        assert!(find_cause::<Inner>(&Outer::None).is_none());
    }
}
