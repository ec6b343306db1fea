//! The buffers a worker thread shares among its connections (one 64 KiB read buffer, decrypted
//! data, one step's encrypted output) and the encryption into them.

use std::cell::RefCell;

use rustls::server::ServerConnectionData;
use rustls::unbuffered::{EncodeError, EncryptError, WriteTraffic};

/// Bytes one read asks the transport for.
pub(crate) const READ_SIZE: usize = 64 * 1024;

/// A TLS record's largest plaintext; used to size encryption room.
const MAX_FRAGMENT: usize = 16 * 1024;
/// Generous per-record overhead (header, explicit nonce, tag, content type).
const RECORD_OVERHEAD: usize = 64;

/// An output buffer whose bytes stay initialised, so that growing the used part needs no fill.
#[derive(Default)]
pub(crate) struct OutBuf {
    buf: Vec<u8>,
    used: usize,
}

impl OutBuf {
    /// `n` writable bytes after what is used.
    pub(super) fn spare(&mut self, n: usize) -> &mut [u8] {
        let want = self.used + n;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.used..want]
    }

    pub(super) fn commit(&mut self, n: usize) {
        self.used += n;
    }

    pub(super) fn filled(&self) -> &[u8] {
        &self.buf[..self.used]
    }

    pub(super) fn clear(&mut self) {
        self.used = 0;
    }
}

/// The buffers one worker thread shares among its connections.
#[derive(Default)]
pub(crate) struct Scratch {
    /// What the connection had left over, then what one read brought.
    pub(super) read: Vec<u8>,
    /// Decrypted data queued for encryption (the echo), filled by a sink.
    pub(crate) plain: Vec<u8>,
    /// Encrypted output of one step.
    pub(super) out: OutBuf,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (a fresh set if they are already borrowed,
/// which the engine never does: its steps do not nest).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Where decrypted data goes, and what is encrypted once writing is possible.
pub(crate) trait Sink {
    /// Decrypted application data, in order.
    fn data(&mut self, payload: &[u8], plain: &mut Vec<u8>);
    /// All complete records are processed and rustls can encrypt: queue what is to be sent.
    fn write(
        &mut self,
        w: &mut WriteTraffic<'_, ServerConnectionData>,
        plain: &mut Vec<u8>,
        out: &mut OutBuf,
    ) -> Result<(), EncryptError>;
}

/// Encrypts `data` into `out` (as many records as it takes).
pub(crate) fn encrypt(
    w: &mut WriteTraffic<'_, ServerConnectionData>,
    data: &[u8],
    out: &mut OutBuf,
) -> Result<(), EncryptError> {
    if data.is_empty() {
        return Ok(());
    }
    let mut room = data.len() + (data.len() / MAX_FRAGMENT + 1) * RECORD_OVERHEAD + 256;
    loop {
        match w.encrypt(data, out.spare(room)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Queues a close_notify alert into `out`.
pub(crate) fn close_notify(
    w: &mut WriteTraffic<'_, ServerConnectionData>,
    out: &mut OutBuf,
) -> Result<(), EncryptError> {
    let mut room = 256;
    loop {
        match w.queue_close_notify(out.spare(room)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Copies a handshake record rustls has ready into `out`.
pub(super) fn encode(
    e: &mut rustls::unbuffered::EncodeTlsData<'_, ServerConnectionData>,
    out: &mut OutBuf,
) -> Result<(), rustls::Error> {
    let mut room = 4096;
    loop {
        match e.encode(out.spare(room)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size;
            }
            Err(err) => return Err(rustls::Error::General(err.to_string())),
        }
    }
}
