//! Helpers shared by the integration tests: running a test again in a child process.
//!
//! Crash cases (stack overflow, bad environment, a blocked worker) and anything that needs its
//! own `GROVE_*` settings run in a child: the test binary re-executes itself with `--exact` for
//! the one test, `GROVE_TEST_ROLE` set, and the environment it needs. The test function checks
//! [`role`] first and, in the child, does the dangerous part and returns.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::Duration;

const ROLE_VAR: &str = "GROVE_TEST_ROLE";

/// The role this process plays, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// Runs test `name` of this binary in a child with `role` and `env`; waits at most 60 s.
pub fn run_child(name: &str, role: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env(ROLE_VAR, role)
    .env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child test process");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            // SAFETY: pid is the child we started and have not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("child test {name} ({role}) did not finish within 60 s");
        }
    }
}

/// The child's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The child's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The signal that killed the child, if one did.
pub fn signal(out: &Output) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal()
}

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
