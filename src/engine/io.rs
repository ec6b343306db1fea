//! One synchronous step of a connection: one read from the transport (64 KiB at most), every
//! complete TLS record through rustls's unbuffered API, the decrypted data to a [`Sink`], and
//! what is to be sent encrypted into one buffer and written at once. The thread-local buffers
//! (see `buffers`) are borrowed only inside [`Conn::step`], which never awaits: nothing of them
//! survives a poll, so a connection owns only what is left over.

use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::ConnectionState;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::buffers::{OutBuf, READ_SIZE, Scratch, Sink, encode, with_scratch};

/// How a pass over the received bytes ended.
#[derive(Debug)]
pub(crate) enum PassEnd {
    /// Every complete record is processed; more bytes are needed.
    Blocked,
    /// Handshake passes only: the handshake is complete and its output queued; records after
    /// it are left unprocessed.
    Established,
    /// rustls refused the peer's data (its alert, if any, is queued). Boxed: a step's result
    /// is held across awaits, so its size is part of every connection's.
    Error(Box<rustls::Error>),
}

/// What one step found.
#[derive(Debug)]
pub(crate) struct Step {
    /// Bytes the read brought (0: none was attempted or end of stream).
    pub(crate) read: usize,
    /// The transport reported end of stream.
    pub(crate) eof: bool,
    /// The transport failed on reading.
    pub(crate) read_error: Option<std::io::Error>,
    /// How the record processing ended.
    pub(crate) end: PassEnd,
}

/// One connection's transport and TLS state, and what it has left over between steps.
pub(crate) struct Conn<S> {
    pub(crate) io: S,
    pub(crate) tls: Box<UnbufferedServerConnection>,
    /// Received bytes not yet processed: an incomplete record (empty and unallocated when
    /// there is none).
    pub(crate) incoming: Vec<u8>,
    /// Encrypted bytes the transport has not yet taken (empty and unallocated when drained).
    out: Vec<u8>,
    /// How much of `out` is written.
    sent: usize,
    /// The peer's close_notify has arrived.
    pub(crate) peer_closed: bool,
    /// A write failed: the transport is unusable.
    pub(crate) broken: bool,
    /// During the handshake: stop before the first record after it.
    pub(crate) handshaking: bool,
    /// rustls refused the peer's data: the connection is never processed again.
    failed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(io: S, tls: UnbufferedServerConnection, incoming: Vec<u8>) -> Self {
        Conn {
            io,
            tls: Box::new(tls),
            incoming,
            out: Vec::new(),
            sent: 0,
            peer_closed: false,
            broken: false,
            handshaking: true,
            failed: false,
        }
    }

    /// Whether encrypted output waits for the transport.
    pub(crate) fn has_unsent(&self) -> bool {
        !self.out.is_empty()
    }

    /// One step: if `read`, one read from the transport (pending if it has nothing), then
    /// every complete record, then one write of what the step produced.
    pub(crate) fn step(
        &mut self,
        cx: &mut Context<'_>,
        read: bool,
        sink: &mut dyn Sink,
    ) -> Poll<Step> {
        with_scratch(|s| {
            let Scratch {
                read: buf,
                plain,
                out,
            } = s;
            let leftover = self.incoming.len();
            if buf.len() < leftover + READ_SIZE {
                buf.resize(leftover + READ_SIZE, 0);
            }
            buf[..leftover].copy_from_slice(&self.incoming);
            let mut step = Step {
                read: 0,
                eof: false,
                read_error: None,
                end: PassEnd::Blocked,
            };
            let mut filled = leftover;
            if read {
                let mut rb = ReadBuf::new(&mut buf[leftover..leftover + READ_SIZE]);
                match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        step.read_error = Some(e);
                        return Poll::Ready(step);
                    }
                    Poll::Ready(Ok(())) => {
                        step.read = rb.filled().len();
                        step.eof = step.read == 0;
                        filled += step.read;
                    }
                }
            }
            plain.clear();
            out.clear();
            let (consumed, end) = self.pump(&mut buf[..filled], plain, out, sink);
            plain.clear();
            let rest = &buf[consumed..filled];
            if rest.is_empty() {
                self.incoming = Vec::new();
            } else {
                self.incoming.clear();
                self.incoming.extend_from_slice(rest);
            }
            // The handshake's last output (TLS 1.3: the session ticket) waits for the echo's
            // first pass, which follows without waiting: whatever already arrived after the
            // client's Finished (its first line, its close_notify) then goes out in the same
            // write, one send fewer per short connection.
            if matches!(end, PassEnd::Established) {
                self.out.extend_from_slice(out.filled());
            } else {
                self.send(cx, out.filled());
            }
            step.end = end;
            out.clear();
            Poll::Ready(step)
        })
    }

    /// Processes the records in `buf`; returns how many bytes are consumed and why it stopped.
    fn pump(
        &mut self,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut OutBuf,
        sink: &mut dyn Sink,
    ) -> (usize, PassEnd) {
        if self.failed {
            return (
                0,
                PassEnd::Error(Box::new(rustls::Error::General("failed before".into()))),
            );
        }
        let (consumed, end) = self.pump_records(buf, plain, out, sink);
        self.failed = matches!(end, PassEnd::Error(_));
        (consumed, end)
    }

    fn pump_records(
        &mut self,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut OutBuf,
        sink: &mut dyn Sink,
    ) -> (usize, PassEnd) {
        let mut start = 0;
        loop {
            if self.handshaking && !self.tls.is_handshaking() && !self.tls.wants_write() {
                self.handshaking = false;
                return (start, PassEnd::Established);
            }
            // Once the sink is done, rustls is shown no more records: it then lets the echo
            // queued before the verdict be encrypted, and the rest stays unprocessed.
            let end = if sink.done() { start } else { buf.len() };
            let status = self.tls.process_tls_records(&mut buf[start..end]);
            let discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    start += discard;
                    self.queue_alert(&mut buf[start..], out);
                    return (start, PassEnd::Error(Box::new(e)));
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    let mut extra = 0;
                    while let Some(record) = r.next_record() {
                        match record {
                            Ok(record) => {
                                extra += record.discard;
                                sink.data(record.payload, plain);
                                if sink.done() {
                                    break;
                                }
                            }
                            Err(e) => {
                                return (start + discard + extra, PassEnd::Error(Box::new(e)));
                            }
                        }
                    }
                    start += discard + extra;
                }
                ConnectionState::ReadEarlyData(mut r) => {
                    // Early data is not enabled; should a record come, it is dropped.
                    let mut extra = 0;
                    while let Some(Ok(record)) = r.next_record() {
                        extra += record.discard;
                    }
                    start += discard + extra;
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    start += discard;
                    if self.peer_closed {
                        // Closed: nothing more will come or can be sent.
                        return (start, PassEnd::Blocked);
                    }
                    self.peer_closed = true;
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    start += discard;
                    if let Err(err) = encode(&mut e, out) {
                        return (start, PassEnd::Error(Box::new(err)));
                    }
                }
                ConnectionState::TransmitTlsData(t) => {
                    // The output buffer keeps the order; it is written after this pass.
                    start += discard;
                    t.done();
                }
                ConnectionState::BlockedHandshake => {
                    start += discard;
                    return (start, PassEnd::Blocked);
                }
                ConnectionState::WriteTraffic(mut w) => {
                    start += discard;
                    if self.handshaking {
                        // TLS 1.3: the server may send before the client's Finished; the
                        // handshake is not over until it has arrived.
                        return (start, PassEnd::Blocked);
                    }
                    return match sink.write(&mut w, plain, out) {
                        Ok(()) => (start, PassEnd::Blocked),
                        Err(e) => (
                            start,
                            PassEnd::Error(Box::new(rustls::Error::General(e.to_string()))),
                        ),
                    };
                }
                _ => {
                    start += discard;
                    return (
                        start,
                        PassEnd::Error(Box::new(rustls::Error::General(
                            "unexpected TLS state".into(),
                        ))),
                    );
                }
            }
        }
    }

    /// After rustls refused the peer's data it has queued a fatal alert, possibly behind
    /// handshake records (TLS 1.3 refuses ALPN after queuing its ServerHello): take them all
    /// for a last-gasp write, as a buffered connection would.
    fn queue_alert(&mut self, buf: &mut [u8], out: &mut OutBuf) {
        // Only while records are queued: rustls hands those out before it would look at the
        // received bytes again (which would raise the same error a second time).
        let mut start = 0;
        while self.tls.wants_write() {
            let status = self.tls.process_tls_records(&mut buf[start..]);
            start += status.discard;
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if encode(&mut e, out).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Writes `data` after whatever is unsent, as far as the transport takes it now; keeps
    /// the rest.
    fn send(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        if data.is_empty() || self.broken {
            return;
        }
        if !self.out.is_empty() {
            self.out.extend_from_slice(data);
            return;
        }
        let mut done = 0;
        while done < data.len() {
            match Pin::new(&mut self.io).poll_write(cx, &data[done..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.broken = true;
                    return;
                }
                Poll::Ready(Ok(n)) => done += n,
                Poll::Pending => break,
            }
        }
        if done < data.len() {
            self.out.extend_from_slice(&data[done..]);
            self.sent = 0;
        }
    }

    /// Writes the unsent output, then flushes the transport.
    pub(crate) fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.broken {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        while self.sent < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    self.broken = true;
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => {
                    self.broken = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out = Vec::new();
        self.sent = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

impl<S: AsyncRead + Unpin> Conn<S> {
    /// Reads once from the transport into the thread's buffer and drops what came (`Ok(0)`:
    /// end of stream).
    pub(crate) fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        with_scratch(|s| {
            if s.read.len() < READ_SIZE {
                s.read.resize(READ_SIZE, 0);
            }
            let mut rb = ReadBuf::new(&mut s.read[..READ_SIZE]);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => Poll::Ready(r.map(|()| rb.filled().len())),
            }
        })
    }
}

/// Reads once from `io` into the thread's buffer and appends what came to `into`; `Ok(0)` is
/// end of stream.
pub(crate) fn poll_read_append<S: AsyncRead + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    into: &mut Vec<u8>,
) -> Poll<std::io::Result<usize>> {
    with_scratch(|s| {
        if s.read.len() < READ_SIZE {
            s.read.resize(READ_SIZE, 0);
        }
        let mut rb = ReadBuf::new(&mut s.read[..READ_SIZE]);
        match Pin::new(io).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                into.extend_from_slice(rb.filled());
                Poll::Ready(Ok(rb.filled().len()))
            }
        }
    })
}
