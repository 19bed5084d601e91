//! The `crate::asym_fence` of the loom models: both halves as `SeqCst` fences, which is what
//! `membarrier` gives a Dekker pair in effect (a full barrier in every other running thread's
//! instruction stream during the heavy call, and one in the caller around it). Loom models
//! `SeqCst` fences (not `SeqCst` accesses), so the pairs built on these are checked exactly.

#![allow(dead_code)]

use std::sync::atomic::Ordering::SeqCst;

pub(crate) fn light() {
    loom::sync::atomic::fence(SeqCst);
}

pub(crate) fn heavy() {
    loom::sync::atomic::fence(SeqCst);
}
