//! Just enough rtnetlink for three requests, each one message and its ack: set a link up,
//! add a veth pair, add an address.
//!
//! A fresh network namespace has only `lo`, down, at ifindex 1: bringing it up is one
//! message. The stand-in namespace that DEL may need (see network.rs) holds an interface
//! with the pod's addresses. So few messages are encoded here by hand rather than pulling
//! in a netlink stack.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use crate::cidr::IpPrefix;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

/// The ifindex of `lo` in every network namespace.
pub(crate) const LOOPBACK_IFINDEX: i32 = 1;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 0x1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x2;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NLMSG_HDRLEN: usize = 16;

/// A netlink request under construction: header, fixed struct, attributes.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Request { buf }
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// An rtattr: length, type, payload, padded to 4 bytes.
    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = (4 + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    /// A nested attribute holding what `inner` adds.
    fn nested(&mut self, kind: u16, inner: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        inner(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        std::mem::take(&mut self.buf)
    }
}

/// ifinfomsg: family AF_UNSPEC, type 0, `index`, and IFF_UP set in flags and change.
fn ifinfomsg_up(index: i32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&IFF_UP.to_ne_bytes());
    m[12..16].copy_from_slice(&IFF_UP.to_ne_bytes());
    m
}

/// RTM_NEWLINK setting link `ifindex` up.
pub(crate) fn link_up_request(ifindex: i32, seq: u32) -> Vec<u8> {
    Request::new(RTM_NEWLINK, 0, seq)
        .bytes(&ifinfomsg_up(ifindex))
        .finish()
}

fn c_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// RTM_NEWLINK creating an up veth pair `name` / `peer` in the same namespace. (A veth,
/// not a dummy: kernels without the dummy driver exist, and the bridge plugin needs veth.)
pub(crate) fn add_veth_request(name: &str, peer: &str, seq: u32) -> Vec<u8> {
    Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq)
        .bytes(&ifinfomsg_up(0))
        .attr(IFLA_IFNAME, &c_string(name))
        .nested(IFLA_LINKINFO, |r| {
            r.attr(IFLA_INFO_KIND, b"veth");
            r.nested(IFLA_INFO_DATA, |r| {
                r.nested(VETH_INFO_PEER, |r| {
                    r.bytes(&[0u8; 16]);
                    r.attr(IFLA_IFNAME, &c_string(peer));
                });
            });
        })
        .finish()
}

/// RTM_NEWADDR putting `addr` on link `ifindex`.
pub(crate) fn add_address_request(ifindex: u32, addr: IpPrefix, seq: u32) -> Vec<u8> {
    let (family, flags, bytes) = match addr.addr() {
        IpAddr::V4(a) => (AF_INET, 0, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, IFA_F_NODAD, a.octets().to_vec()),
    };
    // ifaddrmsg: family, prefixlen, flags, scope (universe), index
    let mut msg = [0u8; 8];
    msg[0] = family;
    msg[1] = addr.prefix_len();
    msg[2] = flags;
    msg[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq)
        .bytes(&msg)
        .attr(IFA_LOCAL, &bytes)
        .attr(IFA_ADDRESS, &bytes)
        .finish()
}

/// Reads the kernel's answer to request `seq`: `Ok` for an ack (error 0), the errno
/// otherwise. Messages for other sequence numbers are skipped.
pub(crate) fn parse_ack(mut buf: &[u8], seq: u32) -> Option<Result<(), Errno>> {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        let msg_seq = u32::from_ne_bytes(buf[8..12].try_into().ok()?);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        if kind == NLMSG_ERROR && msg_seq == seq && len >= NLMSG_HDRLEN + 4 {
            let code = i32::from_ne_bytes(buf[16..20].try_into().ok()?);
            return Some(if code == 0 {
                Ok(())
            } else {
                Err(Errno::from_raw(-code))
            });
        }
        // messages are 4-byte aligned
        let next = (len + 3) & !3;
        buf = buf.get(next..)?;
    }
    None
}

/// Sends one request (with sequence number `seq`) in the calling thread's network
/// namespace and waits for its ack.
fn transact(request: &[u8], seq: u32) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    sendto(
        fd.as_raw_fd(),
        request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = [0u8; 4096];
    // The ack comes right back; a few reads guard against unrelated messages.
    for _ in 0..8 {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if let Some(answer) = parse_ack(&buf[..n], seq) {
            return answer;
        }
    }
    Err(Errno::EPROTO)
}

/// Sets link `ifindex` up in the calling thread's network namespace.
pub(crate) fn set_link_up(ifindex: i32) -> Result<(), Errno> {
    transact(&link_up_request(ifindex, 1), 1)
}

/// Creates an interface `name` (one end of a veth pair whose other end is `peer`)
/// carrying `addrs`, in the calling thread's namespace.
pub(crate) fn add_interface_with_addresses(
    name: &str,
    peer: &str,
    addrs: &[IpPrefix],
) -> Result<(), Errno> {
    transact(&add_veth_request(name, peer, 1), 1)?;
    let index = nix::net::if_::if_nametoindex(name)?;
    for (i, addr) in addrs.iter().enumerate() {
        let seq = 2 + i as u32;
        transact(&add_address_request(index, *addr, seq), seq)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let msg = link_up_request(1, 7);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 32);
        assert_eq!(
            u16::from_ne_bytes(msg[4..6].try_into().unwrap()),
            RTM_NEWLINK
        );
        assert_eq!(u16::from_ne_bytes(msg[6..8].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(msg[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(msg[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(msg[24..28].try_into().unwrap()), IFF_UP);
        assert_eq!(u32::from_ne_bytes(msg[28..32].try_into().unwrap()), IFF_UP);
    }

    #[test]
    fn veth_and_address_layout() {
        let msg = add_veth_request("eth0", "peer0", 9);
        assert_eq!(msg.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize,
            msg.len()
        );
        assert_eq!(u16::from_ne_bytes(msg[6..8].try_into().unwrap()), 0x605);
        // IFLA_IFNAME "eth0\0" right after the ifinfomsg
        assert_eq!(&msg[32..34], &9u16.to_ne_bytes());
        assert_eq!(&msg[34..36], &IFLA_IFNAME.to_ne_bytes());
        assert_eq!(&msg[36..41], b"eth0\0");
        // linkinfo { kind "veth", data { peer { ifinfomsg, ifname "peer0\0" } } }
        let peer = 4 + 16 + 12;
        let data = 4 + peer;
        let linkinfo = 4 + 8 + data;
        assert_eq!(&msg[44..46], &(linkinfo as u16).to_ne_bytes());
        assert_eq!(&msg[46..48], &IFLA_LINKINFO.to_ne_bytes());
        assert_eq!(&msg[48..50], &8u16.to_ne_bytes());
        assert_eq!(&msg[52..56], b"veth");
        assert_eq!(&msg[56..58], &(data as u16).to_ne_bytes());
        assert_eq!(&msg[58..60], &IFLA_INFO_DATA.to_ne_bytes());
        assert_eq!(&msg[60..62], &(peer as u16).to_ne_bytes());
        assert_eq!(&msg[62..64], &VETH_INFO_PEER.to_ne_bytes());
        assert_eq!(&msg[84..90], b"peer0\0");
        assert_eq!(msg.len(), 44 + linkinfo);

        let v4 = add_address_request(3, "10.0.0.7/24".parse().unwrap(), 4);
        assert_eq!(v4.len(), 16 + 8 + 8 + 8);
        assert_eq!(&v4[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(&v4[20..24], &3u32.to_ne_bytes());
        assert_eq!(&v4[28..32], &[10, 0, 0, 7]);
        let v6 = add_address_request(3, "fd00::7/64".parse().unwrap(), 4);
        assert_eq!(v6.len(), 16 + 8 + 20 + 20);
        assert_eq!(&v6[16..20], &[AF_INET6, 64, IFA_F_NODAD, 0]);
    }

    fn error_message(seq: u32, code: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&code.to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m
    }

    #[test]
    fn ack_and_errors() {
        assert_eq!(parse_ack(&error_message(3, 0), 3), Some(Ok(())));
        assert_eq!(
            parse_ack(&error_message(3, -(Errno::EPERM as i32)), 3),
            Some(Err(Errno::EPERM))
        );
        // another request's answer is skipped, then ours is found
        let mut two = error_message(2, -1);
        two.extend(error_message(3, 0));
        assert_eq!(parse_ack(&two, 3), Some(Ok(())));
        // truncated or garbage input gives no answer, never a panic
        assert_eq!(parse_ack(&[1, 2, 3], 3), None);
        assert_eq!(parse_ack(&[0xff; 40], 3), None);
        assert_eq!(parse_ack(&[0; 40], 3), None);
    }
}
