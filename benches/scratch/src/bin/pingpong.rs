//! A scratch program for A/B timings (see ../../Cargo.toml).
use std::time::Instant;
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    for _ in 0..3 {
        let (tx1, rx1) = grove::sync::channel::<u64>();
        let (tx2, rx2) = grove::sync::channel::<u64>();
        let t = Instant::now();
        let a = grove::spawn(move || {
            for i in 0..n {
                tx1.send(i).unwrap();
                let v = rx2.recv().unwrap();
                assert_eq!(v, i + 1);
            }
        });
        let b = grove::spawn(move || {
            for _ in 0..n {
                let v = rx1.recv().unwrap();
                tx2.send(v + 1).unwrap();
            }
        });
        a.join().unwrap();
        b.join().unwrap();
        println!(
            "{:.1} ns/round trip",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
