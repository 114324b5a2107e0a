//! SPDY/3.1 framing, as far as Kubernetes streaming uses it (`kubectl port-forward` speaks it to
//! the API server, directly after an `Upgrade: SPDY/3.1` or tunnelled in WebSocket binary messages).
//!
//! Frames follow draft 3 of the SPDY protocol: an 8-byte header (control bit, version 3, type,
//! flags, 24-bit length), header blocks as 32-bit counted name/value pairs compressed with one zlib
//! stream per direction and connection, primed with the protocol's fixed dictionary and ended by a
//! sync flush after every block. Flow control (WINDOW_UPDATE, SETTINGS) is read and ignored, as
//! the Go implementation Kubernetes uses does.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const VERSION: u16 = 3;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// FLAG_FIN on SYN_STREAM, SYN_REPLY, HEADERS and DATA frames.
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// Largest decompressed header block accepted (a port-forward header block is ~60 bytes).
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Name/value pairs of a header block, names lower-case; several values of one name are
/// joined with NUL in the value, as on the wire.
pub type Headers = Vec<(String, String)>;

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this side does not know: the protocol says to ignore it.
    Unknown {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {frame} frame: {why}")]
    Malformed { frame: &'static str, why: &'static str },
    #[error("header block compression: {0}")]
    Compression(String),
}

fn malformed(frame: &'static str, why: &'static str) -> SpdyError {
    SpdyError::Malformed { frame, why }
}

/// The fixed zlib dictionary of SPDY/3 header compression: 4-byte length-prefixed words, then
/// a run of common status lines, dates and media types.
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1424);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads frames from one direction of a connection, keeping its header decompression context.
pub struct FrameReader<R> {
    io: R,
    inflate: Decompress,
    dict: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        Self { io, inflate: Decompress::new(true), dict: dictionary() }
    }

    /// The next frame; `None` when the peer closed the connection between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.io.read_exact(&mut head[1..]).await?;
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await?;
        if word & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data { stream: word & 0x7fff_ffff, flags, data: Bytes::from(payload) }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        self.control((word & 0xffff) as u16, flags, &payload).map(Some)
    }

    fn control(&mut self, kind: u16, flags: u8, p: &[u8]) -> Result<Frame, SpdyError> {
        let id =
            |at: usize, name: &'static str| be32(p, at).map(|v| v & 0x7fff_ffff).ok_or(malformed(name, "too short"));
        Ok(match kind {
            TYPE_SYN_STREAM => {
                let stream = id(0, "SYN_STREAM")?;
                let associated = id(4, "SYN_STREAM")?;
                let priority = p.get(8).ok_or(malformed("SYN_STREAM", "too short"))? >> 5;
                // Always inflate, even for a stream about to be refused: the zlib context is shared.
                let headers = self.header_block(p.get(10..).unwrap_or_default(), "SYN_STREAM")?;
                if stream == 0 {
                    return Err(malformed("SYN_STREAM", "stream id 0"));
                }
                Frame::SynStream { stream, associated, priority, flags, headers }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let name = if kind == TYPE_SYN_REPLY { "SYN_REPLY" } else { "HEADERS" };
                let stream = id(0, name)?;
                let headers = self.header_block(p.get(4..).unwrap_or_default(), name)?;
                if kind == TYPE_SYN_REPLY {
                    Frame::SynReply { stream, flags, headers }
                } else {
                    Frame::Headers { stream, flags, headers }
                }
            }
            TYPE_RST_STREAM => {
                let stream = id(0, "RST_STREAM")?;
                let status = be32(p, 4).ok_or(malformed("RST_STREAM", "too short"))?;
                if stream == 0 || status == 0 {
                    return Err(malformed("RST_STREAM", "stream id or status 0"));
                }
                Frame::RstStream { stream, status }
            }
            TYPE_SETTINGS => {
                let n = be32(p, 0).ok_or(malformed("SETTINGS", "too short"))? as usize;
                if p.len() != 4 + n.saturating_mul(8) {
                    return Err(malformed("SETTINGS", "length does not match the entry count"));
                }
                let entries = (0..n)
                    .filter_map(|i| {
                        let w = be32(p, 4 + 8 * i)?;
                        Some(((w >> 24) as u8, w & 0x00ff_ffff, be32(p, 8 + 8 * i)?))
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                let id = be32(p, 0).ok_or(malformed("PING", "too short"))?;
                if p.len() != 4 || id == 0 {
                    return Err(malformed("PING", "length 4 and a non-zero id expected"));
                }
                Frame::Ping { id }
            }
            TYPE_GOAWAY => {
                if p.len() != 8 {
                    return Err(malformed("GOAWAY", "length 8 expected"));
                }
                Frame::GoAway { last_good: id(0, "GOAWAY")?, status: be32(p, 4).unwrap_or(0) }
            }
            TYPE_WINDOW_UPDATE => {
                if p.len() != 8 {
                    return Err(malformed("WINDOW_UPDATE", "length 8 expected"));
                }
                Frame::WindowUpdate { stream: id(0, "WINDOW_UPDATE")?, delta: id(4, "WINDOW_UPDATE")? }
            }
            other => Frame::Unknown { kind: other },
        })
    }

    fn header_block(&mut self, compressed: &[u8], frame: &'static str) -> Result<Headers, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(256);
        let mut input = compressed;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(malformed(frame, "header block too large"));
                }
                out.reserve(out.len());
            }
            let before_in = self.inflate.total_in();
            let before_out = out.len();
            match self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(Status::StreamEnd) => return Err(SpdyError::Compression("header stream ended".into())),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&self.dict).map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                return Err(SpdyError::Compression("no progress inflating the header block".into()));
            }
        }
        parse_header_block(&out).ok_or(malformed(frame, "bad header block"))
    }
}

fn parse_header_block(b: &[u8]) -> Option<Headers> {
    let n = be32(b, 0)? as usize;
    // Every pair takes at least 8 bytes: a count beyond that is a lie, not a reason to allocate.
    if n > b.len() / 8 {
        return None;
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(n);
    let field = |at: &mut usize| -> Option<String> {
        let len = be32(b, *at)? as usize;
        let s = b.get(*at + 4..(*at + 4).checked_add(len)?)?;
        *at += 4 + len;
        String::from_utf8(s.to_vec()).ok()
    };
    for _ in 0..n {
        let name = field(&mut at)?.to_ascii_lowercase();
        let value = field(&mut at)?;
        out.push((name, value));
    }
    (at == b.len()).then_some(out)
}

/// Writes frames for one direction of a connection, keeping its header compression context.
pub struct FrameWriter {
    deflate: Compress,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Priming costs nothing and lets names like `content-type` compress to a back-reference.
        let _ = deflate.set_dictionary(&dictionary());
        Self { deflate }
    }

    /// Appends the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let start = out.len();
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8| {
            out.extend_from_slice(&(0x8000_0000u32 | (u32::from(VERSION) << 16) | u32::from(kind)).to_be_bytes());
            out.extend_from_slice(&[flags, 0, 0, 0]);
        };
        match frame {
            Frame::Data { stream, flags, data } => {
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&[*flags, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Frame::SynStream { stream, associated, priority, flags, headers } => {
                control(out, TYPE_SYN_STREAM, *flags);
                out.extend_from_slice(&stream.to_be_bytes());
                out.extend_from_slice(&associated.to_be_bytes());
                out.extend_from_slice(&[(priority & 0x7) << 5, 0]);
                self.compress(headers, out)?;
            }
            Frame::SynReply { stream, flags, headers } | Frame::Headers { stream, flags, headers } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) { TYPE_SYN_REPLY } else { TYPE_HEADERS };
                control(out, kind, *flags);
                out.extend_from_slice(&stream.to_be_bytes());
                self.compress(headers, out)?;
            }
            Frame::RstStream { stream, status } => {
                control(out, TYPE_RST_STREAM, 0);
                out.extend_from_slice(&stream.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Settings { flags, entries } => {
                control(out, TYPE_SETTINGS, *flags);
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for (f, id, v) in entries {
                    out.extend_from_slice(&((u32::from(*f) << 24) | (id & 0x00ff_ffff)).to_be_bytes());
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            Frame::Ping { id } => {
                control(out, TYPE_PING, 0);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::GoAway { last_good, status } => {
                control(out, TYPE_GOAWAY, 0);
                out.extend_from_slice(&last_good.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::WindowUpdate { stream, delta } => {
                control(out, TYPE_WINDOW_UPDATE, 0);
                out.extend_from_slice(&stream.to_be_bytes());
                out.extend_from_slice(&delta.to_be_bytes());
            }
            Frame::Unknown { .. } => return Err(malformed("unknown", "cannot encode")),
        }
        let len = out.len() - start - 8;
        if len > 0x00ff_ffff {
            out.truncate(start);
            return Err(malformed("any", "payload over 16 MiB"));
        }
        let [_, a, b, c] = (len as u32).to_be_bytes();
        out[start + 5..start + 8].copy_from_slice(&[a, b, c]);
        Ok(())
    }

    fn compress(&mut self, headers: &Headers, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let mut block = Vec::with_capacity(64);
        block.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            for s in [k.to_ascii_lowercase().as_bytes(), v.as_bytes()] {
                block.extend_from_slice(&(s.len() as u32).to_be_bytes());
                block.extend_from_slice(s);
            }
        }
        let mut input = &block[..];
        loop {
            out.reserve(input.len() + 64);
            let before_in = self.deflate.total_in();
            self.deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            input = &input[(self.deflate.total_in() - before_in) as usize..];
            // Done once all input is in and the flush fitted (spare room left in `out`).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

/// One header's value (the first of several).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.split('\0').next().unwrap_or(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let mut w = FrameWriter::new();
        let mut wire = Vec::new();
        for f in frames {
            w.encode(f, &mut wire).expect("encode");
        }
        let mut r = FrameReader::new(&wire[..]);
        let mut got = Vec::new();
        while let Some(f) = r.next().await.expect("decode") {
            got.push(f);
        }
        got
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[tokio::test]
    async fn every_frame_type_round_trips_with_one_shared_zlib_stream() {
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: h(&[("streamtype", "error"), ("port", "4245"), ("requestid", "0")]),
            },
            Frame::SynStream {
                stream: 3,
                associated: 0,
                priority: 2,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "data"), ("port", "4245"), ("requestid", "0")]),
            },
            Frame::SynReply { stream: 1, flags: 0, headers: vec![] },
            Frame::Headers { stream: 3, flags: 0, headers: h(&[("x", "a\0b")]) },
            Frame::Data { stream: 3, flags: 0, data: Bytes::from_static(b"hello") },
            Frame::Data { stream: 3, flags: FLAG_FIN, data: Bytes::new() },
            Frame::RstStream { stream: 3, status: RST_CANCEL },
            Frame::Settings { flags: 0, entries: vec![(0, 7, 65536), (1, 4, 100)] },
            Frame::Ping { id: 1 },
            Frame::WindowUpdate { stream: 1, delta: 4096 },
            Frame::GoAway { last_good: 3, status: 0 },
        ];
        assert_eq!(roundtrip(&frames).await, frames);
        assert_eq!(header(&h(&[("x", "a\0b")]), "x"), Some("a"));
    }

    #[test]
    fn dictionary_has_the_protocols_size() {
        // SPDY/3's dictionary is 1423 bytes (draft 3, section 2.6.10.1).
        assert_eq!(dictionary().len(), 1423);
    }

    #[test]
    fn encoder_primes_the_stream_with_the_dictionary() {
        let mut w = FrameWriter::new();
        let mut wire = Vec::new();
        w.encode(&Frame::SynReply { stream: 1, flags: 0, headers: vec![] }, &mut wire).expect("encode");
        // zlib header after the 12 bytes of frame header + stream id: FDICT set, then the
        // dictionary's Adler-32 — what a Go peer checks before inflating.
        let flg = wire[13];
        assert_eq!(flg & 0x20, 0x20, "FDICT");
        let id = u32::from_be_bytes([wire[14], wire[15], wire[16], wire[17]]);
        // The SPDY/3 dictionary's well-known Adler-32: a one-byte slip in the table changes it.
        assert_eq!(id, 0xe3c6_a7c2);
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        // A header count far beyond the block's size.
        assert!(parse_header_block(&[0xff, 0xff, 0xff, 0xff]).is_none());
        // A name length running past the end.
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_none());
        // SYN_STREAM whose header block is not zlib.
        let wire = [0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert!(FrameReader::new(&wire[..]).next().await.is_err());
        // Wrong version.
        let wire = [0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(FrameReader::new(&wire[..]).next().await, Err(SpdyError::Version(2))));
        // Truncated frame.
        let wire = [0x80, 3, 0, 6, 0, 0, 0, 4, 0];
        assert!(FrameReader::new(&wire[..]).next().await.is_err());
        // Unknown control frame: skipped, not fatal.
        let wire = [0x80, 3, 0, 0x0a, 0, 0, 0, 2, 0, 0];
        assert_eq!(FrameReader::new(&wire[..]).next().await.ok().flatten(), Some(Frame::Unknown { kind: 10 }));
    }
}
