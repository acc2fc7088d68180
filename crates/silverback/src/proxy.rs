//! Dialing through proxies: HTTP `CONNECT` (with basic auth) and SOCKS5,
//! configured explicitly or from `HTTPS_PROXY` / `HTTP_PROXY` /
//! `ALL_PROXY` / `NO_PROXY`.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, ErrorKind};

/// The kind of proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyKind {
    /// An HTTP proxy, used with `CONNECT host:port`.
    Http,
    /// A SOCKS5 proxy (the proxy resolves the host name).
    Socks5,
}

/// A proxy to dial through.
///
/// ```
/// use silverback::Proxy;
/// let p = Proxy::parse("http://user:secret@proxy.example:3128").unwrap();
/// assert_eq!(p.addr(), ("proxy.example", 3128));
/// let s = Proxy::parse("socks5://127.0.0.1:1080").unwrap();
/// assert_eq!(s.kind(), silverback::ProxyKind::Socks5);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    auth: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.auth.as_ref().map(|(u, _)| (u, "***")))
            .finish()
    }
}

fn proxy_error(msg: String) -> Error {
    Error::new(ErrorKind::Proxy(msg))
}

/// Decodes `%XX` escapes (user names and passwords in proxy URLs).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port]` (port 80 by default) or
    /// `socks5://` / `socks5h://[user:pass@]host[:port]` (port 1080). A URL
    /// without scheme is taken as HTTP.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("http".to_owned(), url),
        };
        let (kind, default_port) = match scheme.as_str() {
            "http" => (ProxyKind::Http, 80),
            "https" => (ProxyKind::Http, 443),
            "socks5" | "socks5h" => (ProxyKind::Socks5, 1080),
            other => {
                return Err(proxy_error(format!(
                    "unsupported proxy scheme {other:?} in {url:?}"
                )))
            }
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((percent_decode(u), percent_decode(p))), hp)
            }
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport, default_port)
            .ok_or_else(|| proxy_error(format!("invalid proxy address in {url:?}")))?;
        Ok(Self {
            kind,
            host,
            port,
            auth,
        })
    }

    /// An HTTP CONNECT proxy at `url`.
    pub fn http(url: &str) -> Result<Self, Error> {
        let mut p = Self::parse(url)?;
        p.kind = ProxyKind::Http;
        Ok(p)
    }

    /// A SOCKS5 proxy at `url`.
    pub fn socks5(url: &str) -> Result<Self, Error> {
        let mut p = Self::parse(url)?;
        p.kind = ProxyKind::Socks5;
        Ok(p)
    }

    /// Sets the user name and password.
    pub fn with_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// The kind of proxy.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host and port.
    pub fn addr(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// The proxy the environment asks for to reach `host` over `scheme`
    /// (`ws` → `HTTP_PROXY`, `wss` → `HTTPS_PROXY`, then `ALL_PROXY`;
    /// lower-case names too), unless `NO_PROXY` exempts the host. Loopback
    /// hosts are always reached directly.
    pub fn from_env(scheme: &str, host: &str) -> Option<Self> {
        Self::from_lookup(scheme, host, |name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(
        scheme: &str,
        host: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let get = |name: &str| {
            env(name)
                .or_else(|| env(&name.to_ascii_lowercase()))
                .filter(|v| !v.trim().is_empty())
        };
        if is_loopback(host) {
            return None;
        }
        if let Some(no_proxy) = get("NO_PROXY") {
            if no_proxy_matches(&no_proxy, host) {
                return None;
            }
        }
        let specific = if scheme == "wss" {
            "HTTPS_PROXY"
        } else {
            "HTTP_PROXY"
        };
        let url = get(specific).or_else(|| get("ALL_PROXY"))?;
        Self::parse(url.trim()).ok()
    }

    /// Opens a TCP connection to `host:port` through the proxy.
    pub(crate) async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Error> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                proxy_error(format!(
                    "connecting to proxy {}:{}: {e}",
                    self.host, self.port
                ))
            })?;
        tcp.set_nodelay(true)?;
        match self.kind {
            ProxyKind::Http => self.http_connect(tcp, host, port).await,
            ProxyKind::Socks5 => {
                let target = (host, port);
                let stream = match &self.auth {
                    Some((u, p)) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(
                            tcp, target, u, p,
                        )
                        .await
                    }
                    None => tokio_socks::tcp::Socks5Stream::connect_with_socket(tcp, target).await,
                }
                .map_err(|e| {
                    proxy_error(format!("SOCKS5 proxy {}:{}: {e}", self.host, self.port))
                })?;
                Ok(stream.into_inner())
            }
        }
    }

    async fn http_connect(
        &self,
        mut tcp: TcpStream,
        host: &str,
        port: u16,
    ) -> Result<TcpStream, Error> {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some((u, p)) = &self.auth {
            req.push_str(&format!(
                "Proxy-Authorization: Basic {}\r\n",
                BASE64.encode(format!("{u}:{p}"))
            ));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(512);
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = resp.code.unwrap_or(0);
                    if !(200..300).contains(&code) {
                        return Err(proxy_error(format!(
                            "HTTP proxy {}:{} refused CONNECT {target}: {code} {}",
                            self.host,
                            self.port,
                            resp.reason.unwrap_or("")
                        )));
                    }
                    if len != buf.len() {
                        return Err(proxy_error(
                            "HTTP proxy sent data before the tunnel was used".into(),
                        ));
                    }
                    return Ok(tcp);
                }
                Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
                Ok(httparse::Status::Partial) => {
                    return Err(proxy_error("HTTP proxy response too large".into()))
                }
                Err(e) => return Err(proxy_error(format!("HTTP proxy response: {e}"))),
            }
            if tcp.read_buf(&mut buf).await? == 0 {
                return Err(proxy_error(
                    "HTTP proxy closed the connection during CONNECT".into(),
                ));
            }
        }
    }
}

fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => Some((s.to_owned(), default_port)), // bare IPv6
        None => Some((s.to_owned(), default_port)),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// `NO_PROXY` semantics: comma-separated entries; `*` matches everything;
/// an entry matches the host itself and its subdomains (a leading dot is
/// optional); ports in entries are ignored.
fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.trim_start_matches('[');
            let entry = match entry.split_once(']') {
                Some((ip6, _)) => ip6.to_owned(),
                None => entry.split(':').next().unwrap_or(entry).to_owned(),
            };
            let entry = entry.trim_start_matches('.').to_ascii_lowercase();
            host == entry || host.ends_with(&format!(".{entry}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("http://u%40x:p%3Ass@proxy:3128").unwrap();
        assert_eq!(p.kind(), ProxyKind::Http);
        assert_eq!(p.addr(), ("proxy", 3128));
        assert_eq!(p.auth, Some(("u@x".into(), "p:ss".into())));
        assert_eq!(
            Proxy::parse("proxy.example").unwrap().addr(),
            ("proxy.example", 80)
        );
        assert_eq!(
            Proxy::parse("socks5h://[::1]:9050").unwrap().addr(),
            ("::1", 9050)
        );
        assert!(Proxy::parse("ftp://x").is_err());
        assert!(Proxy::parse("http://").is_err());
    }

    #[test]
    fn environment_rules() {
        let env: HashMap<&str, &str> = [
            ("https_proxy", "http://secure:8443"),
            ("HTTP_PROXY", "http://plain:8080"),
            ("NO_PROXY", "internal.example, .corp, 10.1.2.3"),
        ]
        .into();
        let lookup = |n: &str| env.get(n).map(|v| v.to_string());
        let pick =
            |scheme: &str, host: &str| Proxy::from_lookup(scheme, host, lookup).map(|p| p.host);
        assert_eq!(pick("wss", "example.com").as_deref(), Some("secure"));
        assert_eq!(pick("ws", "example.com").as_deref(), Some("plain"));
        assert_eq!(pick("ws", "internal.example"), None);
        assert_eq!(pick("ws", "a.internal.example"), None);
        assert_eq!(pick("ws", "x.corp"), None);
        assert_eq!(pick("ws", "10.1.2.3"), None);
        assert_eq!(pick("ws", "127.0.0.1"), None);
        assert_eq!(pick("ws", "[::1]"), None);
        assert_eq!(pick("ws", "localhost"), None);

        let all: HashMap<&str, &str> = [("ALL_PROXY", "socks5://s:1080"), ("no_proxy", "*")].into();
        let lookup = |n: &str| all.get(n).map(|v| v.to_string());
        assert_eq!(Proxy::from_lookup("wss", "example.com", lookup), None);
        let all: HashMap<&str, &str> = [("ALL_PROXY", "socks5://s:1080")].into();
        let lookup = |n: &str| all.get(n).map(|v| v.to_string());
        let p = Proxy::from_lookup("wss", "example.com", lookup).unwrap();
        assert_eq!(p.kind(), ProxyKind::Socks5);
    }
}
