//! `no_proxy`: the destinations reached directly although an `egress_proxy` is set.
//!
//! An entry is one of (matched case-insensitively, a trailing dot of a name ignored):
//! - `*`: every destination (the proxy is never used);
//! - `example.com` or `.example.com`: that name and every name below it (as curl and
//!   Python read both);
//! - `*.example.com`: every name below `example.com`, not the name itself;
//! - `10.1.2.3`, `::1`, `[::1]`: that address, when the destination is written as it;
//! - `10.0.0.0/8`, `fd00::/8`: every address in that network (host bits are ignored).
//!
//! Names are never resolved to match an address entry: `10.0.0.0/8` selects
//! `http://10.1.2.3/`, not a name that happens to resolve into it (curl does the same).
//! Nothing is bypassed implicitly, not even loopback: list `localhost`, `127.0.0.0/8` and
//! `::1` to reach them directly.

use std::fmt;
use std::net::IpAddr;

/// A parsed `no_proxy` list. Equal lists compare equal (pool keys, token identities).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct NoProxy {
    all: bool,
    /// Lowercase, without a leading `.` / `*.` or a trailing dot.
    names: Vec<NameRule>,
    nets: Vec<Net>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct NameRule {
    name: String,
    /// `*.name`: only names below it; `name` and `.name` match the name itself too.
    below_only: bool,
}

/// An address (`prefix` = its full length) or a network, canonical and masked.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl NoProxy {
    /// Parses `entries`. An entry may itself hold a comma-separated list (the `NO_PROXY`
    /// form, so `["${NO_PROXY}"]` works); empty pieces are ignored. Each error names
    /// the entry (by index) and why: the caller locates it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<NoProxy, Vec<(usize, String)>> {
        let mut out = NoProxy::default();
        let mut errors = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            for piece in entry.as_ref().split(',').map(str::trim) {
                if piece.is_empty() {
                    continue;
                }
                if let Err(e) = out.add(piece) {
                    errors.push((i, e));
                }
            }
        }
        match errors.is_empty() {
            true => Ok(out),
            false => Err(errors),
        }
    }

    fn add(&mut self, entry: &str) -> Result<(), String> {
        if entry == "*" {
            self.all = true;
            return Ok(());
        }
        if let Some((addr, len)) = entry.split_once('/') {
            let addr = unbracket(addr).parse::<IpAddr>().map_err(|_| {
                format!("{entry:?} is not a CIDR network: {addr:?} is not an IP address")
            })?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = len
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| {
                    format!("{entry:?} is not a CIDR network: the prefix length must be 0 to {max}")
                })?;
            self.nets.push(Net::new(addr, prefix));
            return Ok(());
        }
        if let Ok(addr) = unbracket(entry).parse::<IpAddr>() {
            let full = if addr.is_ipv4() { 32 } else { 128 };
            self.nets.push(Net::new(addr, full));
            return Ok(());
        }
        let (below_only, name) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry.strip_prefix('.').unwrap_or(entry)),
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            let hint = match entry.contains(':') {
                true => " (entries name hosts or networks, not ports)",
                false => "",
            };
            return Err(format!(
                "{entry:?} is not a host name, `.suffix`, IP address or CIDR network{hint}"
            ));
        }
        self.names.push(NameRule { name, below_only });
        Ok(())
    }

    /// True when `host` (a URI's host: a name, an IPv4 address or a bracketed IPv6
    /// address) is reached directly.
    pub fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        if let Ok(addr) = unbracket(host).parse::<IpAddr>() {
            return self.nets.iter().any(|n| n.contains(addr));
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        self.names.iter().any(|rule| rule.matches(host))
    }

    /// True when the list names nothing (the proxy is used for every destination).
    pub fn is_empty(&self) -> bool {
        !self.all && self.names.is_empty() && self.nets.is_empty()
    }
}

impl NameRule {
    fn matches(&self, host: &str) -> bool {
        let (name, n) = (self.name.as_bytes(), self.name.len());
        let h = host.as_bytes();
        if h.len() == n {
            return !self.below_only && h.eq_ignore_ascii_case(name);
        }
        // `a.example.com` is below `example.com`; `badexample.com` is not.
        h.len() > n && h[h.len() - n - 1] == b'.' && h[h.len() - n..].eq_ignore_ascii_case(name)
    }
}

impl Net {
    fn new(addr: IpAddr, prefix: u8) -> Net {
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 one (`10.0.0.0/8`):
        // destinations are compared in canonical form.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (addr.to_canonical(), prefix - 96)
            }
            _ => (addr, prefix),
        };
        Net {
            addr: mask(addr, prefix),
            prefix,
        }
    }

    fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.addr.is_ipv4() && mask(addr, self.prefix) == self.addr
    }
}

/// `addr` with every bit after the first `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

impl fmt::Debug for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        if self.all {
            list.entry(&"*");
        }
        for rule in &self.names {
            match rule.below_only {
                true => list.entry(&format!("*.{}", rule.name)),
                false => list.entry(&rule.name),
            };
        }
        for net in &self.nets {
            list.entry(&format_args!("{}/{}", net.addr, net.prefix));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::NoProxy;

    fn list(entries: &[&str]) -> NoProxy {
        NoProxy::parse(entries).unwrap()
    }

    #[test]
    fn names_suffixes_addresses_and_networks() {
        let np = list(&[
            ".internal.example",
            "localhost",
            "10.0.0.0/8",
            "fd00::/8",
            "192.0.2.7",
            "[2001:db8::1]",
        ]);
        let cases = [
            ("api.internal.example", true),
            ("a.b.internal.example", true),
            ("API.Internal.Example.", true),
            // A leading dot is forgiven: the name itself too (curl and Python agree).
            ("internal.example", true),
            ("xinternal.example", false),
            ("internal.example.com", false),
            ("localhost", true),
            ("LOCALHOST", true),
            ("app.localhost", true),
            ("notlocalhost", false),
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("[fd12::1]", true),
            ("[fe80::1]", false),
            ("[::ffff:10.9.9.9]", true),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("[2001:db8::1]", true),
            ("[2001:db8::2]", false),
            // Loopback is not special: only what is listed bypasses the proxy.
            ("127.0.0.1", false),
            ("[::1]", false),
            ("example.com", false),
        ];
        for (host, want) in cases {
            assert_eq!(np.matches(host), want, "{host}");
        }
    }

    #[test]
    fn star_forms() {
        assert!(list(&["*"]).matches("anything.example"));
        assert!(list(&["*"]).matches("[::1]"));
        let below = list(&["*.example.com"]);
        assert!(below.matches("a.example.com"));
        assert!(!below.matches("example.com"));
    }

    #[test]
    fn comma_separated_entries_and_empty_pieces() {
        let np = list(&["a.example, 10.0.0.0/8,,", ""]);
        assert!(np.matches("a.example") && np.matches("10.2.3.4"));
        assert!(list(&[""]).is_empty());
        assert!(!list(&["x"]).is_empty());
    }

    #[test]
    fn host_bits_are_masked_and_mapped_addresses_canonical() {
        let np = list(&["10.1.2.3/8", "::ffff:192.168.0.0/112"]);
        assert!(np.matches("10.200.0.1"));
        assert!(np.matches("192.168.4.5"));
        assert!(!np.matches("192.169.0.1"));
        assert!(list(&["0.0.0.0/0"]).matches("203.0.113.9"));
        assert!(!list(&["0.0.0.0/0"]).matches("[2001:db8::1]"));
        assert!(list(&["::/0"]).matches("[2001:db8::1]"));
    }

    #[test]
    fn bad_entries_are_errors_naming_the_entry() {
        let errors = NoProxy::parse(&[
            "ok.example",
            "10.0.0.0/33",
            "300.1.1.1/8",
            "host:8080",
            "a..b",
            "fd00::/129",
            "*x",
            ".",
        ])
        .unwrap_err();
        let indexes: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [1, 2, 3, 4, 5, 6, 7]);
        assert!(
            errors[0].1.contains("prefix length must be 0 to 32"),
            "{}",
            errors[0].1
        );
        assert!(errors[1].1.contains("not an IP address"), "{}", errors[1].1);
        assert!(errors[2].1.contains("not ports"), "{}", errors[2].1);
        assert!(errors[4].1.contains("0 to 128"), "{}", errors[4].1);
    }

    #[test]
    fn equal_lists_are_equal() {
        assert_eq!(
            list(&["A.example", "10.0.0.1/8"]),
            list(&["a.example.", "10.0.0.0/8"])
        );
        assert_eq!(list(&["a.example"]), list(&[".a.example"]));
        assert_ne!(list(&["a.example"]), list(&["*.a.example"]));
        assert_eq!(
            format!("{:?}", list(&["*.a.example", ".b", "10.0.0.0/8"])),
            r#"["*.a.example", "b", 10.0.0.0/8]"#
        );
    }
}
