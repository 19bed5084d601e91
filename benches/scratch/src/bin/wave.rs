//! A scratch program for A/B timings (see ../../Cargo.toml).
use std::hint::black_box;
use std::time::Instant;
fn wave() {
    grove::spawn(|| {
        let hs: Vec<_> = (0..10_000u64)
            .map(|i| grove::spawn(move || black_box(i)))
            .collect();
        for h in hs {
            black_box(h.join().unwrap());
        }
    })
    .join()
    .unwrap();
}
fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    wave();
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..n {
            wave();
        }
        println!(
            "{:.1} ns/greenlet",
            t.elapsed().as_nanos() as f64 / (n as f64 * 10_000.0)
        );
    }
}
