//! Helpers of the std-parity tests (`net_std_parity*.rs`): temp socket paths, bounded timeout
//! checks, and fd probes.

use super::Worker;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The bound on every wait that should end.
pub const LIMIT: Duration = Duration::from_secs(5);

/// A socket path under the temp dir, unique to this process and call; removed on drop.
pub struct TempPath(PathBuf);

impl TempPath {
    pub fn new(tag: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "grove-parity-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        );
        let p = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `f` in a new greenlet when called from one, else on a new thread.
pub fn spawn_alike<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Worker<T> {
    Worker::spawn(grove::current().is_some(), f)
}

/// Asserts that `op` fails with `kind` after waiting about `timeout` (and not much longer).
pub fn assert_times_out<T: std::fmt::Debug>(timeout: Duration, op: impl FnOnce() -> io::Result<T>) {
    let t = Instant::now();
    let r = op();
    let took = t.elapsed();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(
        took >= timeout * 3 / 4,
        "timed out after {took:?}, before {timeout:?}"
    );
    assert!(took < LIMIT, "timed out after {took:?}");
}

/// Asserts that `op` fails at once with `WouldBlock` (non-blocking mode).
pub fn assert_would_block<T: std::fmt::Debug>(op: impl FnOnce() -> io::Result<T>) {
    let t = Instant::now();
    let r = op();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

/// The address `fd` is bound to, read without taking the fd over.
pub fn fd_local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: `fd` is an open socket the caller owns; ManuallyDrop never closes it.
    let s = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    s.local_addr()
}

/// True if `fd` is in non-blocking mode.
pub fn fd_nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL reads the flags of `fd`; no memory is involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "fd {fd} is not open");
    flags & libc::O_NONBLOCK != 0
}
