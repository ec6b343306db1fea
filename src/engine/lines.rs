//! The echo sink: decrypted data in, the echo of complete valid lines (raw mode: every byte
//! within the byte budget) out, a verdict once the client breaks a rule. Lines are validated
//! only by `echo::scan` and `line` (the one place that judges lines); a line cut by a record
//! or read boundary waits in a per-connection buffer that is freed once it completes.

use rustls::server::ServerConnectionData;
use rustls::unbuffered::{EncryptError, WriteTraffic};

use super::buffers::{OutBuf, Sink, close_notify, encrypt};
use crate::echo::Mode;
use crate::echo::{EchoLimits, Ending, scan};

/// One connection's line state between steps.
pub(crate) struct Lines<'a> {
    limits: &'a EchoLimits,
    /// Bytes the client may still have echoed (`--max-conn-bytes` minus echoed and queued).
    budget: u64,
    /// The start of a line whose end has not arrived (raw mode: always empty).
    line: Vec<u8>,
    /// How much of `line` is validated.
    checked: usize,
    /// Lines and bytes queued for the echo, counted once the transport has taken them.
    pub(crate) queued_lines: u64,
    pub(crate) queued_bytes: u64,
    /// Raw mode: data arrived in the last step.
    pub(crate) raw_progress: bool,
    /// Why the echo must end, once decided; later data is discarded.
    pub(crate) verdict: Option<Ending>,
    /// Application data that arrived with the end of the handshake, handled first.
    early: Vec<u8>,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(limits: &'a EchoLimits, echoed: u64, early: Vec<u8>) -> Self {
        Lines {
            limits,
            budget: limits
                .max_bytes
                .map_or(u64::MAX, |m| m.saturating_sub(echoed)),
            line: Vec::new(),
            checked: 0,
            queued_lines: 0,
            queued_bytes: 0,
            raw_progress: false,
            verdict: None,
            early,
        }
    }

    /// The partial line (for the end of stream).
    pub(crate) fn tail(&self) -> &[u8] {
        &self.line
    }

    /// Between steps: frees the partial-line buffer when it is empty or much too large.
    pub(crate) fn trim(&mut self) {
        if self.line.is_empty() {
            self.line = Vec::new();
        } else if self.line.capacity() > 4 * self.line.len() + 1024 {
            self.line.shrink_to_fit();
        }
    }

    fn take_early(&mut self, plain: &mut Vec<u8>) {
        if !self.early.is_empty() {
            let early = std::mem::take(&mut self.early);
            self.consume(&early, plain);
        }
    }

    fn queue(&mut self, data: &[u8], lines: u64, plain: &mut Vec<u8>) {
        plain.extend_from_slice(data);
        self.queued_lines += lines;
        self.queued_bytes += data.len() as u64;
        self.budget -= data.len() as u64;
    }

    fn consume(&mut self, mut data: &[u8], plain: &mut Vec<u8>) {
        if self.verdict.is_some() || data.is_empty() {
            return;
        }
        if self.limits.mode == Mode::Raw {
            self.raw_progress = true;
            let take = data
                .len()
                .min(usize::try_from(self.budget).unwrap_or(usize::MAX));
            self.queue(&data[..take], 0, plain);
            if take < data.len() {
                self.verdict = Some(Ending::ByteLimit);
            }
            return;
        }
        let max = self.limits.max_line;
        let budget = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
        if !self.line.is_empty() {
            // Complete the partial line first: at most `max_line` bytes of it are ever held,
            // which is all `scan` judges a line on.
            let room = max - self.line.len();
            let window = &data[..data.len().min(room)];
            let (take, complete) = match memchr::memchr(b'\n', window) {
                Some(i) => (i + 1, true),
                None => (window.len(), false),
            };
            self.line.extend_from_slice(&data[..take]);
            data = &data[take..];
            let s = scan(&self.line, self.checked, budget(self.budget), max);
            if let Some(stop) = s.stop {
                self.verdict = Some(stop);
                return;
            }
            if !complete {
                self.checked = self.line.len();
                return;
            }
            let line = std::mem::take(&mut self.line);
            self.queue(&line, 1, plain);
            self.line = line;
            self.line.clear();
            self.checked = 0;
            if data.is_empty() {
                return;
            }
        }
        let s = scan(data, 0, budget(self.budget), max);
        self.queue(&data[..s.end], s.lines, plain);
        if let Some(stop) = s.stop {
            self.verdict = Some(stop);
            return;
        }
        self.line.extend_from_slice(&data[s.end..]);
        self.checked = self.line.len();
    }
}

impl Sink for Lines<'_> {
    fn data(&mut self, payload: &[u8], plain: &mut Vec<u8>) {
        self.take_early(plain);
        self.consume(payload, plain);
    }

    fn done(&self) -> bool {
        self.verdict.is_some()
    }

    fn write(
        &mut self,
        w: &mut WriteTraffic<'_, ServerConnectionData>,
        plain: &mut Vec<u8>,
        out: &mut OutBuf,
    ) -> Result<(), EncryptError> {
        self.take_early(plain);
        encrypt(w, plain, out)?;
        plain.clear();
        Ok(())
    }
}

/// Sends fixed bytes (the tail at end of stream, an `ERR` line), then close_notify if asked;
/// discards whatever data still arrives.
pub(crate) struct Reply<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) close: bool,
}

impl Sink for Reply<'_> {
    fn data(&mut self, _payload: &[u8], _plain: &mut Vec<u8>) {}

    fn write(
        &mut self,
        w: &mut WriteTraffic<'_, ServerConnectionData>,
        _plain: &mut Vec<u8>,
        out: &mut OutBuf,
    ) -> Result<(), EncryptError> {
        encrypt(w, std::mem::take(&mut self.data), out)?;
        if std::mem::take(&mut self.close) {
            close_notify(w, out)?;
        }
        Ok(())
    }
}

/// During the handshake: keeps application data that arrives with its end, for the echo.
#[derive(Default)]
pub(crate) struct Early(pub(crate) Vec<u8>);

impl Sink for Early {
    fn data(&mut self, payload: &[u8], _plain: &mut Vec<u8>) {
        self.0.extend_from_slice(payload);
    }

    fn write(
        &mut self,
        _w: &mut WriteTraffic<'_, ServerConnectionData>,
        _plain: &mut Vec<u8>,
        _out: &mut OutBuf,
    ) -> Result<(), EncryptError> {
        Ok(())
    }
}
