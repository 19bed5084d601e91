//! grove-ab: an `ab`-style HTTP load generator on grove, one greenlet per concurrent client.
//!
//! `grove-ab [-n requests] [-c concurrency] [-k] [-t seconds] [-s timeout] [-H 'Name: value']...
//! [-m METHOD] [-i] [-p body-file] [-T content-type] [-l] [-q] [-r] [URL]`
//!
//! `-i` makes `HEAD` requests (`-m HEAD`); `-l` accepts bodies of varying length, and `-r`
//! counts a receive error (a reset, or `-s` passing while a response is awaited) as a failed
//! request and goes on, as `ab`'s flags of those names do. Without `-r` the first receive error
//! ends the run with a one-line error and a non-zero exit, as in `ab`.
//!
//! Without a URL it starts grove's embedded hello-world HTTP server on a loopback port and
//! benchmarks that, so one command shows what the runtime does. The report follows `ab`'s.

use grove::ab::Config;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: grove-ab [-n requests] [-c concurrency] [-k] [-t seconds] \
[-s timeout] [-H 'Name: value']... [-m METHOD] [-i] [-p body-file] [-T content-type] [-l] [-q] \
[-r] [URL]";

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut o = Config {
        announce: true,
        ..Config::default()
    };
    let mut n_given = false;
    let mut t_given = false;
    let args = split_flags(args);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("option {flag} needs a value"))
        };
        match a.as_str() {
            "-n" => {
                o.requests = parse_num(&value("-n")?, "-n")?;
                n_given = true;
            }
            "-c" => o.concurrency = parse_num(&value("-c")?, "-c")? as usize,
            "-k" => o.keep_alive = true,
            "-q" => o.quiet = true,
            "-l" => o.variable_length = true,
            "-i" => o.method = Some("HEAD".into()),
            "-t" => {
                // As ab: `-t 0` sets no limit (but still raises -n, to ab's 50,000).
                let secs = parse_num(&value("-t")?, "-t")?;
                o.time_limit = (secs > 0).then(|| Duration::from_secs(secs));
                t_given = true;
            }
            "-s" => match parse_num(&value("-s")?, "-s")? {
                0 => return Err("option -s needs a timeout of at least 1 second".into()),
                secs => o.timeout = Duration::from_secs(secs),
            },
            "-H" => {
                let h = value("-H")?;
                if !h.contains(':') {
                    return Err(format!("bad header {h:?}: expected 'Name: value'"));
                }
                o.headers.push(h);
            }
            "-m" => o.method = Some(value("-m")?),
            "-T" => o.content_type = Some(value("-T")?),
            "-p" => {
                let path = value("-p")?;
                o.body =
                    Some(std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?);
            }
            // ab exits at the first receive error unless given -r.
            "-r" => o.keep_going_on_receive_errors = true,
            "-h" | "--help" => return Err(String::new()),
            // The end of the options: what follows is the URL, even if it starts with `-`.
            "--" => {
                for s in it.by_ref() {
                    set_url(&mut o, s)?;
                }
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => set_url(&mut o, s)?,
        }
    }
    if o.concurrency == 0 || o.requests == 0 {
        return Err("-n and -c must be at least 1".into());
    }
    if o.concurrency > grove::ab::MAX_CONCURRENCY {
        return Err(format!(
            "-c can be at most {} (as ab's)",
            grove::ab::MAX_CONCURRENCY
        ));
    }
    if t_given && !n_given {
        // As ab, -t lifts -n: ab to 50,000; grove-ab, for a timed run, to 50 million, so that
        // fast servers are not done before the time is up. `-t 0` is no limit: ab's 50,000.
        o.requests = if o.time_limit.is_some() {
            50_000_000
        } else {
            50_000
        };
    }
    if (o.concurrency as u64) > o.requests {
        return Err("cannot use concurrency level greater than total number of requests".into());
    }
    Ok(o)
}

/// The one positional argument.
fn set_url(o: &mut Config, s: &str) -> Result<(), String> {
    if o.url.is_some() {
        return Err(format!("unexpected argument {s}"));
    }
    o.url = Some(s.to_string());
    Ok(())
}

/// Flags that take a value.
const WITH_VALUE: &str = "nctsHmTp";

/// Splits options as ab's `getopt` reads them: switches grouped (`-kq`), a value joined to its
/// flag (`-n100`, `-kc10`), into one flag or value per argument. A lone `-` and anything after
/// `--` are left as they are (the `--` too).
fn split_flags(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.iter();
    let mut value_next = false; // the last flag takes the next argument whole, `-` or not
    while let Some(a) = rest.next() {
        if std::mem::take(&mut value_next) {
            out.push(a.clone());
            continue;
        }
        if a == "--" {
            out.push(a.clone()); // `parse_args` reads what follows as positional
            out.extend(rest.by_ref().cloned());
            break;
        }
        let Some(flags) = a
            .strip_prefix('-')
            .filter(|f| !f.is_empty() && !f.starts_with('-'))
        else {
            out.push(a.clone());
            continue;
        };
        for (i, c) in flags.char_indices() {
            out.push(format!("-{c}"));
            if WITH_VALUE.contains(c) {
                let value = &flags[i + c.len_utf8()..];
                if value.is_empty() {
                    value_next = true;
                } else {
                    out.push(value.to_string());
                }
                break;
            }
        }
    }
    out
}

fn parse_num(s: &str, flag: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("option {flag} needs a whole number, got {s:?}"))
}

/// `SIGINT`: end the run and print what it has, as ab does.
extern "C" fn on_sigint(_: libc::c_int) {
    // Atomics only, then `_exit`: async-signal-safe.
    if !grove::ab::interrupt() {
        // No run at work yet (connecting to check the server, say): quit as SIGINT would.
        // SAFETY: `_exit` is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(130) };
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
    match parse_args(&args).and_then(grove::ab::run) {
        Ok(report) => {
            report.print();
            if grove::ab::interrupted() {
                return ExitCode::FAILURE; // as ab, which exits non-zero after its report
            }
            ExitCode::SUCCESS
        }
        Err(e) if e.is_empty() => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            // One line, as the contract asks; `-h` prints the usage.
            if e.starts_with("unknown option") || e.contains("needs") {
                eprintln!("grove-ab: {e} (grove-ab -h for usage)");
            } else {
                eprintln!("grove-ab: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
