//! A three-node JetStream cluster on loopback, started by the test itself from
//! `deploy/nats/cluster.conf`, so nodes can be killed and restarted without touching the
//! shared server.

use std::path::PathBuf;
use std::time::Duration;
use tokio::process::{Child, Command};

/// One node: its ports and, while it runs, its process.
struct Node {
    name: String,
    client_port: u16,
    http_port: u16,
    route_port: u16,
    child: Option<Child>,
}

pub struct NatsCluster {
    nodes: Vec<Node>,
    binary: PathBuf,
    dir: PathBuf,
}

/// The repository root (the tests crate lives one level below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The nats-server binary `deploy/stack.sh` runs (2.10+; Debian's 2.9 has no `sync_interval`).
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TALLY_NATS_SERVER") {
        return path.into();
    }
    let out = std::process::Command::new(repo_root().join("deploy/stack.sh"))
        .arg("nats-binary")
        .output()
        .expect("deploy/stack.sh nats-binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl NatsCluster {
    /// Starts three nodes and waits until JetStream has a meta leader.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("tally-nats-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let nodes = (1..=3)
            .map(|i| Node {
                name: format!("n{i}"),
                client_port: free_port(),
                http_port: free_port(),
                route_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            nodes,
            binary: nats_server_binary(),
            dir,
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.wait_for_meta_leader().await;
        cluster.wait_for_placement().await;
        cluster
    }

    /// Every node's client URL, comma-separated, as a client configuration lists them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node called `name` (as JetStream reports leaders).
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// SIGKILL: no shutdown, nothing flushed beyond what the node already wrote.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.start_kill().expect("SIGKILL the node");
            let _ = child.wait().await;
        }
    }

    /// Starts node `i` again on the same ports and store.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.route_port))
            .collect();
        let node = &self.nodes[i];
        let log = std::fs::File::create(self.dir.join(format!("{}.log", node.name)))
            .expect("node log file");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(repo_root().join("deploy/nats/cluster.conf"))
            .env("TALLY_NATS_NAME", &node.name)
            .env("TALLY_NATS_HOST", "127.0.0.1")
            .env("TALLY_NATS_PORT", node.client_port.to_string())
            .env("TALLY_NATS_HTTP", node.http_port.to_string())
            .env("TALLY_NATS_CLUSTER", node.route_port.to_string())
            .env("TALLY_NATS_ROUTE1", &routes[0])
            .env("TALLY_NATS_ROUTE2", &routes[1])
            .env("TALLY_NATS_STORE", self.dir.join(&node.name))
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts");
        self.nodes[i].child = Some(child);
    }

    /// Waits for a meta leader that sees both other nodes current: before that, a stream
    /// with three replicas finds "no suitable peers for placement".
    async fn wait_for_meta_leader(&self) {
        let client = reqwest::Client::new();
        let what = format!(
            "the cluster to elect a JetStream meta leader (logs in {})",
            self.dir.display()
        );
        crate::wait_until(what, Duration::from_secs(30), async || {
            for node in &self.nodes {
                let url = format!("http://127.0.0.1:{}/jsz", node.http_port);
                if let Ok(r) = client.get(url).send().await
                    && let Ok(body) = r.json::<serde_json::Value>().await
                    && body["meta_cluster"]["leader"].is_string()
                    && meta_peers_current(&body)
                {
                    return true;
                }
            }
            false
        })
        .await;
    }
}

impl NatsCluster {
    /// Waits until a stream with three replicas can be placed: a peer that has just started
    /// may still count as offline ("no suitable peers for placement") for a moment after the
    /// meta leader sees it.
    async fn wait_for_placement(&self) {
        let url = self.url();
        let client = async_nats::connect(url.split(',').collect::<Vec<_>>())
            .await
            .expect("a cluster connection");
        let js = async_nats::jetstream::new(client);
        let what = format!(
            "the cluster to place a stream on three nodes (logs in {})",
            self.dir.display()
        );
        crate::wait_until(what, Duration::from_secs(30), async || {
            let probe = async_nats::jetstream::stream::Config {
                name: "PLACEMENT_PROBE".into(),
                subjects: vec!["placement.probe".into()],
                num_replicas: 3,
                ..Default::default()
            };
            match js.create_stream(probe).await {
                Ok(_) => js
                    .delete_stream("PLACEMENT_PROBE")
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }
}

/// Whether the meta leader reports both other nodes as current peers.
fn meta_peers_current(jsz: &serde_json::Value) -> bool {
    jsz["meta_cluster"]["replicas"]
        .as_array()
        .is_some_and(|peers| peers.len() == 2 && peers.iter().all(|p| p["current"] == true))
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
