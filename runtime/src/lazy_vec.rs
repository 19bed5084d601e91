//! A `Vec` whose drop costs nothing while it has never allocated.
//!
//! Every greenlet carries a few lists that almost always stay empty: its joiners beyond the
//! first, its greenlet-locals, its `timeout` scopes. An empty `Vec`'s drop glue still calls out
//! of line into the element slice's drop (13 to 20 instructions each, per spawn+join, in
//! callgrind); this wrapper checks the capacity inline first. It derefs to the `Vec`, so code
//! uses it as one.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

/// A `Vec<T>`, dropped only if it ever allocated.
pub(crate) struct LazyVec<T>(ManuallyDrop<Vec<T>>);

impl<T> LazyVec<T> {
    pub(crate) const fn new() -> LazyVec<T> {
        LazyVec(ManuallyDrop::new(Vec::new()))
    }

    /// The `Vec`, for code that consumes it.
    pub(crate) fn into_vec(mut self) -> Vec<T> {
        // SAFETY: taken once; `self` is forgotten right after, so the `Vec` is not dropped
        // twice (nor used again).
        let v = unsafe { ManuallyDrop::take(&mut self.0) };
        std::mem::forget(self);
        v
    }
}

impl<T> Default for LazyVec<T> {
    fn default() -> LazyVec<T> {
        LazyVec::new()
    }
}

impl<T> From<Vec<T>> for LazyVec<T> {
    fn from(v: Vec<T>) -> LazyVec<T> {
        LazyVec(ManuallyDrop::new(v))
    }
}

impl<T> Deref for LazyVec<T> {
    type Target = Vec<T>;

    #[inline]
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T> DerefMut for LazyVec<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T> Drop for LazyVec<T> {
    #[inline]
    fn drop(&mut self) {
        // A `Vec` with no capacity holds no element and no allocation (a zero-sized `T` gives
        // a capacity of `usize::MAX`, so it takes the ordinary path).
        if self.0.capacity() != 0 {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.0) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LazyVec;
    use std::rc::Rc;

    #[test]
    fn drops_its_elements_once_and_nothing_when_it_never_allocated() {
        let counted = Rc::new(());
        let mut v: LazyVec<Rc<()>> = LazyVec::new();
        v.push(counted.clone());
        v.push(counted.clone());
        assert_eq!(Rc::strong_count(&counted), 3);
        drop(v);
        assert_eq!(Rc::strong_count(&counted), 1);
        let empty: LazyVec<Rc<()>> = LazyVec::default();
        drop(empty);
        let back = LazyVec::from(vec![counted.clone()]).into_vec();
        assert_eq!(Rc::strong_count(&counted), 2);
        drop(back);
        assert_eq!(Rc::strong_count(&counted), 1);
    }
}
