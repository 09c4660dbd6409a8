//! Which addresses the facilitator may fetch a resource from: the public
//! internet only, unless a devnet configuration allows the rest. Names are
//! resolved by [`PublicOnlyResolver`], and the connection goes to the
//! addresses it returned, so a name cannot resolve to a public address for
//! the check and a private one for the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// IPv4 ranges that are not reachable unicast destinations on the public
/// internet, as (network, prefix length).
const NON_PUBLIC_V4: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // 0/8 "this network" (0.0.0.0 reaches the host itself)
    (0x0a00_0000, 8),  // 10/8 private
    (0x6440_0000, 10), // 100.64/10 carrier-grade NAT
    (0x7f00_0000, 8),  // 127/8 loopback
    (0xa9fe_0000, 16), // 169.254/16 link-local (cloud metadata services)
    (0xac10_0000, 12), // 172.16/12 private
    (0xc000_0000, 24), // 192.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2/24 documentation
    (0xc058_6300, 24), // 192.88.99/24 deprecated 6to4 relays
    (0xc0a8_0000, 16), // 192.168/16 private
    (0xc612_0000, 15), // 198.18/15 benchmarking
    (0xc633_6400, 24), // 198.51.100/24 documentation
    (0xcb00_7100, 24), // 203.0.113/24 documentation
    (0xe000_0000, 4),  // 224/4 multicast
    (0xf000_0000, 4),  // 240/4 reserved, and the broadcast address
];

/// Whether `ip` is a public unicast address: not private, loopback,
/// link-local, unique-local, carrier-grade NAT, multicast, unspecified,
/// documentation, benchmarking or reserved, nor an IPv6 form that embeds
/// such an IPv4 address (`::ffff:127.0.0.1`, `2002:7f00:1::`).
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !NON_PUBLIC_V4
        .iter()
        .any(|&(network, prefix)| bits >> (32 - prefix) == network >> (32 - prefix))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // Only global unicast (2000::/3) is routed on the public internet; this
    // leaves out ::/8 (unspecified, loopback, IPv4-compatible), NAT64
    // 64:ff9b::/96, fc00::/7 unique-local, fe80::/10 link-local and ff00::/8
    // multicast at once.
    if segments[0] & 0xe000 != 0x2000 {
        return false;
    }
    match segments[0] {
        // 2001::/23: IETF protocol assignments (Teredo, benchmarking, ORCHID).
        0x2001 if segments[1] < 0x0200 => false,
        0x2001 if segments[1] == 0x0db8 => false,
        // 6to4 embeds an IPv4 address in the next 32 bits.
        0x2002 => {
            let [a, b] = segments[1].to_be_bytes();
            let [c, d] = segments[2].to_be_bytes();
            is_public_v4(Ipv4Addr::new(a, b, c, d))
        }
        // 3fff::/20 documentation.
        0x3fff if segments[1] < 0x1000 => false,
        _ => true,
    }
}

/// A resolved name had a non-public address; the whole name is refused.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to a private or reserved address")]
pub(crate) struct NonPublicAddress {
    host: String,
}

/// A DNS resolver for `reqwest` that refuses names with any non-public
/// address. The client connects only to what the resolver returned.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(refused) = addresses.iter().find(|a| !is_public_address(a.ip())) {
                tracing::debug!(%host, address = %refused.ip(), "origin host refused");
                return Err(Box::new(NonPublicAddress { host }) as _);
            }
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn private_and_reserved_addresses_are_not_public() {
        for refused in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002:7f00:1::",
            "2002:a00:1::",
            "3fff::1",
        ] {
            assert!(!is_public_address(ip(refused)), "{refused}");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "169.253.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "2002:808:808::",
        ] {
            assert!(is_public_address(ip(public)), "{public}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_for_loopback() {
        let name: Name = "localhost".parse().expect("a name");
        let error = PublicOnlyResolver
            .resolve(name)
            .await
            .err()
            .expect("localhost is refused");
        assert!(error.to_string().contains("private or reserved"), "{error}");
    }
}
