//! Where a notification may go. A `notify:` URL is written by a pipeline's author but
//! may take its host from an input, so it is checked when it is sent: only `http` and
//! `https`; a host that resolves only to loopback, link-local, private, shared (CGNAT),
//! multicast or unspecified addresses is refused (unless the operator allows private
//! targets, or that host); and the connection is pinned to the addresses checked, so a
//! second DNS answer (rebinding) cannot swap in another one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::header::LOCATION;

/// What the operator allows beyond public addresses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    /// Every address, private ones included (`--allow-private-notify`).
    pub(crate) allow_private: bool,
    /// Hosts sent to whatever they resolve to (`--notify-allow HOST[:PORT]`).
    pub(crate) allow: Vec<Allowed>,
}

/// A host (and port, if given) notifications may reach at any address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allowed {
    host: String,
    port: Option<u16>,
}

impl std::str::FromStr for Allowed {
    type Err = String;

    /// `HOST`, `HOST:PORT`, `[IPV6]:PORT` or a bare IPv6 address.
    fn from_str(text: &str) -> Result<Allowed, String> {
        let bad = || format!("`{text}` is not HOST or HOST:PORT (an IPv6 address with a port: `[::1]:8080`)");
        if let Ok(ip) = text.parse::<Ipv6Addr>() {
            return Ok(Allowed { host: ip.to_string(), port: None });
        }
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
                let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
                };
                (ip.to_string(), port)
            }
            None => match text.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (text.to_string(), None),
            },
        };
        let port = port.map(|p| p.parse::<u16>().map_err(|_| bad())).transpose()?;
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad());
        }
        Ok(Allowed { host, port })
    }
}

/// Why a notification was not sent.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    /// Trying again cannot help (a refused address, a redirect): no more attempts.
    pub(crate) last: bool,
}

impl Failure {
    fn again(message: String) -> Failure {
        Failure { message, last: false }
    }

    fn last(message: String) -> Failure {
        Failure { message, last: true }
    }
}

/// How to reach a URL that passed the checks: the addresses its host name is pinned to.
struct Target {
    url: Url,
    pin: Option<(String, Vec<SocketAddr>)>,
}

impl Guard {
    /// Checks a rendered URL and resolves its host, keeping only the addresses allowed.
    async fn target(&self, text: &str) -> Result<Target, Failure> {
        // Never the URL in what is recorded: it may hold a secret.
        let url = Url::parse(text).map_err(|e| Failure::last(format!("the rendered URL does not parse: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::last(format!(
                "refused: only `http` and `https` URLs are sent, not `{}:`",
                url.scheme()
            )));
        }
        let raw = url.host_str().unwrap_or("");
        if raw.is_empty() {
            return Err(Failure::last("the rendered URL has no host".into()));
        }
        // The URL parser has already read the odd forms (`2130706433`, `0x7f.1`) as the
        // address they mean.
        let literal: Option<IpAddr> =
            raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(raw).parse().ok();
        let host = match literal {
            Some(ip) => ip.to_string(),
            None => raw.trim_end_matches('.').to_ascii_lowercase(),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        if self.allow_private || self.allow.iter().any(|a| a.host == host && a.port.is_none_or(|p| p == port)) {
            return Ok(Target { url, pin: None });
        }
        let addresses: Vec<SocketAddr> = match literal {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| Failure::again(format!("cannot resolve `{host}`: {e}")))?
                .collect(),
        };
        let allowed: Vec<SocketAddr> = addresses.iter().copied().filter(|a| forbidden(a.ip()).is_none()).collect();
        if allowed.is_empty() {
            let Some(first) = addresses.first().map(SocketAddr::ip) else {
                return Err(Failure::again(format!("`{host}` resolves to no address")));
            };
            let kind = forbidden(first).unwrap_or("a refused address");
            let what = match literal {
                Some(_) => format!("{first} is {kind}"),
                None => format!("`{host}` resolves to {first}, {kind}"),
            };
            let allow = match (url.port(), literal) {
                (None, _) => host.clone(),
                (Some(port), Some(IpAddr::V6(_))) => format!("[{host}]:{port}"),
                (Some(port), _) => format!("{host}:{port}"),
            };
            return Err(Failure::last(format!(
                "refused: {what}; pass --allow-private-notify (or PHASED_ALLOW_PRIVATE_NOTIFY=1), \
                 or --notify-allow {allow}, to send notifications there"
            )));
        }
        let pin = literal.is_none().then_some((host, allowed));
        Ok(Target { url, pin })
    }

    /// Sends one notification: `Ok` on a 2xx answer, within `sending.total` whatever
    /// happens (the name's resolution included). Redirects are never followed (the
    /// body would go to a host that was not checked).
    pub(crate) async fn send(&self, url: &str, body: &str, sending: super::Sending) -> Result<(), Failure> {
        let place = place_of(url);
        match tokio::time::timeout(sending.total, self.send_now(url, body, sending, &place)).await {
            Ok(sent) => sent,
            Err(_) => Err(Failure::again(format!("no answer from {place} within {}", seconds(sending.total)))),
        }
    }

    async fn send_now(&self, url: &str, body: &str, sending: super::Sending, place: &str) -> Result<(), Failure> {
        let target = self.target(url).await?;
        // Straight to the receiver: a proxy would resolve the host again, unchecked.
        let mut client = reqwest::Client::builder()
            .timeout(sending.total)
            .connect_timeout(sending.connect)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some((name, addresses)) = &target.pin {
            client = client.resolve_to_addrs(name, addresses);
        }
        let client = client.build().map_err(|e| Failure::again(format!("cannot make an HTTP client: {e}")))?;
        let response = client
            .post(target.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("phased/", env!("CARGO_PKG_VERSION")))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| Failure::again(describe(e, place, sending)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            let location = response.headers().get(LOCATION).map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
            let location: String = location.unwrap_or_default().chars().take(200).collect();
            return Err(Failure::last(format!(
                "{place} answered {status}, to `{location}`: redirects are not followed (the body is never \
                 sent on); give the final URL in `notify:`"
            )));
        }
        Err(Failure::again(format!("{place} answered {status}")))
    }
}

/// Where a notification goes, as `host:port` (`[::1]:8080`): what an error names. Never
/// the whole URL: its path or query may hold a secret.
fn place_of(url: &str) -> String {
    let Ok(url) = Url::parse(url) else { return "the receiver".into() };
    // An IPv6 host comes in brackets.
    match (url.host_str().filter(|h| !h.is_empty()), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => "the receiver".into(),
    }
}

fn seconds(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Why a request failed, in a few words that name the receiver (`connection refused to
/// 127.0.0.1:8080`), never the URL: it may hold a secret.
fn describe(e: reqwest::Error, place: &str, sending: super::Sending) -> String {
    if e.is_timeout() {
        return if e.is_connect() {
            format!("no connection to {place} within {}", seconds(sending.connect))
        } else {
            format!("no answer from {place} within {}", seconds(sending.total))
        };
    }
    if e.is_connect() {
        let io = std::iter::successors(std::error::Error::source(&e), |c| c.source())
            .find_map(|c| c.downcast_ref::<std::io::Error>());
        match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::ConnectionRefused) => return format!("connection refused to {place}"),
            Some(std::io::ErrorKind::TimedOut) => {
                return format!("no connection to {place} within {}", seconds(sending.connect));
            }
            Some(_) => return format!("cannot connect to {place}: {}", io.map(|e| e.to_string()).unwrap_or_default()),
            None => {}
        }
    }
    format!("cannot send to {place}: {}", chain(e))
}

/// An error of reqwest with its causes, without the URL.
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why an address is refused as a notification's target (`a loopback address`), or
/// `None` for a public one.
pub(crate) fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => forbidden_v6(ip),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => "an unspecified address (0.0.0.0/8)",
        (127, _) => "a loopback address",
        (10, _) | (172, 16..=31) | (192, 168) => "a private address",
        (100, 64..=127) => "a shared (CGNAT) address",
        (169, 254) => "a link-local address",
        (224..=239, _) => "a multicast address",
        (240..=255, _) => "a reserved address",
        (192, 0) if c == 0 => "a reserved address",
        (198, 18..=19) => "a reserved address",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    // IPv4 inside IPv6 (mapped `::ffff:a.b.c.d`, the old compatible `::a.b.c.d`, NAT64
    // `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`): judged as the IPv4 address it reaches.
    let embedded = |high: u16, low: u16| Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8);
    let v4 = match segments {
        [0, 0, 0, 0, 0, 0xffff, h, l] | [0, 0, 0, 0, 0, 0, h, l] | [0x64, 0xff9b, 0, 0, 0, 0, h, l] => {
            Some(embedded(h, l))
        }
        [0x2002, h, l, ..] => Some(embedded(h, l)),
        _ => None,
    };
    if let Some(v4) = v4 {
        return forbidden_v4(v4);
    }
    Some(match segments[0] {
        0xfc00..=0xfdff => "a private (unique local) address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a private (site-local) address",
        0xff00..=0xffff => "a multicast address",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<&'static str> {
        forbidden(text.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        let refused = [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
        ];
        for (ip, expected) in refused {
            let kind = kind(ip).unwrap_or_else(|| panic!("{ip} is allowed"));
            assert!(kind.contains(expected), "{ip}: {kind}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "169.255.0.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "2002:0808:0808::",
            "64:ff9b::808:808",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn allowed_hosts_parse_with_or_without_a_port() {
        let parse = |t: &str| t.parse::<Allowed>();
        assert_eq!(parse("Hooks.Internal").unwrap(), Allowed { host: "hooks.internal".into(), port: None });
        assert_eq!(parse("10.0.0.5:8080").unwrap(), Allowed { host: "10.0.0.5".into(), port: Some(8080) });
        assert_eq!(parse("[::1]:9000").unwrap(), Allowed { host: "::1".into(), port: Some(9000) });
        assert_eq!(parse("::1").unwrap(), Allowed { host: "::1".into(), port: None });
        for bad in ["", "host:port", "[::1", "[::1]9000", "a/b", "host:99999"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_target_names_the_address_and_the_way_to_allow_it() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let guard = Guard::default();
        let e = runtime.block_on(guard.target("http://127.0.0.1:9/x")).err().unwrap();
        assert!(e.last, "no retry for a refusal");
        assert!(e.message.starts_with("refused: 127.0.0.1 is a loopback address"), "{}", e.message);
        assert!(e.message.contains("--notify-allow 127.0.0.1:9"), "{}", e.message);
        let e = runtime.block_on(guard.target("http://[::ffff:7f00:1]/")).err().unwrap();
        assert!(e.message.contains("loopback"), "{}", e.message);
        let e = runtime.block_on(guard.target("file:///etc/passwd")).err().unwrap();
        assert!(e.last && e.message.contains("not `file:`"), "{}", e.message);
        // Allowed by host and port, or by every private address.
        let allowed = Guard { allow_private: false, allow: vec!["127.0.0.1:9".parse().unwrap()] };
        assert!(runtime.block_on(allowed.target("http://127.0.0.1:9/x")).is_ok());
        assert!(runtime.block_on(allowed.target("http://127.0.0.1:10/x")).is_err(), "another port");
        let open = Guard { allow_private: true, allow: vec![] };
        assert!(runtime.block_on(open.target("http://10.0.0.1/")).is_ok());
    }
}
