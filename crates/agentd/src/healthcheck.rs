//! `agentd healthcheck`: asks this host's server for `GET /readyz` and exits 0 when it is ready, 1 otherwise,
//! as a container `HEALTHCHECK` expects — so the slim image needs no curl. The address comes from `BIND_ADDR`
//! (a wildcard bind is asked on loopback) unless `--url` is given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The readiness URL of a server bound to `bind`.
pub fn readyz_url(bind: SocketAddr) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, bind.port()))
}

/// `Ok` when the server answers 200; otherwise what is wrong, for the container's health log.
pub async fn check(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let res = client
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: no answer ({e})"))?;
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or("no error body");
    anyhow::bail!("{url}: {status}: {message}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcard_binds_are_asked_on_loopback() {
        let url = |s: &str| super::readyz_url(s.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/readyz");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/readyz");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80/readyz");
    }
}
