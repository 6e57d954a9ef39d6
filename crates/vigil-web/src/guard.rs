//! Who may ask: every request is checked before it is routed. A loopback port is open to
//! every local user and, through a browser, to any web page (DNS rebinding: a name of the
//! attacker's that resolves to 127.0.0.1). So a request must carry the token, name this
//! server in `Host` as an IP literal or `localhost` (a rebinding page cannot: its `Host` is
//! its own name), and, when a browser says where it comes from (`Origin`), come from here.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};

/// The cookie the page's URL token is traded for.
pub const COOKIE_NAME: &str = "vigil_web_token";

/// Why a request is refused; each is one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 421: `Host` names something else (or is missing).
    Host,
    /// 403: `Origin` (or `Sec-Fetch-Site`) says another site sent it.
    Origin,
    /// 401: no token, or a wrong one.
    Token,
}

/// `host[:port]` or `[v6][:port]` -> (host, port); the port defaults to 80.
fn split_host(value: &str) -> Option<(&str, u16)> {
    if let Some(rest) = value.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = match after {
            "" => 80,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((ip, port));
    }
    match value.rsplit_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((value, 80)),
    }
}

/// Whether `Host: value` names this server, listening on `bound`.
pub fn host_allowed(value: &str, bound: SocketAddr) -> bool {
    let Some((host, port)) = split_host(value.trim()) else {
        return false;
    };
    if port != bound.port() {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return bound.ip().is_loopback() || bound.ip().is_unspecified();
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            bound.ip().is_unspecified()
                || ip == bound.ip()
                || (ip.is_loopback() && bound.ip().is_loopback())
        }
        // A name: what DNS rebinding looks like.
        Err(_) => false,
    }
}

/// The request's headers checked against `bound` and the token; `query_token` is the
/// `token=` of the URL, if any.
pub fn check(
    headers: &HeaderMap,
    bound: SocketAddr,
    token: &str,
    query_token: Option<&str>,
) -> Result<(), Refusal> {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or(Refusal::Host)?;
    if !host_allowed(host, bound) {
        return Err(Refusal::Host);
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host.trim()));
        if !same {
            return Err(Refusal::Origin);
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|s| s.as_bytes() == b"cross-site")
    {
        return Err(Refusal::Origin);
    }
    let from_cookie = cookie(headers, COOKIE_NAME);
    let given = [query_token, bearer(headers), from_cookie.as_deref()];
    if given.iter().flatten().any(|t| same_token(t, token)) {
        Ok(())
    } else {
        Err(Refusal::Token)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The value of cookie `name` among the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Compares in time independent of where the first difference is.
fn same_token(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The `token` parameter of a query string (hex: no decoding needed).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const TOKEN: &str = "00ff";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn host_must_name_this_server_by_ip_or_localhost() {
        let lo: SocketAddr = "127.0.0.1:2113".parse().unwrap();
        assert!(host_allowed("127.0.0.1:2113", lo));
        assert!(host_allowed("localhost:2113", lo));
        assert!(host_allowed("LOCALHOST:2113", lo));
        assert!(host_allowed("[::1]:2113", lo));
        assert!(!host_allowed("127.0.0.1:2114", lo));
        assert!(!host_allowed("127.0.0.1", lo));
        assert!(!host_allowed("evil.example:2113", lo));
        assert!(!host_allowed("10.0.0.1:2113", lo));
        assert!(!host_allowed("[::1", lo));
        let any: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert!(host_allowed("10.0.0.1", any));
        assert!(!host_allowed("rebind.example", any));
    }

    #[test]
    fn token_from_query_header_or_cookie() {
        let lo: SocketAddr = "127.0.0.1:2113".parse().unwrap();
        let host = ("host", "127.0.0.1:2113");
        assert_eq!(
            check(&headers(&[host]), lo, TOKEN, None),
            Err(Refusal::Token)
        );
        assert_eq!(check(&headers(&[host]), lo, TOKEN, Some("00ff")), Ok(()));
        assert_eq!(
            check(&headers(&[host]), lo, TOKEN, Some("00fe")),
            Err(Refusal::Token)
        );
        let h = headers(&[host, ("authorization", "Bearer 00ff")]);
        assert_eq!(check(&h, lo, TOKEN, None), Ok(()));
        let h = headers(&[host, ("cookie", "a=b; vigil_web_token=00ff")]);
        assert_eq!(check(&h, lo, TOKEN, None), Ok(()));
        let h = headers(&[host, ("cookie", "vigil_web_token=00ff0")]);
        assert_eq!(check(&h, lo, TOKEN, None), Err(Refusal::Token));
    }

    #[test]
    fn host_and_origin_are_checked_before_the_token() {
        let lo: SocketAddr = "127.0.0.1:2113".parse().unwrap();
        let h = headers(&[("host", "evil.example:2113")]);
        assert_eq!(check(&h, lo, TOKEN, Some(TOKEN)), Err(Refusal::Host));
        assert_eq!(
            check(&HeaderMap::new(), lo, TOKEN, Some(TOKEN)),
            Err(Refusal::Host)
        );
        let h = headers(&[
            ("host", "127.0.0.1:2113"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(check(&h, lo, TOKEN, Some(TOKEN)), Err(Refusal::Origin));
        let h = headers(&[("host", "127.0.0.1:2113"), ("origin", "null")]);
        assert_eq!(check(&h, lo, TOKEN, Some(TOKEN)), Err(Refusal::Origin));
        let h = headers(&[
            ("host", "127.0.0.1:2113"),
            ("origin", "http://127.0.0.1:2113"),
        ]);
        assert_eq!(check(&h, lo, TOKEN, Some(TOKEN)), Ok(()));
        let h = headers(&[("host", "127.0.0.1:2113"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(check(&h, lo, TOKEN, Some(TOKEN)), Err(Refusal::Origin));
    }

    #[test]
    fn query_parameters() {
        assert_eq!(query_param(Some("a=1&token=ab"), "token"), Some("ab"));
        assert_eq!(query_param(Some("tokenx=1"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
    }
}
