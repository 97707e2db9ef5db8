//! Which size class an allocation tries first: the only thing that differs between the policies.

use super::{class_of, class_up, Bitmap};
use crate::format::CLASSES;

/// The order in which an allocation visits the size classes.
pub(crate) trait Policy {
    /// The next non-empty class to try after `prev` (or the first when `prev` is `None`), for a
    /// request of `span` bytes; `None` when there is nothing left to try.
    fn next(nonempty: &Bitmap, span: u64, prev: Option<usize>) -> Option<usize>;
}

/// The request's own class, then largest first: a coarse own class (whose head may hold the
/// request), the class whose every segment holds it, then the highest non-empty class down.
pub(crate) struct Optimistic;
/// Best fit: a coarse own class (whose head may hold the request), then the lowest non-empty
/// class whose every segment holds the request, and upwards.
pub(crate) struct Pessimistic;

impl Policy for Optimistic {
    fn next(nonempty: &Bitmap, span: u64, prev: Option<usize>) -> Option<usize> {
        let own = class_of(span);
        let up = class_up(span);
        let coarse = own < up;
        // The request's own classes first: a coarse own class (whose head may hold the request),
        // then the class every segment of which holds it.
        if prev.is_none() && coarse && nonempty.get(own) {
            return Some(own);
        }
        if (prev.is_none() || (coarse && prev == Some(own))) && nonempty.get(up) {
            return Some(up);
        }
        // Then the largest class down, past the two already tried.
        let from = match prev {
            None => CLASSES - 1,
            Some(p) if p == own || p == up => CLASSES - 1,
            Some(0) => return None,
            Some(p) => p - 1,
        };
        (own..=from)
            .rev()
            .find(|&c| c != up && c != own && nonempty.get(c))
    }
}

impl Policy for Pessimistic {
    fn next(nonempty: &Bitmap, span: u64, prev: Option<usize>) -> Option<usize> {
        let up = class_up(span);
        let own = class_of(span);
        match prev {
            None if own < up && nonempty.get(own) => Some(own),
            None => nonempty.first_from(up),
            Some(p) if p == own && own < up => nonempty.first_from(up),
            Some(p) => nonempty.first_from(p + 1),
        }
    }
}
