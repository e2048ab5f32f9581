//! Property tests of the `no_proxy` matcher: arbitrary entries never panic, and names,
//! suffixes and networks match exactly what they say. 10,000 cases each.

use super::NoProxy;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        ..ProptestConfig::default()
    }
}

/// A DNS label that starts with a letter (all-digit names could read as IPv4 addresses,
/// which are matched as addresses, never as names).
fn label() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,6}[a-z0-9])?"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_entries_never_panic(entries in proptest::collection::vec(".{0,40}", 0..5), host in ".{0,40}") {
        if let Ok(np) = NoProxy::parse(&entries) {
            let _ = np.matches(&host);
        }
    }

    #[test]
    fn a_bare_or_dotted_name_matches_itself_and_below_a_starred_one_only_below(
        name in proptest::collection::vec(label(), 1..4),
        sub in label(),
        other in label(),
    ) {
        let name = name.join(".");
        let bare = NoProxy::parse(&[name.as_str()]).unwrap();
        let dotted = NoProxy::parse(&[format!(".{name}")]).unwrap();
        let starred = NoProxy::parse(&[format!("*.{name}")]).unwrap();
        let below = format!("{sub}.{name}");
        prop_assert!(bare.matches(&name) && bare.matches(&name.to_uppercase()));
        prop_assert!(dotted.matches(&name) && dotted == bare);
        prop_assert!(bare.matches(&below) && starred.matches(&below));
        prop_assert!(!starred.matches(&name));
        // Glued on without a dot, it is another name.
        let glued = format!("{other}{name}");
        prop_assert!(!bare.matches(&glued) && !starred.matches(&glued));
    }

    #[test]
    fn an_ipv4_network_matches_exactly_its_addresses(net in any::<u32>(), prefix in 0u8..=32, addr in any::<u32>()) {
        let np = NoProxy::parse(&[format!("{}/{prefix}", Ipv4Addr::from(net))]).unwrap();
        let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let inside = addr & keep == net & keep;
        prop_assert_eq!(np.matches(&Ipv4Addr::from(addr).to_string()), inside);
        // The same address as an IPv4-mapped IPv6 destination is the same destination.
        let mapped = format!("[{}]", Ipv4Addr::from(addr).to_ipv6_mapped());
        prop_assert_eq!(np.matches(&mapped), inside);
    }

    #[test]
    fn an_ipv6_network_matches_exactly_its_addresses(net in any::<u128>(), prefix in 0u8..=128, addr in any::<u128>()) {
        let net_ip = Ipv6Addr::from(net);
        let np = NoProxy::parse(&[format!("{net_ip}/{prefix}")]).unwrap();
        let addr_ip = Ipv6Addr::from(addr);
        let canonical = IpAddr::V6(addr_ip).to_canonical();
        // Mapped IPv4 addresses and networks compare as IPv4; the arithmetic below is
        // for the plain IPv6 ones.
        prop_assume!(net_ip.to_ipv4_mapped().is_none() && canonical.is_ipv6());
        let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        prop_assert_eq!(np.matches(&format!("[{addr_ip}]")), addr & keep == net & keep);
    }
}
