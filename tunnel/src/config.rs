//! Tunnel configuration: plain values, checked by [`TunnelConfig::validate`] before any
//! socket is opened. The timing values come from the hardware profile of the device.

use std::time::Duration;

use crate::backoff::Jitter;
use crate::error::ConfigError;

/// The default port of the tunnel: UDP for QUIC, TCP for the fallback.
pub const DEFAULT_PORT: u16 = 6443;

/// The ALPN protocol the tunnel speaks, on QUIC and on the TCP+TLS fallback.
pub const ALPN: &[u8] = b"kedge-tunnel/1";

/// Everything that shapes a tunnel's behaviour over time. Both ends use the same struct;
/// the server ignores the dialing and backoff fields.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelConfig {
    /// How often an idle connection sends a keepalive (QUIC PING, mux PING).
    pub keepalive_interval: Duration,
    /// A connection that received nothing for this long is dead.
    pub idle_timeout: Duration,
    /// How long a QUIC handshake may take before the agent tries TCP+TLS instead.
    pub quic_connect_timeout: Duration,
    /// How long a TCP connect plus TLS handshake may take.
    pub tcp_connect_timeout: Duration,
    /// The first backoff delay (before jitter).
    pub backoff_base: Duration,
    /// Each failed round multiplies the delay by this factor.
    pub backoff_factor: f64,
    /// The delay never exceeds this.
    pub backoff_cap: Duration,
    /// How the backoff delay is randomised.
    pub jitter: Jitter,
    /// A connection that lasted this long counts as stable: the backoff starts over after it.
    pub stable_after: Duration,
    /// While connected over TCP, how often the agent tries QUIC again.
    pub quic_retry_interval: Duration,
    /// TCP mux: the most streams open at once on one connection (each direction counted).
    pub mux_max_streams: u32,
    /// TCP mux: the receive window of one stream, in bytes (what a peer may send unread).
    pub mux_stream_window: u32,
    /// TCP mux: the largest payload of one frame, in bytes.
    pub mux_max_frame: u32,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            keepalive_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            quic_connect_timeout: Duration::from_secs(3),
            tcp_connect_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(250),
            backoff_factor: 2.0,
            backoff_cap: Duration::from_secs(30),
            jitter: Jitter::Full,
            stable_after: Duration::from_secs(30),
            quic_retry_interval: Duration::from_secs(300),
            mux_max_streams: 256,
            mux_stream_window: 256 * 1024,
            mux_max_frame: 16 * 1024,
        }
    }
}

/// The largest frame payload the mux accepts, whatever the configuration says.
pub const MUX_FRAME_LIMIT: u32 = 1024 * 1024;

impl TunnelConfig {
    /// Checks that the values make sense together. Call it before starting a tunnel.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        if self.keepalive_interval.is_zero() {
            return bad("keepalive_interval", "must be greater than zero");
        }
        if self.idle_timeout <= self.keepalive_interval {
            return bad("idle_timeout", "must be longer than keepalive_interval");
        }
        // quinn encodes the idle timeout as milliseconds in a QUIC varint (< 2^62).
        if self.idle_timeout > Duration::from_secs(24 * 3600) {
            return bad("idle_timeout", "must be at most 24h");
        }
        if self.quic_connect_timeout.is_zero() {
            return bad("quic_connect_timeout", "must be greater than zero");
        }
        if self.tcp_connect_timeout.is_zero() {
            return bad("tcp_connect_timeout", "must be greater than zero");
        }
        if self.backoff_base.is_zero() {
            return bad("backoff_base", "must be greater than zero");
        }
        if !self.backoff_factor.is_finite() || self.backoff_factor < 1.0 {
            return bad("backoff_factor", "must be a finite number of at least 1");
        }
        if self.backoff_cap < self.backoff_base {
            return bad("backoff_cap", "must be at least backoff_base");
        }
        if self.quic_retry_interval.is_zero() {
            return bad("quic_retry_interval", "must be greater than zero");
        }
        if self.mux_max_streams == 0 {
            return bad("mux_max_streams", "must be greater than zero");
        }
        if self.mux_max_frame == 0 || self.mux_max_frame > MUX_FRAME_LIMIT {
            return bad("mux_max_frame", "must be between 1 and 1 MiB");
        }
        if self.mux_stream_window < self.mux_max_frame {
            return bad("mux_stream_window", "must be at least mux_max_frame");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        TunnelConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_idle_shorter_than_keepalive() {
        let config = TunnelConfig {
            idle_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(10),
            ..TunnelConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.field, "idle_timeout");
    }

    #[test]
    fn rejects_bad_backoff() {
        for config in [
            TunnelConfig {
                backoff_factor: f64::NAN,
                ..TunnelConfig::default()
            },
            TunnelConfig {
                backoff_factor: 0.5,
                ..TunnelConfig::default()
            },
        ] {
            assert_eq!(config.validate().unwrap_err().field, "backoff_factor");
        }
        let config = TunnelConfig {
            backoff_cap: Duration::from_millis(1),
            ..TunnelConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "backoff_cap");
    }

    #[test]
    fn rejects_window_smaller_than_frame() {
        let config = TunnelConfig {
            mux_stream_window: 100,
            mux_max_frame: 1000,
            ..TunnelConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "mux_stream_window");
    }
}
