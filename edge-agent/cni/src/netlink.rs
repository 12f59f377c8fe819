//! Just enough rtnetlink to bring a link up: one RTM_NEWLINK request and its ack.
//!
//! A fresh network namespace has only `lo`, down, at ifindex 1. Bringing it up is one
//! netlink message, so it is encoded here by hand rather than pulling in a netlink stack.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

/// The ifindex of `lo` in every network namespace.
pub(crate) const LOOPBACK_IFINDEX: i32 = 1;

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const IFF_UP: u32 = 0x1;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// The request: nlmsghdr + ifinfomsg asking for IFF_UP on `ifindex` (native byte order,
/// as netlink wants).
pub(crate) fn link_up_request(ifindex: i32, seq: u32) -> [u8; NLMSG_HDRLEN + IFINFOMSG_LEN] {
    let mut msg = [0u8; NLMSG_HDRLEN + IFINFOMSG_LEN];
    let len = (NLMSG_HDRLEN + IFINFOMSG_LEN) as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port id.
    // ifinfomsg: family AF_UNSPEC, pad, type 0, then index, flags, change.
    msg[20..24].copy_from_slice(&ifindex.to_ne_bytes());
    msg[24..28].copy_from_slice(&IFF_UP.to_ne_bytes());
    msg[28..32].copy_from_slice(&IFF_UP.to_ne_bytes());
    msg
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

/// Sets link `ifindex` up in the calling thread's network namespace.
pub(crate) fn set_link_up(ifindex: i32) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let seq = 1;
    let request = link_up_request(ifindex, seq);
    sendto(
        fd.as_raw_fd(),
        &request,
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
