//! A loopback TCP proxy that a test can switch off, to cut a service's connection to a
//! shared server (Postgres, NATS) without stopping that server.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub addr: SocketAddr,
    open: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding `127.0.0.1:<random>` to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(watch::channel(true).0);
        let state = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(client); // refused: closed at once
                    continue;
                }
                let mut closed = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = closed.wait_for(|open| !open) => {} // cut: both sides dropped
                    }
                });
            }
        });
        Self { addr, open, task }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }

    /// `url` with its host:port replaced by the proxy's.
    pub fn rewrite(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("url has a scheme");
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (userinfo, _) = authority
            .rsplit_once('@')
            .map_or(("", authority), |(u, h)| (u, h));
        let at = if userinfo.is_empty() { "" } else { "@" };
        let slash = if path.is_empty() && !rest.contains('/') {
            ""
        } else {
            "/"
        };
        format!("{scheme}://{userinfo}{at}{}{slash}{path}", self.addr)
    }
}

/// `host:port` of a URL, resolved to a socket address.
pub fn target_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port.parse().expect("URL names 127.0.0.1:port")
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_rewritten_to_the_proxy() {
        let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
        let a = proxy.addr;
        assert_eq!(
            proxy.rewrite("postgres://u:p@127.0.0.1:5432/db"),
            format!("postgres://u:p@{a}/db")
        );
        assert_eq!(
            proxy.rewrite("nats://127.0.0.1:4222"),
            format!("nats://{a}")
        );
        assert_eq!(
            target_of("postgres://u:p@127.0.0.1:5432/db"),
            "127.0.0.1:5432".parse().unwrap()
        );
        assert_eq!(
            target_of("nats://localhost:4232"),
            "127.0.0.1:4232".parse().unwrap()
        );
    }
}
