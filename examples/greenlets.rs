//! spawn, sleep, join and kill: the first steps of gevent's tutorial, in grove.
//!
//! Run with `cargo run --example greenlets`.

use std::time::{Duration, Instant};

fn task(pid: u32) -> u32 {
    // Sleeping parks this greenlet only; the others run meanwhile.
    grove::sleep(Duration::from_millis(50 + 10 * u64::from(pid % 3)));
    println!("task {pid} done on {:?}", grove::current().map(|c| c.id()));
    pid * pid
}

fn main() {
    let start = Instant::now();

    // Ten greenlets that each sleep ~50 ms finish together, not one after another.
    let handles: Vec<_> = (0..10).map(|pid| grove::spawn(move || task(pid))).collect();
    let squares: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    println!("squares {squares:?} in {:?}", start.elapsed());

    // A greenlet that would sleep for an hour is killed: it unwinds from its sleep, its
    // destructors run, and join reports the kill.
    let sleeper = grove::Builder::new()
        .name("sleeper")
        .spawn(|| {
            struct Goodbye;
            impl Drop for Goodbye {
                fn drop(&mut self) {
                    println!("sleeper: cleaning up");
                }
            }
            let _g = Goodbye;
            grove::sleep(Duration::from_secs(3600));
        })
        .expect("spawn");
    grove::sleep(Duration::from_millis(10));
    sleeper.kill();
    match sleeper.join() {
        Err(e) if e.downcast_ref::<grove::Killed>().is_some() => println!("sleeper was killed"),
        other => println!("unexpected: {other:?}"),
    }

    // gevent's Timeout: give up on work that takes too long.
    let r = grove::timeout(Duration::from_millis(20), || {
        grove::sleep(Duration::from_secs(1));
        "finished"
    });
    println!("with_timeout: {r:?}");
    println!("{} workers, total {:?}", grove::workers(), start.elapsed());
}
