//! The part of SPDY/3.1 that Kubernetes port-forward needs, server side,
//! free of I/O.
//!
//! kubectl (client-go's spdystream) opens two streams per forwarded
//! connection (`streamType: error` and `streamType: data`, the same
//! `port` and `requestID`) with SYN_STREAM, expects a SYN_REPLY for each,
//! and moves bytes in DATA frames; FIN half-closes a stream. It pings the
//! session. Flow control (WINDOW_UPDATE) and SETTINGS are ignored, as
//! spdystream ignores them.
//!
//! Frames ([`Frame`]) go in and out of a [`Codec`], which keeps the two
//! zlib contexts a session has: header blocks are compressed with one
//! stream per direction for the whole session, preset with SPDY/3's
//! dictionary ([`dictionary`]).
//!
//! Malformed input is an error ([`SpdyError`]), never a panic; the caller
//! ends the session.

use std::sync::OnceLock;

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Control frame types.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;

/// The FIN flag of SYN_STREAM, SYN_REPLY and DATA.
const FLAG_FIN: u8 = 0x01;

/// The largest frame we accept (a DATA frame from kubectl is at most 32 KiB).
pub const MAX_FRAME: usize = 1 << 20;
/// The largest decompressed header block we accept.
const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// RST_STREAM status codes.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;

/// One SPDY frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// SETTINGS, WINDOW_UPDATE, HEADERS, or a type SPDY/3 does not define.
    Ignored(u16),
}

/// A frame that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}, expected 3")]
    Version(u16),
    #[error("frame of {0} bytes is larger than the {MAX_FRAME} allowed")]
    TooLarge(usize),
    #[error("truncated {0} frame")]
    Truncated(&'static str),
    #[error("invalid header block: {0}")]
    Headers(String),
}

/// The SPDY/3 header compression dictionary: the draft's header names,
/// each with a 32-bit big-endian length, then common values as one run.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const NAMES: &[&str] = &[
            "options", "head", "post", "put", "delete", "trace", "accept",
            "accept-charset", "accept-encoding", "accept-language", "accept-ranges", "age",
            "allow", "authorization", "cache-control", "connection", "content-base",
            "content-encoding", "content-language", "content-length", "content-location",
            "content-md5", "content-range", "content-type", "date", "etag", "expect",
            "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
            "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards",
            "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
            "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
            "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get",
            "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
            "keep-alive", "origin",
        ];
        const VALUES: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
            "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
            "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::new();
        for name in NAMES {
            d.extend_from_slice(&(name.len() as u32).to_be_bytes());
            d.extend_from_slice(name.as_bytes());
        }
        d.extend_from_slice(VALUES.as_bytes());
        d
    })
}

/// A session's framing state: its two header compression contexts.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
    deflate_primed: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Codec {
    pub fn new() -> Codec {
        Codec {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
            deflate_primed: false,
        }
    }

    /// Takes one whole frame off the front of `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if length > MAX_FRAME {
            return Err(SpdyError::TooLarge(length));
        }
        if buf.len() < 8 + length {
            return Ok(None);
        }
        let head = buf.split_to(8);
        let mut body = buf.split_to(length).freeze();
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data {
                stream_id,
                fin,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != 3 {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let frame = match kind {
            SYN_STREAM => {
                if body.len() < 10 {
                    return Err(SpdyError::Truncated("SYN_STREAM"));
                }
                let stream_id = body.get_u32() & 0x7fff_ffff;
                body.advance(6); // associated stream, priority, slot
                Frame::SynStream {
                    stream_id,
                    fin,
                    headers: self.read_headers(&body)?,
                }
            }
            SYN_REPLY => {
                if body.len() < 4 {
                    return Err(SpdyError::Truncated("SYN_REPLY"));
                }
                let stream_id = body.get_u32() & 0x7fff_ffff;
                Frame::SynReply {
                    stream_id,
                    fin,
                    headers: self.read_headers(&body)?,
                }
            }
            RST_STREAM => {
                if body.len() < 8 {
                    return Err(SpdyError::Truncated("RST_STREAM"));
                }
                Frame::RstStream {
                    stream_id: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            PING => {
                if body.len() < 4 {
                    return Err(SpdyError::Truncated("PING"));
                }
                Frame::Ping(body.get_u32())
            }
            GOAWAY => {
                if body.len() < 8 {
                    return Err(SpdyError::Truncated("GOAWAY"));
                }
                Frame::GoAway {
                    last_good_stream_id: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            other => Frame::Ignored(other),
        };
        Ok(Some(frame))
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) {
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8, body: &[u8]| {
            out.extend_from_slice(&[0x80, 3]);
            out.extend_from_slice(&kind.to_be_bytes());
            out.push(flags);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(body);
        };
        let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(fin_flag(*fin));
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&[0; 6]);
                body.extend_from_slice(&self.write_headers(headers));
                control(out, SYN_STREAM, fin_flag(*fin), &body);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&self.write_headers(headers));
                control(out, SYN_REPLY, fin_flag(*fin), &body);
            }
            Frame::RstStream { stream_id, status } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(out, RST_STREAM, 0, &body);
            }
            Frame::Ping(id) => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut body = last_good_stream_id.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(out, GOAWAY, 0, &body);
            }
            Frame::Ignored(_) => {}
        }
    }

    fn read_headers(&mut self, compressed: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
        let mut plain = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if plain.len() == plain.capacity() {
                plain.reserve(plain.len().max(256));
            }
            let before_in = self.inflate.total_in();
            let before_out = plain.len();
            let result = self.inflate.decompress_vec(
                &compressed[consumed..],
                &mut plain,
                FlushDecompress::Sync,
            );
            consumed += (self.inflate.total_in() - before_in) as usize;
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| SpdyError::Headers(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Headers(e.to_string())),
            }
            if plain.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Headers("header block too large".into()));
            }
            let progressed = plain.len() > before_out;
            if consumed >= compressed.len() && plain.len() < plain.capacity() {
                break;
            }
            if !progressed && consumed >= compressed.len() {
                break;
            }
        }
        parse_header_block(&plain)
    }

    fn write_headers(&mut self, headers: &[(String, String)]) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            plain.extend_from_slice(&(name.len() as u32).to_be_bytes());
            plain.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            plain.extend_from_slice(&(value.len() as u32).to_be_bytes());
            plain.extend_from_slice(value.as_bytes());
        }
        if !self.deflate_primed {
            // Cannot fail on a fresh zlib stream.
            let _ = self.deflate.set_dictionary(dictionary());
            self.deflate_primed = true;
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut consumed = 0;
        loop {
            out.reserve(plain.len() + 64);
            let before = self.deflate.total_in();
            if self
                .deflate
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            consumed += (self.deflate.total_in() - before) as usize;
            // A sync flush is complete once it left room in the buffer.
            if consumed >= plain.len() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }
}

/// Reads an uncompressed header block: a count, then length-prefixed
/// names and values.
fn parse_header_block(mut b: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    fn take<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], SpdyError> {
        if b.len() < 4 {
            return Err(SpdyError::Headers("truncated".into()));
        }
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if b.len() < 4 + n {
            return Err(SpdyError::Headers("truncated".into()));
        }
        let (v, rest) = b[4..].split_at(n);
        *b = rest;
        Ok(v)
    }
    if b.len() < 4 {
        return Err(SpdyError::Headers("truncated".into()));
    }
    let count = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    b = &b[4..];
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = String::from_utf8_lossy(take(&mut b)?).to_ascii_lowercase();
        let value = String::from_utf8_lossy(take(&mut b)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(d.ends_with(b"utf-,*,enq=0."));
    }

    #[test]
    fn frames_round_trip_through_two_codecs() {
        let mut client = Codec::new();
        let mut server = Codec::new();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                fin: false,
                headers: vec![
                    ("streamtype".into(), "error".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ],
            },
            Frame::SynStream {
                stream_id: 3,
                fin: false,
                headers: vec![
                    ("streamtype".into(), "data".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ],
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Ping(7),
            Frame::RstStream {
                stream_id: 3,
                status: RST_CANCEL,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            client.encode(f, &mut wire);
        }
        let mut buf = BytesMut::from(&wire[..]);
        let mut got = Vec::new();
        while let Some(f) = server.decode(&mut buf).unwrap() {
            got.push(f);
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_and_malformed_frames_do_not_panic() {
        let mut c = Codec::new();
        let mut wire = Vec::new();
        c.encode(&Frame::Ping(1), &mut wire);
        let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
        assert_eq!(Codec::new().decode(&mut buf), Ok(None));
        // A SYN_STREAM whose header block is garbage.
        let mut bad = vec![0x80, 3, 0, 1, 0, 0, 0, 14];
        bad.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        let mut buf = BytesMut::from(&bad[..]);
        assert!(matches!(
            Codec::new().decode(&mut buf),
            Err(SpdyError::Headers(_))
        ));
        let mut huge = BytesMut::from(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            Codec::new().decode(&mut huge),
            Err(SpdyError::TooLarge(_))
        ));
        let mut v2 = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(Codec::new().decode(&mut v2), Err(SpdyError::Version(2)));
        for len in 0..4u8 {
            let mut short = BytesMut::from(&[0x80, 3, 0, 6, 0, 0, 0, len, 0, 0, 0][..]);
            let r = Codec::new().decode(&mut short);
            assert!(r.is_err() || r == Ok(None));
        }
    }
}
