//! [`MapSettings`]: what to do with a map once it is made, and the system calls behind each
//! setting, whose refusals become typed errors.

use crate::error::Error;

/// What to do with a map once it is made: [`crate::Options::populate`], `huge_pages`,
/// `lock_memory` and `remove_on_drop`. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MapSettings {
    /// Fault every page in now (`MADV_POPULATE_*`, what `MAP_POPULATE` does at map time).
    pub populate: bool,
    /// Ask for transparent huge pages (`MADV_HUGEPAGE`).
    pub huge_pages: bool,
    /// Keep the map in RAM (`mlock`).
    pub lock_memory: bool,
    /// Remove the file when the map goes (file maps only).
    pub remove_on_drop: bool,
}

impl MapSettings {
    /// The first setting that is on, by its option name (for errors on backings that have none).
    pub(super) fn first_on(&self) -> Option<&'static str> {
        [
            (self.populate, "populate"),
            (self.huge_pages, "huge_pages"),
            (self.lock_memory, "lock_memory"),
            (self.remove_on_drop, "remove_on_drop"),
        ]
        .into_iter()
        .find_map(|(on, name)| on.then_some(name))
    }
}

/// Whether the kernel has transparent huge pages switched off altogether.
fn huge_pages_disabled() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[never]"))
}

/// Runs one map setting's system call; a refusal becomes [`Error::Refused`] naming the option.
pub(super) fn setting(
    option: &'static str,
    call: impl FnOnce() -> std::io::Result<()>,
) -> Result<(), Error> {
    if option == "huge_pages" && huge_pages_disabled() {
        return Err(Error::Refused {
            option,
            error: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "transparent huge pages are off (/sys/kernel/mm/transparent_hugepage/enabled)",
            ),
        });
    }
    call().map_err(|error| Error::Refused { option, error })
}
