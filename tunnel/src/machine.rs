//! The agent's connection state machine: sans-IO, deterministic, tested on simulated time.
//!
//! The IO layer ([`crate::TunnelClient`]) feeds it results (`on_connected`,
//! `on_connect_failed`, `on_disconnected`) and the time (`handle_timeout`), and carries out
//! the [`Action`]s it asks for (`poll_action`). It never reads a clock or touches a socket;
//! `now` is always an argument, and the random numbers for jitter come from an injected
//! generator. Shaped after quinn-proto's `poll_timeout` / `handle_timeout`.
//!
//! The rules:
//! - A *round* dials the preferred transport (QUIC at first), and if that fails or does not
//!   complete within its connect timeout, the other one right away (QUIC → TCP is the
//!   fallback for networks that block UDP). When both fail, the machine backs off with
//!   jittered exponential delays and starts another round.
//! - The transport that last connected becomes the preferred one (sticky), so an agent
//!   behind a UDP-blocking firewall does not pay the QUIC timeout on every reconnect.
//! - While connected over TCP, the machine asks for a QUIC *probe* every
//!   `quic_retry_interval`; when a probe connects, the agent switches to it and drops TCP.
//! - A connection that lasted `stable_after` resets the backoff; one that flapped does not,
//!   so a server that accepts and then drops connections still sees growing delays.
//! - Every dial carries an attempt number; late results of abandoned attempts are refused
//!   (`on_connected` returns false and the caller drops the connection).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::backoff::Backoff;
use crate::config::TunnelConfig;

/// The two ways to reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// QUIC over UDP.
    Quic,
    /// TLS over TCP, with kedge's stream multiplexer inside.
    Tcp,
}

impl Transport {
    /// The other transport.
    pub fn other(self) -> Transport {
        match self {
            Transport::Quic => Transport::Tcp,
            Transport::Tcp => Transport::Quic,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Quic => "quic",
            Transport::Tcp => "tcp",
        })
    }
}

/// Why a dial failed or a connection ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The dial did not complete within its connect timeout.
    Timeout,
    /// The network refused or could not route the attempt (connection refused, unreachable,
    /// a UDP socket that cannot send).
    Unreachable,
    /// The TLS handshake failed: a certificate was refused on either side.
    Tls,
    /// The peer sent something that breaks the protocol (tampered or truncated frames).
    Protocol,
    /// Nothing was heard from the peer for the idle timeout.
    Idle,
    /// The peer closed the connection.
    Closed,
    /// Another I/O error.
    Io,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Tls => "tls",
            FailureReason::Protocol => "protocol",
            FailureReason::Idle => "idle",
            FailureReason::Closed => "closed",
            FailureReason::Io => "io",
        })
    }
}

/// Failures counted by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCounts {
    /// See [`FailureReason::Timeout`].
    pub timeout: u64,
    /// See [`FailureReason::Unreachable`].
    pub unreachable: u64,
    /// See [`FailureReason::Tls`].
    pub tls: u64,
    /// See [`FailureReason::Protocol`].
    pub protocol: u64,
    /// See [`FailureReason::Idle`].
    pub idle: u64,
    /// See [`FailureReason::Closed`].
    pub closed: u64,
    /// See [`FailureReason::Io`].
    pub io: u64,
}

impl FailureCounts {
    fn bump(&mut self, reason: FailureReason) {
        let slot = match reason {
            FailureReason::Timeout => &mut self.timeout,
            FailureReason::Unreachable => &mut self.unreachable,
            FailureReason::Tls => &mut self.tls,
            FailureReason::Protocol => &mut self.protocol,
            FailureReason::Idle => &mut self.idle,
            FailureReason::Closed => &mut self.closed,
            FailureReason::Io => &mut self.io,
        };
        *slot = slot.saturating_add(1);
    }

    /// The count for one reason.
    pub fn get(&self, reason: FailureReason) -> u64 {
        match reason {
            FailureReason::Timeout => self.timeout,
            FailureReason::Unreachable => self.unreachable,
            FailureReason::Tls => self.tls,
            FailureReason::Protocol => self.protocol,
            FailureReason::Idle => self.idle,
            FailureReason::Closed => self.closed,
            FailureReason::Io => self.io,
        }
    }
}

/// What the state machine counted. The stream and byte counters are filled in by the IO
/// layer (see [`crate::TunnelClient::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Dials started over QUIC (including probes).
    pub quic_attempts: u64,
    /// Dials started over TCP.
    pub tcp_attempts: u64,
    /// Connections established (first connects, reconnects and transport switches).
    pub connects: u64,
    /// Connections established after an earlier one was lost.
    pub reconnects: u64,
    /// Times a failed QUIC dial was followed at once by a TCP dial.
    pub fallbacks: u64,
    /// Times a QUIC probe replaced a TCP connection.
    pub switches_to_quic: u64,
    /// Failed dials and lost connections, by reason. Failed probes are not counted here.
    pub failures: FailureCounts,
    /// QUIC probes that failed while connected over TCP.
    pub probe_failures: u64,
    /// Streams this side opened.
    pub streams_opened: u64,
    /// Streams the peer opened.
    pub streams_accepted: u64,
    /// Payload bytes written to streams.
    pub bytes_sent: u64,
    /// Payload bytes read from streams.
    pub bytes_received: u64,
}

/// Where the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started.
    Idle,
    /// A dial is under way.
    Connecting {
        /// Over which transport.
        transport: Transport,
        /// The dial's attempt number.
        attempt: u64,
        /// When the dial counts as timed out.
        deadline: Instant,
    },
    /// A connection is up.
    Connected {
        /// Over which transport.
        transport: Transport,
        /// The attempt number of the dial that made it.
        attempt: u64,
        /// Since when.
        since: Instant,
    },
    /// Waiting before the next round.
    Backoff {
        /// When the next round starts.
        until: Instant,
    },
    /// Stopped for good.
    Stopped,
}

/// What the machine asks the IO layer to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Dial the server. Report the result with `on_connected` / `on_connect_failed` and
    /// this attempt number. The machine times the attempt out itself at `deadline`; the IO
    /// layer should give up by then too.
    Dial {
        /// The transport to dial.
        transport: Transport,
        /// The attempt number to report back.
        attempt: u64,
        /// When the machine stops waiting.
        deadline: Instant,
    },
    /// Drop the connection made by this attempt (it was replaced, or the machine stopped).
    Disconnect {
        /// The attempt number of the connection to drop.
        attempt: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    attempt: u64,
    deadline: Instant,
}

/// The agent's connection state machine. See the module documentation.
#[derive(Debug)]
pub struct Machine<R> {
    config: TunnelConfig,
    rng: R,
    state: State,
    backoff: Backoff,
    preferred: Transport,
    /// This round already tried the second transport.
    tried_other: bool,
    next_attempt: u64,
    ever_connected: bool,
    next_probe: Option<Instant>,
    probe: Option<Probe>,
    actions: VecDeque<Action>,
    counters: Counters,
    last_delay: Option<Duration>,
}

impl<R: Rng> Machine<R> {
    /// A machine in [`State::Idle`] that prefers QUIC. `config` should be validated.
    pub fn new(config: TunnelConfig, rng: R) -> Machine<R> {
        let backoff = Backoff::new(
            config.backoff_base,
            config.backoff_factor,
            config.backoff_cap,
            config.jitter,
        );
        Machine {
            config,
            rng,
            state: State::Idle,
            backoff,
            preferred: Transport::Quic,
            tried_other: false,
            next_attempt: 1,
            ever_connected: false,
            next_probe: None,
            probe: None,
            actions: VecDeque::new(),
            counters: Counters::default(),
            last_delay: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The transport the next round starts with.
    pub fn preferred(&self) -> Transport {
        self.preferred
    }

    /// What was counted so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The most recent backoff delay chosen, if any.
    pub fn last_delay(&self) -> Option<Duration> {
        self.last_delay
    }

    /// The next action for the IO layer, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Machine::handle_timeout`] must be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting { deadline, .. } => Some(deadline),
            State::Backoff { until } => Some(until),
            State::Connected {
                transport: Transport::Tcp,
                ..
            } => match self.probe {
                Some(probe) => Some(probe.deadline),
                None => self.next_probe,
            },
            _ => None,
        }
    }

    /// Starts dialing (from [`State::Idle`] only).
    pub fn start(&mut self, now: Instant) {
        if self.state == State::Idle {
            self.begin_round(now);
        }
    }

    /// Stops for good; a live connection and a probe are to be dropped.
    pub fn stop(&mut self) {
        if let State::Connected { attempt, .. } = self.state {
            self.actions.push_back(Action::Disconnect { attempt });
        }
        if let Some(probe) = self.probe.take() {
            self.actions.push_back(Action::Disconnect {
                attempt: probe.attempt,
            });
        }
        self.state = State::Stopped;
    }

    /// Advances time: times out dials and probes, ends backoffs, starts probes.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Connecting { deadline, .. } if now >= deadline => {
                self.fail_attempt(FailureReason::Timeout, now);
            }
            State::Backoff { until } if now >= until => self.begin_round(now),
            State::Connected {
                transport: Transport::Tcp,
                ..
            } => match self.probe {
                Some(probe) if now >= probe.deadline => {
                    self.probe = None;
                    self.counters.probe_failures += 1;
                    self.next_probe = Some(now + self.config.quic_retry_interval);
                }
                None if self.next_probe.is_some_and(|at| now >= at) => {
                    self.next_probe = None;
                    let attempt = self.take_attempt();
                    let deadline = now + self.config.quic_connect_timeout;
                    self.counters.quic_attempts += 1;
                    self.probe = Some(Probe { attempt, deadline });
                    self.actions.push_back(Action::Dial {
                        transport: Transport::Quic,
                        attempt,
                        deadline,
                    });
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// A dial succeeded. Returns false if the attempt was abandoned (timed out, replaced,
    /// stopped): the caller must then drop the connection.
    pub fn on_connected(&mut self, attempt: u64, now: Instant) -> bool {
        if let Some(probe) = self.probe
            && probe.attempt == attempt
        {
            self.probe = None;
            if let State::Connected {
                attempt: old,
                transport: Transport::Tcp,
                ..
            } = self.state
            {
                self.actions.push_back(Action::Disconnect { attempt: old });
            }
            self.counters.switches_to_quic += 1;
            // A switch is not a reconnect: nothing was lost.
            self.ever_connected = false;
            self.connected(Transport::Quic, attempt, now);
            self.ever_connected = true;
            return true;
        }
        match self.state {
            State::Connecting {
                transport,
                attempt: current,
                ..
            } if current == attempt => {
                self.connected(transport, attempt, now);
                true
            }
            _ => false,
        }
    }

    /// A dial failed. Results of abandoned attempts are ignored.
    pub fn on_connect_failed(&mut self, attempt: u64, reason: FailureReason, now: Instant) {
        if let Some(probe) = self.probe
            && probe.attempt == attempt
        {
            self.probe = None;
            self.counters.probe_failures += 1;
            self.next_probe = Some(now + self.config.quic_retry_interval);
            return;
        }
        if let State::Connecting {
            attempt: current, ..
        } = self.state
            && current == attempt
        {
            self.fail_attempt(reason, now);
        }
    }

    /// The connection made by `attempt` ended. Ignored if it is not the current one.
    pub fn on_disconnected(&mut self, attempt: u64, reason: FailureReason, now: Instant) {
        let State::Connected {
            attempt: current,
            since,
            ..
        } = self.state
        else {
            return;
        };
        if current != attempt {
            return;
        }
        self.counters.failures.bump(reason);
        if let Some(probe) = self.probe.take() {
            self.actions.push_back(Action::Disconnect {
                attempt: probe.attempt,
            });
        }
        self.next_probe = None;
        if now.saturating_duration_since(since) >= self.config.stable_after {
            self.backoff.reset();
        }
        self.enter_backoff(now);
    }

    fn connected(&mut self, transport: Transport, attempt: u64, now: Instant) {
        self.counters.connects += 1;
        if self.ever_connected {
            self.counters.reconnects += 1;
        }
        self.ever_connected = true;
        self.preferred = transport;
        self.next_probe = match transport {
            Transport::Tcp => Some(now + self.config.quic_retry_interval),
            Transport::Quic => None,
        };
        self.state = State::Connected {
            transport,
            attempt,
            since: now,
        };
    }

    fn take_attempt(&mut self) -> u64 {
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        attempt
    }

    fn begin_round(&mut self, now: Instant) {
        self.tried_other = false;
        self.dial(self.preferred, now);
    }

    fn dial(&mut self, transport: Transport, now: Instant) {
        let attempt = self.take_attempt();
        let timeout = match transport {
            Transport::Quic => {
                self.counters.quic_attempts += 1;
                self.config.quic_connect_timeout
            }
            Transport::Tcp => {
                self.counters.tcp_attempts += 1;
                self.config.tcp_connect_timeout
            }
        };
        let deadline = now + timeout;
        self.state = State::Connecting {
            transport,
            attempt,
            deadline,
        };
        self.actions.push_back(Action::Dial {
            transport,
            attempt,
            deadline,
        });
    }

    fn fail_attempt(&mut self, reason: FailureReason, now: Instant) {
        let State::Connecting { transport, .. } = self.state else {
            return;
        };
        self.counters.failures.bump(reason);
        if !self.tried_other {
            self.tried_other = true;
            if transport == Transport::Quic {
                self.counters.fallbacks += 1;
            }
            self.dial(transport.other(), now);
        } else {
            self.enter_backoff(now);
        }
    }

    fn enter_backoff(&mut self, now: Instant) {
        let delay = self.backoff.next_delay(&mut self.rng);
        self.last_delay = Some(delay);
        self.state = State::Backoff { until: now + delay };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Jitter;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    fn config(jitter: Jitter) -> TunnelConfig {
        TunnelConfig {
            quic_connect_timeout: 3 * S,
            tcp_connect_timeout: 10 * S,
            backoff_base: 100 * MS,
            backoff_factor: 2.0,
            backoff_cap: 2 * S,
            jitter,
            stable_after: 30 * S,
            quic_retry_interval: 300 * S,
            ..TunnelConfig::default()
        }
    }

    /// A machine on simulated time.
    struct Sim {
        m: Machine<StdRng>,
        now: Instant,
    }

    impl Sim {
        fn new(jitter: Jitter) -> Sim {
            Sim {
                m: Machine::new(config(jitter), StdRng::seed_from_u64(42)),
                now: Instant::now(),
            }
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.m.handle_timeout(self.now);
        }

        /// Jumps to the machine's next timeout.
        fn fire(&mut self) {
            let at = self.m.poll_timeout().expect("a timeout is armed");
            assert!(at >= self.now);
            self.now = at;
            self.m.handle_timeout(self.now);
        }

        fn expect_dial(&mut self, transport: Transport) -> u64 {
            match self.m.poll_action() {
                Some(Action::Dial {
                    transport: t,
                    attempt,
                    ..
                }) if t == transport => attempt,
                other => panic!("expected a {transport} dial, got {other:?}"),
            }
        }

        fn expect_no_action(&mut self) {
            assert_eq!(self.m.poll_action(), None);
        }

        fn backoff_until(&self) -> Instant {
            match self.m.state() {
                State::Backoff { until } => until,
                other => panic!("expected backoff, got {other:?}"),
            }
        }

        /// Both transports fail at once; returns the backoff delay chosen.
        fn fail_round(&mut self) -> Duration {
            let first = self.m.preferred();
            let a = self.expect_dial(first);
            self.m
                .on_connect_failed(a, FailureReason::Unreachable, self.now);
            let b = self.expect_dial(first.other());
            self.m
                .on_connect_failed(b, FailureReason::Unreachable, self.now);
            self.expect_no_action();
            self.backoff_until() - self.now
        }
    }

    #[test]
    fn starts_with_quic_and_connects() {
        let mut sim = Sim::new(Jitter::None);
        assert_eq!(sim.m.state(), State::Idle);
        assert_eq!(sim.m.poll_timeout(), None);
        sim.m.start(sim.now);
        let a = sim.expect_dial(Transport::Quic);
        assert_eq!(sim.m.poll_timeout(), Some(sim.now + 3 * S));
        assert!(sim.m.on_connected(a, sim.now));
        assert!(matches!(
            sim.m.state(),
            State::Connected {
                transport: Transport::Quic,
                ..
            }
        ));
        // Connected over QUIC: nothing to time.
        assert_eq!(sim.m.poll_timeout(), None);
        let c = sim.m.counters();
        assert_eq!((c.connects, c.reconnects, c.quic_attempts), (1, 0, 1));
    }

    #[test]
    fn quic_timeout_falls_back_to_tcp_and_tcp_becomes_sticky() {
        let mut sim = Sim::new(Jitter::None);
        sim.m.start(sim.now);
        let quic = sim.expect_dial(Transport::Quic);
        sim.advance(2999 * MS);
        sim.expect_no_action();
        sim.advance(MS);
        let tcp = sim.expect_dial(Transport::Tcp);
        // The abandoned QUIC dial completes late: refused.
        assert!(!sim.m.on_connected(quic, sim.now));
        assert!(sim.m.on_connected(tcp, sim.now));
        assert_eq!(sim.m.preferred(), Transport::Tcp);
        let c = sim.m.counters();
        assert_eq!(c.fallbacks, 1);
        assert_eq!(c.failures.timeout, 1);

        // The TCP connection drops; the next round starts with TCP, no QUIC timeout paid.
        sim.advance(40 * S);
        sim.m.on_disconnected(tcp, FailureReason::Closed, sim.now);
        sim.fire();
        let again = sim.expect_dial(Transport::Tcp);
        assert!(sim.m.on_connected(again, sim.now));
        assert_eq!(sim.m.counters().reconnects, 1);
    }

    #[test]
    fn probes_quic_while_on_tcp_and_switches_back() {
        let mut sim = Sim::new(Jitter::None);
        sim.m.start(sim.now);
        let quic = sim.expect_dial(Transport::Quic);
        sim.m
            .on_connect_failed(quic, FailureReason::Unreachable, sim.now);
        let tcp = sim.expect_dial(Transport::Tcp);
        assert!(sim.m.on_connected(tcp, sim.now));
        let connected_at = sim.now;
        assert_eq!(sim.m.poll_timeout(), Some(connected_at + 300 * S));

        // First probe fails: TCP stays, the next probe is scheduled.
        sim.fire();
        let probe = sim.expect_dial(Transport::Quic);
        sim.m
            .on_connect_failed(probe, FailureReason::Timeout, sim.now);
        assert!(matches!(
            sim.m.state(),
            State::Connected {
                transport: Transport::Tcp,
                ..
            }
        ));
        assert_eq!(sim.m.counters().probe_failures, 1);
        assert_eq!(sim.m.poll_timeout(), Some(sim.now + 300 * S));

        // Second probe times out on the machine's own clock.
        sim.fire();
        let _probe = sim.expect_dial(Transport::Quic);
        sim.fire();
        assert_eq!(sim.m.counters().probe_failures, 2);
        sim.expect_no_action();

        // Third probe connects: TCP is to be dropped, QUIC is preferred again.
        sim.fire();
        let probe = sim.expect_dial(Transport::Quic);
        assert!(sim.m.on_connected(probe, sim.now));
        assert_eq!(
            sim.m.poll_action(),
            Some(Action::Disconnect { attempt: tcp })
        );
        assert_eq!(sim.m.preferred(), Transport::Quic);
        assert_eq!(sim.m.counters().switches_to_quic, 1);
        assert_eq!(
            (sim.m.counters().connects, sim.m.counters().reconnects),
            (2, 0)
        );
        // The dropped TCP connection reporting its end changes nothing.
        sim.m.on_disconnected(tcp, FailureReason::Closed, sim.now);
        assert!(matches!(
            sim.m.state(),
            State::Connected {
                transport: Transport::Quic,
                attempt,
                ..
            } if attempt == probe
        ));
        assert_eq!(sim.m.poll_timeout(), None);
    }

    #[test]
    fn backoff_grows_to_the_cap() {
        let mut sim = Sim::new(Jitter::None);
        sim.m.start(sim.now);
        let mut delays = Vec::new();
        for _ in 0..7 {
            delays.push(sim.fail_round());
            sim.fire();
        }
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 2000, 2000].map(|n| n * MS)
        );
        let c = sim.m.counters();
        assert_eq!(c.failures.unreachable, 14);
        assert_eq!((c.quic_attempts, c.tcp_attempts), (8, 7));
    }

    #[test]
    fn full_jitter_stays_within_bounds() {
        let mut sim = Sim::new(Jitter::Full);
        sim.m.start(sim.now);
        let mut ceiling = 100 * MS;
        let mut total = Duration::ZERO;
        for _ in 0..200 {
            let delay = sim.fail_round();
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            total += delay;
            ceiling = (ceiling * 2).min(2 * S);
            sim.fire();
        }
        // Mostly at the 2 s cap: the mean of full jitter is half of it.
        let mean = total / 200;
        assert!(mean > 700 * MS && mean < 1300 * MS, "mean {mean:?}");
    }

    #[test]
    fn stable_connection_resets_backoff_and_flapping_does_not() {
        let mut sim = Sim::new(Jitter::None);
        sim.m.start(sim.now);
        for _ in 0..4 {
            sim.fail_round();
            sim.fire();
        }
        // Connects, then drops after a second: the backoff keeps growing.
        let a = sim.expect_dial(Transport::Quic);
        assert!(sim.m.on_connected(a, sim.now));
        sim.advance(S);
        sim.m.on_disconnected(a, FailureReason::Closed, sim.now);
        assert_eq!(sim.backoff_until() - sim.now, 1600 * MS);
        sim.fire();
        // Connects and holds for 30 s: the next delay is the base again.
        let b = sim.expect_dial(Transport::Quic);
        assert!(sim.m.on_connected(b, sim.now));
        sim.advance(30 * S);
        sim.m.on_disconnected(b, FailureReason::Idle, sim.now);
        assert_eq!(sim.backoff_until() - sim.now, 100 * MS);
        let c = sim.m.counters();
        assert_eq!((c.connects, c.reconnects), (2, 1));
        assert_eq!((c.failures.closed, c.failures.idle), (1, 1));
    }

    #[test]
    fn tcp_timeout_after_quic_failure_backs_off() {
        let mut sim = Sim::new(Jitter::None);
        sim.m.start(sim.now);
        sim.expect_dial(Transport::Quic);
        sim.advance(3 * S);
        let _tcp = sim.expect_dial(Transport::Tcp);
        sim.advance(10 * S);
        assert_eq!(sim.backoff_until(), sim.now + 100 * MS);
        assert_eq!(sim.m.counters().failures.timeout, 2);
        sim.fire();
        // QUIC is still preferred: nothing ever connected.
        sim.expect_dial(Transport::Quic);
    }

    #[test]
    fn stale_results_are_ignored_and_stop_drops_the_connection() {
        let mut sim = Sim::new(Jitter::None);
        sim.m.start(sim.now);
        let a = sim.expect_dial(Transport::Quic);
        sim.m
            .on_connect_failed(a + 100, FailureReason::Tls, sim.now);
        sim.m.on_disconnected(a, FailureReason::Closed, sim.now);
        assert!(matches!(sim.m.state(), State::Connecting { attempt, .. } if attempt == a));
        assert!(sim.m.on_connected(a, sim.now));
        assert!(!sim.m.on_connected(a, sim.now));
        sim.m.stop();
        assert_eq!(sim.m.poll_action(), Some(Action::Disconnect { attempt: a }));
        assert_eq!(sim.m.state(), State::Stopped);
        assert_eq!(sim.m.poll_timeout(), None);
        sim.m.start(sim.now);
        assert_eq!(sim.m.state(), State::Stopped);
    }
}
