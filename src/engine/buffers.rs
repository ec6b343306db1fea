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
    /// The sink has decided the session's end: records after this point are left unprocessed
    /// (a malformed one must not turn a precise `ERR` line into a TLS error).
    fn done(&self) -> bool {
        false
    }
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
    let room = data.len() + (data.len() / MAX_FRAGMENT + 1) * RECORD_OVERHEAD + 256;
    fill(out, room, |buf| w.encrypt(data, buf), encrypt_needs)
}

/// Queues a close_notify alert into `out`.
pub(crate) fn close_notify(
    w: &mut WriteTraffic<'_, ServerConnectionData>,
    out: &mut OutBuf,
) -> Result<(), EncryptError> {
    fill(out, 256, |buf| w.queue_close_notify(buf), encrypt_needs)
}

/// Copies a handshake record rustls has ready into `out`.
pub(super) fn encode(
    e: &mut rustls::unbuffered::EncodeTlsData<'_, ServerConnectionData>,
    out: &mut OutBuf,
) -> Result<(), rustls::Error> {
    let needs = |err: &EncodeError| match err {
        EncodeError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    };
    fill(out, 4096, |buf| e.encode(buf), needs)
        .map_err(|err| rustls::Error::General(err.to_string()))
}

/// Runs `f` on `room` spare bytes of `out` and keeps what it wrote; when rustls says it needs
/// more room (`needs`), grows it and runs `f` again.
fn fill<E>(
    out: &mut OutBuf,
    mut room: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needs: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    loop {
        match f(out.spare(room)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            Err(e) => match needs(&e) {
                Some(required) if required > room => room = required,
                _ => return Err(e),
            },
        }
    }
}

fn encrypt_needs(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}
