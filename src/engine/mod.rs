//! The connection engine: TLS over rustls's unbuffered API and the echo loop, on any
//! `AsyncRead + AsyncWrite` transport (a `TcpStream` in production, an in-memory duplex pipe in
//! the self-test and the tests).
//!
//! One step reads up to 64 KiB into a buffer shared by the worker thread, runs every complete
//! record through rustls, scans the decrypted data for complete valid lines and encrypts their
//! echo into one outgoing buffer that is written at once (see `io`). A connection keeps only
//! its boxed rustls state and, while they exist, an incomplete record, a partial line and
//! unsent output, each freed once drained: a quiet connection holds almost nothing.
//!
//! Behaviour is that of the echo loop it replaces: the same limits, deadlines, endings, `ERR`
//! lines, drain on shutdown, lingering close and close_notify (see `crate::echo`).

mod buffers;
mod handshake;
mod io;
mod lines;
mod session;

pub use handshake::{Facts, HandshakeError, Session, accept};
