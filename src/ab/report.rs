//! What a run measured, and `ab`'s report of it.

use super::timings::Timings;
use super::Tally;
use std::io::Write;
use std::time::Duration;

/// What a run measured.
pub struct Report {
    pub(super) tally: Tally,
    pub(super) times: Timings,
    pub(super) elapsed: Duration,
    pub(super) concurrency: usize,
    pub(super) keep_alive: bool,
    /// Requests carried a body (`-p`): ab then reports what was sent too.
    pub(super) posting: bool,
    /// `-l`: lengths may vary (reported as `Variable`, never counted as failures).
    pub(super) variable_length: bool,
    /// Without an IPv6 literal's brackets, as ab prints it.
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) path: String,
}

impl Report {
    /// Requests completed per second of the run.
    pub fn requests_per_second(&self) -> f64 {
        self.tally.complete as f64 / self.secs()
    }

    /// Requests completed.
    pub fn complete(&self) -> u64 {
        self.tally.complete
    }

    /// Failed requests (connect, receive, length), as ab counts them.
    pub fn failed(&self) -> u64 {
        self.tally.failed_connect + self.tally.failed_receive + self.tally.failed_length
    }

    /// Latency at quantile `q` (0..=1), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.times.total_ms(q)
    }

    /// Prints the report the way `ab` does.
    pub fn print(&self) {
        println!();
        self.print_server();
        self.print_totals();
        // As `ab`: no rates or times when nothing completed (they would divide by zero).
        if self.tally.complete > 0 {
            self.print_rates();
            println!("{}", self.times.table());
            self.print_percentiles();
        }
        let _ = std::io::stdout().flush();
    }

    /// The run's length in seconds (never zero, so rates stay finite).
    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print_server(&self) {
        let t = &self.tally;
        println!(
            "Server Software:        {}",
            t.server.as_deref().unwrap_or("")
        );
        println!("Server Hostname:        {}", self.host);
        println!("Server Port:            {}", self.port);
        println!();
        println!("Document Path:          {}", self.path);
        if self.variable_length {
            println!("Document Length:        Variable");
        } else {
            println!("Document Length:        {} bytes", t.doc_len.unwrap_or(0));
        }
        println!();
    }

    fn print_totals(&self) {
        let t = &self.tally;
        let failed = self.failed();
        println!("Concurrency Level:      {}", self.concurrency);
        println!("Time taken for tests:   {:.3} seconds", self.secs());
        println!("Complete requests:      {}", t.complete);
        println!("Failed requests:        {failed}");
        if failed > 0 {
            println!(
                "   (Connect: {}, Receive: {}, Length: {}, Exceptions: 0)",
                t.failed_connect, t.failed_receive, t.failed_length
            );
        }
        if t.non_2xx > 0 {
            println!("Non-2xx responses:      {}", t.non_2xx);
        }
        if self.keep_alive {
            println!("Keep-Alive requests:    {}", t.keep_alive_requests);
        }
        println!("Total transferred:      {} bytes", t.bytes);
        if self.posting {
            println!("Total body sent:        {}", t.posted);
        }
        println!("HTML transferred:       {} bytes", t.body_bytes);
    }

    fn print_rates(&self) {
        let rps = self.requests_per_second();
        println!("Requests per second:    {rps:.2} [#/sec] (mean)");
        println!(
            "Time per request:       {:.3} [ms] (mean)",
            self.concurrency as f64 * 1000.0 / rps.max(1e-9)
        );
        println!(
            "Time per request:       {:.3} [ms] (mean, across all concurrent requests)",
            1000.0 / rps.max(1e-9)
        );
        let kb_per_sec = |bytes: u64| bytes as f64 / 1024.0 / self.secs();
        println!(
            "Transfer rate:          {:.2} [Kbytes/sec] received",
            kb_per_sec(self.tally.bytes)
        );
        if self.posting {
            let (got, sent) = (self.tally.bytes, self.tally.posted);
            println!("                        {:.2} kb/s sent", kb_per_sec(sent));
            println!(
                "                        {:.2} kb/s total",
                kb_per_sec(got + sent)
            );
        }
        println!();
    }

    fn print_percentiles(&self) {
        println!("Percentage of the requests served within a certain time (ms)");
        for p in [50, 66, 75, 80, 90, 95, 98, 99, 100] {
            let ms = self.latency_ms(f64::from(p) / 100.0);
            let label = format!("{p}%");
            if p == 100 {
                println!(" {label:>4}  {ms:5.0} (longest request)");
            } else {
                println!(" {label:>4}  {ms:5.0}");
            }
        }
    }
}
