//! Listening sockets: bound with SO_REUSEADDR (a restart does not wait for TIME_WAIT) and,
//! on request, SO_REUSEPORT; a failure names the address and the likely fix.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel queues per listener.
const BACKLOG: u32 = 1024;

/// A listen address that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{hint}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
    hint: &'static str,
}

/// Binds every address (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
pub fn bind(addrs: &[SocketAddr], reuse_port: bool) -> Result<Vec<TcpListener>, BindError> {
    addrs
        .iter()
        .map(|&addr| {
            let fail = |source: std::io::Error| {
                let hint = match source.kind() {
                    std::io::ErrorKind::AddrInUse => " (another process holds this port: find it with `ss -ltnp`, or choose another --listen)",
                    std::io::ErrorKind::PermissionDenied => " (ports below 1024 need CAP_NET_BIND_SERVICE or systemd socket activation)",
                    std::io::ErrorKind::AddrNotAvailable => " (no local interface has this address)",
                    _ => "",
                };
                BindError { addr, source, hint }
            };
            let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(fail)?;
            socket.set_reuseaddr(true).map_err(fail)?;
            if reuse_port {
                socket.set_reuseport(true).map_err(fail)?;
            }
            socket.bind(addr).map_err(fail)?;
            socket.listen(BACKLOG).map_err(fail)
        })
        .collect()
}
