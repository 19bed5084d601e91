//! The four times `ab` reports for each request ("Connection Times (ms)"), and their table.
//!
//! As `ab` defines them, for a request that started at `start`:
//! * connect: until the connection was up (zero when a keep-alive connection was reused);
//! * waiting: from the last byte of the request written to the first byte of the response read;
//! * processing: from the connection being up to the whole response read;
//! * total: from `start` to the whole response read (the percentile table's times).
//!
//! Each is an `hdrhistogram` of microseconds, so the table's min, mean, standard deviation,
//! median and max come from it without keeping every sample. Each client keeps its own four
//! (no lock per request), so they start small and grow to the largest time recorded: a
//! histogram sized for an hour up front is 176 KB at three significant digits, which at `-c 256`
//! was 45 MB of zeroed memory for the total alone. The table shows whole milliseconds, so
//! connect, waiting and processing keep two significant digits; the total, which the percentile
//! table reads, keeps three.

use hdrhistogram::Histogram;
use std::time::Instant;

/// When one request passed each of its milestones.
pub(super) struct Milestones {
    pub(super) start: Instant,
    pub(super) connected: Instant,
    pub(super) written: Instant,
    pub(super) first_byte: Instant,
    pub(super) done: Instant,
}

/// The four histograms.
pub(super) struct Timings {
    connect: Histogram<u64>,
    waiting: Histogram<u64>,
    processing: Histogram<u64>,
    total: Histogram<u64>,
}

fn micros(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_micros() as u64
}

/// A histogram that grows to fit what it records (`hdrhistogram`'s auto-resizing kind).
fn histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new(significant_digits).expect("histogram precision")
}

impl Timings {
    pub(super) fn new() -> Timings {
        Timings {
            connect: histogram(2),
            waiting: histogram(2),
            processing: histogram(2),
            total: histogram(3),
        }
    }

    pub(super) fn record(&mut self, m: &Milestones) {
        for (h, from, to) in [
            (&mut self.connect, m.start, m.connected),
            (&mut self.waiting, m.written, m.first_byte),
            (&mut self.processing, m.connected, m.done),
            (&mut self.total, m.start, m.done),
        ] {
            // Auto-resizing: `record` grows the histogram; only a time beyond its largest
            // possible range (not one a run can take) would fail, and it then counts as that.
            let us = micros(from, to);
            if h.record(us).is_err() {
                h.saturating_record(us);
            }
        }
    }

    /// Adds another client's times to these.
    pub(super) fn add(&mut self, other: &Timings) {
        for (into, from) in [
            (&mut self.connect, &other.connect),
            (&mut self.waiting, &other.waiting),
            (&mut self.processing, &other.processing),
            (&mut self.total, &other.total),
        ] {
            into.add(from).expect("histogram bounds match");
        }
    }

    /// Total time at quantile `q` (0..=1), in milliseconds.
    pub(super) fn total_ms(&self, q: f64) -> f64 {
        self.total.value_at_quantile(q) as f64 / 1000.0
    }

    /// `ab`'s "Connection Times (ms)" table: min, mean, standard deviation, median and max of
    /// each time, in whole milliseconds but for the deviation.
    pub(super) fn table(&self) -> String {
        let mut out = String::from("Connection Times (ms)\n");
        out.push_str("              min  mean[+/-sd] median   max\n");
        for (label, h) in [
            ("Connect:", &self.connect),
            ("Processing:", &self.processing),
            ("Waiting:", &self.waiting),
            ("Total:", &self.total),
        ] {
            let ms = |us: u64| (us as f64 / 1000.0).round() as u64;
            out.push_str(&format!(
                "{label:<12}{:>5} {:>4} {:>5.1} {:>6} {:>7}\n",
                ms(h.min()),
                (h.mean() / 1000.0).round() as u64,
                h.stdev() / 1000.0,
                ms(h.value_at_quantile(0.5)),
                ms(h.max()),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{Milestones, Timings};
    use std::time::{Duration, Instant};

    #[test]
    fn http_ab_connection_times_follow_abs_definitions() {
        let ms = Duration::from_millis;
        let start = Instant::now();
        let mut t = Timings::new();
        for connect in [3, 0] {
            t.record(&Milestones {
                start,
                connected: start + ms(connect),
                written: start + ms(connect + 1),
                first_byte: start + ms(connect + 21),
                done: start + ms(connect + 25),
            });
        }
        let table = t.table();
        let row = |name: &str| -> Vec<f64> {
            let line = table.lines().find(|l| l.starts_with(name)).unwrap();
            line[name.len()..]
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect()
        };
        // min, mean, sd, median, max
        assert_eq!(row("Connect:"), [0.0, 2.0, 1.5, 0.0, 3.0], "{table}");
        assert_eq!(row("Waiting:"), [20.0, 20.0, 0.0, 20.0, 20.0], "{table}");
        assert_eq!(row("Processing:"), [25.0, 25.0, 0.0, 25.0, 25.0], "{table}");
        assert_eq!(row("Total:"), [25.0, 27.0, 1.5, 25.0, 28.0], "{table}");
        assert!(table.starts_with("Connection Times (ms)\n"));
        let mut sum = Timings::new();
        sum.add(&t);
        sum.add(&t);
        assert_eq!(sum.total_ms(1.0).round(), 28.0);
    }
}
