//! A handle to a block still being written is `Busy` until the writer publishes it.

use parena::{Error, Options};

#[test]
fn pending_block_is_busy_until_published() {
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    let mut b = arena.alloc(8).unwrap();
    b[0] = 5;
    let h = b.handle();
    let mut buf = [0u8; 8];
    assert!(matches!(
        arena.read(h, 0, &mut buf),
        Err(Error::Busy { .. })
    ));
    assert!(matches!(arena.free(h), Err(Error::Busy { .. })));
    drop(b);
    arena.read(h, 0, &mut buf).unwrap();
    assert_eq!(buf[0], 5);
}
