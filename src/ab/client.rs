//! One concurrent client of a run: a greenlet that claims request numbers in small batches and
//! issues them one after the other, over one keep-alive connection (`-k`) or a fresh connection
//! per request, and tallies what came back.

use super::reply::{read_reply, ReadBuf, Reply};
use super::timings::{Milestones, Timings};
use super::{progress, Progress, Shared, Tally};
use crate::net::TcpStream;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests up to this size are written as one segment (below any MSS, even a 1,500-byte MTU's),
/// so they need no `TCP_NODELAY` (one syscall per connection saved).
const NAGLE_SAFE_REQUEST: usize = 1_200;

/// A client's own state: nothing in it is shared until the run ends.
struct Client {
    sh: Arc<Shared>,
    times: Timings,
    tally: Tally,
    conn: Option<TcpStream>,
    buf: ReadBuf,
    /// The run's first body length, once known (it never changes after).
    first_len: Option<u64>,
}

/// The body of a client greenlet: requests until the tickets run out or `-t` passes, then adds
/// its counts to the run's.
pub(super) fn run_client(sh: Arc<Shared>) {
    let mut c = Client::new(sh);
    let mut tickets = 0u64;
    loop {
        if tickets == 0 {
            tickets = c.sh.take_tickets();
            if tickets == 0 {
                break;
            }
        }
        let start = Instant::now();
        if c.sh.deadline.is_some_and(|d| start >= d) {
            break;
        }
        tickets -= 1;
        if c.request(start).is_break() {
            break;
        }
        if c.sh.progress != Progress::Off {
            let done = c.sh.done.fetch_add(1, Relaxed) + 1;
            progress(&c.sh, done);
        }
    }
    drop(c); // its counts go to the run's
}

impl Client {
    fn new(sh: Arc<Shared>) -> Client {
        let mut buf = ReadBuf::new();
        buf.cap = sh.deadline.map(|d| (d, sh.opts.timeout));
        Client {
            times: Timings::new(),
            tally: Tally::default(),
            conn: None,
            buf,
            first_len: None,
            sh,
        }
    }

    /// Makes one request and counts how it went. `Break` when the `-t` deadline cut it off:
    /// such a request is neither complete nor failed, as in `ab`.
    fn request(&mut self, start: Instant) -> ControlFlow<()> {
        let timeout = self.sh.op_timeout(start);
        let mut fresh = self.conn.is_none();
        loop {
            match &self.conn {
                None => {
                    if self.connect(timeout).is_err() {
                        if self.sh.past_deadline() {
                            return ControlFlow::Break(());
                        }
                        self.tally.failed_connect += 1;
                        return ControlFlow::Continue(());
                    }
                }
                // With `-t` the write ends by the deadline too: a stalled server must not
                // stretch the run by up to `-s`. (grove's socket timeouts are plain stores.)
                Some(s) if self.sh.deadline.is_some() => {
                    let _ = s.set_write_timeout(Some(timeout));
                }
                Some(_) => {}
            }
            let connected = if fresh { Instant::now() } else { start };
            match self.exchange() {
                Ok((reply, written)) => {
                    // Already buffered (never with one request in flight): no wait at all.
                    let first_byte = self.buf.first_byte.unwrap_or(written);
                    let times = Milestones {
                        start,
                        connected,
                        written,
                        first_byte,
                        done: self.buf.last_byte.unwrap_or(first_byte),
                    };
                    self.record(reply, &times);
                }
                Err((e, receiving)) => {
                    self.conn = None;
                    if self.sh.past_deadline() {
                        return ControlFlow::Break(());
                    }
                    let closed = matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::BrokenPipe
                    );
                    if closed && !fresh && self.buf.first_byte.is_none() {
                        // A reused connection the server had already closed (it may close an
                        // idle keep-alive connection at any time, RFC 9112 9.3.1): nothing of
                        // the response came, so the request goes again on a new connection,
                        // as HTTP clients retry. Not after a timeout: the server has the
                        // request, and sending it again would hide the stall (and repeat a
                        // POST). The response before, counted as one after which the
                        // connection stayed open, was not (ab reverts it too).
                        if self.sh.opts.keep_alive {
                            let t = &mut self.tally;
                            t.keep_alive_requests = t.keep_alive_requests.saturating_sub(1);
                        }
                        fresh = true;
                        continue;
                    }
                    self.tally.failed_receive += 1;
                    if receiving
                        && !self.sh.opts.keep_going_on_receive_errors
                        && is_a_receive_error(&e)
                    {
                        self.sh.stop_at_receive_error(&e);
                        return ControlFlow::Break(());
                    }
                }
            }
            return ControlFlow::Continue(());
        }
    }

    /// Writes the request on the open connection and reads the response; gives when the
    /// request was written, too. An error says whether it came while receiving (true) or
    /// sending.
    fn exchange(&mut self) -> Result<(Reply, Instant), (io::Error, bool)> {
        let s = self.conn.as_ref().expect("connected before the exchange");
        let want_server = self.tally.server.is_none();
        (self.buf.first_byte, self.buf.last_byte) = (None, None);
        (&*s).write_all(&self.sh.request).map_err(|e| (e, false))?;
        let written = Instant::now();
        if self.sh.opts.body.is_some() {
            self.tally.posted += self.sh.request.len() as u64;
        }
        let reply = read_reply(s, &mut self.buf, want_server, self.sh.head_request)
            .map_err(|e| (e, true))?;
        Ok((reply, written))
    }

    fn connect(&mut self, timeout: Duration) -> io::Result<()> {
        let probe = self.sh.probe.lock().expect("probe lock").take();
        let s = match probe {
            Some(s) => s,
            None => TcpStream::connect_timeout(&self.sh.target.addr, timeout)?,
        };
        // A request that fits one segment goes out at once whatever Nagle says (it is written
        // whole, with nothing unacknowledged in flight); only a larger one (a `-p` body) could
        // have its tail held back for a delayed ACK.
        if self.sh.request.len() > NAGLE_SAFE_REQUEST {
            let _ = s.set_nodelay(true);
        }
        // Reads wait `-s` at most (and, with `-t`, not past the deadline: `ReadBuf::fill`).
        let _ = s.set_read_timeout(Some(self.sh.opts.timeout));
        let _ = s.set_write_timeout(Some(timeout));
        self.conn = Some(s);
        self.buf.clear();
        Ok(())
    }

    /// Counts a response; closes the connection unless both sides keep it alive.
    fn record(&mut self, reply: Reply, times: &Milestones) {
        let t = &mut self.tally;
        self.times.record(times);
        t.complete += 1;
        t.bytes += reply.total_len as u64;
        t.body_bytes += reply.body_len as u64;
        if !(200..300).contains(&reply.status) {
            t.non_2xx += 1;
        }
        let len = reply.body_len as u64;
        if *self
            .first_len
            .get_or_insert_with(|| self.sh.first_length(len))
            != len
            && !self.sh.opts.variable_length
        {
            t.failed_length += 1;
        }
        if t.server.is_none() {
            t.server = reply.server;
        }
        if self.sh.opts.keep_alive && reply.keep_alive {
            // As ab counts: every response after which the connection stays open.
            t.keep_alive_requests += 1;
        } else {
            self.conn = None;
        }
    }

    /// Adds this client's counts and latencies to the run's.
    fn finish(&mut self) {
        // The last response was counted as one after which the connection stayed open (so it
        // is still here): if the server has closed it since, it did not (ab counts none of a
        // server's responses that each end with a close, the last one included).
        if let Some(s) = self.conn.take() {
            let closed = s.set_nonblocking(true).is_ok() && matches!(s.peek(&mut [0u8; 1]), Ok(0));
            if closed {
                let t = &mut self.tally;
                t.keep_alive_requests = t.keep_alive_requests.saturating_sub(1);
            }
        }
        let mut g = self.sh.tally.lock().unwrap_or_else(|p| p.into_inner());
        g.0.merge(std::mem::take(&mut self.tally));
        g.1.add(&self.times);
        self.times = Timings::new();
    }
}

impl Drop for Client {
    /// Also when the client is killed (`SIGINT`, see `interrupt`): what it finished counts.
    fn drop(&mut self) {
        self.finish();
    }
}

/// What ends a run without `-r`, as ab's `apr_socket_recv` errors do: the receive itself
/// failed (a reset, or `-s` passed). Not a close before the response (ab counts an end of
/// file as a request done, never an error) nor a response grove-ab cannot read (chunked, a
/// malformed head: ab counts those as failed requests and goes on); those stay counted
/// failures either way.
fn is_a_receive_error(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
    )
}
