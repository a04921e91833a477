//! The egress policy: where block and notification URLs may point (SPEC §8, issue #19). Checked twice:
//! on the URL's literal when a pipeline, a schedule or a notification target is saved (a 422 naming the
//! field), and on every address the host resolves to when the worker calls it ([`CheckedResolver`]), so
//! that a name that resolves to a private address later (DNS rebinding) does not pass. Redirects are
//! never followed (the worker's client has no redirect handling: a 3xx is a failed attempt).
//!
//! - `public` (the default, and what a deployment gets): `https` only, and only globally routable
//!   addresses — no loopback (inside Lambda, `127.0.0.1:9001` is the Runtime API), link-local
//!   (`169.254.169.254` is the metadata service), private, shared (CGNAT), unique-local, unspecified,
//!   multicast, broadcast or documentation address.
//! - `private` (`KICKOFF_EGRESS=private`, a deployment whose blocks live in its VPC): also `http` and
//!   private, shared and unique-local addresses; still no loopback or link-local.
//! - `loopback` (`KICKOFF_EGRESS=loopback`: the embedded server's default, and the tests'): also
//!   `http` and loopback addresses, for blocks on the developer's own machine.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use crate::{Error, Result};

/// Where block and notification URLs may point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Public,
    Private,
    Loopback,
}

static POLICY: AtomicU8 = AtomicU8::new(0);

impl Policy {
    fn code(self) -> u8 {
        match self {
            Policy::Public => 1,
            Policy::Private => 2,
            Policy::Loopback => 3,
        }
    }

    /// `KICKOFF_EGRESS`: `public` (also when unset or not one of the three), `private` or `loopback`.
    pub fn from_env() -> Policy {
        match std::env::var("KICKOFF_EGRESS").as_deref() {
            Ok("private") => Policy::Private,
            Ok("loopback") => Policy::Loopback,
            _ => Policy::Public,
        }
    }

    /// The process's policy: the one [`set`] chose, else [`Policy::from_env`].
    pub fn current() -> Policy {
        match POLICY.load(Ordering::Relaxed) {
            2 => Policy::Private,
            3 => Policy::Loopback,
            1 => Policy::Public,
            _ => {
                let p = Policy::from_env();
                POLICY.store(p.code(), Ordering::Relaxed);
                p
            }
        }
    }

    /// Whether a plain `http://` URL is allowed (it sends the callback token in clear).
    pub fn allows_http(self) -> bool {
        self != Policy::Public
    }

    /// Whether the worker may connect to `ip`.
    pub fn allows(self, ip: IpAddr) -> bool {
        match class(ip) {
            Class::Global => true,
            Class::Private => self == Policy::Private,
            Class::Loopback => self == Policy::Loopback,
            Class::Never => false,
        }
    }
}

/// Chooses the process's policy (the embedded server and the tests; a function takes the variable).
pub fn set(policy: Policy) {
    POLICY.store(policy.code(), Ordering::Relaxed);
}

#[derive(Debug, PartialEq)]
enum Class {
    Global,
    Private,
    Loopback,
    /// Link-local, unspecified, multicast, broadcast, documentation, benchmarking, reserved.
    Never,
}

fn class(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => class_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => class_v4(v4),
            None => class_v6(v6),
        },
    }
}

fn class_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Class::Private // 10/8, 172.16/12, 192.168/16, and 100.64/10 (shared, CGNAT)
    } else if ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 198 && (18..20).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
    {
        Class::Never
    } else {
        Class::Global
    }
}

fn class_v6(ip: Ipv6Addr) -> Class {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Class::Loopback
    } else if first & 0xfe00 == 0xfc00 {
        Class::Private // fc00::/7, unique local
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || first & 0xffc0 == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b
    // NAT64: an IPv4 address behind it
    {
        Class::Never
    } else {
        Class::Global
    }
}

/// Checks a block or notification URL's literal under `policy`: its scheme, and its host when that is
/// an address or `localhost`. 422 naming `field`.
pub fn check_url(field: &str, url: &str, policy: Policy) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::Unprocessable(format!("{field}: {why} (egress policy `{}`)", policy_name(policy))))
    };
    let Ok(uri) = url.parse::<http::Uri>() else { return refuse("not a URL") };
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if policy.allows_http() => {}
        Some("http") => return refuse("must be https:// (http:// would send the callback token in clear)"),
        _ => return refuse("must be an https:// URL"),
    }
    let Some(host) = uri.host() else { return refuse("has no host") };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !policy.allows(ip) {
            return refuse(&format!("{ip} is not a public address"));
        }
    } else {
        let lower = host.to_ascii_lowercase();
        if (lower == "localhost" || lower.ends_with(".localhost")) && policy != Policy::Loopback {
            return refuse("localhost is not a public address");
        }
    }
    Ok(())
}

fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::Public => "public",
        Policy::Private => "private",
        Policy::Loopback => "loopback",
    }
}

/// The worker's DNS resolver: the system's, keeping only the addresses the policy allows (an error if
/// none is left), so that the connection goes to a checked address.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver(pub Policy);

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "the egress policy `{}` refuses {host}: it resolves to no public address",
                        policy_name(policy)
                    ),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_passes_by_default() {
        let p = Policy::Public;
        assert!(check_url("u", "https://example.com/x", p).is_ok());
        assert!(check_url("u", "https://93.184.216.34/x", p).is_ok());
        for bad in [
            "http://example.com/x",
            "https://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
            "https://172.16.3.4/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://localhost:6789/",
            "https://api.localhost/",
            "ftp://example.com/",
        ] {
            let e = check_url("blocks[0].executor.url", bad, p).unwrap_err().to_string();
            assert!(
                e.starts_with("blocks[0].executor.url: ") && e.contains("egress policy `public`"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_opt_ins_allow_what_they_name_and_no_more() {
        assert!(check_url("u", "http://127.0.0.1:8080/x", Policy::Loopback).is_ok());
        assert!(check_url("u", "http://localhost:8080/x", Policy::Loopback).is_ok());
        assert!(check_url("u", "http://10.1.2.3/x", Policy::Loopback).is_err());
        assert!(check_url("u", "http://10.1.2.3/x", Policy::Private).is_ok());
        assert!(check_url("u", "https://[fd12::1]/x", Policy::Private).is_ok());
        for p in [Policy::Loopback, Policy::Private] {
            assert!(check_url("u", "http://169.254.169.254/", p).is_err(), "{p:?}");
        }
        assert!(check_url("u", "http://127.0.0.1/", Policy::Private).is_err());
    }

    #[tokio::test]
    async fn the_resolver_drops_addresses_the_policy_refuses() {
        use tower_service::Service;
        let name: Name = "localhost".parse().unwrap();
        let refused = CheckedResolver(Policy::Public).call(name.clone()).await;
        assert_eq!(refused.unwrap_err().kind(), std::io::ErrorKind::PermissionDenied);
        let allowed: Vec<SocketAddr> = CheckedResolver(Policy::Loopback).call(name).await.unwrap().collect();
        assert!(!allowed.is_empty() && allowed.iter().all(|a| a.ip().is_loopback()));
    }
}
