//! PROXY protocol v1/v2 headers from trusted load balancers, so that the firewall, the limits
//! and the logs see the real client. The header is read byte-exact (nothing of the TLS
//! ClientHello behind it is consumed), under a size bound; the caller adds the deadline.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature that starts every binary header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header the specification allows, CRLF included.
const V1_MAX: usize = 107;
/// Largest v2 address-and-TLV block accepted (HAProxy's are far smaller).
pub const V2_MAX_PAYLOAD: usize = 1024;

/// Whose connection this really is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A proxied client at this address.
    Client(SocketAddr),
    /// The proxy speaking for itself (v2 LOCAL, e.g. a health check; v1 UNKNOWN).
    Local,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The connection did not start with a PROXY signature.
    #[error("no PROXY protocol header")]
    Missing,
    /// The header did not parse.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// The header is larger than the bound.
    #[error("PROXY header too large")]
    TooLarge,
    /// The connection closed or failed mid-header.
    #[error("connection ended inside the PROXY header")]
    Truncated,
}

/// Parses one complete header (exactly its bytes).
pub fn parse(header: &[u8]) -> Result<Origin, HeaderError> {
    use ppp::{HeaderResult, v1, v2};
    let malformed = |e: &dyn std::fmt::Debug| HeaderError::Malformed(format!("{e:?}"));
    match HeaderResult::parse(header) {
        HeaderResult::V2(Ok(h)) => {
            if h.len() != header.len() {
                return Err(HeaderError::Malformed("trailing bytes".into()));
            }
            Ok(match (h.command, h.addresses) {
                (v2::Command::Local, _) => Origin::Local,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Origin::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Origin::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, _) => Origin::Local,
            })
        }
        HeaderResult::V1(Ok(h)) => {
            if h.header.len() != header.len() {
                return Err(HeaderError::Malformed("trailing bytes".into()));
            }
            // ppp also takes a bare LF; the specification (and `read`) end the header at CRLF.
            if !header.ends_with(b"\r\n") {
                return Err(HeaderError::Malformed(
                    "v1 header must end with CRLF".into(),
                ));
            }
            Ok(match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Origin::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Origin::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v1::Addresses::Unknown => Origin::Local,
            })
        }
        HeaderResult::V2(Err(e)) => Err(malformed(&e)),
        HeaderResult::V1(Err(e)) => Err(malformed(&e)),
    }
}

/// Reads exactly one header from the start of `stream` and parses it.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Origin, HeaderError> {
    let mut buf = [0u8; 16 + V2_MAX_PAYLOAD];
    let truncated = |_| HeaderError::Truncated;
    stream.read_exact(&mut buf[..8]).await.map_err(truncated)?;
    let len = if buf[..8] == V2_SIGNATURE[..8] {
        stream
            .read_exact(&mut buf[8..16])
            .await
            .map_err(truncated)?;
        let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if payload > V2_MAX_PAYLOAD {
            return Err(HeaderError::TooLarge);
        }
        stream
            .read_exact(&mut buf[16..16 + payload])
            .await
            .map_err(truncated)?;
        16 + payload
    } else if buf[..6] == *b"PROXY " {
        let mut len = 8;
        while !buf[..len].ends_with(b"\r\n") {
            if len == V1_MAX {
                return Err(HeaderError::TooLarge);
            }
            stream
                .read_exact(&mut buf[len..len + 1])
                .await
                .map_err(truncated)?;
            len += 1;
        }
        len
    } else {
        return Err(HeaderError::Missing);
    };
    parse(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x20 | command, family]);
        h.extend((body.len() as u16).to_be_bytes());
        h.extend(body);
        h
    }

    #[tokio::test]
    async fn reads_v1_and_leaves_the_rest() {
        let mut input: &[u8] = b"PROXY TCP4 192.0.2.1 198.51.100.1 5678 443\r\n\x16\x03\x01";
        let origin = read(&mut input).await.unwrap();
        assert_eq!(origin, Origin::Client("192.0.2.1:5678".parse().unwrap()));
        assert_eq!(input, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn reads_v2_proxy_and_local() {
        let body = [192, 0, 2, 1, 198, 51, 100, 1, 0x16, 0x2e, 0x01, 0xbb];
        let mut bytes = v2(1, 0x11, &body);
        bytes.extend(b"rest");
        let mut input = &bytes[..];
        assert_eq!(
            read(&mut input).await.unwrap(),
            Origin::Client("192.0.2.1:5678".parse().unwrap())
        );
        assert_eq!(input, b"rest");
        let local = v2(0, 0, &[]);
        assert_eq!(read(&mut &local[..]).await.unwrap(), Origin::Local);
    }

    #[tokio::test]
    async fn refuses_missing_oversized_and_broken_headers() {
        assert_eq!(
            read(&mut &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"[..]).await,
            Err(HeaderError::Missing)
        );
        let mut big = V2_SIGNATURE.to_vec();
        big.extend([0x21, 0x11, 0xff, 0xff]);
        assert_eq!(read(&mut &big[..]).await, Err(HeaderError::TooLarge));
        let endless = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(read(&mut &endless[..]).await, Err(HeaderError::TooLarge));
        assert!(matches!(
            read(&mut &b"PROXY TCP4 nonsense\r\n"[..]).await,
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 192.0.2.1 198.51.100.1 5678 443\n"),
            Err(HeaderError::Malformed(_))
        ));
        assert_eq!(
            read(&mut &b"PROXY TC"[..]).await,
            Err(HeaderError::Truncated)
        );
    }
}
