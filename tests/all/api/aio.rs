//! The async layer: shared opens, handles across tasks, coalesced flushes, cancellation, on
//! tokio (both flavours), smol and a plain `block_on`.

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::StreamExt;
use parena::{Arena, Error, Freelist, Handle, Options};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

const TASKS: usize = 64;
/// Records per task: the even ones go to the next task (read and freed there), the odd ones stay.
const RECORDS: usize = 12;

fn opts() -> Options {
    Options::new().capacity(8 << 20)
}

/// `o.open_async(path)`.
fn open_with(
    o: &Options,
    path: impl AsRef<Path>,
) -> impl Future<Output = Result<Arena, Error>> + Send + 'static {
    // SAFETY: every file here lives in a private temporary directory that nothing else touches.
    unsafe { o.open_async(path) }
}

/// `o.map_file(path)`.
fn map_with(o: &Options, path: impl AsRef<Path>) -> Result<Arena, Error> {
    // SAFETY: as in `open_with`.
    unsafe { o.map_file(path) }
}

/// Opens `path` shared with [`opts`].
async fn open(path: &Path) -> Result<Arena, Error> {
    open_with(&opts(), path).await
}

fn record(task: usize, j: usize) -> Vec<u8> {
    let len = 8 + (task * 31 + j * 7) % 120;
    (0..len).map(|k| (task * 7 + j * 13 + k) as u8).collect()
}

/// A batch of records sent to another task: (handle, task, record index).
type Batch = Vec<(Handle, usize, usize)>;

struct Done {
    arena: Arena,
    /// A block listing the handles of the task's kept records.
    list: Handle,
}

/// One task of the shared flow: open, allocate, swap half the records with a neighbour, check and
/// free what came in, list what stays, flush.
async fn worker(
    i: usize,
    path: PathBuf,
    tx: UnboundedSender<Batch>,
    mut rx: UnboundedReceiver<Batch>,
) -> Done {
    let arena = open(&path).await.unwrap();
    let mut kept = Vec::new();
    let mut sent = Vec::new();
    for j in 0..RECORDS {
        let h = arena.alloc_copy(&record(i, j)).unwrap();
        if j % 2 == 0 {
            sent.push((h, i, j));
        } else {
            kept.push(h);
        }
    }
    tx.unbounded_send(sent).unwrap();
    let got = rx.next().await.unwrap();
    assert_eq!(got.len(), RECORDS / 2);
    for (h, task, j) in got {
        assert_ne!(task, i);
        let want = record(task, j);
        let mut buf = vec![0u8; want.len()];
        arena.read(h, 0, &mut buf).unwrap();
        assert_eq!(buf, want, "record {j} of task {task} read by task {i}");
        arena.free(h).unwrap();
        // A stale handle is refused, as in sync code.
        assert!(arena.read(h, 0, &mut buf).is_err());
        assert!(arena.free(h).is_err());
    }
    let mut list = arena.alloc(kept.len() * 8).unwrap();
    for (k, h) in kept.iter().enumerate() {
        list[k * 8..k * 8 + 8].copy_from_slice(&h.to_u64().to_le_bytes());
    }
    let list = list.into_handle();
    arena.flush_async().await.unwrap();
    Done { arena, list }
}

/// The workers' futures, wired in a ring: task `i` sends to task `i + 1`.
fn workers(path: &Path, n: usize) -> Vec<impl Future<Output = Done> + Send + 'static> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| unbounded()).unzip();
    rxs.into_iter()
        .enumerate()
        .map(|(i, rx)| worker(i, path.to_path_buf(), txs[(i + 1) % n].clone(), rx))
        .collect()
}

/// Checks that every task saw one arena, stores the lists in a directory block under root 0,
/// flushes, and gives every clone up.
async fn finish(dones: Vec<Done>) {
    let arena = dones[0].arena.clone();
    for d in &dones {
        assert!(
            Arena::same_arena(&arena, &d.arena),
            "two arenas for one path"
        );
        assert_eq!(d.arena.id(), arena.id());
    }
    let mut dir = arena.alloc(dones.len() * 8).unwrap();
    for (k, d) in dones.iter().enumerate() {
        dir[k * 8..k * 8 + 8].copy_from_slice(&d.list.to_u64().to_le_bytes());
    }
    let dir = dir.into_handle();
    arena.set_root(0, dir.to_u64()).unwrap();
    arena.set_root(1, dones.len() as u64).unwrap();
    arena.flush_async().await.unwrap();
    let closes: Vec<_> = dones.into_iter().map(|d| d.arena.close_async()).collect();
    for r in futures::future::join_all(closes).await {
        r.unwrap();
    }
    arena.close_async().await.unwrap();
}

fn read_u64s(arena: &Arena, h: Handle, n: usize) -> Vec<u64> {
    let mut buf = vec![0u8; n * 8];
    arena.read(h, 0, &mut buf).unwrap();
    buf.chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// With every clone gone: the exclusive sync open works, finds a clean arena and every kept
/// record.
fn check_reopen(path: &Path) {
    let mut arena = map_with(&opts(), path).unwrap();
    assert!(arena.was_clean());
    let tasks = arena.root(1) as usize;
    let dir = Handle::from_u64(arena.root(0));
    for (task, list) in read_u64s(&arena, dir, tasks).into_iter().enumerate() {
        let kept = read_u64s(&arena, Handle::from_u64(list), RECORDS / 2);
        for (k, h) in kept.into_iter().enumerate() {
            let want = record(task, 2 * k + 1);
            let mut buf = vec![0u8; want.len()];
            arena.read(Handle::from_u64(h), 0, &mut buf).unwrap();
            assert_eq!(buf, want);
        }
    }
    let r = arena.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.live_blocks as usize, tasks * (RECORDS / 2 + 1) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokio_multi_thread_tasks_share_one_arena() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.parena");
    let handles: Vec<_> = workers(&path, TASKS)
        .into_iter()
        .map(tokio::spawn)
        .collect();
    let mut dones = Vec::new();
    for h in handles {
        dones.push(h.await.unwrap());
    }
    finish(dones).await;
    check_reopen(&path);
    // A later shared open maps the file again: a new instance of the same arena.
    let again = open(&path).await.unwrap();
    assert!(again.was_clean());
    assert_eq!(again.root(1) as usize, TASKS);
    again.close_async().await.unwrap();
    check_reopen(&path);
}

#[test]
fn block_on_without_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.parena");
    futures::executor::block_on(async {
        let dones = futures::future::join_all(workers(&path, TASKS)).await;
        finish(dones).await;
    });
    check_reopen(&path);
}

#[test]
fn smol_executor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.parena");
    smol::block_on(async {
        let tasks: Vec<_> = workers(&path, TASKS).into_iter().map(smol::spawn).collect();
        let dones = futures::future::join_all(tasks).await;
        finish(dones).await;
    });
    check_reopen(&path);
}

/// On a current-thread runtime the flow runs beside a timer task, and the timer keeps ticking
/// while a large flush is in flight: the flush does not hold the only executor thread.
///
/// Time is paused: the runtime advances its clock to the next timer whenever it has nothing to
/// run, so the ticker ticks exactly when the executor thread is free, whatever the disk's speed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tokio_current_thread_keeps_ticking_during_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.parena");
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(1));
            loop {
                every.tick().await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let handles: Vec<_> = workers(&path, TASKS)
        .into_iter()
        .map(tokio::spawn)
        .collect();
    let mut dones = Vec::new();
    for h in handles {
        dones.push(h.await.unwrap());
    }
    finish(dones).await;
    check_reopen(&path);

    // A large flush: 48 MiB of dirty pages.
    let big = dir.path().join("big.parena");
    let arena = open_with(&Options::new().capacity(64 << 20), &big)
        .await
        .unwrap();
    let blocks: Vec<Handle> = (0..48)
        .map(|_| arena.alloc(1 << 20).unwrap().into_handle())
        .collect();
    let mut ticked_during_flush = 0;
    for round in 0..4u8 {
        for &h in &blocks {
            // SAFETY: nothing else reads, writes or frees these blocks meanwhile.
            unsafe { arena.get_mut(h) }.unwrap().fill(round + 1);
        }
        let before = ticks.load(Ordering::Relaxed);
        arena.flush_async().await.unwrap();
        ticked_during_flush += ticks.load(Ordering::Relaxed) - before;
    }
    assert!(
        ticked_during_flush > 0,
        "the timer never ticked while a flush was in flight"
    );
    ticker.abort();
    arena.close_async().await.unwrap();
}

/// A waker that records that it was woken, so a test can drive a future one await point at a
/// time on its own thread.
struct Flag {
    woken: AtomicBool,
    thread: std::thread::Thread,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls `f` until it has passed `steps` await points (or finished): after each pending poll,
/// waits for its wake-up. Returns the output if it finished.
fn drive<F: Future + Unpin>(f: &mut F, steps: usize) -> Option<F::Output> {
    let flag = Arc::new(Flag {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    for step in 0..steps {
        if let Poll::Ready(v) = Pin::new(&mut *f).poll(&mut cx) {
            return Some(v);
        }
        if step + 1 < steps {
            // Acquire: pairs with the Release in `wake`.
            while !flag.woken.swap(false, Ordering::Acquire) {
                std::thread::park();
            }
        }
    }
    None
}

fn noop_polls<F: Future + Unpin>(f: &mut F, polls: usize) -> Option<F::Output> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..polls {
        if let Poll::Ready(v) = Pin::new(&mut *f).poll(&mut cx) {
            return Some(v);
        }
        std::thread::yield_now();
    }
    None
}

/// After a cancelled open: a shared open works, and once it is dropped so does the exclusive one.
fn opens_normally(path: &Path, tag: u64) {
    let a = futures::executor::block_on(open(path)).unwrap();
    let h = a.alloc_copy(&tag.to_le_bytes()).unwrap();
    a.set_root(2, h.to_u64()).unwrap();
    drop(a);
    let b = map_with(&opts(), path).expect("the path is free once every clone is gone");
    assert!(b.was_clean());
    let mut buf = [0u8; 8];
    b.read(Handle::from_u64(b.root(2)), 0, &mut buf).unwrap();
    assert_eq!(u64::from_le_bytes(buf), tag);
}

#[test]
fn cancelled_opens_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.parena");
    let mut tag = 0;
    // Dropped after 0, 1, 2, ... await points: before the path lookup, while the path is looked
    // up, while the file is being opened, after it is done.
    for steps in 0..5 {
        for fresh in [true, false] {
            if fresh {
                let _ = std::fs::remove_file(&path);
            }
            let mut f = Box::pin(open_with(&opts(), &path));
            if let Some(r) = drive(&mut f, steps) {
                drop(r.unwrap());
            }
            drop(f);
            tag += 1;
            opens_normally(&path, tag);
        }
    }
    // The same with a noop waker, dropped after a few polls whatever stage they reached.
    for polls in 0..40 {
        let mut f = Box::pin(open_with(&opts(), &path));
        if let Some(r) = noop_polls(&mut f, polls) {
            drop(r.unwrap());
        }
        drop(f);
    }
    tag += 1;
    opens_normally(&path, tag);
}

/// An open that waits on another task's open gets the file once that open is cancelled.
#[test]
fn waiter_takes_over_a_cancelled_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.parena");
    for polls in 0..8 {
        let mut first = Box::pin(open_with(&opts(), &path));
        // The path is looked up, then the file is being opened on the pool (or done). The first
        // opener waits only on the pool here, so every wait ends.
        let early = drive(&mut first, 2);
        // The second and the third look the path up and, unless the first is done, wait on it.
        let mut second = Box::pin(open_with(&opts(), &path));
        let second_early = noop_polls(&mut second, polls);
        let mut third = Box::pin(open_with(&opts(), &path));
        let _ = noop_polls(&mut third, polls);
        // The third gives up, then the first.
        drop(third);
        drop(early);
        drop(first);
        let a = match second_early {
            Some(r) => r,
            None => futures::executor::block_on(second),
        }
        .unwrap();
        drop(a);
        drop(map_with(&opts(), &path).unwrap());
    }
}

/// `close_async` of the last clone: an open meanwhile waits for the close, then maps the file
/// again. Cancelling the close still closes.
#[test]
fn open_during_close_waits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parena");
    futures::executor::block_on(async {
        let a = open(&path).await.unwrap();
        let id = a.id();
        let mut closing = Box::pin(a.close_async());
        let closed_early = noop_polls(&mut closing, 1);
        let b = open(&path).await.unwrap();
        assert_eq!(b.id(), id);
        assert!(b.was_clean(), "opened before the close had finished");
        match closed_early {
            Some(r) => r.unwrap(),
            None => closing.await.unwrap(),
        }

        let mut closing = Box::pin(b.close_async());
        let _ = noop_polls(&mut closing, 1);
        drop(closing);
        let c = open(&path).await.unwrap();
        assert!(c.was_clean());
        c.close_async().await.unwrap();
    });
    drop(map_with(&opts(), &path).unwrap());
}

/// Flush futures dropped in flight or while waiting leave the arena's flushes working and lose
/// nothing that a completed flush promised.
#[test]
fn cancelled_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.parena");
    futures::executor::block_on(async {
        let a = open(&path).await.unwrap();
        let h = a.alloc_copy(b"durable").unwrap();
        a.set_root(0, h.to_u64()).unwrap();
        for polls in 0..6 {
            let mut f1 = Box::pin(a.flush_async());
            let mut f2 = Box::pin(a.flush_async());
            let mut f3 = Box::pin(a.flush_range_async(0, 4096));
            let _ = noop_polls(&mut f1, polls);
            let f2_early = noop_polls(&mut f2, polls);
            let f3_early = noop_polls(&mut f3, polls);
            drop(f1);
            // A range flush is not tracked by the epochs: finish it, so that the last clone is
            // ours below (see `cancelled_range_flush` for dropping one in flight).
            if f3_early.is_none() && polls > 0 {
                f3.await.unwrap();
            }
            // The waiter still completes (it starts a flush of its own if need be).
            match f2_early {
                Some(r) => r.unwrap(),
                None => f2.await.unwrap(),
            }
            a.flush_async().await.unwrap();
        }
        drop(a);
    });
    let b = map_with(&opts(), &path).unwrap();
    assert!(b.was_clean());
    let mut buf = [0u8; 7];
    b.read(Handle::from_u64(b.root(0)), 0, &mut buf).unwrap();
    assert_eq!(&buf, b"durable");
}

/// A range flush dropped in flight finishes on the pool and keeps the arena open until then; a
/// shared open meanwhile gets that arena or, once it has closed, the file again.
#[test]
fn cancelled_range_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.parena");
    futures::executor::block_on(async {
        for polls in 0..6 {
            let a = open(&path).await.unwrap();
            let h = a.alloc_copy(b"ranged").unwrap();
            a.set_root(polls, h.to_u64()).unwrap();
            a.flush_async().await.unwrap();
            let mut f = Box::pin(a.flush_range_async(0, 1 << 20));
            let _ = noop_polls(&mut f, polls);
            drop(f);
            drop(a);
            let b = open(&path).await.unwrap();
            let mut buf = [0u8; 6];
            b.read(Handle::from_u64(b.root(polls)), 0, &mut buf)
                .unwrap();
            assert_eq!(&buf, b"ranged");
            b.flush_range_async(0, 4096).await.unwrap();
        }
    });
}

#[test]
fn conflicting_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.parena");
    futures::executor::block_on(async {
        let o = Options::new().capacity(1 << 20);
        let a = open_with(&o, &path).await.unwrap();
        let conflict = |r: Result<Arena, Error>| match r {
            Err(Error::Conflict { option }) => option,
            other => panic!("expected a conflict, got {other:?}"),
        };
        let cases = [
            (o.clone().capacity(2 << 20), "capacity"),
            (o.clone().freelist(Freelist::Pessimistic), "freelist"),
            (o.clone().read_only(true), "read_only"),
            (o.clone().magic_version(7), "magic_version"),
            (o.clone().reserved(64), "reserved"),
            (o.clone().zero_on_free(true), "zero_on_free"),
        ];
        for (bad, option) in cases {
            assert_eq!(conflict(open_with(&bad, &path).await), option);
        }
        assert!(matches!(
            open_with(&o.clone().create_new(true), &path).await,
            Err(Error::Exists)
        ));
        // What matches (or asks for less) shares the arena.
        for ok in [
            o.clone(),
            Options::new(),
            o.clone().capacity(4096 * 4),
            o.clone().freelist(Freelist::Optimistic).reserved(0),
            o.clone().create(false),
        ] {
            let b = open_with(&ok, &path).await.unwrap();
            assert!(Arena::same_arena(&a, &b));
        }
        drop(a);
    });
}

/// `map_file` stays exclusive against `open_async`, both ways.
#[test]
fn sync_open_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.parena");
    let a = futures::executor::block_on(open(&path)).unwrap();
    assert!(matches!(map_with(&opts(), &path), Err(Error::Locked)));
    assert!(matches!(
        map_with(&opts().read_only(true), &path),
        Err(Error::Locked)
    ));
    drop(a);
    let s = map_with(&opts(), &path).unwrap();
    assert!(matches!(
        futures::executor::block_on(open(&path)),
        Err(Error::Locked)
    ));
    drop(s);
    drop(futures::executor::block_on(open(&path)).unwrap());
}

/// Read-only opens share one read-only arena.
#[test]
fn read_only_opens_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.parena");
    futures::executor::block_on(async {
        let w = open(&path).await.unwrap();
        let h = w.alloc_copy(b"ro").unwrap();
        w.close_async().await.unwrap();
        let ro = opts().read_only(true);
        let a = open_with(&ro, &path).await.unwrap();
        let b = open_with(&ro, &path).await.unwrap();
        assert!(Arena::same_arena(&a, &b) && a.is_read_only());
        let mut buf = [0u8; 2];
        b.read(h, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"ro");
        a.flush_async().await.unwrap();
        assert!(matches!(open(&path).await, Err(Error::Conflict { .. })));
    });
}

/// Exclusive passes work on an async-opened arena when only one clone is left; meanwhile a shared
/// open of its path is refused rather than left waiting, and works again once it is dropped.
#[test]
fn exclusive_passes_on_a_shared_arena() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.parena");
    futures::executor::block_on(async {
        let mut a = open(&path).await.unwrap();
        let b = open(&path).await.unwrap();
        let _ = a.alloc_copy(b"x").unwrap();
        assert!(matches!(a.verify(), Err(Error::Shared)));
        // Still shared: a third open joins.
        let c = open(&path).await.unwrap();
        assert!(Arena::same_arena(&a, &c));
        drop((b, c));
        let r = a.verify().unwrap();
        assert!(r.is_clean(), "{r:?}");
        a.compact().unwrap();
        assert!(matches!(open(&path).await, Err(Error::Locked)));
        a.flush_async().await.unwrap();
        drop(a);
        let d = open(&path).await.unwrap();
        assert!(d.was_clean());
        // `close` of the only clone reports its result.
        d.close().unwrap();
        open(&path).await.unwrap().close_async().await.unwrap();
    });
}

/// A shared growable arena grows in place when a later open asks for a larger capacity within
/// its maximum; one past the maximum, or with another maximum, conflicts.
#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn a_shared_growable_arena_grows_for_a_later_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.parena");
    futures::executor::block_on(async {
        let o = Options::new().capacity(2 << 20).max_capacity(16 << 20);
        let a = open_with(&o, &path).await.unwrap();
        let h = a.alloc_copy(b"before").unwrap();
        let b = open_with(&o.clone().capacity(6 << 20), &path)
            .await
            .unwrap();
        assert!(Arena::same_arena(&a, &b));
        assert_eq!(a.capacity(), 6 << 20, "grown in place for every holder");
        let mut buf = [0u8; 6];
        a.read(h, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"before");
        for (bad, option) in [
            (o.clone().capacity(32 << 20), "capacity"),
            (o.clone().max_capacity(8 << 20), "max_capacity"),
        ] {
            match open_with(&bad, &path).await {
                Err(Error::Conflict { option: got }) => assert_eq!(got, option),
                other => panic!("expected a conflict on {option}, got {other:?}"),
            }
        }
    });
}
