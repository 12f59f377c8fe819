//! A fixed registration address in front of several servers, as K3s advises for HA (a
//! load balancer or DNS name the agents use): it relays TCP connections and UDP datagrams
//! (so QUIC too) on one loopback port to whichever server it currently points at.
//! Pointing it elsewhere ([`Relay::point_to`]) drops what it relayed before, as a load
//! balancer that takes a dead server out does.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The relay; it stops when dropped.
pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    target: Mutex<SocketAddr>,
    /// Bumped by every `point_to`: relays of an older generation stop.
    generation: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn current(&self) -> (SocketAddr, u64) {
        let target = *self.target.lock().unwrap();
        (target, self.generation.load(Ordering::SeqCst))
    }

    fn live(&self, generation: u64) -> bool {
        !self.stop.load(Ordering::SeqCst) && self.generation.load(Ordering::SeqCst) == generation
    }
}

impl Relay {
    /// Listens on a free loopback port (TCP and UDP both) and relays to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let (tcp, udp) = loop {
            let tcp = TcpListener::bind("127.0.0.1:0").expect("bind the relay's tcp port");
            let port = tcp.local_addr().unwrap().port();
            if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
                break (tcp, udp);
            }
        };
        let port = tcp.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        tcp.set_nonblocking(true).unwrap();
        let s = shared.clone();
        thread::spawn(move || accept_loop(tcp, s));
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let s = shared.clone();
        thread::spawn(move || udp_loop(udp, s));
        Relay { port, shared }
    }

    /// The loopback port agents dial.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on, relay to `target`; what was relayed before is cut.
    pub fn point_to(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap() = target;
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let (target, generation) = shared.current();
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let shared = shared.clone();
                    thread::spawn(move || pipe(from, to, shared, generation));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Copies one direction until it ends or the relay points elsewhere.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>, generation: u64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    while shared.live(generation) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// One upstream socket per client address, each answered by its own thread.
fn udp_loop(front: UdpSocket, shared: Arc<Shared>) {
    let mut flows: HashMap<SocketAddr, (u64, UdpSocket)> = HashMap::new();
    let mut buf = [0u8; 65_536];
    while !shared.stop.load(Ordering::SeqCst) {
        let (n, client) = match front.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) => continue,
        };
        let (target, generation) = shared.current();
        let stale = flows.get(&client).is_none_or(|(g, _)| *g != generation);
        if stale {
            let Ok(upstream) = UdpSocket::bind("127.0.0.1:0") else {
                continue;
            };
            if upstream.connect(target).is_err() {
                continue;
            }
            let _ = upstream.set_read_timeout(Some(Duration::from_millis(100)));
            let back = upstream.try_clone().unwrap();
            let front = front.try_clone().unwrap();
            let s = shared.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 65_536];
                while s.live(generation) {
                    match back.recv(&mut buf) {
                        Ok(n) => {
                            let _ = front.send_to(&buf[..n], client);
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        // An ICMP error from a server that is gone comes back at once.
                        Err(_) => thread::sleep(Duration::from_millis(50)),
                    }
                }
            });
            flows.insert(client, (generation, upstream));
        }
        if let Some((_, upstream)) = flows.get(&client) {
            let _ = upstream.send(&buf[..n]);
        }
    }
}
