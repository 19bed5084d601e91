//! The page-fault floor of this machine, for the memory-bound benches (docs/benchmarks.md): maps
//! N 16 KiB slots with no guard pages and touches one byte near the top of each, as a fresh
//! greenlet touches its first stack page, then prints the nanoseconds per first-touch fault.
//! No grove code runs: a parked greenlet cannot cost less than this here.
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    const SLOT: usize = 16 << 10;
    // SAFETY: an anonymous private mapping with no address hint; the result is checked below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            n * SLOT,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert!(base != libc::MAP_FAILED, "faults: mmap of {n} slots failed");
    let base = base.cast::<u8>();
    let t = Instant::now();
    for i in 0..n {
        // SAFETY: inside the mapping made above (slot i, 64 bytes below its top).
        unsafe { base.add(i * SLOT + SLOT - 64).write_volatile(1) };
    }
    println!(
        "{:.0} ns per first-touch fault",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
