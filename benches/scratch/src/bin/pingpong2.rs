//! The criterion bench's ping-pong body (pong spawned first), for A/B against `pingpong`.
use std::time::Instant;
fn main() {
    let iters: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    for _ in 0..3 {
        let start = Instant::now();
        let (to_pong, from_ping) = grove::sync::channel::<u64>();
        let (to_ping, from_pong) = grove::sync::channel::<u64>();
        let pong = grove::spawn(move || {
            for _ in 0..iters {
                let v = from_ping.recv().unwrap();
                to_ping.send(v + 1).unwrap();
            }
        });
        let ping = grove::spawn(move || {
            for i in 0..iters {
                to_pong.send(i).unwrap();
                assert_eq!(from_pong.recv().unwrap(), i + 1);
            }
        });
        ping.join().unwrap();
        pong.join().unwrap();
        println!("{:.1} ns/round trip", start.elapsed().as_nanos() as f64 / iters as f64);
    }
}
