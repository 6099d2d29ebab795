//! Who gets the development token: a browser on the server's own machine (a loopback peer, no proxy header,
//! a loopback name) that opened the playground link the server printed (its key).

use super::Playground;
use axum::http::{HeaderMap, header};
use sha2::Digest as _;
use std::net::SocketAddr;

/// The header the page sends the printed link's key in.
pub(super) const DEV_KEY_HEADER: &str = "x-playground-key";

impl Playground {
    /// The dev token for a request that comes from this machine with the printed link's key.
    pub(super) fn dev_token_for(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<&str> {
        let (token, key) = (self.dev_token.as_deref()?, self.dev_key.as_deref()?);
        let given = headers.get(DEV_KEY_HEADER)?.as_bytes();
        // Compared as digests: the time taken says nothing about the key.
        let keyed = sha2::Sha256::digest(given) == sha2::Sha256::digest(key.as_bytes());
        (keyed && same_machine(peer, headers)).then_some(token)
    }
}

/// A request from a browser on this machine: a loopback peer, not relayed by a proxy (which would make every
/// client look local), asking for a loopback name (a page on another site whose name was rebound to 127.0.0.1
/// asks with its own). The development token is a full-scope token for tenant `demo`: a server on its
/// development secret that listens on every interface (as the container image does) must not hand it out.
fn same_machine(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    let loopback_name = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
    !proxied && loopback_name && peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_dev_token_is_for_this_machine_only() {
        let peer = |ip: &str| Some(SocketAddr::new(ip.parse().unwrap(), 40000));
        let host = |h: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_static(h));
            m
        };
        for h in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST",
            "[::1]",
        ] {
            assert!(same_machine(peer("127.0.0.1"), &host(h)), "{h}");
        }
        for h in [
            "evil.example:8080",
            "evil.example",
            "10.0.0.1:8080",
            "localhost.evil.example",
            "",
        ] {
            assert!(!same_machine(peer("127.0.0.1"), &host(h)), "a page on {h:?}");
        }
        let none = host("localhost:8080");
        assert!(same_machine(peer("127.0.0.1"), &none));
        assert!(same_machine(peer("::1"), &none));
        assert!(same_machine(peer("::ffff:127.0.0.1"), &none));
        assert!(!same_machine(peer("172.17.0.1"), &none), "a container's host");
        assert!(!same_machine(peer("10.1.2.3"), &none));
        assert!(!same_machine(None, &none), "peer unknown");
        for h in ["x-forwarded-for", "forwarded", "x-real-ip"] {
            let mut proxied = host("localhost:8080");
            proxied.insert(h, HeaderValue::from_static("203.0.113.9"));
            assert!(!same_machine(peer("127.0.0.1"), &proxied), "{h}");
        }
    }

    /// A same-host proxy that adds no forwarding header (nginx's plain `proxy_pass` sends `Host: 127.0.0.1:…`)
    /// makes every client look local: the token also needs the printed link's key.
    #[test]
    fn the_dev_token_needs_the_printed_links_key() {
        let p = Playground::new(Some("tok".into()));
        let key = p.dev_key().unwrap().to_owned();
        assert_eq!(key.len(), 32);
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 40000)));
        let with = |k: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
            if let Some(k) = k {
                h.insert(DEV_KEY_HEADER, HeaderValue::from_str(k).unwrap());
            }
            h
        };
        assert_eq!(p.dev_token_for(local, &with(Some(&key))), Some("tok"));
        assert_eq!(
            p.dev_token_for(local, &with(None)),
            None,
            "no key: through a proxy"
        );
        assert_eq!(p.dev_token_for(local, &with(Some("0123"))), None, "a wrong key");
        let remote = Some(SocketAddr::from(([10, 1, 2, 3], 40000)));
        assert_eq!(
            p.dev_token_for(remote, &with(Some(&key))),
            None,
            "the key alone is not enough"
        );
        assert!(Playground::new(None).dev_key().is_none(), "no token, no key");
    }
}
