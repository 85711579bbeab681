//! Text to values: one function per kind of value an option takes (a whole number in a range,
//! seconds, a directory, a CPU list, the vacancy URL, ...).
//!
//! Each returns the value or an "expected ..." phrase saying what is accepted; it knows nothing of
//! flags or environment variables, which the caller adds (`error.rs`). Surrounding whitespace is
//! ignored everywhere, since environment files and shell quoting add it by accident. The
//! functions that take a range return a parser closure, so that an option's definition in
//! `cli.rs` names its parser and its range together.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

/// The highest CPU id `--cpus` accepts: 4096 CPUs (ids 0 to 4095), the largest `NR_CPUS` of
/// common distribution kernels. It bounds the list a range like `0-4095` expands to.
pub const CPU_ID_MAX: usize = 4095;

/// A parser of one option's text, as clap calls it.
pub trait Parse<T>: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {}
impl<T, F: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static> Parse<T> for F {}

/// A plain decimal whole number within `range`.
pub fn whole<N>(range: RangeInclusive<N>) -> impl Parse<N>
where
    N: Copy + PartialOrd + fmt::Display + TryFrom<u64> + Send + Sync + 'static,
{
    move |raw| parse_whole(raw, range.clone())
}

/// A plain decimal whole number within `range`: digits only (no sign, no separators).
pub fn parse_whole<N>(raw: &str, range: RangeInclusive<N>) -> Result<N, String>
where
    N: Copy + PartialOrd + fmt::Display + TryFrom<u64>,
{
    let expected = || {
        format!(
            "expected a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    let digits = raw.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    let value = digits.parse::<u64>().map_err(|_| expected())?;
    let value = N::try_from(value).map_err(|_| expected())?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(expected())
    }
}

/// A number of seconds as a decimal number (`2`, `2.0`, `0.25`, `1e-3`) within `range`.
pub fn seconds(range: RangeInclusive<f64>) -> impl Parse<f64> {
    move |raw| {
        let expected = || {
            format!(
                "expected a number of seconds from {} to {}",
                range.start(),
                range.end()
            )
        };
        decimal(raw)
            .filter(|s| range.contains(s))
            .ok_or_else(expected)
    }
}

/// A period in seconds: `0` (none), or a decimal number of seconds within `range`.
pub fn period(range: RangeInclusive<f64>) -> impl Parse<f64> {
    move |raw| {
        let expected = || {
            format!(
                "expected 0 or a number of seconds from {} to {}",
                range.start(),
                range.end()
            )
        };
        decimal(raw)
            .filter(|s| (*s == 0.0 && s.is_sign_positive()) || range.contains(s))
            .ok_or_else(expected)
    }
}

/// A rate: `0` (off), or a decimal number per second within `range`.
pub fn rate(range: RangeInclusive<f64>) -> impl Parse<f64> {
    move |raw| {
        let expected = || {
            format!(
                "expected 0 (off) or a number per second from {} to {}",
                range.start(),
                range.end()
            )
        };
        decimal(raw)
            .filter(|s| (*s == 0.0 && s.is_sign_positive()) || range.contains(s))
            .ok_or_else(expected)
    }
}

/// A decimal number; Rust also parses "inf" and "NaN", which are no numbers of seconds, so only
/// digits, '.', exponents and signs are let through.
fn decimal(raw: &str) -> Option<f64> {
    let text = raw.trim();
    let numeric = |b: u8| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-');
    if !text.bytes().all(numeric) {
        return None;
    }
    text.parse::<f64>().ok()
}

/// An IP address to listen on.
pub fn ip(raw: &str) -> Result<IpAddr, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected an IP address such as 0.0.0.0 or ::".into())
}

/// A directory path, kept as given (relative ones are relative to the working directory); only
/// an empty or blank one is refused. Whether it can be created and written is checked at start-up.
pub fn dir(raw: &str) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("expected a directory path".into());
    }
    Ok(PathBuf::from(raw))
}

/// A file path, kept as given; only an empty or blank one is refused. Whether it can be read is
/// checked at start-up.
pub fn file(raw: &str) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("expected a file path".into());
    }
    Ok(PathBuf::from(raw))
}

/// An address and port such as `127.0.0.1:9001` or `[::1]:9001`.
pub fn socket_addr(raw: &str) -> Result<std::net::SocketAddr, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected an address and port such as 127.0.0.1:9001".into())
}

/// A boolean the way environment variables spell them, case-insensitively.
pub fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (also 1/0, yes/no, on/off)".into()),
    }
}

/// A log level, case-insensitively, with Python's names mapped to `tracing`'s.
pub fn log_level(raw: &str) -> Result<&'static str, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok("trace"),
        "debug" => Ok("debug"),
        "info" => Ok("info"),
        "warn" | "warning" => Ok("warn"),
        "error" | "critical" => Ok("error"),
        _ => Err("expected trace, debug, info, warn (warning) or error (critical)".into()),
    }
}

/// Parses a CPU list such as `0-3,8` (the `taskset -c` / cpuset syntax without strides) into
/// sorted CPU ids without duplicates. Items are separated by commas, may be surrounded by
/// whitespace, and are an id or an inclusive range `first-last` with `first <= last`; ids are at
/// most [`CPU_ID_MAX`]. An empty list, an empty item, a reversed range or anything else is an
/// error, returned as an "expected ..." phrase.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let expected =
        || format!("expected CPU ids from 0 to {CPU_ID_MAX} and ranges like 0-3,8 (first <= last)");
    let id = |text: &str| parse_whole(text, 0..=CPU_ID_MAX).map_err(|_| expected());
    if s.trim().is_empty() {
        return Err(expected());
    }
    let mut cpus = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (id(first)?, id(last)?),
            None => (id(item)?, id(item)?),
        };
        if first > last {
            return Err(expected());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats sorted CPU ids back into the shortest list of ranges (`0-3,8`), the inverse of
/// [`parse_cpu_list`].
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut at = 0;
    while at < cpus.len() {
        let first = cpus[at];
        let mut last = first;
        while at + 1 < cpus.len() && cpus[at + 1] == last + 1 {
            at += 1;
            last = cpus[at];
        }
        items.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        at += 1;
    }
    items.join(",")
}

/// Origins listed in `--cors-allow-origins` at most: a deployment has a handful of front ends; a
/// longer list is a mistake, and each request with an `Origin` is checked against all of them.
pub const CORS_ORIGINS_MAX: usize = 64;

/// Which web origins may read responses (`--cors-allow-origins`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `none` or empty: CORS off.
    None,
    /// `*`: every origin.
    Any,
    /// These origins, lower case, as browsers send them in `Origin`.
    List(Vec<String>),
}

impl std::fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorsOrigins::None => f.write_str("none"),
            CorsOrigins::Any => f.write_str("*"),
            CorsOrigins::List(list) => f.write_str(&list.join(",")),
        }
    }
}

/// Parses `*`, `none` (or an empty value), or a comma-separated list of origins
/// `scheme://host[:port]` (no path, no trailing slash: an `Origin` header never has one),
/// lower-cased as browsers serialise them. A value of only whitespace is refused, as for every
/// option: it is more likely a slip than a wish to turn CORS off.
pub fn cors_origins(raw: &str) -> Result<CorsOrigins, String> {
    const EXPECTED: &str = "expected *, none, or a comma-separated list of origins such as \
                            https://app.example.com,http://localhost:3000";
    let text = raw.trim();
    if raw.is_empty() || text.eq_ignore_ascii_case("none") {
        return Ok(CorsOrigins::None);
    }
    if text.is_empty() {
        return Err(EXPECTED.into());
    }
    if text == "*" {
        return Ok(CorsOrigins::Any);
    }
    let mut list = Vec::new();
    for origin in text.split(',').map(str::trim) {
        let origin = origin.to_ascii_lowercase();
        let Some((scheme, authority)) = origin.split_once("://") else {
            return Err(EXPECTED.into());
        };
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        let authority_ok = !authority.is_empty()
            && !authority.starts_with(':')
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~[]:".contains(&b));
        if !scheme_ok || !authority_ok {
            return Err(EXPECTED.into());
        }
        list.push(origin);
    }
    if list.len() > CORS_ORIGINS_MAX {
        return Err(format!("{EXPECTED} (at most {CORS_ORIGINS_MAX})"));
    }
    Ok(CorsOrigins::List(list))
}

/// The vacancy service's address, from `--vacancy-url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VacancyUrl {
    /// A name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    /// The port, 80 when the URL names none; never 0.
    pub port: u16,
    /// `http://host:port`: explicit port, no trailing slash, IPv6 hosts in brackets.
    pub url: String,
}

/// Parses an etcd client URL, `http://host:port` (the port said: etcd's 2379 is a convention,
/// not HTTP's 80), with the host rules of [`vacancy_url`]. TLS is refused: the etcd client is
/// built without it, and a cluster on a private network is the deployment this serves.
pub fn etcd_url(raw: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected http://host:port such as http://127.0.0.1:2379";
    let parsed = vacancy_url(raw).map_err(|_| EXPECTED.to_string())?;
    let authority = raw.trim().split_once("://").map_or("", |(_, rest)| rest);
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let port_said = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if !port_said {
        return Err(EXPECTED.into());
    }
    Ok(parsed.url)
}

/// Parses a cluster name: an etcd key segment (`cluster::ledger::check_name`).
pub fn cluster_name(raw: &str) -> Result<String, String> {
    crate::cluster::ledger::check_name(raw).map_err(|why| {
        format!("expected a name of 1 to 64 letters, digits, '_', '.' and '-' (this one {why})")
    })?;
    Ok(raw.into())
}

/// Parses `http://host[:port][/]`. The host is a name (letters, digits, `.`, `-`, `_`: container
/// names have underscores), an IPv4 address, or an IPv6 address in brackets; the port defaults to
/// 80 and must not be 0. HTTPS is refused, and so are user info, paths, queries and fragments:
/// ticketd always calls the same fixed paths.
pub fn vacancy_url(raw: &str) -> Result<VacancyUrl, String> {
    const EXPECTED: &str = "expected http://host[:port] such as http://127.0.0.1:8001";
    let text = raw.trim();
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(EXPECTED.into());
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "https is not supported (ticketd speaks plain HTTP/1.1 to the vacancy service); {EXPECTED}"
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(EXPECTED.into());
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or(EXPECTED)?;
        address.parse::<Ipv6Addr>().map_err(|_| EXPECTED)?;
        (address, after)
    } else {
        match authority.find(':') {
            Some(colon) => (&authority[..colon], &authority[colon..]),
            None => (authority, ""),
        }
    };
    let is_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':');
    if host.is_empty() || !host.bytes().all(is_name) {
        return Err(EXPECTED.into());
    }
    let port = match port {
        "" => 80,
        _ => {
            let digits = port.strip_prefix(':').ok_or(EXPECTED)?;
            parse_whole(digits, 1..=u16::MAX).map_err(|_| EXPECTED.to_string())?
        }
    };
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(VacancyUrl {
        host: host.to_string(),
        port,
        url: format!("http://{url_host}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn etcd_urls_say_their_port() {
        assert_eq!(
            etcd_url("http://127.0.0.1:2379").as_deref(),
            Ok("http://127.0.0.1:2379")
        );
        assert_eq!(
            etcd_url("http://[::1]:2379/").as_deref(),
            Ok("http://[::1]:2379")
        );
        assert_eq!(
            etcd_url("http://etcd-1:12379").as_deref(),
            Ok("http://etcd-1:12379")
        );
        for bad in [
            "http://127.0.0.1",
            "http://[::1]",
            "https://h:2379",
            "h:2379",
            "http://h:0",
        ] {
            assert!(etcd_url(bad).is_err(), "{bad}");
        }
        assert!(cluster_name("sale-1").is_ok());
        assert!(cluster_name("a/b").is_err());
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(parse_whole::<u64>("0", 0..=5), Ok(0));
        assert_eq!(parse_whole::<u64>(" 5\t", 0..=5), Ok(5));
        assert_eq!(parse_whole::<u16>("00080", 0..=u16::MAX), Ok(80));
        assert_eq!(whole(1..=3usize)("2"), Ok(2));
        for raw in [
            "",
            "6",
            "+1",
            "-0",
            "1_000",
            "1 000",
            "18446744073709551616",
            "٣",
        ] {
            assert!(parse_whole::<u64>(raw, 0..=5).is_err(), "{raw:?}");
        }
        assert!(parse_whole::<u16>("65536", 0..=u16::MAX).is_err());
        assert_eq!(
            whole(1..=3u8)("4"),
            Err("expected a whole number from 1 to 3".into())
        );
    }

    #[test]
    fn seconds_table() {
        let parse = seconds(0.001..=3600.0);
        let table: &[(&str, Option<Duration>)] = &[
            ("2", Some(Duration::from_secs(2))),
            ("2.0", Some(Duration::from_secs(2))),
            (" 0.5 ", Some(Duration::from_millis(500))),
            ("1e-3", Some(Duration::from_millis(1))),
            ("3600", Some(Duration::from_secs(3600))),
            ("0", None),
            ("0.0009", None),
            ("-1", None),
            ("3600.5", None),
            ("inf", None),
            ("infinity", None),
            ("nan", None),
            ("", None),
            ("2s", None),
            ("1,5", None),
        ];
        for &(raw, expected) in table {
            let parsed = parse(raw).ok().map(Duration::from_secs_f64);
            assert_eq!(parsed, expected, "{raw:?}");
        }
    }

    #[test]
    fn periods() {
        let parse = period(0.1..=3600.0);
        let table: &[(&str, Option<Duration>)] = &[
            ("0", Some(Duration::ZERO)),
            ("0.0", Some(Duration::ZERO)),
            (" 0 ", Some(Duration::ZERO)),
            ("0.1", Some(Duration::from_millis(100))),
            ("2", Some(Duration::from_secs(2))),
            ("1e1", Some(Duration::from_secs(10))),
            ("3600", Some(Duration::from_secs(3600))),
            ("-0", None),
            ("0.09", None),
            ("3600.1", None),
            ("-1", None),
            ("inf", None),
            ("NaN", None),
            ("", None),
            ("10s", None),
        ];
        for &(raw, expected) in table {
            let parsed = parse(raw).ok().map(Duration::from_secs_f64);
            assert_eq!(parsed, expected, "{raw:?}");
        }
    }

    #[test]
    fn words() {
        for (raw, expected) in [
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("On", true),
            ("false", false),
            ("0", false),
            ("No", false),
            ("off", false),
        ] {
            assert_eq!(boolean(raw), Ok(expected), "{raw}");
        }
        assert!(boolean("maybe").is_err());
        for (raw, expected) in [
            ("trace", "trace"),
            ("DEBUG", "debug"),
            ("Info", "info"),
            ("warn", "warn"),
            ("WARNING", "warn"),
            ("error", "error"),
            ("CRITICAL", "error"),
        ] {
            assert_eq!(log_level(raw), Ok(expected), "{raw}");
        }
        assert!(log_level("loud").is_err());
        assert_eq!(ip(" ::1 "), Ok("::1".parse().unwrap()));
        assert!(ip("localhost").is_err());
        assert_eq!(dir("/x y"), Ok(PathBuf::from("/x y")));
        assert!(dir(" \t").is_err());
    }

    #[test]
    fn cpu_lists() {
        let table: &[(&str, Result<&[usize], ()>)] = &[
            ("0", Ok(&[0])),
            ("0-3,8", Ok(&[0, 1, 2, 3, 8])),
            ("8,0-3", Ok(&[0, 1, 2, 3, 8])),
            ("3,3,2-3", Ok(&[2, 3])),
            (" 1 , 2 ", Ok(&[1, 2])),
            ("5-5", Ok(&[5])),
            ("4095", Ok(&[4095])),
            ("", Err(())),
            (" ", Err(())),
            (",", Err(())),
            ("1,", Err(())),
            ("1,,2", Err(())),
            ("3-1", Err(())),
            ("a", Err(())),
            ("1-", Err(())),
            ("-1", Err(())),
            ("1-2-3", Err(())),
            ("4096", Err(())),
            ("0-4096", Err(())),
            ("+1", Err(())),
            ("0x1", Err(())),
            ("1:2", Err(())),
        ];
        for &(raw, expected) in table {
            let parsed = parse_cpu_list(raw);
            assert_eq!(parsed.as_deref().map_err(|_| ()), expected, "{raw:?}");
        }
        assert_eq!(parse_cpu_list("0-4095").map(|cpus| cpus.len()), Ok(4096));
    }

    #[test]
    fn cpu_list_formatting_round_trips() {
        for raw in ["0", "0-3,8", "1,3,5", "0-1,3-4,9-4095"] {
            let cpus = parse_cpu_list(raw).expect(raw);
            assert_eq!(format_cpu_list(&cpus), raw);
        }
    }

    #[test]
    fn vacancy_urls() {
        type Parsed = Result<(&'static str, u16, &'static str), ()>;
        let table: &[(&str, Parsed)] = &[
            (
                "http://127.0.0.1:8001",
                Ok(("127.0.0.1", 8001, "http://127.0.0.1:8001")),
            ),
            (
                "http://127.0.0.1:8001/",
                Ok(("127.0.0.1", 8001, "http://127.0.0.1:8001")),
            ),
            ("HTTP://Vacancy", Ok(("Vacancy", 80, "http://Vacancy:80"))),
            (
                "http://vacancy_service:9000",
                Ok(("vacancy_service", 9000, "http://vacancy_service:9000")),
            ),
            ("http://[::1]:8001", Ok(("::1", 8001, "http://[::1]:8001"))),
            ("http://[::1]", Ok(("::1", 80, "http://[::1]:80"))),
            (" http://a.b-c:1 ", Ok(("a.b-c", 1, "http://a.b-c:1"))),
            ("https://vacancy:8001", Err(())),
            ("ftp://vacancy", Err(())),
            ("vacancy:8001", Err(())),
            ("http://", Err(())),
            ("http://:8001", Err(())),
            ("http://vacancy:", Err(())),
            ("http://vacancy:0", Err(())),
            ("http://vacancy:65536", Err(())),
            ("http://vacancy:80:80", Err(())),
            ("http://vacancy/api", Err(())),
            ("http://vacancy:8001//", Err(())),
            ("http://user@vacancy", Err(())),
            ("http://vacancy?x=1", Err(())),
            ("http://vacancy#x", Err(())),
            ("http://[::1", Err(())),
            ("http://[vacancy]:1", Err(())),
            ("http://::1:8001", Err(())),
            ("http://va cancy", Err(())),
        ];
        for &(raw, expected) in table {
            let parsed = vacancy_url(raw);
            let parsed = parsed
                .as_ref()
                .map(|u| (u.host.as_str(), u.port, u.url.as_str()))
                .map_err(|_| ());
            assert_eq!(parsed, expected, "{raw:?}");
        }
    }
}
