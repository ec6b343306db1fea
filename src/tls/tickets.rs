//! `--ticket-keys`: session-ticket keys shared by every instance behind a balancer, so a client
//! resumes on any of them.
//!
//! File format (HAProxy's `tls-ticket-keys`): one key a line, the base64 of 80 bytes: a 16-byte
//! key name, a 32-byte AES key and a 32-byte HMAC key. The first line encrypts; every line
//! decrypts. Rotation: prepend a new line, drop the oldest, reload.
//!
//! Ticket layout (RFC 5077 section 4, the layout HAProxy and OpenSSL use for these keys):
//! `key_name(16) | IV(16) | AES-256-CBC(PKCS#7) ciphertext | HMAC-SHA256(32)` over everything
//! before the MAC, encrypt-then-MAC. The MAC is checked (in constant time, by aws-lc-rs) before
//! anything is decrypted, so a forged ticket never reaches the cipher's padding check.

use std::path::Path;

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::{hmac, iv::FixedLength, rand};
use base64::Engine;
use rustls::server::ProducesTickets;

use super::TlsError;
use crate::tls::{KeyMode, key_mode};

/// Bytes of one key line once decoded.
const KEY_BYTES: usize = 80;
const NAME: usize = 16;
const IV: usize = 16;
const MAC: usize = 32;
/// How long a client may keep a ticket: rustls's own ticketer's lifetime, so turning
/// `--ticket-keys` on changes where keys come from, not how long tickets live.
const LIFETIME_SECS: u32 = 6 * 60 * 60;

struct Key {
    name: [u8; NAME],
    aes: [u8; 32],
    mac: hmac::Key,
}

/// The ticketer; keys come from the file only (nothing is derived or generated).
pub(crate) struct FileTicketer {
    keys: Vec<Key>,
}

impl std::fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTicketer")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Reads the key file, refusing it when every user can read it (as for the private key).
pub(crate) fn load(path: &Path) -> Result<FileTicketer, TlsError> {
    let fail = |detail: String| TlsError::TicketKeys {
        path: path.to_owned(),
        detail,
    };
    match key_mode(path) {
        Ok(KeyMode::WorldReadable(m)) => {
            return Err(fail(format!(
                "readable by every user (mode {m:o}), and anyone holding these keys can decrypt recorded sessions; chmod 600 {}",
                path.display()
            )));
        }
        Ok(KeyMode::GroupReadable(m)) => {
            tracing::warn!(ticket_keys = %path.display(), mode = format!("{m:o}"), "ticket key file is group-readable; chmod 600 it");
        }
        _ => {}
    }
    let text = super::read(path, "ticket keys")?;
    let text = String::from_utf8(text).map_err(|_| fail("not text".into()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|e| fail(format!("line {}: not base64: {e}", n + 1)))?;
        if bytes.len() != KEY_BYTES {
            return Err(fail(format!(
                "line {}: {} bytes, expected {KEY_BYTES} (make one with: openssl rand 80 | base64 -w0)",
                n + 1,
                bytes.len()
            )));
        }
        let (name, rest) = bytes.split_at(NAME);
        let (aes, mac) = rest.split_at(32);
        keys.push(Key {
            name: name.try_into().expect("split at 16"),
            aes: aes.try_into().expect("split at 32"),
            mac: hmac::Key::new(hmac::HMAC_SHA256, mac),
        });
    }
    if keys.is_empty() {
        return Err(fail(
            "no key; write one line per key, e.g. `openssl rand 80 | base64 -w0`".into(),
        ));
    }
    Ok(FileTicketer { keys })
}

impl ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = &self.keys[0];
        let mut iv = [0u8; IV];
        rand::fill(&mut iv).ok()?;
        let cipher =
            PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &key.aes).ok()?)
                .ok()?;
        let mut body = plain.to_vec();
        cipher
            .less_safe_encrypt(&mut body, EncryptionContext::Iv128(FixedLength::from(iv)))
            .ok()?;
        let mut out = Vec::with_capacity(NAME + IV + body.len() + MAC);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&body);
        let tag = hmac::sign(&key.mac, &out);
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME + IV + 16 + MAC {
            return None;
        }
        let (signed, tag) = ticket.split_at(ticket.len() - MAC);
        let key = self.keys.iter().find(|k| k.name == signed[..NAME])?;
        hmac::verify(&key.mac, signed, tag).ok()?;
        let iv: [u8; IV] = signed[NAME..NAME + IV].try_into().ok()?;
        let cipher =
            PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &key.aes).ok()?)
                .ok()?;
        let mut body = signed[NAME + IV..].to_vec();
        let plain = cipher
            .decrypt(&mut body, DecryptionContext::Iv128(FixedLength::from(iv)))
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticketer(lines: &[[u8; KEY_BYTES]]) -> FileTicketer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let text: Vec<String> = lines
            .iter()
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k))
            .collect();
        std::fs::write(&path, text.join("\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        load(&path).unwrap()
    }

    #[test]
    fn first_key_encrypts_every_key_decrypts() {
        let (a, b) = ([1u8; KEY_BYTES], [2u8; KEY_BYTES]);
        let old = ticketer(&[a]);
        let rotated = ticketer(&[b, a]);
        let ticket = old.encrypt(b"session state").unwrap();
        assert_eq!(rotated.decrypt(&ticket).unwrap(), b"session state");
        let new = rotated.encrypt(b"newer").unwrap();
        assert_eq!(&new[..NAME], &b[..NAME]);
        assert!(
            old.decrypt(&new).is_none(),
            "old instance lacks the new key"
        );
    }

    #[test]
    fn tampered_tickets_are_refused() {
        let t = ticketer(&[[7u8; KEY_BYTES]]);
        let ticket = t.encrypt(b"state").unwrap();
        for i in [0, NAME, NAME + IV, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert!(t.decrypt(&bad).is_none(), "flip at {i}");
        }
        assert!(t.decrypt(&ticket[..ticket.len() - 1]).is_none());
    }
}
