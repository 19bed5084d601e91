//! The `bulk_download` example (gevent's `Pool(20).map(download, urls)` with ureq on grove
//! sockets) run end to end: it starts its own loopback server, downloads 100 URLs and checks
//! every body itself; this test checks that it says so and exits successfully, within a time
//! bound.
//!
//! The example runs as `cargo run --quiet --example bulk_download` (which builds it if needed),
//! inheriting the environment, so `GROVE_WORKERS` applies to it too. The child is killed by its
//! pid when its guard drops: on timeout, and also when an assertion fails.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Bound on the whole run, including building the example on a cold target directory.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// The running `cargo run`: killed (by pid) and reaped when dropped if still running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads a pipe to the end on a thread of its own, so a full pipe never stalls the child.
fn drain(mut pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// What a pipe carried, waiting a bounded time for its end (a stray grandchild, say a compiler
/// left by a killed `cargo`, could keep it open).
fn collected(rx: &Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| "(pipe still open; not collected)\n".to_owned())
}

/// The cargo profile this test was built with, so that `cargo run` reuses the example that
/// `cargo test` built alongside it (`cargo test --release` gets a release example).
fn profile() -> String {
    // This binary is target/[TRIPLE/]PROFILE_DIR/deps/net_bulk_download-HASH.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent());
    match dir.and_then(|d| d.file_name()).and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(p) => p.to_owned(),
    }
}

#[test]
fn net_example_bulk_download_fetches_every_url() {
    let mut child = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--profile", &profile()])
        .args(["--example", "bulk_download"])
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cargo run --example bulk_download");
    let stdout = drain(child.stdout.take().expect("child stdout"));
    let stderr = drain(child.stderr.take().expect("child stderr"));
    let mut guard = ChildGuard(child);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for the example") {
            break Some(status);
        }
        if started.elapsed() > TIME_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // On timeout, kill it now so the pipes close and the readers finish. (`cargo run` execs the
    // example in its own process on Unix, so this pid is the example's once it runs.)
    drop(guard);
    let (out, err) = (collected(&stdout), collected(&stderr));
    let report = format!("--- stdout ---\n{out}--- stderr ---\n{err}--- end ---");

    let Some(status) = status else {
        panic!("bulk_download did not finish within {TIME_LIMIT:?}; killed it\n{report}");
    };
    assert!(status.success(), "bulk_download failed: {status}\n{report}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("downloaded "))
        .unwrap_or_else(|| panic!("no summary line\n{report}"));
    assert!(
        summary.starts_with("downloaded 100 URLs, ") && summary.contains(" with 20 at a time"),
        "unexpected summary {summary:?}\n{report}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("sequentially: 100 URLs in ")),
        "no sequential line\n{report}"
    );
}
