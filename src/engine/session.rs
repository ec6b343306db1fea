//! The echo phase of an established session: read, validate, echo, and the end phases (drain on
//! shutdown, end of stream, the `ERR` line, close_notify, lingering close).

use std::future::{Future, poll_fn};
use std::io::Write as _;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout, timeout_at};

use super::handshake::Session;
use super::io::{Conn, PassEnd, Step};
use super::lines::{Lines, Reply};
use crate::echo::Mode;
use crate::echo::{
    DRAIN_MAX, DRAIN_QUIET, EchoLimits, Ending, LINGER_BYTES, LINGER_MAX, LINGER_QUIET, Stop, Tally,
};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Echoes until the client leaves, breaks a rule, or `stop` fires; then sends the `ERR`
    /// line if any and close_notify (lingering after an `ERR` line). Returns why it ended.
    pub async fn echo<F>(self, limits: &EchoLimits, stop: Pin<&mut F>, tally: &mut Tally) -> Ending
    where
        F: Future<Output = Stop>,
    {
        let Session { conn, early, .. } = self;
        let mut echo = Echo {
            conn,
            limits,
            lines: Lines::new(limits, tally.bytes, early),
            tally,
        };
        let mut stop = stop;
        let mut fired = false;
        let ending = echo.serve(stop.as_mut(), &mut fired).await;
        // A stop that has fired must not be polled again (also when the shutdown drain ended
        // otherwise, e.g. on a bad line: the old loop polled it again there and panicked); one
        // still pending cuts the linger.
        let stop = (!fired).then_some(stop);
        // Boxed, as the drain and the end of stream: allocated once, at the end, instead of
        // being part of every connection task's size for its whole life.
        Box::pin(echo.close(ending, stop)).await;
        ending
    }
}

struct Echo<'a, S> {
    conn: Conn<S>,
    limits: &'a EchoLimits,
    lines: Lines<'a>,
    tally: &'a mut Tally,
}

/// What to do after a step.
enum After {
    /// Keep reading; `true` when the idle deadline moves (a line echoed, raw data).
    Go(bool),
    End(Ending),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Echo<'_, S> {
    async fn serve<F: Future<Output = Stop>>(
        &mut self,
        mut stop: Pin<&mut F>,
        fired: &mut bool,
    ) -> Ending {
        // One timer for the connection's life, moved forward per line.
        let idle = tokio::time::sleep(self.limits.idle_timeout);
        tokio::pin!(idle);
        // First what arrived with the end of the handshake, without reading.
        let mut read = false;
        loop {
            let step = if read {
                let conn = &mut self.conn;
                let lines = &mut self.lines;
                tokio::select! {
                    biased;
                    why = stop.as_mut() => {
                        *fired = true;
                        return Box::pin(self.stopped(why)).await;
                    }
                    s = poll_fn(|cx| conn.step(cx, true, lines)) => s,
                    () = &mut idle => return Ending::IdleTimeout,
                }
            } else {
                poll_fn(|cx| self.conn.step(cx, false, &mut self.lines)).await
            };
            read = true;
            match self.settle(step).await {
                After::End(ending) => return ending,
                After::Go(true) => idle
                    .as_mut()
                    .reset(Instant::now() + self.limits.idle_timeout),
                After::Go(false) => {}
            }
        }
    }

    /// After a step: write what it produced (under the write deadline if it must wait), count
    /// it, and decide.
    async fn settle(&mut self, step: Step) -> After {
        if let Some(e) = &step.read_error {
            return After::End(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ending::Truncated
            } else {
                Ending::IoError
            });
        }
        if matches!(step.end, PassEnd::Error(_)) {
            return After::End(Ending::IoError);
        }
        if let Err(ending) = self.flush().await {
            return After::End(ending);
        }
        let progressed = match self.limits.mode {
            Mode::Raw => std::mem::take(&mut self.lines.raw_progress),
            Mode::Line => self.lines.queued_lines > 0,
        };
        self.commit();
        self.lines.trim();
        if let Some(ending) = self.lines.verdict {
            return After::End(ending);
        }
        if self.conn.peer_closed {
            return After::End(Box::pin(self.at_eof()).await);
        }
        if step.eof {
            return After::End(Ending::Truncated);
        }
        After::Go(progressed)
    }

    /// Counts what the transport has taken.
    fn commit(&mut self) {
        self.tally.lines += std::mem::take(&mut self.lines.queued_lines);
        self.tally.bytes += std::mem::take(&mut self.lines.queued_bytes);
    }

    /// Writes the unsent output; only a write that must wait starts the write deadline.
    async fn flush(&mut self) -> Result<(), Ending> {
        if !self.conn.has_unsent() {
            return if self.conn.broken {
                Err(Ending::IoError)
            } else {
                Ok(())
            };
        }
        let conn = &mut self.conn;
        let first = poll_fn(|cx| Poll::Ready(conn.poll_flush_out(cx))).await;
        let done = match first {
            Poll::Ready(r) => Ok(r),
            // Boxed: rare, and its timer would otherwise be part of every connection's size.
            Poll::Pending => {
                Box::pin(timeout(
                    self.limits.write_timeout,
                    poll_fn(|cx| conn.poll_flush_out(cx)),
                ))
                .await
            }
        };
        match done {
            Err(_) => Err(Ending::WriteTimeout),
            Ok(Err(_)) => Err(Ending::IoError),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The client's close_notify: echo a last line that has no terminator, if it is valid.
    async fn at_eof(&mut self) -> Ending {
        let tail = self.lines.tail();
        if tail.is_empty() || self.limits.mode == Mode::Raw {
            return Ending::Eof;
        }
        if let Err(v) = crate::echo::line::check_line(tail) {
            return Ending::Violation(v);
        }
        let len = tail.len() as u64;
        if self.tally.bytes + len > self.limits.max_bytes.unwrap_or(u64::MAX) {
            return Ending::ByteLimit;
        }
        let tail = tail.to_vec();
        let mut send = Reply {
            data: &tail,
            close: false,
        };
        let step = poll_fn(|cx| self.conn.step(cx, false, &mut send)).await;
        if matches!(step.end, PassEnd::Error(_)) {
            return Ending::IoError;
        }
        match self.flush().await {
            Ok(()) => {
                self.tally.lines += 1;
                self.tally.bytes += len;
                Ending::Eof
            }
            Err(e) => e,
        }
    }

    /// On shutdown, echoes every complete line that has arrived or is still in flight (until
    /// the client pauses for `DRAIN_QUIET`, within `DRAIN_MAX`); otherwise ends at once.
    async fn stopped(&mut self, why: Stop) -> Ending {
        if why == Stop::Shutdown {
            let until = Instant::now() + DRAIN_MAX;
            loop {
                let quiet = (Instant::now() + DRAIN_QUIET).min(until);
                let conn = &mut self.conn;
                let lines = &mut self.lines;
                let step = match timeout_at(quiet, poll_fn(|cx| conn.step(cx, true, lines))).await {
                    Ok(step) => step,
                    Err(_) => break,
                };
                if step.read_error.is_some() || matches!(step.end, PassEnd::Error(_)) {
                    break;
                }
                if let Err(ending) = self.flush().await {
                    return ending;
                }
                self.commit();
                self.lines.trim();
                if let Some(ending) = self.lines.verdict {
                    return ending;
                }
                if step.eof || self.conn.peer_closed {
                    break;
                }
            }
        }
        Ending::Stopped(why)
    }

    /// Sends the `ERR` line for `ending`, if it has one, then close_notify, each under the write
    /// deadline; after an `ERR` line, lingers. A client that is gone or stuck is simply dropped.
    async fn close<F: Future<Output = Stop>>(&mut self, ending: Ending, stop: Option<Pin<&mut F>>) {
        if matches!(
            ending,
            Ending::WriteTimeout | Ending::IoError | Ending::Truncated
        ) {
            return;
        }
        let text = ending.err_text();
        let mut line = [0u8; 160];
        let len = match text {
            Some(text) => {
                let mut cursor = &mut line[..];
                let _ = writeln!(cursor, "ERR {} {}", ending.label(), text);
                160 - cursor.len()
            }
            None => 0,
        };
        // Nothing the client sent after the ending matters, and a malformed record among it
        // would make rustls refuse to encrypt the `ERR` line.
        self.conn.incoming = Vec::new();
        let conn = &mut self.conn;
        let sent = timeout(self.limits.write_timeout, async {
            let mut send = Reply {
                data: &line[..len],
                close: true,
            };
            let step = poll_fn(|cx| conn.step(cx, false, &mut send)).await;
            if matches!(step.end, PassEnd::Error(_)) {
                return Err(std::io::Error::other("TLS error"));
            }
            poll_fn(|cx| conn.poll_flush_out(cx)).await?;
            poll_fn(|cx| Pin::new(&mut conn.io).poll_shutdown(cx)).await
        })
        .await;
        if text.is_some() && matches!(sent, Ok(Ok(()))) {
            self.linger(stop).await;
        }
    }

    /// After an `ERR` line the client may still be sending (the rest of a long line, a large
    /// write). Closing with its data unread makes the kernel answer with a reset, which can
    /// destroy the `ERR` line before the client reads it. So, as nginx's lingering close does,
    /// read and discard until the client closes, pauses for `LINGER_QUIET`, or a bound is hit:
    /// `LINGER_MAX` in all, `LINGER_BYTES`, or shutdown.
    ///
    /// The bytes are discarded raw, not through rustls: after our close_notify there is
    /// nothing to learn from them, and rustls would answer a bad record with a second alert
    /// after the close (a debug assertion in rustls, which the fuzz target reached).
    async fn linger<F: Future<Output = Stop>>(&mut self, mut stop: Option<Pin<&mut F>>) {
        let started = Instant::now();
        let until = started + LINGER_MAX;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let quiet = (Instant::now() + LINGER_QUIET).min(until);
            let conn = &mut self.conn;
            let read = timeout_at(quiet, poll_fn(|cx| conn.poll_discard(cx)));
            let watch = async {
                match stop.as_mut() {
                    Some(stop) => stop.await,
                    None => std::future::pending().await,
                }
            };
            let n = tokio::select! {
                biased;
                _ = watch => break,
                r = read => r,
            };
            match n {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => break,
            }
        }
        self.tally.lingered = started.elapsed();
    }
}
