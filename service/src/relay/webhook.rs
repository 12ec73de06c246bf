//! Webhooks as Standard Webhooks define them: the signature, the retry schedule, what an
//! answer means, and which addresses a request may go to (SSRF). Plain Rust, tested without a
//! server; the sink that uses them is `relay::run_webhook`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;

/// `webhook-signature`'s value: `v1,` and the base64 HMAC-SHA256, under the secret's bytes, of
/// `id.timestamp.body`.
pub fn signature(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The key bytes of a `whsec_` secret.
pub fn secret_bytes(secret: &str) -> anyhow::Result<Vec<u8>> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| anyhow::anyhow!("a webhook secret starts with whsec_"))?;
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
}

/// Parses a schedule such as `5s,5m,30m,2h` (units ms, s, m, h).
pub fn parse_schedule(text: &str) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (digits, unit): (String, String) = part.chars().partition(|c| c.is_ascii_digit());
        let n: u64 = digits.parse().map_err(|_| {
            anyhow::anyhow!("--retry-schedule: {part:?} is not a number and a unit")
        })?;
        let d = match unit.as_str() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => anyhow::bail!("--retry-schedule: {part:?}: the unit is ms, s, m or h"),
        };
        if !part.starts_with(|c: char| c.is_ascii_digit()) {
            anyhow::bail!("--retry-schedule: {part:?}: the number comes first");
        }
        out.push(d);
    }
    Ok(out)
}

/// `d` with up to ±20% jitter, from `random` (any u64).
pub fn jittered(d: Duration, random: u64) -> Duration {
    let f = 0.8 + 0.4 * (random % 10_001) as f64 / 10_000.0;
    d.mul_f64(f)
}

/// A `Retry-After` header: seconds, or an HTTP date.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// What an answer means for the delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 410 Gone: the endpoint is disabled.
    Gone,
    Failed,
}

pub fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Gone,
        _ => Outcome::Failed,
    }
}

/// Which addresses a webhook may target: public ones, and the private ones an operator allowed.
#[derive(Clone, Debug, Default)]
pub struct TargetPolicy {
    pub allowed: Vec<IpNet>,
}

impl TargetPolicy {
    pub fn new(cidrs: &[String]) -> anyhow::Result<TargetPolicy> {
        let mut allowed = Vec::new();
        for c in cidrs.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
            let net: IpNet = match c.parse() {
                Ok(n) => n,
                Err(_) => c
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| anyhow::anyhow!("--allow-private-targets: {c:?} is not a CIDR"))?,
            };
            allowed.push(net);
        }
        Ok(TargetPolicy { allowed })
    }

    /// Whether a request may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_private(ip) || self.allowed.iter().any(|n| n.contains(&ip))
    }
}

/// An IPv4 address written as IPv6 is that IPv4 address: mapped (::ffff:a.b.c.d), compatible
/// (::a.b.c.d), NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48) and 6to4 (2002::/16).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let o = v6.octets();
            let tail = || IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            if s[0..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
                return tail();
            }
            if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) {
                return tail();
            }
            if s[0] == 0x2002 {
                return IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Loopback, private, link-local, shared (CGNAT), documentation, benchmarking, multicast,
/// reserved and unspecified addresses: none is a public webhook receiver.
pub fn is_private(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_unspecified()
                || a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])
                || a == Ipv6Addr::UNSPECIFIED
        }
    }
}

/// The DNS resolver of the webhook client: a name resolves to its permitted addresses only,
/// and to an error when it has none, so that a request never connects to a refused address
/// however the name resolves (rebinding included: the address checked is the one used).
pub struct GuardedResolver {
    pub policy: Arc<TargetPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                // (Which addresses, the error does not say: a tenant reads it, and the relay's
                // network is not the tenant's to map.)
                let e: Box<dyn std::error::Error + Send + Sync> = format!(
                    "refused: {host} resolves only to private, loopback or link-local addresses; --allow-private-targets allows such networks"
                )
                .into();
                return Err(e);
            }
            let it: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(it)
        })
    }
}

/// Whether `url`'s host, when it is an address written out (no name to resolve), is permitted.
pub fn literal_host_refused(url: &reqwest::Url, policy: &TargetPolicy) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(a) => IpAddr::V4(a),
        url::Host::Ipv6(a) => IpAddr::V6(a),
        url::Host::Domain(_) => return None,
    };
    (!policy.permits(ip)).then(|| {
        format!("refused: {ip} is a private, loopback or link-local address; --allow-private-targets allows such networks")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (its README).
        let secret = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn schedules() {
        let s = parse_schedule("5s,5m,30m,2h,5h,10h,10h").unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!(s[1], Duration::from_secs(300));
        assert_eq!(s[6], Duration::from_secs(36_000));
        assert_eq!(
            parse_schedule("50ms,1s").unwrap(),
            vec![Duration::from_millis(50), Duration::from_secs(1)]
        );
        assert!(parse_schedule("5x").is_err());
        assert!(parse_schedule("s5").is_err());
        for r in [0, 5_000, 10_000, u64::MAX] {
            let j = jittered(Duration::from_secs(10), r);
            assert!(
                j >= Duration::from_secs(8) && j <= Duration::from_secs(12),
                "{j:?}"
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn private_targets_are_refused_unless_allowed() {
        let none = TargetPolicy::default();
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!none.permits(a.parse().unwrap()), "{a} permitted");
        }
        for a in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            assert!(none.permits(a.parse().unwrap()), "{a} refused");
        }
        let lo = TargetPolicy::new(&["127.0.0.1/32".into(), "::1".into()]).unwrap();
        assert!(lo.permits("127.0.0.1".parse().unwrap()));
        assert!(lo.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(lo.permits("::1".parse().unwrap()));
        assert!(!lo.permits("127.0.0.2".parse().unwrap()));
        assert!(TargetPolicy::new(&["localhost".into()]).is_err());
        let url = reqwest::Url::parse("http://[::ffff:7f00:1]:8080/x").unwrap();
        assert!(literal_host_refused(&url, &none).is_some());
        assert!(literal_host_refused(&url, &lo).is_none());
    }

    #[test]
    fn answers() {
        assert_eq!(outcome(200), Outcome::Delivered);
        assert_eq!(outcome(204), Outcome::Delivered);
        assert_eq!(outcome(410), Outcome::Gone);
        assert_eq!(outcome(301), Outcome::Failed);
        assert_eq!(outcome(500), Outcome::Failed);
        assert_eq!(outcome(429), Outcome::Failed);
    }
}
