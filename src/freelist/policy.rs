//! Which size class an allocation tries first: the only thing that differs between the policies.

use super::{class_of, class_up, Bitmap};
use crate::format::CLASSES;

/// The order in which an allocation visits the size classes.
pub(crate) trait Policy {
    /// The next non-empty class to try after `prev` (or the first when `prev` is `None`), for a
    /// request of `span` bytes; `None` when there is nothing left to try.
    fn next(nonempty: &Bitmap, span: u64, prev: Option<usize>) -> Option<usize>;
}

/// Largest first: the highest non-empty class, down to the class that holds the request.
pub(crate) struct Optimistic;
/// Best fit: the lowest non-empty class whose every segment holds the request, then upwards;
/// the class holding the request itself is tried last (its segments may be too small).
pub(crate) struct Pessimistic;

impl Policy for Optimistic {
    fn next(nonempty: &Bitmap, span: u64, prev: Option<usize>) -> Option<usize> {
        let low = class_of(span);
        let from = match prev {
            None => CLASSES - 1,
            Some(0) => return None,
            Some(p) => p - 1,
        };
        (low..=from).rev().find(|&c| nonempty.get(c))
    }
}

impl Policy for Pessimistic {
    fn next(nonempty: &Bitmap, span: u64, prev: Option<usize>) -> Option<usize> {
        let up = class_up(span);
        let own = class_of(span);
        match prev {
            None => nonempty
                .first_from(up)
                .or_else(|| (own < up && nonempty.get(own)).then_some(own)),
            Some(p) if p == own && own < up => None,
            Some(p) => nonempty
                .first_from(p + 1)
                .or_else(|| (own < up && nonempty.get(own)).then_some(own)),
        }
    }
}
