//! The server under test: `http://HOST:PORT[/PREFIX]` resolved once, before the load starts, so no
//! name lookup happens on the request path.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::Error;

/// Where requests go and how they name the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The first address HOST:PORT resolved to.
    pub addr: SocketAddr,
    /// The `Host` header value: the URL's authority as written.
    pub authority: String,
    /// Path prefix before every scenario path, without a trailing slash ("" for none).
    pub prefix: String,
}

impl Target {
    /// Parses and resolves `url`. Only `http://` is supported: TLS would measure the cipher.
    pub fn parse(url: &str) -> Result<Target, Error> {
        let bad = |why: &str| Error::Usage(format!("--url {url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with http:// (no TLS)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("needs a host (and no user info)"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| bad(&format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| bad("resolves to no address"))?;
        if path.contains(['?', '#']) {
            return Err(bad("a prefix path may not have a query or fragment"));
        }
        Ok(Target {
            url: url.to_string(),
            addr,
            authority: authority.to_string(),
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The request-target for a scenario path such as `/api/v1/available`.
    pub fn path(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; port 80 when absent.
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().ok()?,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8000");
        assert_eq!(t.path("/api/v1/available"), "/api/v1/available");

        let t = Target::parse("http://[::1]:9/base/").unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert_eq!(t.path("/x"), "/base/x");

        let t = Target::parse("http://127.0.0.1").unwrap();
        assert_eq!(t.addr.port(), 80);

        for bad in [
            "https://127.0.0.1:1",
            "127.0.0.1:1",
            "http://",
            "http://:80",
            "http://127.0.0.1:x",
            "http://127.0.0.1:1/a?b",
            "http://u@127.0.0.1:1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
