//! WebSocket as Kubernetes clients use it for exec, attach and port-forward.
//!
//! - The handshake ([`negotiate`], [`switching_protocols`]): the HTTP/1.1
//!   upgrade with `Sec-WebSocket-Protocol` naming the stream protocol.
//! - The channel protocol (`v4.channel.k8s.io`, `v5.channel.k8s.io`) of
//!   exec and attach: every binary message starts with a channel byte
//!   ([`Channel`]); v5 adds channel 255, whose one data byte names a
//!   channel the client will write no more to (so stdin can be closed).
//! - A byte pipe over binary messages ([`tunnel`]), which is how kubectl
//!   1.31 and later carry SPDY for port-forward (`SPDY/3.1+portforward.k8s.io`).
//!
//! The framing itself is tokio-tungstenite's; nothing here touches a
//! node.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The exec and attach protocols we speak, most preferred first.
pub const CHANNEL_V5: &str = "v5.channel.k8s.io";
pub const CHANNEL_V4: &str = "v4.channel.k8s.io";
/// Port-forward's SPDY carried inside WebSocket.
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// A WebSocket on an upgraded HTTP connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Whether the request asks for a WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// The subprotocols the client offers, in its order.
pub fn offered(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Why a WebSocket handshake cannot go ahead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("unable to upgrade: missing Sec-WebSocket-Key")]
    MissingKey,
    #[error("unable to upgrade: unsupported WebSocket version {0:?}, expected 13")]
    Version(String),
    #[error(
        "unable to upgrade: none of the requested protocols {offered:?} is supported, expected one of {supported:?}"
    )]
    NoProtocol {
        offered: Vec<String>,
        supported: Vec<&'static str>,
    },
}

/// Picks our most preferred protocol the client offers, and derives the
/// accept key.
pub fn negotiate(
    headers: &HeaderMap,
    supported: &[&'static str],
) -> Result<(&'static str, String), HandshakeError> {
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HandshakeError::MissingKey)?;
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if version.trim() != "13" {
        return Err(HandshakeError::Version(version.to_string()));
    }
    let offered = offered(headers);
    let protocol = supported
        .iter()
        .find(|s| offered.iter().any(|o| o == *s))
        .copied()
        .ok_or_else(|| HandshakeError::NoProtocol {
            offered: offered.clone(),
            supported: supported.to_vec(),
        })?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok((protocol, accept))
}

/// The 101 answer.
pub fn switching_protocols<B>(body: B, protocol: &'static str, accept: &str) -> Response<B> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Wraps the upgraded connection.
pub async fn accept(upgraded: Upgraded) -> Socket {
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await
}

/// Exec and attach channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    Error = 3,
    Resize = 4,
    /// v5: the client closed the channel named by the one data byte.
    Close = 255,
}

/// One message of the channel protocol, from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Stdin(Bytes),
    Resize {
        width: u32,
        height: u32,
    },
    CloseStdin,
    /// A channel we do not read, or a close of one; ignored.
    Other,
}

/// A channel message the client sent that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("empty message without a channel byte")]
    Empty,
    #[error("invalid resize message: {0}")]
    Resize(String),
}

/// Reads one binary message of the channel protocol.
pub fn parse_client(data: &[u8], v5: bool) -> Result<ClientMessage, ChannelError> {
    let (&channel, rest) = data.split_first().ok_or(ChannelError::Empty)?;
    match channel {
        0 => Ok(ClientMessage::Stdin(Bytes::copy_from_slice(rest))),
        4 => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u32,
                height: u32,
            }
            let size: Size =
                serde_json::from_slice(rest).map_err(|e| ChannelError::Resize(e.to_string()))?;
            Ok(ClientMessage::Resize {
                width: size.width,
                height: size.height,
            })
        }
        255 if v5 && rest.first() == Some(&(Channel::Stdin as u8)) => Ok(ClientMessage::CloseStdin),
        _ => Ok(ClientMessage::Other),
    }
}

/// A message on `channel`.
pub fn frame(channel: Channel, data: &[u8]) -> Message {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel as u8);
    out.extend_from_slice(data);
    Message::Binary(out.into())
}

/// Carries a byte stream over the socket's binary messages: returns the
/// other end of the pipe. The pumps stop when either side closes.
pub fn tunnel(socket: Socket) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut read_half, mut write_half) = tokio::io::split(ours);
    let (mut sink, mut source) = socket.split();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let to_socket = async {
            loop {
                match read_half.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            let _ = sink.send(Message::Close(None)).await;
            let _ = sink.close().await;
        };
        let from_socket = async {
            while let Some(Ok(msg)) = source.next().await {
                match msg {
                    Message::Binary(data) if write_half.write_all(&data).await.is_err() => {
                        break;
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = write_half.shutdown().await;
        };
        // Either direction ending ends the tunnel: SPDY has no half-closed
        // connection.
        tokio::select! {
            _ = to_socket => {}
            _ = from_socket => {}
        }
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_parse_without_panicking() {
        assert_eq!(parse_client(&[], true), Err(ChannelError::Empty));
        assert_eq!(
            parse_client(b"\x00hi", true),
            Ok(ClientMessage::Stdin(Bytes::from_static(b"hi")))
        );
        assert_eq!(
            parse_client(b"\x04{\"Width\":80,\"Height\":24}", true),
            Ok(ClientMessage::Resize {
                width: 80,
                height: 24
            })
        );
        assert!(matches!(
            parse_client(b"\x04{", true),
            Err(ChannelError::Resize(_))
        ));
        assert_eq!(parse_client(&[255, 0], true), Ok(ClientMessage::CloseStdin));
        assert_eq!(parse_client(&[255, 0], false), Ok(ClientMessage::Other));
        assert_eq!(parse_client(&[255], true), Ok(ClientMessage::Other));
        assert_eq!(parse_client(&[9, 1], true), Ok(ClientMessage::Other));
    }

    #[test]
    fn negotiation_prefers_v5_and_derives_the_accept_key() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"),
        );
        let (p, accept) = negotiate(&h, &[CHANNEL_V5, CHANNEL_V4]).unwrap();
        assert_eq!(p, CHANNEL_V5);
        // RFC 6455's example.
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(matches!(
            negotiate(&h, &[PORT_FORWARD_TUNNEL]),
            Err(HandshakeError::NoProtocol { .. })
        ));
    }
}
