//! A scratch program for A/B timings (see ../../Cargo.toml).
use std::time::Instant;
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    for _ in 0..3 {
        let t = Instant::now();
        let a = grove::spawn(move || {
            for _ in 0..n {
                grove::yield_now();
            }
        });
        let b = grove::spawn(move || {
            for _ in 0..n {
                grove::yield_now();
            }
        });
        a.join().unwrap();
        b.join().unwrap();
        println!(
            "{:.2} ns/yield",
            t.elapsed().as_nanos() as f64 / (2 * n) as f64
        );
    }
}
