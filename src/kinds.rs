//! The small public enums that the error type and several layers name: the free-list policy (with
//! its byte in the header) and the kind of backing. They sit below `error`, which reports them.

/// How freed space is reused once the main memory is used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Freelist {
    /// No reuse: once the main memory is used up the arena stays full.
    None = 0,
    /// The request's own size class first, then the largest segment (a segment from the largest
    /// non-empty size class): a freed block serves the next request of its size, and what no
    /// class of its size holds is cut from the largest segment.
    #[default]
    Optimistic = 1,
    /// Best fit: a segment from the smallest size class that holds the request (a coarse class
    /// above 512 bytes is tried from the request's own class, whose first segment may hold it).
    Pessimistic = 2,
}

impl Freelist {
    /// The policy stored as byte `v` in a header, if `v` names one.
    pub(crate) fn from_u8(v: u8) -> Option<Freelist> {
        match v {
            0 => Some(Freelist::None),
            1 => Some(Freelist::Optimistic),
            2 => Some(Freelist::Pessimistic),
            _ => None,
        }
    }
}

/// Which memory holds the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackingKind {
    /// An aligned heap buffer.
    Heap,
    /// An anonymous memory map.
    Anon,
    /// A file map.
    File,
}
