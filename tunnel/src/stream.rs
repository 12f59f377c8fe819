//! The two halves of a tunnel stream, over either transport, as tokio `AsyncRead` /
//! `AsyncWrite`, so that HTTP/2 (tonic) and raw byte relays (logs, exec, port-forward) can
//! run over them unchanged.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::mux::{MuxRecv, MuxSend};

/// Stream and byte counters filled in by the IO layer.
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    pub(crate) streams_opened: AtomicU64,
    pub(crate) streams_accepted: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
}

impl IoCounters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum SendInner {
    Quic(quinn::SendStream),
    Mux(MuxSend),
}

#[derive(Debug)]
enum RecvInner {
    Quic(quinn::RecvStream),
    Mux(MuxRecv),
}

/// The sending half of a tunnel stream. `shutdown` finishes it (the peer reads EOF);
/// dropping it finishes it too.
#[derive(Debug)]
pub struct SendStream {
    inner: SendInner,
    counters: Arc<IoCounters>,
}

/// The receiving half of a tunnel stream.
#[derive(Debug)]
pub struct RecvStream {
    inner: RecvInner,
    counters: Arc<IoCounters>,
}

impl SendStream {
    pub(crate) fn quic(stream: quinn::SendStream, counters: Arc<IoCounters>) -> Self {
        SendStream {
            inner: SendInner::Quic(stream),
            counters,
        }
    }

    pub(crate) fn mux(stream: MuxSend, counters: Arc<IoCounters>) -> Self {
        SendStream {
            inner: SendInner::Mux(stream),
            counters,
        }
    }
}

impl RecvStream {
    pub(crate) fn quic(stream: quinn::RecvStream, counters: Arc<IoCounters>) -> Self {
        RecvStream {
            inner: RecvInner::Quic(stream),
            counters,
        }
    }

    pub(crate) fn mux(stream: MuxRecv, counters: Arc<IoCounters>) -> Self {
        RecvStream {
            inner: RecvInner::Mux(stream),
            counters,
        }
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.inner {
            SendInner::Quic(s) => AsyncWrite::poll_write(Pin::new(s), cx, buf),
            SendInner::Mux(s) => AsyncWrite::poll_write(Pin::new(s), cx, buf),
        };
        if let Poll::Ready(Ok(n)) = result {
            IoCounters::add(&this.counters.bytes_sent, n);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            SendInner::Quic(s) => AsyncWrite::poll_flush(Pin::new(s), cx),
            SendInner::Mux(s) => AsyncWrite::poll_flush(Pin::new(s), cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            SendInner::Quic(s) => AsyncWrite::poll_shutdown(Pin::new(s), cx),
            SendInner::Mux(s) => AsyncWrite::poll_shutdown(Pin::new(s), cx),
        }
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = match &mut this.inner {
            RecvInner::Quic(s) => AsyncRead::poll_read(Pin::new(s), cx, buf),
            RecvInner::Mux(s) => AsyncRead::poll_read(Pin::new(s), cx, buf),
        };
        if let Poll::Ready(Ok(())) = result {
            IoCounters::add(
                &this.counters.bytes_received,
                buf.filled().len().saturating_sub(before),
            );
        }
        result
    }
}
