//! Where deliveries may go, and how many may be under way to one place.
//!
//! **Private destinations.** Channel and contact URLs come from API users, so a URL could
//! point the server at itself, the cloud metadata service or another internal host (SSRF).
//! Unless the operator allows private destinations (`allow_private_destinations`, as
//! Healthchecks' `INTEGRATIONS_ALLOW_PRIVATE_IPS`), every address a request would connect to
//! must be public: host names are checked after DNS resolution (by [`PublicResolver`], so a
//! public name resolving to a private address is refused too), IP literals (which never reach
//! a resolver) by [`check_url`], and redirect targets by the client's redirect policy. A
//! refusal happens before any connection, so it tells nothing about what listens there.
//!
//! **Lanes.** At most `total` sends at once, and at most [`PER_DESTINATION`] to one
//! destination (`host:port`, or the SMTP relay), so one slow or hanging receiver holds up
//! only its own deliveries.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// Sends under way to one destination at once. Small: Healthchecks sends one at a time, and a
/// receiver with a short listen backlog drops connection attempts beyond what it accepts.
pub const PER_DESTINATION: usize = 4;

/// What a delivery log says when a destination is refused.
pub const PRIVATE_REFUSED: &str = "destination is a private address (not delivered: set \
     allow_private_destinations to deliver to hosts on a private network)";

/// The error a refused destination raises inside the HTTP client; found again in the error's
/// source chain by [`is_refused`].
#[derive(Debug)]
pub struct PrivateDestination;

impl std::fmt::Display for PrivateDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(PRIVATE_REFUSED)
    }
}

impl std::error::Error for PrivateDestination {}

/// True if an error (or one of its sources) is a refused private destination.
pub fn is_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<PrivateDestination>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// True if `ip` is an address on the public internet: not loopback, private, link-local,
/// shared (CGNAT), multicast, reserved, documentation or benchmarking space. IPv6 addresses
/// that embed an IPv4 address (IPv4-mapped, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                  // "this network" 0.0.0.0/8
        || a == 10                            // private 10/8
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64/10
        || a == 127                           // loopback 127/8
        || (a == 169 && b == 254)             // link-local 169.254/16 (cloud metadata)
        || (a == 172 && (16..32).contains(&b)) // private 172.16/12
        || (a == 192 && b == 0 && c == 0)     // IETF protocol assignments 192.0.0/24
        || (a == 192 && b == 0 && c == 2)     // documentation 192.0.2/24
        || (a == 192 && b == 88 && c == 99)   // 6to4 relay anycast 192.88.99/24
        || (a == 192 && b == 168)             // private 192.168/16
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100)  // documentation 198.51.100/24
        || (a == 203 && b == 0 && c == 113)   // documentation 203.0.113/24
        || a >= 224) // multicast 224/4, reserved 240/4, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => is_public_v4(embedded(hi, lo)),
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        [0, 0, 0, 0, 0, 0, _, _] => false,
        // NAT64 64:ff9b::/96 reaches the embedded IPv4 address
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded(hi, lo)),
        // local-use NAT64 64:ff9b:1::/48
        [0x64, 0xff9b, 1, ..] => false,
        // 6to4 2002:a.b.c.d::/48 reaches the embedded IPv4 address
        [0x2002, hi, lo, ..] => is_public_v4(embedded(hi, lo)),
        // discard-only 100::/64
        [0x100, 0, 0, 0, ..] => false,
        // IETF protocol assignments 2001::/23 (Teredo, ORCHID, benchmarking)
        [0x2001, b, ..] if b < 0x200 => false,
        // documentation 2001:db8::/32
        [0x2001, 0xdb8, ..] => false,
        // unique local fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8
        [a, ..] if (a & 0xfe00) == 0xfc00 || (a & 0xffc0) == 0xfe80 || (a & 0xffc0) == 0xfec0 => {
            false
        }
        [a, ..] if (a & 0xff00) == 0xff00 => false,
        _ => true,
    }
}

/// Refuses a URL whose host is a non-public IP literal (`http://127.1/`, `http://[fd00::1]/`,
/// `http://2130706433/`: the URL parser has already turned every IPv4 spelling into an
/// address). Host names are left to [`PublicResolver`].
pub fn check_url(url: &reqwest::Url) -> Result<(), PrivateDestination> {
    // IPv6 hosts come bracketed; a name does not parse as an address.
    let host = url.host_str().unwrap_or_default();
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(PrivateDestination)
    }
}

/// The system resolver, keeping only public addresses; a name with none is refused.
pub struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(
                    Box::new(PrivateDestination) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Follows at most three redirects, as Healthchecks does, and (unless private destinations
/// are allowed) none to a private IP literal; redirects to names go through the resolver.
pub fn redirect_policy(allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 3 {
            attempt.error("too many redirects")
        } else if !allow_private && check_url(attempt.url()).is_err() {
            attempt.error(PrivateDestination)
        } else {
            attempt.follow()
        }
    })
}

/// The destination an address is delivered to, for the per-destination limit: `host:port` of
/// a URL, `smtp` for email (one relay sends them all).
pub fn destination_of(address: &str) -> String {
    match reqwest::Url::parse(address) {
        Ok(url) if url.has_host() => format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(0)
        ),
        _ => "smtp".into(),
    }
}

/// Concurrency limits shared by the outbox dispatcher and the pager.
#[derive(Clone)]
pub struct Lanes {
    total: Arc<Semaphore>,
    per_destination: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Lanes {
    pub fn new(total: usize) -> Lanes {
        Lanes {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_destination: Arc::default(),
        }
    }

    /// Runs `send` once its destination has a free lane and a send slot is free. A send
    /// waiting for its destination does not hold a slot others could use.
    pub async fn run<F: Future>(&self, destination: &str, send: F) -> F::Output {
        let lane = self
            .per_destination
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(destination.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_DESTINATION)))
            .clone();
        let output = {
            let _lane = lane.acquire().await.expect("never closed");
            let _slot = self.total.acquire().await.expect("never closed");
            send.await
        };
        drop(lane);
        // Forget destinations nobody is sending to (clones are only made under this lock).
        let mut lanes = self
            .per_destination
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if lanes
            .get(destination)
            .is_some_and(|lane| Arc::strong_count(lane) == 1)
        {
            lanes.remove(destination);
        }
        output
    }
}

/// Rows (or messages) in hand for one destination at most: what its lanes take, and as many
/// waiting. A destination with that many gets no more claimed until one finishes; its rows
/// stay in the store, so a slow receiver does not crowd out the others.
pub const HELD_PER_DESTINATION: usize = 2 * PER_DESTINATION;
/// Sends in hand at most, in multiples of the number sent at once.
pub const HELD_PER_SLOT: usize = 4;

/// What a delivery loop has claimed and not yet recorded, by the send task carrying it: a
/// row claimed again (its lease ran out while it waited here) is recognised, not sent twice.
pub struct Held<K> {
    /// Row id → (what leaves it out of the next claim: its channel or address, destination).
    rows: HashMap<i64, (K, String)>,
    /// Sends in hand per destination.
    per_destination: HashMap<String, usize>,
    /// Send task → (destination, its rows).
    tasks: HashMap<tokio::task::Id, (String, Vec<i64>)>,
}

impl<K> Default for Held<K> {
    fn default() -> Self {
        Held {
            rows: HashMap::new(),
            per_destination: HashMap::new(),
            tasks: HashMap::new(),
        }
    }
}

impl<K: Clone + Ord> Held<K> {
    /// A send task carrying `rows` (id and claim key) to `destination`.
    pub fn add(&mut self, rows: Vec<(i64, K)>, destination: String, task: tokio::task::Id) {
        *self.per_destination.entry(destination.clone()).or_default() += 1;
        let ids = rows.iter().map(|(id, _)| *id).collect();
        for (id, key) in rows {
            self.rows.insert(id, (key, destination.clone()));
        }
        self.tasks.insert(task, (destination, ids));
    }

    /// A send task ended: recorded, or (a panic) left to be retried when its lease runs out.
    pub fn release(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let task = done.map_or_else(|e| e.id(), |(id, ())| id);
        let Some((destination, ids)) = self.tasks.remove(&task) else {
            return;
        };
        for id in ids {
            self.rows.remove(&id);
        }
        if let Some(count) = self.per_destination.get_mut(&destination) {
            *count -= 1;
            if *count == 0 {
                self.per_destination.remove(&destination);
            }
        }
    }

    pub fn holds(&self, id: i64) -> bool {
        self.rows.contains_key(&id)
    }

    /// Send tasks in hand.
    pub fn sends(&self) -> usize {
        self.tasks.len()
    }

    /// Claim keys of the destinations that have all they may hold.
    pub fn busy(&self) -> Vec<K> {
        let mut busy: Vec<K> = self
            .rows
            .values()
            .filter(|(_, d)| {
                self.per_destination.get(d).copied().unwrap_or(0) >= HELD_PER_DESTINATION
            })
            .map(|(key, _)| key.clone())
            .collect();
        busy.sort_unstable();
        busy.dedup();
        busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn every_non_public_range_is_recognised() {
        for refused in [
            "0.0.0.0",
            "0.255.1.2",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!public(refused), "{refused} should be refused");
        }
        for allowed in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.254",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450::1",
        ] {
            assert!(public(allowed), "{allowed} should be allowed");
        }
    }

    #[test]
    fn ip_literals_in_any_spelling_are_checked() {
        for refused in [
            "http://127.1/hook",
            "http://2130706433/hook",
            "http://0x7f.0.0.1/hook",
            "http://0177.0.0.1/hook",
            "http://[::1]:8080/hook",
            "http://[::ffff:169.254.169.254]/latest",
            "http://169.254.169.254/latest/meta-data",
            "http://[fd00::1]/hook",
            "http://10.1.2.3:9000/hook",
        ] {
            let url = reqwest::Url::parse(refused).unwrap();
            assert!(check_url(&url).is_err(), "{refused} should be refused");
        }
        for allowed in ["https://8.8.8.8/hook", "https://hooks.slack.com/services/x"] {
            let url = reqwest::Url::parse(allowed).unwrap();
            assert!(check_url(&url).is_ok(), "{allowed} should be allowed");
        }
    }

    /// A loopback HTTP server that redirects `/` to `location` and counts other requests.
    async fn redirector(location: String) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let others = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = others.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let answer = if head.starts_with("GET / ") {
                    format!(
                        "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        location.replace("PORT", &port.to_string())
                    )
                } else {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
                };
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (port, others)
    }

    #[tokio::test]
    async fn redirects_to_private_destinations_are_refused() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        for location in [
            "http://127.0.0.1:PORT/secret",
            "http://localhost:PORT/secret",
        ] {
            let (port, others) = redirector(location.into()).await;
            // `public.test` stands for a public host name (the override skips the resolver).
            let client = reqwest::Client::builder()
                .redirect(redirect_policy(false))
                .dns_resolver(Arc::new(PublicResolver))
                .resolve("public.test", SocketAddr::from(([127, 0, 0, 1], port)))
                .build()
                .unwrap();
            let url = format!("http://public.test:{port}/");
            let error = client.get(&url).send().await.unwrap_err();
            assert!(is_refused(&error), "{location}: {error:?}");
            assert_eq!(others.load(std::sync::atomic::Ordering::SeqCst), 0);
            // Allowed, the same redirect is followed.
            let client = reqwest::Client::builder()
                .redirect(redirect_policy(true))
                .resolve("public.test", SocketAddr::from(([127, 0, 0, 1], port)))
                .build()
                .unwrap();
            assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
            assert_eq!(others.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn destinations_are_host_and_port() {
        assert_eq!(
            destination_of("https://hooks.slack.com/a/b"),
            "hooks.slack.com:443"
        );
        assert_eq!(
            destination_of("http://127.0.0.1:9/h#secret=x"),
            "127.0.0.1:9"
        );
        assert_eq!(destination_of("bob@example.com"), "smtp");
    }
}
