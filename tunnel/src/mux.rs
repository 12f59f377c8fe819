//! kedge's stream multiplexer for the TCP+TLS fallback.
//!
//! QUIC has bidirectional streams of its own; over one TLS-over-TCP connection they are
//! carried by this small mux instead. It was written here rather than taken from `yamux`
//! or `h2` because: h2 streams can only be opened by the client, and the server must open
//! reverse streams (logs, exec, port-forward); yamux (0.13) speaks `futures` IO, has no
//! keepalive of its own any more and hides its buffering. This one is tokio-native, takes
//! its keepalive and idle timeouts from [`crate::TunnelConfig`] like quinn does, and is
//! bounded everywhere:
//!
//! - a frame's payload is at most `mux_max_frame` bytes, checked before it is buffered;
//! - each stream direction has a credit window of `mux_stream_window` bytes: the sender
//!   waits for `Window` grants, and a peer that sends beyond its credit is a protocol error;
//! - at most `mux_max_streams` streams are open; a peer opening more gets the stream reset;
//! - control frames queued in answer to the peer (pongs, resets) are limited, so a peer
//!   that floods without reading is cut off instead of growing our memory.
//!
//! Every frame is checked ([`decode`] is sans-IO and unit-tested on tampered and truncated
//! input); any violation closes the connection with [`MuxError::Protocol`], never a panic.
//! TLS below already rejects modified ciphertext; these checks matter for bugs and for
//! peers that hold a valid certificate but misbehave.
//!
//! Wire format: a 12-byte header `version:u8 kind:u8 reserved:u16 stream:u32 length:u32`
//! (big-endian), then `length` payload bytes. Streams opened by the client (the agent) have
//! odd ids, the server's even ids, each side's strictly increasing.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::TunnelConfig;
use crate::error::MuxError;

/// The length of a frame header.
pub const HEADER_LEN: usize = 12;
const VERSION: u8 = 1;
/// Control frames (pongs, resets) queued in answer to the peer and not yet written; more
/// means the peer floods us without reading.
const CONTROL_QUEUE_LIMIT: usize = 4096;
/// How much the writer batches into one write.
const WRITE_BATCH: usize = 64 * 1024;

const KIND_OPEN: u8 = 1;
const KIND_DATA: u8 = 2;
const KIND_WINDOW: u8 = 3;
const KIND_FIN: u8 = 4;
const KIND_RESET: u8 = 5;
const KIND_PING: u8 = 6;
const KIND_PONG: u8 = 7;
const KIND_GOAWAY: u8 = 8;

/// One mux frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream; `window` is the opener's receive window, the acceptor's first credit.
    Open {
        /// The new stream's id.
        stream: u32,
        /// The credit the acceptor starts with.
        window: u32,
    },
    /// Stream payload, 1 to `mux_max_frame` bytes.
    Data {
        /// The stream.
        stream: u32,
        /// The bytes.
        payload: Bytes,
    },
    /// Grants the peer more credit on a stream.
    Window {
        /// The stream.
        stream: u32,
        /// Additional bytes the peer may send.
        increment: u32,
    },
    /// The sender will send no more data on this stream.
    Fin {
        /// The stream.
        stream: u32,
    },
    /// Abandons a stream in both directions.
    Reset {
        /// The stream.
        stream: u32,
    },
    /// Keepalive request.
    Ping {
        /// Echoed in the pong.
        opaque: u64,
    },
    /// Keepalive answer.
    Pong {
        /// The ping's value.
        opaque: u64,
    },
    /// The sender closes the connection.
    GoAway {
        /// Why (0: normal).
        code: u32,
    },
}

/// Appends the encoding of `frame` to `dst`.
pub fn encode(frame: &Frame, dst: &mut BytesMut) {
    let (kind, stream, payload_len) = match frame {
        Frame::Open { stream, .. } => (KIND_OPEN, *stream, 4),
        Frame::Data { stream, payload } => (KIND_DATA, *stream, payload.len()),
        Frame::Window { stream, .. } => (KIND_WINDOW, *stream, 4),
        Frame::Fin { stream } => (KIND_FIN, *stream, 0),
        Frame::Reset { stream } => (KIND_RESET, *stream, 0),
        Frame::Ping { .. } => (KIND_PING, 0, 8),
        Frame::Pong { .. } => (KIND_PONG, 0, 8),
        Frame::GoAway { .. } => (KIND_GOAWAY, 0, 4),
    };
    dst.reserve(HEADER_LEN + payload_len);
    dst.put_u8(VERSION);
    dst.put_u8(kind);
    dst.put_u16(0);
    dst.put_u32(stream);
    // Payloads are created by this module and never exceed `MUX_FRAME_LIMIT`.
    dst.put_u32(u32::try_from(payload_len).unwrap_or(u32::MAX));
    match frame {
        Frame::Open { window: v, .. }
        | Frame::Window { increment: v, .. }
        | Frame::GoAway { code: v } => dst.put_u32(*v),
        Frame::Data { payload, .. } => dst.put_slice(payload),
        Frame::Ping { opaque } | Frame::Pong { opaque } => dst.put_u64(*opaque),
        Frame::Fin { .. } | Frame::Reset { .. } => {}
    }
}

fn protocol(message: impl Into<String>) -> MuxError {
    MuxError::Protocol(message.into())
}

/// Takes one complete frame off the front of `src`, if there is one.
///
/// Returns `Ok(None)` when more bytes are needed (and reserves room for them), and an
/// error for anything malformed: unknown version or kind, non-zero reserved bits, a stream
/// id that does not fit the kind, a length that does not fit the kind or exceeds
/// `max_frame`, a zero window. A header is rejected before its payload is awaited, so a
/// forged length never makes us buffer more than `max_frame` bytes.
pub fn decode(src: &mut BytesMut, max_frame: u32) -> Result<Option<Frame>, MuxError> {
    if src.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut header = &src[..HEADER_LEN];
    let version = header.get_u8();
    let kind = header.get_u8();
    let reserved = header.get_u16();
    let stream = header.get_u32();
    let len = header.get_u32();
    if version != VERSION {
        return Err(protocol(format!("unknown frame version {version}")));
    }
    if reserved != 0 {
        return Err(protocol(format!("reserved bits set: {reserved:#06x}")));
    }
    let (connection_level, expected_len) = match kind {
        KIND_OPEN | KIND_WINDOW => (false, Some(4)),
        KIND_DATA => (false, None),
        KIND_FIN | KIND_RESET => (false, Some(0)),
        KIND_PING | KIND_PONG => (true, Some(8)),
        KIND_GOAWAY => (true, Some(4)),
        other => return Err(protocol(format!("unknown frame kind {other}"))),
    };
    if connection_level != (stream == 0) {
        return Err(protocol(format!(
            "frame kind {kind} with stream id {stream}"
        )));
    }
    match expected_len {
        Some(expected) if len != expected => {
            return Err(protocol(format!(
                "frame kind {kind} with length {len}, expected {expected}"
            )));
        }
        None if len == 0 || len > max_frame => {
            return Err(protocol(format!(
                "data frame of {len} bytes (allowed 1 to {max_frame})"
            )));
        }
        _ => {}
    }
    let len = len as usize;
    if src.len() < HEADER_LEN + len {
        src.reserve(HEADER_LEN + len - src.len());
        return Ok(None);
    }
    src.advance(HEADER_LEN);
    let mut payload = src.split_to(len).freeze();
    let frame = match kind {
        KIND_OPEN | KIND_WINDOW => {
            let value = payload.get_u32();
            if value == 0 {
                return Err(protocol(format!("zero window on stream {stream}")));
            }
            if kind == KIND_OPEN {
                Frame::Open {
                    stream,
                    window: value,
                }
            } else {
                Frame::Window {
                    stream,
                    increment: value,
                }
            }
        }
        KIND_DATA => Frame::Data { stream, payload },
        KIND_FIN => Frame::Fin { stream },
        KIND_RESET => Frame::Reset { stream },
        KIND_PING => Frame::Ping {
            opaque: payload.get_u64(),
        },
        KIND_PONG => Frame::Pong {
            opaque: payload.get_u64(),
        },
        _ => Frame::GoAway {
            code: payload.get_u32(),
        },
    };
    Ok(Some(frame))
}

/// Which end of the connection this is; decides the parity of stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The agent: odd stream ids.
    Client,
    /// The server: even stream ids.
    Server,
}

/// The mux's limits and timers, taken from [`TunnelConfig`].
#[derive(Debug, Clone, Copy)]
pub struct MuxConfig {
    /// See [`TunnelConfig::mux_max_streams`].
    pub max_streams: u32,
    /// See [`TunnelConfig::mux_stream_window`].
    pub window: u32,
    /// See [`TunnelConfig::mux_max_frame`].
    pub max_frame: u32,
    /// See [`TunnelConfig::keepalive_interval`].
    pub keepalive: Duration,
    /// See [`TunnelConfig::idle_timeout`].
    pub idle_timeout: Duration,
}

impl From<&TunnelConfig> for MuxConfig {
    fn from(c: &TunnelConfig) -> Self {
        MuxConfig {
            max_streams: c.mux_max_streams,
            window: c.mux_stream_window,
            max_frame: c.mux_max_frame,
            keepalive: c.keepalive_interval,
            idle_timeout: c.idle_timeout,
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    recv: VecDeque<Bytes>,
    recv_fin: bool,
    /// The local receive half is gone: incoming data is dropped and its credit returned.
    recv_closed: bool,
    /// Bytes the peer may still send.
    recv_allowance: u32,
    /// Bytes read by the application and not yet granted back.
    unacked: u32,
    recv_waker: Option<Waker>,
    send_credit: u64,
    send_fin: bool,
    send_waker: Option<Waker>,
    reset: bool,
    halves: u8,
}

impl Slot {
    fn wake(&mut self) {
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
    }
}

#[derive(Debug)]
struct Inner {
    streams: HashMap<u32, Slot>,
    next_local: Option<u32>,
    last_remote: u32,
    error: Option<MuxError>,
    accept_tx: Option<mpsc::Sender<(MuxSend, MuxRecv)>>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Frames for the writer; the flag marks control frames counted in `control_queued`.
    out: mpsc::UnboundedSender<(Frame, bool)>,
    config: MuxConfig,
    role: Role,
    control_queued: AtomicUsize,
    pong_queued: AtomicBool,
    last_rx: Mutex<Instant>,
    closed: watch::Sender<Option<MuxError>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the bookkeeping worse than a dropped
        // connection; keep going with the data as it is.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, frame: Frame) {
        // Fails only when the writer is gone, and then the connection has failed anyway.
        let _ = self.out.send((frame, false));
    }

    fn is_local(&self, stream: u32) -> bool {
        (stream % 2 == 1) == (self.role == Role::Client)
    }

    /// Records the connection's end (the first cause wins) and wakes everyone.
    fn fail(&self, err: MuxError) -> MuxError {
        let mut inner = self.lock();
        let err = inner.error.get_or_insert(err).clone();
        inner.accept_tx = None;
        for slot in inner.streams.values_mut() {
            slot.wake();
        }
        drop(inner);
        self.closed.send_replace(Some(err.clone()));
        err
    }
}

/// One multiplexed connection. Cheap to clone; all clones share the streams.
#[derive(Debug, Clone)]
pub struct MuxConnection {
    shared: Arc<Shared>,
    accept_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<(MuxSend, MuxRecv)>>>,
}

impl MuxConnection {
    /// Wraps a byte stream (a TLS stream). Returns the connection and its driver, which the
    /// caller must spawn; the driver ends, returning why, when the connection does.
    pub fn new<T>(
        io: T,
        role: Role,
        config: MuxConfig,
    ) -> (
        MuxConnection,
        impl Future<Output = MuxError> + Send + 'static,
    )
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (out, out_rx) = mpsc::unbounded_channel();
        let capacity = usize::try_from(config.max_streams)
            .unwrap_or(1024)
            .clamp(1, 1024);
        let (accept_tx, accept_rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                streams: HashMap::new(),
                next_local: Some(match role {
                    Role::Client => 1,
                    Role::Server => 2,
                }),
                last_remote: 0,
                error: None,
                accept_tx: Some(accept_tx),
            }),
            out,
            config,
            role,
            control_queued: AtomicUsize::new(0),
            pong_queued: AtomicBool::new(false),
            last_rx: Mutex::new(Instant::now()),
            closed: watch::channel(None).0,
        });
        let driver = drive(io, shared.clone(), out_rx);
        let conn = MuxConnection {
            shared,
            accept_rx: Arc::new(tokio::sync::Mutex::new(accept_rx)),
        };
        (conn, driver)
    }

    /// Opens a stream to the peer. The peer learns of it when it is opened; the first
    /// bytes are sent when the peer has granted credit (one round trip).
    pub fn open_bi(&self) -> Result<(MuxSend, MuxRecv), MuxError> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        if let Some(err) = &inner.error {
            return Err(err.clone());
        }
        if inner.streams.len() >= shared.config.max_streams as usize {
            return Err(MuxError::TooManyStreams(shared.config.max_streams));
        }
        let Some(id) = inner.next_local else {
            return Err(protocol("stream ids exhausted"));
        };
        inner.next_local = id.checked_add(2);
        inner.streams.insert(
            id,
            Slot {
                recv_allowance: shared.config.window,
                halves: 2,
                ..Slot::default()
            },
        );
        drop(inner);
        shared.send(Frame::Open {
            stream: id,
            window: shared.config.window,
        });
        Ok(self.halves(id))
    }

    /// Waits for the next stream the peer opens.
    pub async fn accept_bi(&self) -> Result<(MuxSend, MuxRecv), MuxError> {
        let next = self.accept_rx.lock().await.recv().await;
        match next {
            Some(pair) => Ok(pair),
            None => Err(self
                .shared
                .lock()
                .error
                .clone()
                .unwrap_or(MuxError::ClosedByPeer)),
        }
    }

    /// Says goodbye to the peer and closes every stream.
    pub fn close(&self) {
        self.shared.send(Frame::GoAway { code: 0 });
        self.shared.fail(MuxError::ClosedLocally);
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<MuxError> {
        self.shared.lock().error.clone()
    }

    /// Waits until the connection ends and returns why.
    pub async fn closed(&self) -> MuxError {
        let mut rx = self.shared.closed.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(err) => err.clone().unwrap_or(MuxError::ClosedLocally),
            Err(_) => MuxError::ClosedLocally,
        }
    }

    fn halves(&self, id: u32) -> (MuxSend, MuxRecv) {
        (
            MuxSend {
                shared: self.shared.clone(),
                id,
            },
            MuxRecv {
                shared: self.shared.clone(),
                id,
            },
        )
    }
}

/// Runs the connection: reads and dispatches frames, writes queued frames, keeps alive.
async fn drive<T>(
    io: T,
    shared: Arc<Shared>,
    out_rx: mpsc::UnboundedReceiver<(Frame, bool)>,
) -> MuxError
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    let result = tokio::select! {
        r = read_loop(reader, &shared) => r,
        w = write_loop(writer, &shared, out_rx) => w,
        k = keepalive_loop(&shared) => k,
    };
    let err = match result {
        Ok(()) => MuxError::ClosedByPeer,
        Err(e) => e,
    };
    let err = shared.fail(err);
    tracing::debug!(error = %err, "mux connection ended");
    err
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    shared: &Arc<Shared>,
) -> Result<(), MuxError> {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + shared.config.max_frame as usize);
    loop {
        while let Some(frame) = decode(&mut buf, shared.config.max_frame)? {
            *shared.last_rx.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            handle_frame(shared, frame)?;
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let n = reader
            .read_buf(&mut buf)
            .await
            .map_err(|e| MuxError::from_io(&e))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                MuxError::ClosedByPeer
            } else {
                protocol(format!(
                    "connection ended inside a frame ({} bytes of it received)",
                    buf.len()
                ))
            });
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    shared: &Shared,
    mut out_rx: mpsc::UnboundedReceiver<(Frame, bool)>,
) -> Result<(), MuxError> {
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    let io = |e: io::Error| MuxError::from_io(&e);
    while let Some(item) = out_rx.recv().await {
        let mut goaway = false;
        let mut next = Some(item);
        while let Some((frame, counted)) = next.take() {
            if counted {
                shared.control_queued.fetch_sub(1, Ordering::Relaxed);
            }
            match &frame {
                Frame::Pong { .. } => shared.pong_queued.store(false, Ordering::Relaxed),
                Frame::GoAway { .. } => goaway = true,
                _ => {}
            }
            encode(&frame, &mut buf);
            if buf.len() < WRITE_BATCH && !goaway {
                next = out_rx.try_recv().ok();
            }
        }
        writer.write_all(&buf).await.map_err(io)?;
        writer.flush().await.map_err(io)?;
        buf.clear();
        if goaway {
            writer.shutdown().await.map_err(io)?;
            return Err(MuxError::ClosedLocally);
        }
    }
    Err(MuxError::ClosedLocally)
}

async fn keepalive_loop(shared: &Shared) -> Result<(), MuxError> {
    let period = (shared.config.keepalive / 2).max(Duration::from_millis(10));
    let mut opaque = 0u64;
    loop {
        tokio::time::sleep(period).await;
        let last = *shared.last_rx.lock().unwrap_or_else(|e| e.into_inner());
        let idle = Instant::now().saturating_duration_since(last);
        if idle >= shared.config.idle_timeout {
            return Err(MuxError::IdleTimeout(shared.config.idle_timeout));
        }
        if idle >= shared.config.keepalive {
            opaque = opaque.wrapping_add(1);
            shared.send(Frame::Ping { opaque });
        }
    }
}

/// Queues a control frame answering the peer, or fails if the peer does not read.
fn queue_control(shared: &Shared, frame: Frame) -> Result<(), MuxError> {
    if shared.control_queued.fetch_add(1, Ordering::Relaxed) >= CONTROL_QUEUE_LIMIT {
        return Err(protocol("peer floods control frames without reading"));
    }
    let _ = shared.out.send((frame, true));
    Ok(())
}

fn handle_frame(shared: &Arc<Shared>, frame: Frame) -> Result<(), MuxError> {
    match frame {
        Frame::Ping { opaque } => {
            if !shared.pong_queued.swap(true, Ordering::Relaxed) {
                queue_control(shared, Frame::Pong { opaque })?;
            }
            Ok(())
        }
        Frame::Pong { .. } => Ok(()),
        Frame::GoAway { .. } => Err(MuxError::ClosedByPeer),
        Frame::Open { stream, window } => handle_open(shared, stream, window),
        Frame::Data { stream, payload } => {
            let mut inner = shared.lock();
            known_stream(shared, &inner, stream)?;
            let Some(slot) = inner.streams.get_mut(&stream) else {
                // A stream we already dropped; its data is moot.
                return Ok(());
            };
            if slot.recv_fin {
                return Err(protocol(format!("data after fin on stream {stream}")));
            }
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            if len > slot.recv_allowance {
                return Err(protocol(format!(
                    "stream {stream} sent {len} bytes with {} of credit",
                    slot.recv_allowance
                )));
            }
            if slot.recv_closed {
                drop(inner);
                shared.send(Frame::Window {
                    stream,
                    increment: len,
                });
                return Ok(());
            }
            slot.recv_allowance -= len;
            slot.recv.push_back(payload);
            if let Some(w) = slot.recv_waker.take() {
                w.wake();
            }
            Ok(())
        }
        Frame::Window { stream, increment } => {
            let mut inner = shared.lock();
            known_stream(shared, &inner, stream)?;
            let Some(slot) = inner.streams.get_mut(&stream) else {
                return Ok(());
            };
            slot.send_credit += u64::from(increment);
            if slot.send_credit > u64::from(u32::MAX) {
                return Err(protocol(format!("credit overflow on stream {stream}")));
            }
            if let Some(w) = slot.send_waker.take() {
                w.wake();
            }
            Ok(())
        }
        Frame::Fin { stream } => {
            let mut inner = shared.lock();
            known_stream(shared, &inner, stream)?;
            if let Some(slot) = inner.streams.get_mut(&stream) {
                slot.recv_fin = true;
                if let Some(w) = slot.recv_waker.take() {
                    w.wake();
                }
            }
            Ok(())
        }
        Frame::Reset { stream } => {
            let mut inner = shared.lock();
            known_stream(shared, &inner, stream)?;
            if let Some(slot) = inner.streams.get_mut(&stream) {
                slot.reset = true;
                slot.wake();
            }
            Ok(())
        }
    }
}

/// Fails unless `stream` was opened at some point (by either side).
fn known_stream(shared: &Shared, inner: &Inner, stream: u32) -> Result<(), MuxError> {
    let opened = if shared.is_local(stream) {
        inner.next_local.is_none_or(|next| stream < next)
    } else {
        stream <= inner.last_remote
    };
    if opened {
        Ok(())
    } else {
        Err(protocol(format!("frame for stream {stream}, never opened")))
    }
}

fn handle_open(shared: &Arc<Shared>, stream: u32, window: u32) -> Result<(), MuxError> {
    let mut inner = shared.lock();
    if shared.is_local(stream) {
        return Err(protocol(format!(
            "peer opened stream {stream} of our parity"
        )));
    }
    if stream <= inner.last_remote {
        return Err(protocol(format!(
            "peer reopened stream {stream} (last was {})",
            inner.last_remote
        )));
    }
    inner.last_remote = stream;
    if inner.error.is_some() {
        return Ok(());
    }
    if inner.streams.len() >= shared.config.max_streams as usize {
        drop(inner);
        tracing::debug!(stream, "refusing a stream over the limit");
        return queue_control(shared, Frame::Reset { stream });
    }
    let Some(accept_tx) = inner.accept_tx.clone() else {
        return Ok(());
    };
    inner.streams.insert(
        stream,
        Slot {
            recv_allowance: shared.config.window,
            send_credit: u64::from(window),
            halves: 2,
            ..Slot::default()
        },
    );
    drop(inner);
    shared.send(Frame::Window {
        stream,
        increment: shared.config.window,
    });
    let pair = (
        MuxSend {
            shared: shared.clone(),
            id: stream,
        },
        MuxRecv {
            shared: shared.clone(),
            id: stream,
        },
    );
    if accept_tx.try_send(pair).is_err() {
        // Nobody accepts (or the backlog is full): dropping the halves resets the stream.
        tracing::debug!(stream, "no one accepts streams; resetting");
    }
    Ok(())
}

/// The sending half of a mux stream.
#[derive(Debug)]
pub struct MuxSend {
    shared: Arc<Shared>,
    id: u32,
}

/// The receiving half of a mux stream.
#[derive(Debug)]
pub struct MuxRecv {
    shared: Arc<Shared>,
    id: u32,
}

fn conn_error(err: &MuxError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, err.clone())
}

fn stream_reset(id: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("mux stream {id} reset by peer"),
    )
}

impl AsyncWrite for MuxSend {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        if let Some(err) = &inner.error {
            return Poll::Ready(Err(conn_error(err)));
        }
        let Some(slot) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(stream_reset(self.id)));
        };
        if slot.reset {
            return Poll::Ready(Err(stream_reset(self.id)));
        }
        if slot.send_fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if slot.send_credit == 0 {
            slot.send_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf
            .len()
            .min(shared.config.max_frame as usize)
            .min(usize::try_from(slot.send_credit).unwrap_or(usize::MAX));
        slot.send_credit -= n as u64;
        drop(inner);
        shared.send(Frame::Data {
            stream: self.id,
            payload: Bytes::copy_from_slice(&buf[..n]),
        });
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are handed to the connection's writer at once; it flushes each batch.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        if let Some(err) = &inner.error {
            return Poll::Ready(Err(conn_error(err)));
        }
        if let Some(slot) = inner.streams.get_mut(&self.id)
            && !slot.send_fin
            && !slot.reset
        {
            slot.send_fin = true;
            drop(inner);
            self.shared.send(Frame::Fin { stream: self.id });
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for MuxRecv {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        let error = inner.error.clone();
        let Some(slot) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(stream_reset(self.id)));
        };
        if let Some(front) = slot.recv.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                slot.recv.pop_front();
            }
            // n <= the frame size, which is < u32::MAX.
            slot.unacked += u32::try_from(n).unwrap_or(u32::MAX);
            let grant = if slot.unacked >= shared.config.window / 2 && !slot.recv_fin {
                let grant = slot.unacked;
                slot.recv_allowance = slot.recv_allowance.saturating_add(grant);
                slot.unacked = 0;
                Some(grant)
            } else {
                None
            };
            drop(inner);
            if let Some(increment) = grant {
                shared.send(Frame::Window {
                    stream: self.id,
                    increment,
                });
            }
            return Poll::Ready(Ok(()));
        }
        if slot.recv_fin {
            return Poll::Ready(Ok(()));
        }
        if slot.reset {
            return Poll::Ready(Err(stream_reset(self.id)));
        }
        if let Some(err) = &error {
            return Poll::Ready(Err(conn_error(err)));
        }
        slot.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for MuxSend {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        let alive = inner.error.is_none();
        let mut fin = false;
        if let Some(slot) = inner.streams.get_mut(&self.id) {
            if !slot.send_fin && !slot.reset && alive {
                slot.send_fin = true;
                fin = true;
            }
            slot.halves = slot.halves.saturating_sub(1);
        }
        let reset = release(&mut inner, self.id, alive);
        drop(inner);
        if fin {
            self.shared.send(Frame::Fin { stream: self.id });
        }
        if reset {
            self.shared.send(Frame::Reset { stream: self.id });
        }
    }
}

impl Drop for MuxRecv {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        let alive = inner.error.is_none();
        let mut grant = 0u32;
        if let Some(slot) = inner.streams.get_mut(&self.id) {
            slot.recv_closed = true;
            if !slot.recv_fin && !slot.reset {
                let buffered: usize = slot.recv.iter().map(Bytes::len).sum();
                grant = slot
                    .unacked
                    .saturating_add(u32::try_from(buffered).unwrap_or(u32::MAX));
            }
            slot.recv.clear();
            slot.unacked = 0;
            slot.halves = slot.halves.saturating_sub(1);
        }
        let reset = release(&mut inner, self.id, alive);
        drop(inner);
        if grant > 0 && alive && !reset {
            self.shared.send(Frame::Window {
                stream: self.id,
                increment: grant,
            });
        }
        if reset {
            self.shared.send(Frame::Reset { stream: self.id });
        }
    }
}

/// Forgets a stream whose halves are both gone. Returns whether the peer must be told to
/// stop sending (it had not finished).
fn release(inner: &mut Inner, id: u32, alive: bool) -> bool {
    let done = inner.streams.get(&id).is_some_and(|slot| slot.halves == 0);
    if !done {
        return false;
    }
    match inner.streams.remove(&id) {
        Some(slot) => alive && !slot.recv_fin && !slot.reset,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MAX: u32 = 16 * 1024;

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::Open {
                stream: 1,
                window: 65536,
            },
            Frame::Data {
                stream: 3,
                payload: Bytes::from_static(b"hello"),
            },
            Frame::Window {
                stream: 2,
                increment: 10,
            },
            Frame::Fin { stream: 5 },
            Frame::Reset { stream: 7 },
            Frame::Ping { opaque: 42 },
            Frame::Pong { opaque: 43 },
            Frame::GoAway { code: 0 },
        ]
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = BytesMut::new();
        for frame in all_frames() {
            encode(&frame, &mut buf);
        }
        for frame in all_frames() {
            assert_eq!(decode(&mut buf, MAX).unwrap(), Some(frame));
        }
        assert!(buf.is_empty());
        assert_eq!(decode(&mut buf, MAX).unwrap(), None);
    }

    #[test]
    fn truncated_frames_wait_for_more() {
        let mut whole = BytesMut::new();
        encode(
            &Frame::Data {
                stream: 1,
                payload: Bytes::from_static(b"0123456789"),
            },
            &mut whole,
        );
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut part, MAX).unwrap(), None, "cut at {cut}");
            assert_eq!(part.len(), cut, "a partial frame is not consumed");
        }
    }

    #[test]
    fn malformed_headers_are_errors() {
        let header = |version: u8, kind: u8, reserved: u16, stream: u32, len: u32| {
            let mut b = BytesMut::new();
            b.put_u8(version);
            b.put_u8(kind);
            b.put_u16(reserved);
            b.put_u32(stream);
            b.put_u32(len);
            b.put_bytes(0, 16);
            b
        };
        let cases = [
            (header(2, KIND_DATA, 0, 1, 1), "version"),
            (header(1, 99, 0, 1, 1), "kind"),
            (header(1, KIND_DATA, 1, 1, 1), "reserved"),
            (header(1, KIND_DATA, 0, 0, 1), "stream id 0"),
            (header(1, KIND_PING, 0, 1, 8), "ping on a stream"),
            (header(1, KIND_DATA, 0, 1, 0), "empty data"),
            (header(1, KIND_DATA, 0, 1, MAX + 1), "oversized data"),
            (header(1, KIND_DATA, 0, 1, u32::MAX), "forged length"),
            (header(1, KIND_WINDOW, 0, 1, 5), "window length"),
            (header(1, KIND_WINDOW, 0, 1, 4), "zero window"),
            (header(1, KIND_FIN, 0, 1, 3), "fin with payload"),
        ];
        for (mut buf, what) in cases {
            match decode(&mut buf, MAX) {
                Err(MuxError::Protocol(_)) => {}
                other => panic!("{what}: expected a protocol error, got {other:?}"),
            }
        }
    }

    #[test]
    fn random_tampering_never_panics() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut clean = BytesMut::new();
        for frame in all_frames() {
            encode(&frame, &mut clean);
        }
        for _ in 0..20_000 {
            let mut buf = clean.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..buf.len());
                buf[i] = rng.random();
            }
            let cut = rng.random_range(0..=buf.len());
            buf.truncate(cut);
            // Whatever the bytes, decoding ends in frames, a need for more, or an error.
            while let Ok(Some(_)) = decode(&mut buf, MAX) {}
        }
    }

    fn config() -> MuxConfig {
        MuxConfig {
            max_streams: 8,
            window: 32 * 1024,
            max_frame: 4 * 1024,
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
        }
    }

    fn pair() -> (MuxConnection, MuxConnection) {
        let (a, b) = tokio::io::duplex(8 * 1024);
        let (client, client_driver) = MuxConnection::new(a, Role::Client, config());
        let (server, server_driver) = MuxConnection::new(b, Role::Server, config());
        tokio::spawn(client_driver);
        tokio::spawn(server_driver);
        (client, server)
    }

    #[tokio::test]
    async fn streams_both_ways_with_flow_control() {
        let (client, server) = pair();
        // Far more than one window, so the sender must wait for grants.
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

        let (mut send, mut recv) = client.open_bi().unwrap();
        let expected = payload.clone();
        let echo = tokio::spawn(async move {
            let (mut s_send, mut s_recv) = server.accept_bi().await.unwrap();
            let mut got = Vec::new();
            s_recv.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, expected);
            s_send.write_all(b"thanks").await.unwrap();
            s_send.shutdown().await.unwrap();
            // And a stream the server opens.
            let (mut r_send, mut r_recv) = server.open_bi().unwrap();
            r_send.write_all(b"reverse").await.unwrap();
            r_send.shutdown().await.unwrap();
            let mut answer = String::new();
            r_recv.read_to_string(&mut answer).await.unwrap();
            assert_eq!(answer, "ack");
            server
        });
        send.write_all(&payload).await.unwrap();
        send.shutdown().await.unwrap();
        let mut reply = String::new();
        recv.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "thanks");

        let (mut r_send, mut r_recv) = client.accept_bi().await.unwrap();
        let mut text = String::new();
        r_recv.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "reverse");
        r_send.write_all(b"ack").await.unwrap();
        r_send.shutdown().await.unwrap();
        let _server = echo.await.unwrap();
    }

    #[tokio::test]
    async fn stream_limit_resets_extra_streams() {
        let (client, server) = pair();
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(client.open_bi().unwrap());
        }
        assert_eq!(client.open_bi().unwrap_err(), MuxError::TooManyStreams(8));
        drop(server);
        drop(held);
    }

    #[tokio::test]
    async fn garbage_from_the_peer_is_a_protocol_error() {
        let (a, mut b) = tokio::io::duplex(8 * 1024);
        let (client, driver) = MuxConnection::new(a, Role::Client, config());
        let driver = tokio::spawn(driver);
        let (_send, mut recv) = client.open_bi().unwrap();
        // A data frame for a stream no one opened, then junk.
        let mut buf = BytesMut::new();
        encode(
            &Frame::Data {
                stream: 2,
                payload: Bytes::from_static(b"x"),
            },
            &mut buf,
        );
        b.write_all(&buf).await.unwrap();
        let err = driver.await.unwrap();
        assert!(matches!(err, MuxError::Protocol(_)), "{err:?}");
        let mut out = Vec::new();
        let read = recv.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(read.kind(), io::ErrorKind::ConnectionAborted);
        assert!(client.open_bi().is_err());
    }

    #[tokio::test]
    async fn data_beyond_credit_is_a_protocol_error() {
        let (a, mut b) = tokio::io::duplex(256 * 1024);
        let (_server, driver) = MuxConnection::new(a, Role::Server, config());
        let driver = tokio::spawn(driver);
        let mut buf = BytesMut::new();
        encode(
            &Frame::Open {
                stream: 1,
                window: 1024,
            },
            &mut buf,
        );
        // 9 frames of 4 KiB: more than the 32 KiB window.
        for _ in 0..9 {
            encode(
                &Frame::Data {
                    stream: 1,
                    payload: Bytes::from(vec![0u8; 4096]),
                },
                &mut buf,
            );
        }
        b.write_all(&buf).await.unwrap();
        let err = driver.await.unwrap();
        assert!(
            matches!(&err, MuxError::Protocol(m) if m.contains("credit")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn truncated_stream_is_an_error() {
        let (a, mut b) = tokio::io::duplex(1024);
        let (_conn, driver) = MuxConnection::new(a, Role::Client, config());
        let driver = tokio::spawn(driver);
        let mut buf = BytesMut::new();
        encode(&Frame::Ping { opaque: 1 }, &mut buf);
        b.write_all(&buf[..7]).await.unwrap();
        drop(b);
        let err = driver.await.unwrap();
        assert!(
            matches!(&err, MuxError::Protocol(m) if m.contains("inside a frame")),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_hits_the_idle_timeout() {
        let (a, _b) = tokio::io::duplex(1024);
        let (_conn, driver) = MuxConnection::new(a, Role::Client, config());
        let started = Instant::now();
        let err = driver.await;
        assert_eq!(err, MuxError::IdleTimeout(Duration::from_secs(15)));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(15) && waited < Duration::from_secs(18));
    }

    #[tokio::test(start_paused = true)]
    async fn local_resets_do_not_count_as_peer_floods() {
        let (client, server) = pair();
        // Streams dropped before the peer finished them are reset from our side, many
        // times; the connection must stay up through the keepalives that follow.
        for _ in 0..20 {
            let (send, recv) = client.open_bi().unwrap();
            let (s_send, s_recv) = server.accept_bi().await.unwrap();
            drop((send, recv, s_send, s_recv));
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(client.close_reason(), None);
        assert_eq!(server.close_reason(), None);
        assert_eq!(server.shared.control_queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_holds_an_idle_connection() {
        let (client, server) = pair();
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(client.close_reason(), None);
        assert_eq!(server.close_reason(), None);
        client.close();
        assert_eq!(server.closed().await, MuxError::ClosedByPeer);
    }
}
