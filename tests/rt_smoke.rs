use std::time::{Duration, Instant};

#[test]
fn rt_spawn_join_returns_value() {
    let h = grove::spawn(|| 41 + 1);
    assert_eq!(h.join().unwrap(), 42);
}

#[test]
fn rt_sleep_in_greenlets_overlaps() {
    let t = Instant::now();
    let hs: Vec<_> = (0..100)
        .map(|_| grove::spawn(|| grove::sleep(Duration::from_millis(50))))
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(50) && e < Duration::from_millis(1000), "{e:?}");
}
