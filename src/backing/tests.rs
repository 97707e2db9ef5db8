//! `Backing`'s byte accessors refuse a range outside the backing in every build, not only under
//! debug assertions: offsets can come from a forged file.

use super::Backing;

#[test]
#[should_panic(expected = "outside the 8192-byte backing")]
fn a_slice_past_the_end_is_refused() {
    let b = Backing::heap(8192).unwrap();
    // SAFETY: nothing else uses the fresh backing.
    let _ = unsafe { b.slice(8192 - 8, 16) };
}

#[test]
#[should_panic(expected = "outside the 8192-byte backing")]
fn a_write_past_the_end_is_refused() {
    let b = Backing::heap(8192).unwrap();
    // SAFETY: nothing else uses the fresh backing.
    unsafe { b.write(8190, &[1; 4]) };
}

#[test]
#[should_panic(expected = "outside the 8192-byte backing")]
fn a_range_whose_end_overflows_is_refused() {
    let b = Backing::heap(8192).unwrap();
    // SAFETY: nothing else uses the fresh backing.
    unsafe { b.zero(u64::MAX - 4, 8) };
}

#[test]
fn a_range_up_to_the_end_is_served() {
    let b = Backing::heap(8192).unwrap();
    // SAFETY: nothing else uses the fresh backing.
    unsafe { b.write(8192 - 4, &[7; 4]) };
    // SAFETY: as above.
    assert_eq!(unsafe { b.slice(8192 - 4, 4) }, [7; 4]);
    // SAFETY: as above.
    unsafe { b.zero(8192, 0) };
}
