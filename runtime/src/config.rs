//! Runtime configuration, read once from the environment when the runtime starts.
//!
//! A value that does not parse is never silently replaced by the default: the program stops with
//! a message naming the variable, what it holds and what was expected.

use std::fmt;

/// Default virtual size of a greenlet's stack. Pages are committed only as they are touched, so
/// a greenlet that stays shallow costs one 4 KiB page of memory whatever this is; what it buys is
/// headroom for deep call chains (debug builds, recursive parsers, formatting) before the guard
/// page stops an overflow.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Smallest stack a greenlet may ask for: the context-switch frame plus a little headroom.
pub const MIN_STACK_SIZE: usize = 16 * 1024;
/// The largest greenlet stack (`GROVE_STACK_SIZE`, `Builder::stack_size`): 1 TiB of address
/// space, far past any stack that could be used, and small enough that no size arithmetic on it
/// can overflow (a size near `usize::MAX` once wrapped to a tiny or zero-sized stack).
pub const MAX_STACK_SIZE: usize = 1 << 40;
/// The most workers `GROVE_WORKERS` may ask for.
pub const MAX_WORKERS: usize = 4096;

/// Default for `GROVE_MAX_BLOCKING_MS`.
pub const DEFAULT_MAX_BLOCKING_MS: u64 = 100;

/// Default cap on the blocking pool's threads (`GROVE_MAX_BLOCKING_THREADS`).
pub const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// Default idle time after which a blocking-pool thread exits (`GROVE_BLOCKING_KEEPALIVE_MS`).
pub const DEFAULT_BLOCKING_KEEPALIVE_MS: u64 = 10_000;

/// Default for `GROVE_IDLE_SPIN_US`: how long a worker that ran out of work keeps polling,
/// yielding its CPU between polls, before it sleeps (see `sched::linger`).
pub const DEFAULT_IDLE_SPIN_US: u64 = 50;

/// The runtime's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Worker threads (`GROVE_WORKERS`).
    pub workers: usize,
    /// Default greenlet stack size in bytes, page-rounded (`GROVE_STACK_SIZE`).
    pub stack_size: usize,
    /// Blocking-monitor threshold in milliseconds, 0 = off (`GROVE_MAX_BLOCKING_MS`).
    pub max_blocking_ms: u64,
    /// Most threads the blocking pool may hold (`GROVE_MAX_BLOCKING_THREADS`).
    pub max_blocking_threads: usize,
    /// Milliseconds an idle blocking-pool thread waits before exiting
    /// (`GROVE_BLOCKING_KEEPALIVE_MS`).
    pub blocking_keepalive_ms: u64,
    /// Microseconds a worker that ran out of work keeps polling, yielding its CPU between
    /// polls, before it sleeps; 0 = sleep at once (`GROVE_IDLE_SPIN_US`).
    pub idle_spin_us: u64,
}

/// A bad environment value: which variable, what it held, what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// Its value as found.
    pub value: String,
    /// What it should have been.
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "grove: invalid {}={:?}: expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        // A value that is not UTF-8 is kept (lossily) so that it fails to parse and is reported,
        // never silently taken for "unset".
        Config::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let workers = match lookup("GROVE_WORKERS") {
            Some(v) => parse_in(
                "GROVE_WORKERS",
                &v,
                1..=MAX_WORKERS,
                "a whole number of worker threads, from 1 to 4096",
            )?,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let stack_size = match lookup("GROVE_STACK_SIZE") {
            Some(v) => parse_stack_size(&v)?,
            None => DEFAULT_STACK_SIZE,
        };
        let max_blocking_ms = match lookup("GROVE_MAX_BLOCKING_MS") {
            Some(v) => parse_in(
                "GROVE_MAX_BLOCKING_MS",
                &v,
                0..=u64::MAX,
                "a whole number of milliseconds (0 turns the monitor off)",
            )?,
            None => DEFAULT_MAX_BLOCKING_MS,
        };
        let max_blocking_threads = match lookup("GROVE_MAX_BLOCKING_THREADS") {
            Some(v) => parse_in(
                "GROVE_MAX_BLOCKING_THREADS",
                &v,
                1..=usize::MAX,
                "a whole number of threads, at least 1",
            )?,
            None => DEFAULT_MAX_BLOCKING_THREADS,
        };
        let blocking_keepalive_ms = match lookup("GROVE_BLOCKING_KEEPALIVE_MS") {
            Some(v) => parse_in(
                "GROVE_BLOCKING_KEEPALIVE_MS",
                &v,
                1..=usize::MAX as u64,
                "a whole number of milliseconds, at least 1",
            )?,
            None => DEFAULT_BLOCKING_KEEPALIVE_MS,
        };
        let idle_spin_us = match lookup("GROVE_IDLE_SPIN_US") {
            Some(v) => parse_in(
                "GROVE_IDLE_SPIN_US",
                &v,
                0..=MAX_IDLE_SPIN_US,
                "a whole number of microseconds, from 0 (sleep at once) to 1000000",
            )?,
            None => DEFAULT_IDLE_SPIN_US,
        };
        Ok(Config {
            workers,
            stack_size,
            max_blocking_ms,
            max_blocking_threads,
            blocking_keepalive_ms,
            idle_spin_us,
        })
    }
}

/// The longest idle spin `GROVE_IDLE_SPIN_US` may ask for: a second.
const MAX_IDLE_SPIN_US: u64 = 1_000_000;

/// Parses `v`, the value of `var`, as a whole number within `range`.
fn parse_in<T>(
    var: &'static str,
    v: &str,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd,
{
    match v.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError {
            var,
            value: v.to_string(),
            expected,
        }),
    }
}

/// Parses a byte count with an optional `K`/`M`/`G` suffix (powers of 1024), page-rounded.
pub(crate) fn parse_stack_size(v: &str) -> Result<usize, ConfigError> {
    let bad = || {
        ConfigError {
        var: "GROVE_STACK_SIZE",
        value: v.to_string(),
        expected: "a size in bytes from 16K to 1024G, optionally with a K, M or G suffix (e.g. 262144 or 256K)",
    }
    };
    let t = v.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n = digits.trim().parse::<usize>().map_err(|_| bad())?;
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&bytes) {
        return Err(bad());
    }
    Ok(round_to_page(bytes))
}

/// Rounds `bytes` (at most [`MAX_STACK_SIZE`], so this cannot overflow) up to whole pages.
pub(crate) fn round_to_page(bytes: usize) -> usize {
    assert!(
        bytes <= MAX_STACK_SIZE,
        "grove: stack size {bytes} unchecked"
    );
    let page = page_size();
    bytes.div_ceil(page) * page
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always supported.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n <= 0 {
        4096
    } else {
        n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn config_defaults_when_unset() {
        let c = cfg(&[]).unwrap();
        assert!(c.workers >= 1);
        assert_eq!(c.stack_size, DEFAULT_STACK_SIZE);
        assert_eq!(c.max_blocking_ms, DEFAULT_MAX_BLOCKING_MS);
        assert_eq!(c.idle_spin_us, DEFAULT_IDLE_SPIN_US);
    }

    #[test]
    fn config_parses_values_and_suffixes() {
        let c = cfg(&[
            ("GROVE_WORKERS", "3"),
            ("GROVE_STACK_SIZE", "64K"),
            ("GROVE_MAX_BLOCKING_MS", "0"),
            ("GROVE_IDLE_SPIN_US", "0"),
        ])
        .unwrap();
        assert_eq!(c.idle_spin_us, 0);
        assert_eq!(c.workers, 3);
        assert_eq!(c.stack_size, 64 * 1024);
        assert_eq!(c.max_blocking_ms, 0);
        assert_eq!(
            cfg(&[("GROVE_STACK_SIZE", "1M")]).unwrap().stack_size,
            1 << 20
        );
    }

    #[test]
    fn config_rejects_bad_values_naming_the_variable() {
        for (var, val) in [
            ("GROVE_WORKERS", "0"),
            ("GROVE_WORKERS", "many"),
            ("GROVE_STACK_SIZE", "12"),
            ("GROVE_STACK_SIZE", "lots"),
            ("GROVE_MAX_BLOCKING_MS", "-1"),
            ("GROVE_MAX_BLOCKING_THREADS", "0"),
            ("GROVE_WORKERS", "4097"),
            ("GROVE_STACK_SIZE", "18446744073709551615"),
            ("GROVE_STACK_SIZE", "2048G"),
            ("GROVE_IDLE_SPIN_US", "-5"),
            ("GROVE_IDLE_SPIN_US", "1000001"),
            ("GROVE_IDLE_SPIN_US", "fast"),
        ] {
            let e = cfg(&[(var, val)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().contains(var), "{e}");
        }
    }
}
