//! A loopback TCP proxy between a service and a server, to make network faults without
//! touching the server (which may be shared): delay every chunk, drop every byte while
//! keeping connections open, close connections, or reset them. toxiproxy's server cannot be
//! installed here; this does what the fault tests need of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic, switchable at any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards everything.
    Pass,
    /// Holds each chunk this long before forwarding it: a slow, laggy link.
    Delay(Duration),
    /// Accepts and discards every byte, both ways, keeping connections open: a black hole.
    Drop,
    /// Closes every connection and refuses new ones (closed at once).
    Cut,
    /// Resets every connection (RST, not FIN) and resets new ones.
    Reset,
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding `127.0.0.1:<random>` to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(watch::channel(Mode::Pass).0);
        let state = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let current = *state.borrow();
                match current {
                    Mode::Cut => drop(client),
                    Mode::Reset => reset(&client),
                    Mode::Pass | Mode::Delay(_) | Mode::Drop => {
                        let mode = state.subscribe();
                        tokio::spawn(async move {
                            if let Ok(upstream) = TcpStream::connect(target).await {
                                forward(client, upstream, mode).await;
                            }
                        });
                    }
                }
            }
        });
        Self { addr, mode, task }
    }

    /// Switches what the proxy does, for existing and new connections.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.set(Mode::Cut);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.set(Mode::Pass);
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

/// Closes `stream` with a RST: linger zero makes the close abortive.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Carries one connection both ways until either side closes or the mode severs it.
async fn forward(mut client: TcpStream, mut upstream: TcpStream, mut mode: watch::Receiver<Mode>) {
    let severed = {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let up = pump(&mut client_read, &mut upstream_write, mode.clone());
        let down = pump(&mut upstream_read, &mut client_write, mode.clone());
        tokio::select! {
            _ = up => None,
            _ = down => None,
            m = mode.wait_for(|m| matches!(m, Mode::Cut | Mode::Reset)) => m.ok().map(|m| *m),
        }
    };
    if severed == Some(Mode::Reset) {
        reset(&client);
        reset(&upstream);
    }
}

/// Copies one direction, chunk by chunk, applying the mode current when each chunk arrives.
async fn pump<R, W>(from: &mut R, to: &mut W, mode: watch::Receiver<Mode>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::Pass => {}
            Mode::Delay(by) => tokio::time::sleep(by).await,
            Mode::Drop => continue,
            Mode::Cut | Mode::Reset => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
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
    use std::time::Instant;

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

    /// An echo server behind the proxy, to see each mode from the client's side.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, within: Duration) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(within, stream.read_exact(&mut buf)).await {
            Ok(r) => r.map(|_| buf.to_vec()),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    #[tokio::test]
    async fn each_mode_does_what_it_says_to_a_live_connection() {
        let proxy = TcpProxy::start(echo().await).await;
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let second = Duration::from_secs(1);
        assert_eq!(round_trip(&mut stream, second).await.unwrap(), b"ping");

        proxy.set(Mode::Delay(Duration::from_millis(150)));
        let started = Instant::now();
        assert_eq!(round_trip(&mut stream, second).await.unwrap(), b"ping");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "both ways held"
        );

        proxy.set(Mode::Drop);
        let dropped = round_trip(&mut stream, Duration::from_millis(300)).await;
        assert_eq!(dropped.unwrap_err().kind(), std::io::ErrorKind::TimedOut);

        proxy.set(Mode::Reset);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(second, stream.read(&mut buf)).await;
        assert_eq!(
            read.expect("the reset arrives").unwrap_err().kind(),
            std::io::ErrorKind::ConnectionReset
        );

        proxy.set(Mode::Cut);
        let mut fresh = TcpStream::connect(proxy.addr).await.unwrap();
        let read = tokio::time::timeout(second, fresh.read(&mut buf)).await;
        assert_eq!(read.expect("closed at once").unwrap(), 0, "EOF, not a hang");

        proxy.restore();
        let mut fresh = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut fresh, second).await.unwrap(), b"ping");
    }
}
