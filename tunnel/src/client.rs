//! The agent end: a task that runs the sans-IO [`Machine`] against real sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{ALPN, TunnelConfig};
use crate::connection::TunnelConnection;
use crate::error::{TlsError, TunnelError};
use crate::machine::{Action, Counters, FailureReason, Machine, State, Transport};
use crate::mux::{MuxConfig, MuxConnection, Role};
use crate::server::{quic_peer_certs, transport_config};
use crate::stream::{IoCounters, RecvStream, SendStream};
use crate::tls::ClientTls;

/// Streams the server opened and the agent has not accepted yet.
const INCOMING_BACKLOG: usize = 64;

/// Where and how a [`TunnelClient`] dials.
#[derive(Debug)]
pub struct ClientOptions {
    /// The server's QUIC (UDP) address.
    pub quic_addr: SocketAddr,
    /// The server's TCP fallback address; usually the same as `quic_addr`.
    pub tcp_addr: SocketAddr,
    /// Timers, backoff and limits.
    pub config: TunnelConfig,
    /// Certificates.
    pub tls: ClientTls,
}

/// The agent's tunnel: keeps one connection to the server up, over QUIC or TCP, and
/// reconnects with backoff. Dropping it shuts the tunnel down.
#[derive(Debug)]
pub struct TunnelClient {
    state: watch::Receiver<State>,
    conn: watch::Receiver<Option<TunnelConnection>>,
    counters: Arc<Mutex<Counters>>,
    io: Arc<IoCounters>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<(SendStream, RecvStream)>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TunnelClient {
    /// Validates the options and starts dialing in a background task (on the current tokio
    /// runtime).
    pub fn start(options: ClientOptions) -> Result<TunnelClient, TunnelError> {
        options.config.validate()?;
        let tls = options.tls.rustls_config()?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.as_ref().clone())
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
        quic.transport_config(Arc::new(transport_config(&options.config)?));
        let io = Arc::new(IoCounters::default());
        let dialer = Dialer {
            quic_addr: options.quic_addr,
            tcp_addr: options.tcp_addr,
            quic,
            tls: tokio_rustls::TlsConnector::from(tls),
            server_name: options.tls.server_name()?,
            server_name_text: options.tls.server_name.clone(),
            mux: MuxConfig::from(&options.config),
            io: io.clone(),
        };
        let machine = Machine::new(options.config, StdRng::from_os_rng());
        let (state_tx, state) = watch::channel(State::Idle);
        let (conn_tx, conn) = watch::channel(None);
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_BACKLOG);
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Mutex::new(Counters::default()));
        let (events_tx, events) = mpsc::unbounded_channel();
        let driver = Driver {
            machine,
            dialer: Arc::new(dialer),
            state_tx,
            conn_tx,
            counters: counters.clone(),
            incoming_tx,
            live: HashMap::new(),
            dials: HashMap::new(),
            events_tx,
            published: None,
        };
        let span = info_span!("tunnel", peer = %options.quic_addr);
        let task = tokio::spawn(driver.run(events, stop_rx).instrument(span));
        Ok(TunnelClient {
            state,
            conn,
            counters,
            io,
            incoming: tokio::sync::Mutex::new(incoming),
            stop,
            task,
        })
    }

    /// The connection state, as a watch.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// What was counted so far: the state machine's counters plus streams and bytes.
    pub fn counters(&self) -> Counters {
        let mut counters = *self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.streams_opened = IoCounters::get(&self.io.streams_opened);
        counters.streams_accepted = IoCounters::get(&self.io.streams_accepted);
        counters.bytes_sent = IoCounters::get(&self.io.bytes_sent);
        counters.bytes_received = IoCounters::get(&self.io.bytes_received);
        counters
    }

    /// The current connection, if one is up.
    pub fn connection(&self) -> Option<TunnelConnection> {
        self.conn.borrow().clone()
    }

    /// Waits until a connection is up and returns it.
    pub async fn connected(&self) -> Result<TunnelConnection, TunnelError> {
        let mut rx = self.conn.clone();
        let conn = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| TunnelError::Shutdown)?;
        conn.clone().ok_or(TunnelError::Shutdown)
    }

    /// Opens a stream to the server, waiting for a connection if none is up.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), TunnelError> {
        self.connected().await?.open_bi().await
    }

    /// The next stream the server opened, on whichever connection.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), TunnelError> {
        self.incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or(TunnelError::Shutdown)
    }

    /// Closes the connection and stops reconnecting. Also done on drop.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for TunnelClient {
    fn drop(&mut self) {
        self.shutdown();
        // The driver closes its connection when it sees the stop; abort only if it lingers.
        let task = self.task.abort_handle();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    task.abort();
                });
            }
            // Outside a runtime the driver cannot run any more anyway.
            Err(_) => task.abort(),
        }
    }
}

struct Dialer {
    quic_addr: SocketAddr,
    tcp_addr: SocketAddr,
    quic: quinn::ClientConfig,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    server_name_text: String,
    mux: MuxConfig,
    io: Arc<IoCounters>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("quic_addr", &self.quic_addr)
            .field("tcp_addr", &self.tcp_addr)
            .field("server_name", &self.server_name_text)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    async fn dial(&self, transport: Transport) -> Result<TunnelConnection, TunnelError> {
        match transport {
            Transport::Quic => self.dial_quic().await,
            Transport::Tcp => self.dial_tcp().await,
        }
    }

    async fn dial_quic(&self) -> Result<TunnelConnection, TunnelError> {
        let addr = self.quic_addr;
        let bind: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(bind).map_err(|source| TunnelError::Bind {
            transport: Transport::Quic,
            addr: bind,
            source,
        })?;
        let connecting = endpoint
            .connect_with(self.quic.clone(), addr, &self.server_name_text)
            .map_err(|source| TunnelError::QuicConnect { addr, source })?;
        let conn = connecting.await?;
        let certs = quic_peer_certs(&conn).ok_or(TunnelError::NoPeerCertificate)?;
        Ok(TunnelConnection::quic(
            conn,
            Some(endpoint),
            certs,
            self.io.clone(),
        ))
    }

    async fn dial_tcp(&self) -> Result<TunnelConnection, TunnelError> {
        let addr = self.tcp_addr;
        let connect_err = |source| TunnelError::Connect {
            transport: Transport::Tcp,
            addr,
            source,
        };
        let tcp = TcpStream::connect(addr).await.map_err(connect_err)?;
        tcp.set_nodelay(true).map_err(connect_err)?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(connect_err)?;
        let (_, session) = tls.get_ref();
        if session.alpn_protocol() != Some(ALPN) {
            return Err(TunnelError::Alpn {
                expected: "kedge-tunnel/1",
            });
        }
        let certs = session
            .peer_certificates()
            .map(<[_]>::to_vec)
            .filter(|c| !c.is_empty())
            .ok_or(TunnelError::NoPeerCertificate)?;
        let (mux, driver) = MuxConnection::new(tls, Role::Client, self.mux);
        tokio::spawn(driver.in_current_span());
        Ok(TunnelConnection::mux(mux, addr, certs, self.io.clone()))
    }
}

enum Event {
    Dialed {
        attempt: u64,
        transport: Transport,
        result: Result<TunnelConnection, TunnelError>,
    },
    Closed {
        attempt: u64,
        reason: FailureReason,
        error: String,
    },
}

struct Live {
    conn: TunnelConnection,
    watcher: JoinHandle<()>,
}

struct Driver {
    machine: Machine<StdRng>,
    dialer: Arc<Dialer>,
    state_tx: watch::Sender<State>,
    conn_tx: watch::Sender<Option<TunnelConnection>>,
    counters: Arc<Mutex<Counters>>,
    incoming_tx: mpsc::Sender<(SendStream, RecvStream)>,
    live: HashMap<u64, Live>,
    dials: HashMap<u64, JoinHandle<()>>,
    events_tx: mpsc::UnboundedSender<Event>,
    published: Option<u64>,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut stop: watch::Receiver<bool>,
    ) {
        self.machine.start(now());
        loop {
            self.apply_actions();
            self.publish();
            let timeout = self.machine.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(event) = events.recv() => self.handle_event(event),
                _ = sleep => self.machine.handle_timeout(now()),
            }
        }
        self.machine.stop();
        self.apply_actions();
        for (_, dial) in self.dials.drain() {
            dial.abort();
        }
        for (_, live) in self.live.drain() {
            live.conn.close();
            live.watcher.abort();
        }
        self.publish();
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Dialed {
                attempt,
                transport,
                result,
            } => {
                self.dials.remove(&attempt);
                match result {
                    Ok(conn) => {
                        if self.machine.on_connected(attempt, now()) {
                            info!(%transport, attempt, "tunnel connected");
                            self.watch(attempt, conn);
                        } else {
                            debug!(%transport, attempt, "late connection dropped");
                            conn.close();
                        }
                    }
                    Err(err) => {
                        warn!(%transport, attempt, error = %err, "tunnel dial failed");
                        self.machine.on_connect_failed(attempt, err.reason(), now());
                    }
                }
            }
            Event::Closed {
                attempt,
                reason,
                error,
            } => {
                if let Some(live) = self.live.remove(&attempt) {
                    live.watcher.abort();
                    warn!(attempt, %reason, %error, "tunnel connection lost");
                }
                self.machine.on_disconnected(attempt, reason, now());
            }
        }
    }

    /// Watches a new connection: forwards the server's streams, reports its end.
    fn watch(&mut self, attempt: u64, conn: TunnelConnection) {
        let watched = conn.clone();
        let incoming_tx = self.incoming_tx.clone();
        let events_tx = self.events_tx.clone();
        let watcher = tokio::spawn(
            async move {
                let err = loop {
                    match watched.accept_bi().await {
                        Ok(pair) => {
                            // A full backlog (the agent is not accepting) must not hide
                            // the connection's end.
                            tokio::select! {
                                sent = incoming_tx.send(pair) => {
                                    if sent.is_err() {
                                        // Nobody takes streams any more; wait for the end.
                                        break watched.closed().await;
                                    }
                                }
                                err = watched.closed() => break err,
                            }
                        }
                        Err(err) => break watched.close_reason().unwrap_or(err),
                    }
                };
                let _ = events_tx.send(Event::Closed {
                    attempt,
                    reason: err.reason(),
                    error: err.to_string(),
                });
            }
            .in_current_span(),
        );
        self.live.insert(attempt, Live { conn, watcher });
    }

    fn apply_actions(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Dial {
                    transport,
                    attempt,
                    deadline,
                } => {
                    debug!(%transport, attempt, "dialing");
                    let dialer = self.dialer.clone();
                    let events_tx = self.events_tx.clone();
                    let deadline = tokio::time::Instant::from_std(deadline);
                    let task = tokio::spawn(
                        async move {
                            let result =
                                match tokio::time::timeout_at(deadline, dialer.dial(transport))
                                    .await
                                {
                                    Ok(result) => result,
                                    Err(_) => Err(TunnelError::Timeout {
                                        transport,
                                        addr: match transport {
                                            Transport::Quic => dialer.quic_addr,
                                            Transport::Tcp => dialer.tcp_addr,
                                        },
                                    }),
                                };
                            let _ = events_tx.send(Event::Dialed {
                                attempt,
                                transport,
                                result,
                            });
                        }
                        .in_current_span(),
                    );
                    self.dials.insert(attempt, task);
                }
                Action::Disconnect { attempt } => {
                    if let Some(dial) = self.dials.remove(&attempt) {
                        dial.abort();
                    }
                    if let Some(live) = self.live.remove(&attempt) {
                        debug!(attempt, "closing replaced connection");
                        live.conn.close();
                        live.watcher.abort();
                    }
                }
            }
        }
    }

    fn publish(&mut self) {
        let state = self.machine.state();
        *self.counters.lock().unwrap_or_else(|e| e.into_inner()) = self.machine.counters();
        let current = match state {
            State::Connected { attempt, .. } if self.live.contains_key(&attempt) => Some(attempt),
            _ => None,
        };
        if current != self.published {
            self.published = current;
            let conn = current
                .and_then(|a| self.live.get(&a))
                .map(|l| l.conn.clone());
            self.conn_tx.send_replace(conn);
        }
        // The state goes out last: whoever sees `Connected` finds the connection published.
        self.state_tx.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }
}
