//! Where a request comes from: the [`PeerAddr`] an adapter attaches, the optional
//! [`SourceAllowlist`] of Telegram's webhook source ranges, and the trusted-proxy rule for
//! `X-Forwarded-For` / `Forwarded`.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The address of the direct peer of the connection a request came on: a request extension
/// each adapter inserts (axum's `ConnectInfo`, actix's `peer_addr`, warp's `remote`, the
/// address hyper's accept loop got). The [`SourceAllowlist`] reads it; without it a webhook
/// with an allowlist refuses every request (`403`), since it cannot tell where they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// Telegram's published webhook source ranges, as of
/// <https://core.telegram.org/bots/webhooks#the-short-version> ("accepts incoming POST requests
/// from 149.154.160.0/20 and 91.108.4.0/22").
pub const TELEGRAM_SOURCE_RANGES: [&str; 2] = ["149.154.160.0/20", "91.108.4.0/22"];

/// Which header a trusted proxy writes the client's address to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, most load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// A range in a [`SourceAllowlist`] that does not parse as CIDR (`149.154.160.0/20`) or as a
/// single address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address range {0:?}: expected CIDR such as 149.154.160.0/20, or an address")]
pub struct InvalidRange(pub String);

/// Admits requests only from listed address ranges, answering `403` to the rest before the
/// body is read. A second line of defence: the `secret_token` stays the primary one (anyone on
/// an allowed range — another Telegram bot's webhook sender, say — still needs it).
///
/// Behind a reverse proxy or load balancer the direct peer is the proxy: list it with
/// [`SourceAllowlist::trusted_proxies`], and the client's address is read from the header the
/// proxy writes — only when the direct peer is one of those proxies, so a client cannot claim
/// an address by sending the header itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct SourceAllowlist {
    allowed: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    header: ForwardedHeader,
}

impl Default for SourceAllowlist {
    fn default() -> Self {
        Self::telegram()
    }
}

impl SourceAllowlist {
    /// Telegram's published ranges, [`TELEGRAM_SOURCE_RANGES`]; no trusted proxy.
    pub fn telegram() -> Self {
        Self::new(TELEGRAM_SOURCE_RANGES).expect("valid built-in ranges")
    }

    /// Your own ranges (CIDR, or single addresses), replacing Telegram's: for a test
    /// server, or when Telegram publishes new ranges before telehook does.
    pub fn new<I, S>(ranges: I) -> Result<Self, InvalidRange>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self {
            allowed: parse_ranges(ranges)?,
            trusted_proxies: Vec::new(),
            header: ForwardedHeader::XForwardedFor,
        })
    }

    /// Trusts the proxies on `ranges` to tell the client's address in `header`: when the
    /// direct peer is on one of them, the client is the right-most address in the header that
    /// is not itself a trusted proxy. Headers from any other peer are ignored.
    pub fn trusted_proxies<I, S>(
        mut self,
        ranges: I,
        header: ForwardedHeader,
    ) -> Result<Self, InvalidRange>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.trusted_proxies = parse_ranges(ranges)?;
        self.header = header;
        Ok(self)
    }

    /// The header the trusted proxies write.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether a request from direct peer `peer` carrying `forwarded` (the trusted proxies'
    /// header, every line of it in order) comes from an allowed address.
    pub fn admits<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded: impl Iterator<Item = &'a [u8]>,
    ) -> bool {
        match self.client(peer, forwarded) {
            Some(client) => self.allowed.iter().any(|net| net.contains(&client)),
            None => false,
        }
    }

    /// The client's address, or `None` when it cannot be told (no peer, or a trusted proxy's
    /// header with an entry that is not an address).
    fn client<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded: impl Iterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.is_trusted(client) {
            return Some(client);
        }
        // Every line, then every entry, walked from the right: the nearest hop first.
        let lines: Vec<&[u8]> = forwarded.collect();
        for line in lines.iter().rev() {
            let line = std::str::from_utf8(line).ok()?;
            for entry in line.rsplit(',') {
                client = match self.header {
                    ForwardedHeader::XForwardedFor => parse_host(entry.trim())?,
                    ForwardedHeader::Forwarded => forwarded_for(entry)?,
                };
                if !self.is_trusted(client) {
                    return Some(client);
                }
            }
        }
        Some(client)
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|net| net.contains(&address))
    }
}

fn parse_ranges<I, S>(ranges: I) -> Result<Vec<IpNet>, InvalidRange>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    ranges
        .into_iter()
        .map(|range| {
            let range = range.as_ref().trim();
            range
                .parse::<IpNet>()
                .or_else(|_| range.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| InvalidRange(range.to_owned()))
        })
        .collect()
}

/// An address as a forwarding header writes it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]:4711`.
fn parse_host(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches('"');
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
        .map(|ip: IpAddr| ip.to_canonical())
}

/// The `for=` parameter of one RFC 7239 element (`for=192.0.2.60;proto=http`); `None` when it
/// is missing, `unknown` or an obfuscated name (the client cannot be told).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_host(value.trim()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn admits(list: &SourceAllowlist, peer: &str, lines: &[&str]) -> bool {
        list.admits(ip(peer), lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn telegram_ranges_admit_telegram_and_nobody_else() {
        let list = SourceAllowlist::telegram();
        for inside in [
            "149.154.160.1",
            "149.154.175.254",
            "91.108.4.1",
            "91.108.7.255",
        ] {
            assert!(admits(&list, inside, &[]), "{inside}");
        }
        for outside in [
            "149.154.176.0",
            "91.108.8.0",
            "127.0.0.1",
            "::1",
            "10.0.0.1",
        ] {
            assert!(!admits(&list, outside, &[]), "{outside}");
        }
        assert!(
            admits(&list, "::ffff:149.154.167.1", &[]),
            "IPv4-mapped IPv6"
        );
        assert!(!list.admits(None, std::iter::empty()), "no peer address");
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let plain = SourceAllowlist::telegram();
        assert!(
            !admits(&plain, "127.0.0.1", &["149.154.167.1"]),
            "untrusted peer"
        );
        let xff = SourceAllowlist::telegram()
            .trusted_proxies(
                ["127.0.0.0/8", "10.0.0.0/8"],
                ForwardedHeader::XForwardedFor,
            )
            .unwrap();
        assert!(admits(&xff, "127.0.0.1", &["149.154.167.1"]));
        assert!(
            admits(&xff, "127.0.0.1", &["1.2.3.4, 149.154.167.1"]),
            "spoofed left entry"
        );
        assert!(
            admits(&xff, "127.0.0.1", &["149.154.167.1, 10.0.0.5"]),
            "two proxies"
        );
        assert!(!admits(&xff, "127.0.0.1", &["149.154.167.1, 1.2.3.4"]));
        assert!(
            !admits(&xff, "127.0.0.1", &["149.154.167.1", "1.2.3.4"]),
            "second line wins"
        );
        assert!(!admits(&xff, "127.0.0.1", &["garbage"]));
        assert!(!admits(&xff, "127.0.0.1", &[]), "proxy without the header");
        assert!(!admits(&xff, "1.2.3.4", &["149.154.167.1"]));
        let rfc = SourceAllowlist::telegram()
            .trusted_proxies(["127.0.0.1"], ForwardedHeader::Forwarded)
            .unwrap();
        assert!(admits(
            &rfc,
            "127.0.0.1",
            &["for=149.154.167.1;proto=https"]
        ));
        assert!(admits(
            &rfc,
            "127.0.0.1",
            &[r#"for=1.2.3.4, for="149.154.167.1:443""#]
        ));
        assert!(!admits(&rfc, "127.0.0.1", &["for=unknown"]));
        assert!(!admits(&rfc, "127.0.0.1", &["for=_hidden"]));
        assert!(!admits(&rfc, "127.0.0.1", &["for=\"[2001:db8::1]:4711\""]));
    }

    #[test]
    fn ranges_are_checked() {
        assert!(SourceAllowlist::new(["10.0.0.0/8", "::1", "2001:db8::/32"]).is_ok());
        assert_eq!(
            SourceAllowlist::new(["10.0.0.0/33"]).unwrap_err(),
            InvalidRange("10.0.0.0/33".into())
        );
    }
}
