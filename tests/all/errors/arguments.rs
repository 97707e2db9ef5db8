//! Bad sizes are typed errors; a lane out of range is a caller's bug and panics, naming it.

use parena::{Error, Options};

#[test]
fn bad_sizes() {
    let arena = Options::new().capacity(1 << 16).heap().unwrap();
    assert!(matches!(arena.alloc(0), Err(Error::ZeroSize)));
    assert!(matches!(
        arena.alloc(usize::MAX),
        Err(Error::TooLarge { .. })
    ));
    match arena.alloc(1 << 20) {
        Err(Error::Full {
            requested,
            available,
        }) => {
            assert_eq!(requested, 1 << 20);
            assert_eq!(available, arena.stats().remaining);
        }
        other => panic!("{other:?}"),
    };
}

#[test]
#[should_panic(expected = "lane 4 out of 0..4")]
fn lane_out_of_range_panics() {
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    let _ = arena.with_lane(parena::LANES);
}
