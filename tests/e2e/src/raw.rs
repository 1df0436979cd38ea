//! The wire by hand, for tests that play a peer byte by byte (the handshake's frames as the
//! runtime's `tcp` module documents them), so those tests also pin the format down.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use waldo::net::{MAGIC, WIRE_VERSION, kind};

/// Appends `n` as a varint.
pub fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Appends a text: its length as a varint, then its bytes.
pub fn text(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// `payload` as a frame: its 4-byte little-endian length first.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The bytes each side sends first: the magic and the wire version.
pub fn preamble() -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    out
}

/// A `Hello` frame.
pub fn hello(protocol: &str, fingerprint: u64, side: u64, endpoint: &str, nonce: u64) -> Vec<u8> {
    let mut p = vec![kind::HELLO];
    text(&mut p, protocol);
    varint(&mut p, fingerprint);
    varint(&mut p, side);
    text(&mut p, endpoint);
    varint(&mut p, nonce);
    frame(&p)
}

/// An `Ack` frame echoing `nonce`.
pub fn ack(nonce: u64) -> Vec<u8> {
    let mut p = vec![kind::ACK];
    varint(&mut p, nonce);
    frame(&p)
}

/// Reads one frame; `None` at the end of the stream.
pub async fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut payload).await.ok()?;
    Some(payload)
}

/// The text after the kind byte of a Refuse or Close frame.
pub fn frame_text(payload: &[u8]) -> String {
    let mut i = 1;
    let len = read_varint(payload, &mut i) as usize;
    String::from_utf8_lossy(&payload[i..i + len]).into_owned()
}

/// Reads a varint at `*i`.
pub fn read_varint(payload: &[u8], i: &mut usize) -> u64 {
    let (mut n, mut shift) = (0u64, 0);
    loop {
        let b = payload[*i];
        *i += 1;
        n |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return n;
        }
    }
}

/// The nonce at the end of a Hello frame (after the protocol, fingerprint, side, endpoint).
pub fn hello_nonce(payload: &[u8]) -> u64 {
    let mut i = 1;
    let protocol = read_varint(payload, &mut i) as usize;
    i += protocol;
    read_varint(payload, &mut i); // fingerprint
    read_varint(payload, &mut i); // side
    let endpoint = read_varint(payload, &mut i) as usize;
    i += endpoint;
    read_varint(payload, &mut i)
}
