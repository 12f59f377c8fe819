//! An IP address with a prefix length: a pod CIDR, or an address on an interface.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// `10.42.3.0/24`, `10.42.3.7/24` or `fd00::1/64`. Parsing keeps the host bits;
/// [`IpPrefix::is_network`] tells whether there are any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// An address and prefix length; `None` if the length is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        (len <= max_len(addr)).then_some(IpPrefix { addr, len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The network: the address with its host bits cleared.
    pub fn network(&self) -> IpPrefix {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        IpPrefix {
            addr,
            len: self.len,
        }
    }

    /// Whether this is a network address (no host bits set).
    pub fn is_network(&self) -> bool {
        self.network().addr == self.addr
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        IpPrefix::new(ip, self.len).is_some_and(|p| p.network().addr == self.network().addr)
    }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// Why a string is not an IP prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address with a prefix length, such as 10.42.3.0/24")]
pub struct ParsePrefixError(String);

impl FromStr for IpPrefix {
    type Err = ParsePrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePrefixError(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
            return Err(err());
        }
        let len: u8 = len.parse().map_err(|_| err())?;
        IpPrefix::new(addr, len).ok_or_else(err)
    }
}

impl TryFrom<String> for IpPrefix {
    type Error = ParsePrefixError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IpPrefix> for String {
    fn from(p: IpPrefix) -> String {
        p.to_string()
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_network() {
        let p: IpPrefix = "10.42.3.0/24".parse().unwrap();
        assert!(p.is_network());
        assert_eq!(p.to_string(), "10.42.3.0/24");
        let h: IpPrefix = "10.42.3.7/24".parse().unwrap();
        assert!(!h.is_network());
        assert_eq!(h.network(), p);
        assert!(p.contains("10.42.3.255".parse().unwrap()));
        assert!(!p.contains("10.42.4.1".parse().unwrap()));
        assert!(!p.contains("fd00::1".parse().unwrap()));
        let zero: IpPrefix = "0.0.0.0/0".parse().unwrap();
        assert!(zero.is_network() && zero.contains("1.2.3.4".parse().unwrap()));
        let v6: IpPrefix = "fd00:10:42::/64".parse().unwrap();
        assert!(v6.is_network());
        assert!(v6.contains("fd00:10:42::9".parse().unwrap()));
        let full: IpPrefix = "10.1.2.3/32".parse().unwrap();
        assert!(full.is_network());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/24",
            "x/24",
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "10.0.0.0/24/1",
        ] {
            assert!(bad.parse::<IpPrefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_as_string() {
        let p: IpPrefix = serde_json::from_str("\"10.0.0.5/16\"").unwrap();
        assert_eq!(p.prefix_len(), 16);
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"10.0.0.5/16\"");
        assert!(serde_json::from_str::<IpPrefix>("\"10.0.0.5\"").is_err());
    }
}
