//! IPv4 subnets (`172.18.0.0/16`): parsing, overlap, and the n-th host address.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::values::Bad;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network: its base address (host bits zero) and prefix length (8–30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// The subnet of `addr/prefix` (host bits are cleared); `None` for a prefix past 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        (prefix <= 32).then(|| Subnet {
            base: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn base(&self) -> Ipv4Addr {
        self.base.into()
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        (self.base | !mask(self.prefix)).into()
    }

    /// How many addresses it spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        self.base & mask(p) == other.base & mask(p)
    }

    /// The `n`-th address (1 is the first host), if it is a host address of the subnet.
    pub fn host(&self, n: u64) -> Option<Ipv4Addr> {
        (n >= 1 && n + 1 < self.size()).then(|| Ipv4Addr::from(self.base + n as u32))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base(), self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Bad;

    /// `A.B.C.D/N` with N from 8 to 30 and no host bits set (as Docker requires).
    fn from_str(s: &str) -> Result<Subnet, Bad> {
        let bad = || {
            Bad::new(
                format!("--subnet {s}: write an IPv4 CIDR such as 172.30.0.0/16"),
                None,
            )
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(Bad::new(
                format!("--subnet {s}: the prefix must be 8 to 30 bits"),
                None,
            ));
        }
        let net = Subnet::new(addr, prefix).ok_or_else(bad)?;
        if net.base() != addr {
            return Err(Bad::new(
                format!("--subnet {s}: host bits are set"),
                Some(&format!("did you mean {net}?")),
            ));
        }
        Ok(net)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s: Subnet = "172.18.0.0/16".parse().unwrap();
        assert_eq!(s.host(1), Some(Ipv4Addr::new(172, 18, 0, 1)));
        assert_eq!(s.host(65_535), None, "the broadcast address is no host");
        assert_eq!(s.broadcast(), Ipv4Addr::new(172, 18, 255, 255));
        assert!(s.contains(Ipv4Addr::new(172, 18, 3, 4)));
        assert!(!s.contains(Ipv4Addr::new(172, 19, 0, 1)));
        let inner: Subnet = "172.18.5.0/24".parse().unwrap();
        assert!(s.overlaps(&inner) && inner.overlaps(&s));
        assert!(!s.overlaps(&"172.19.0.0/16".parse().unwrap()));
        let e = "172.18.0.1/16".parse::<Subnet>().unwrap_err();
        assert!(e.reason.contains("host bits"), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean 172.18.0.0/16?"));
        assert!("172.18.0.0/31".parse::<Subnet>().is_err());
        assert!("nonsense".parse::<Subnet>().is_err());
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"172.18.0.0/16\"");
    }
}
