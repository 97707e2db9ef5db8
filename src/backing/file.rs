//! The file map: open, preallocate, grow, map, flush (the lock is `lock.rs`).
//!
//! What parena assumes of the OS and the disk (Linux and other Unix-likes):
//! - `flock` locks belong to the open file description, so a second open of the same file in the
//!   same process conflicts like one from another process;
//! - `fallocate` (through fs4 for a whole file, rustix for a range) reserves blocks, so writes to
//!   the map cannot hit ENOSPC later;
//! - `msync(MS_SYNC)` on a range writes those pages to the device before it returns; pages not
//!   flushed may reach the disk at any time, in any order, or not at all before a power loss;
//! - an aligned 8-byte store is never torn by a process crash.

use super::lock::{take_lock, FileId, FileLock, Held};
use super::{setting, MapSettings};
use crate::error::Error;
use memmap2::{Advice, MmapOptions, MmapRaw};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// An open, locked arena file, not yet mapped.
pub(crate) struct OpenedFile {
    /// This process's record that it holds the lock (`None` on a second descriptor). Declared
    /// first so it is dropped before `file` closes: see [`Held`].
    _held: Option<Held>,
    pub file: File,
    pub path: PathBuf,
    pub read_only: bool,
    /// Where the arena starts in the file (`Options::offset`; a multiple of 4096).
    pub offset: u64,
    /// The file was created by this open (or ended at or before `offset`), so it holds no arena
    /// yet.
    pub fresh: bool,
    /// This open created the file (it did not exist before).
    pub created: bool,
    pub lock: FileLock,
}

impl OpenedFile {
    /// Opens (or creates) `path` and takes the lock a reader or a writer needs, without waiting.
    pub(crate) fn open(
        path: &Path,
        read_only: bool,
        create: bool,
        create_new: bool,
        offset: u64,
    ) -> Result<OpenedFile, Error> {
        let mut existed = true;
        let named = |e: io::Error| Error::of_open(e, path);
        let file = if read_only {
            File::open(path).map_err(named)?
        } else if create_new {
            existed = false;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Error::Exists
                    } else {
                        named(e)
                    }
                })?
        } else {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    existed = false;
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(path)
                        .map_err(named)?
                }
                Err(e) => return Err(named(e)),
            }
        };
        let lock = if read_only {
            FileLock::Shared
        } else {
            FileLock::Exclusive
        };
        let id = FileId::of(&file)?;
        take_lock(&file, lock, id)?;
        let held = Held::register(id);
        // With the lock held, an empty file holds no arena; a writer allowed to create one may make
        // it one. With `create(false)` an existing empty file is left alone (and refused as not an
        // arena by the header check), as the option promises.
        let fresh = !existed || (!read_only && create && file.metadata()?.len() <= offset);
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(OpenedFile {
            _held: Some(held),
            file,
            path,
            read_only,
            offset,
            fresh,
            created: !existed,
            lock,
        })
    }

    /// Removes the file if this open created it (a create that failed leaves nothing behind);
    /// called with the lock still held, so no other open has formatted it meanwhile.
    pub(crate) fn remove_if_created(&self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// The file's identity (device and inode, hashed; never 0): what the header's `file_id`
    /// records, so that an open can tell a copy of the file from the file itself.
    pub(crate) fn identity(&self) -> Result<u64, Error> {
        let id = FileId::of(&self.file)?;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&id.dev.to_le_bytes());
        bytes[8..].copy_from_slice(&id.ino.to_le_bytes());
        Ok(crate::format::fnv1a(&bytes) | 1)
    }

    /// A second descriptor on the same open file (it shares the lock), for a read-only map.
    pub(crate) fn dup_read_only(&self) -> Result<OpenedFile, Error> {
        Ok(OpenedFile {
            _held: None,
            file: self.file.try_clone()?,
            path: self.path.clone(),
            read_only: true,
            offset: self.offset,
            fresh: false,
            created: false,
            lock: self.lock,
        })
    }

    /// A second descriptor on the same open file, as writable as this one (it shares the lock):
    /// for a map that is dropped before this descriptor is mapped again (a growth).
    pub(crate) fn dup(&self) -> Result<OpenedFile, Error> {
        Ok(OpenedFile {
            read_only: self.read_only,
            ..self.dup_read_only()?
        })
    }

    /// Bytes of the file from the arena's start (`offset`) on.
    pub(crate) fn len(&self) -> Result<u64, Error> {
        Ok(self.file.metadata()?.len().saturating_sub(self.offset))
    }

    /// Reads up to `buf.len()` bytes from the arena's start; returns how many were read.
    pub(crate) fn read_prefix(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut done = 0;
        while done < buf.len() {
            match self
                .file
                .read_at(&mut buf[done..], self.offset + done as u64)
            {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Sets the arena's length in the file to `len` and, with `preallocate`, reserves its blocks;
    /// then makes the new length durable.
    pub(crate) fn resize(&self, len: u64, preallocate: bool) -> Result<(), Error> {
        if preallocate {
            fs4::fs_std::FileExt::allocate(&self.file, self.offset + len)?;
        }
        if self.len()? < len {
            self.file.set_len(self.offset + len)?;
        }
        self.file.sync_all()?;
        Ok(())
    }

    /// Formats a new (empty) file: sets its length to `len`, with `preallocate` reserving its
    /// blocks, writes `header` at its start, and makes all of it and the directory entry durable
    /// with one `fsync` of the file and one of the directory.
    ///
    /// A crash before the file's `fsync` returns leaves any subset of the length and the header on
    /// disk: a file of zeros (not an arena), or a header over a file shorter than the header's
    /// capacity (refused as truncated); nothing that opens as a well-formed arena with missing
    /// parts, since the header names a heap that is all zeros anyway.
    pub(crate) fn format(&self, len: u64, preallocate: bool, header: &[u8]) -> Result<(), Error> {
        if preallocate {
            fs4::fs_std::FileExt::allocate(&self.file, self.offset + len)?;
        }
        if self.len()? < len {
            self.file.set_len(self.offset + len)?;
        }
        self.file.write_all_at(header, self.offset)?;
        self.file.sync_all()?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// A shared, writable map of a whole arena file, or a private one for a read-only open.
pub(super) struct FileMap {
    map: MmapRaw,
    /// `map`'s first byte, taken once.
    base: NonNull<u8>,
    opened: OpenedFile,
    /// Remove the file at `opened.path` when this map is dropped (`Options::remove_on_drop`).
    remove_on_drop: crate::sync::StdAtomicBool,
}

impl FileMap {
    pub(super) fn new(opened: OpenedFile, len: u64) -> Result<FileMap, Error> {
        let size = usize::try_from(len).map_err(|_| Error::Size {
            field: "capacity",
            value: len,
        })?;
        let mut o = MmapOptions::new();
        o.offset(opened.offset).len(size);
        let map = if opened.read_only {
            // A private (copy-on-write) map, writable in memory though nothing writes it: the
            // handle checks and pins load the header words atomically, and Rust requires memory
            // behind an atomic to be writable; a private map gives that without any path to the
            // file (the descriptor is read-only too). `MAP_NORESERVE`: a writable private map is
            // charged against memory and swap as a whole at `mmap` under the kernel's default
            // overcommit heuristic, so a read-only open, a recovery's probe or a `map_copy` of an
            // arena larger than the machine's memory would be refused, though only the pages a
            // copy writes ever cost memory.
            o.no_reserve_swap();
            // SAFETY: the file's contents may change under the map only if another process breaks
            // the contract `Options::map_file` states (no one else modifies the file while it is
            // mapped); parena itself never writes through this map.
            MmapRaw::from(unsafe { o.map_copy(&opened.file) }.map_err(|e| Error::of_map(e, len))?)
        } else {
            o.map_raw(&opened.file).map_err(|e| Error::of_map(e, len))?
        };
        let base = NonNull::new(map.as_mut_ptr()).expect("a map is never at address 0");
        Ok(FileMap {
            map,
            base,
            opened,
            remove_on_drop: crate::sync::StdAtomicBool::new(false),
        })
    }

    /// See [`super::Backing::apply`].
    /// `populate` covers the first `len` bytes (the file's, in a map that spans room to grow).
    pub(super) fn apply(&self, s: MapSettings, len: u64) -> Result<(), Error> {
        if s.populate {
            // Read-populate, as `MAP_POPULATE` does for a shared file map: the file's pages come
            // into the page cache and the page tables now; a write-populate would dirty every
            // page and make the next flush write the whole file.
            setting("populate", || {
                self.map.advise_range(Advice::PopulateRead, 0, len as usize)
            })?;
        }
        if s.huge_pages {
            setting("huge_pages", || self.map.advise(Advice::HugePage))?;
        }
        if s.lock_memory {
            setting("lock_memory", || self.map.lock())?;
        }
        if s.remove_on_drop {
            // Relaxed: read only by `drop`, which runs after every other use of the map.
            self.remove_on_drop
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    pub(super) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Extends the arena's part of the file to `len` bytes (see [`OpenedFile::resize`]): the map
    /// already spans them (`Backing::file_growable`).
    pub(super) fn extend(&self, len: u64, preallocate: bool) -> Result<(), Error> {
        self.opened.resize(len, preallocate)
    }

    /// Reserves the disk blocks under the arena's bytes `off..off + len` (within the file's
    /// length, which it never changes): a sparse arena's chunk reservation, before it writes there
    /// (docs/metadata.md, 12.2, "Sparse arenas"). A file system without `fallocate` (and a system
    /// other than Linux) reserves nothing here: a full disk is then a `SIGBUS` on a write, as
    /// without this call.
    ///
    /// A private copy (`map_copy`, over a read-only descriptor) reserves nothing: its writes never
    /// reach the file.
    pub(super) fn reserve(&self, off: u64, len: u64) -> Result<(), Error> {
        if self.opened.read_only {
            return Ok(());
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::fs::{fallocate, FallocateFlags};
            match fallocate(
                &self.opened.file,
                FallocateFlags::KEEP_SIZE,
                self.opened.offset + off,
                len,
            ) {
                Ok(()) => Ok(()),
                Err(e) if e == rustix::io::Errno::OPNOTSUPP => Ok(()),
                Err(e) => Err(io::Error::from_raw_os_error(e.raw_os_error()).into()),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = (off, len);
            Ok(())
        }
    }

    /// Calls `f(from, to)` for each run of the file's data inside the arena's bytes
    /// `off..off + len`, as `SEEK_DATA` and `SEEK_HOLE` report them (a hole reads zero and has no
    /// disk block under it). `false` when the file system could not say: every byte may be data.
    /// Moves the descriptor's position, which nothing else uses (the header is written with
    /// `write_all_at`, everything else through the map).
    pub(super) fn for_each_data_run(
        &self,
        off: u64,
        len: u64,
        mut f: impl FnMut(u64, u64),
    ) -> bool {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::fs::{seek, SeekFrom};
            let base = self.opened.offset;
            let end = off.saturating_add(len);
            let mut at = off;
            while at < end {
                let from = match seek(&self.opened.file, SeekFrom::Data(base + at)) {
                    Ok(d) => d.saturating_sub(base).max(at),
                    // No data at or after `at`.
                    Err(e) if e == rustix::io::Errno::NXIO => return true,
                    Err(_) => return false,
                };
                if from >= end {
                    return true;
                }
                let to = match seek(&self.opened.file, SeekFrom::Hole(base + from)) {
                    Ok(h) => h.saturating_sub(base).min(end),
                    Err(_) => return false,
                };
                if to <= from {
                    return false;
                }
                f(from, to);
                at = to;
            }
            true
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = (off, len, &mut f);
            false
        }
    }

    pub(super) fn flush(&self, off: u64, len: u64) -> Result<(), Error> {
        self.map.flush_range(off as usize, len as usize)?;
        Ok(())
    }

    pub(super) fn flush_async(&self, off: u64, len: u64) -> Result<(), Error> {
        self.map.flush_async_range(off as usize, len as usize)?;
        Ok(())
    }

    pub(super) fn path(&self) -> &Path {
        &self.opened.path
    }
}

impl Drop for FileMap {
    /// With `remove_on_drop`, removes the file. The arena has closed it by then (the header is
    /// marked clean before the backing goes); the lock is released when `opened` closes right
    /// after, so a writer waiting on this path finds no file rather than this one.
    fn drop(&mut self) {
        if *self.remove_on_drop.get_mut() {
            let _ = std::fs::remove_file(&self.opened.path);
        }
    }
}
