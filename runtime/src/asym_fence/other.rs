//! Systems without `membarrier`: no asymmetric fence; callers fall back to read-modify-writes.

pub(super) fn register() -> bool {
    false
}

pub(super) fn heavy() {
    unreachable!("grove: membarrier used where the system has none");
}
