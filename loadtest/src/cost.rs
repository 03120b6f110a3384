//! CPU per acknowledged event, read from outside: each process group's CPU time (user +
//! system, from `/proc/<pid>/stat`) sampled before and after a window, divided by the events
//! acknowledged in it. Groups are found by name in `/proc`: ingest, the writer (workers), the
//! aggregator, nats-server, Postgres, Redis, ClickHouse, the do-nothing handler, and the
//! generator itself (this process).
//!
//! A group's CPU is the sum over its live processes plus the children's time (`cutime` +
//! `cstime`) of its roots, the members whose parent is not in the group. A process that exits
//! takes its time out of `/proc`, but when its parent reaps it the time moves into the
//! parent's children's time: Postgres backends that end during a window are counted through
//! the postmaster's, Redis's save children through redis-server's. A process reaped by
//! anything outside its group is lost, and every process of a name counts (a second
//! nats-server or a test's Postgres backends on the same box too), so measure on a quiet box.
//! The kernel counts in clock ticks (10 ms at the usual 100 Hz) per process: short windows
//! are coarse.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A process group, in the order of the report's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Ingest,
    NatsServer,
    Postgres,
    Aggregator,
    Workers,
    Redis,
    ClickHouse,
    /// This process: the load generator (and whatever children it reaped).
    Generator,
    /// The do-nothing handler, `tally-noop`.
    Noop,
}

impl Group {
    pub const ALL: [Group; 9] = [
        Group::Ingest,
        Group::NatsServer,
        Group::Postgres,
        Group::Aggregator,
        Group::Workers,
        Group::Redis,
        Group::ClickHouse,
        Group::Generator,
        Group::Noop,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Group::Ingest => "ingest",
            Group::NatsServer => "nats-server",
            Group::Postgres => "postgres",
            Group::Aggregator => "aggregator",
            Group::Workers => "workers",
            Group::Redis => "redis",
            Group::ClickHouse => "clickhouse",
            Group::Generator => "generator",
            Group::Noop => "tally-noop",
        }
    }

    /// Part of the pipeline's total: everything but the generator and the do-nothing handler.
    pub fn in_pipeline(self) -> bool {
        !matches!(self, Group::Generator | Group::Noop)
    }
}

/// The kernel keeps 15 bytes of a process's name in `comm`.
const COMM_LEN: usize = 15;

/// The group a process belongs to, by its `comm` and, where `comm` cuts the name short, the
/// program name in its command line (`argv`, NUL-separated as in `/proc/<pid>/cmdline`).
/// The generator is found by its pid, not here.
pub fn classify(comm: &str, cmdline: &str) -> Option<Group> {
    let mut argv = cmdline.split('\0').filter(|a| !a.is_empty());
    let program = argv
        .next()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("");
    // A name longer than `comm` holds matches on its first 15 bytes and the program name.
    let named = |name: &str| {
        if name.len() <= COMM_LEN {
            comm == name
        } else {
            comm == &name[..COMM_LEN] && program == name
        }
    };
    let group = if named("tally-ingest") {
        Group::Ingest
    } else if named("tally-workers") {
        Group::Workers
    } else if named("tally-aggregator") {
        Group::Aggregator
    } else if named("tally-noop") {
        Group::Noop
    } else if named("nats-server") {
        Group::NatsServer
    } else if comm == "postgres" || comm == "postmaster" {
        Group::Postgres
    } else if comm == "redis-server" {
        Group::Redis
    } else if comm.starts_with("clickhouse") && !comm.starts_with("clickhouse-clie") {
        // `clickhouse-server` (comm `clickhouse-serv`), its watchdog, or the one `clickhouse`
        // binary started as `clickhouse server`; never a client.
        let server = comm.starts_with("clickhouse-serv")
            || comm.starts_with("clickhouse-watc")
            || program.starts_with("clickhouse-server")
            || argv.next() == Some("server");
        if !server {
            return None;
        }
        Group::ClickHouse
    } else {
        return None;
    };
    Some(group)
}

/// What a window needs of one `/proc/<pid>/stat` line, times in clock ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub ppid: u32,
    /// `utime + stime`: the process's own CPU, all its threads, those that ended included.
    pub own: u64,
    /// `cutime + cstime`: the CPU of the children it has reaped (and theirs).
    pub children: u64,
}

/// Parses one `/proc/<pid>/stat`. `comm` may hold spaces and parentheses, so the fields are
/// counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    // After the comm: state (field 3), ppid (4), …, utime (14), stime, cutime, cstime (17).
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ppid = field(4)? as u32;
    let own = field(14)? + field(15)?;
    // cutime and cstime are signed in the kernel's format; they are never negative in fact.
    let signed = |n: usize| {
        fields
            .get(n - 3)?
            .parse::<i64>()
            .ok()
            .map(|v| v.max(0) as u64)
    };
    let children = signed(16)? + signed(17)?;
    Some(Stat {
        pid,
        comm,
        ppid,
        own,
        children,
    })
}

/// Every group's CPU ticks at one moment, and how many processes each had.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub ticks: BTreeMap<Group, u64>,
    pub processes: BTreeMap<Group, usize>,
}

/// Sums classified processes into groups: each member's own time, and the children's time
/// of each root (a member whose parent is not in the same group), so a child that exited
/// and was reaped within the group still counts, and a live one is not counted twice.
pub fn totals(processes: &[(Stat, Group)]) -> Totals {
    let group_of: BTreeMap<u32, Group> = processes.iter().map(|(s, g)| (s.pid, *g)).collect();
    let mut totals = Totals::default();
    for (stat, group) in processes {
        let root = group_of.get(&stat.ppid) != Some(group);
        let ticks = stat.own + if root { stat.children } else { 0 };
        *totals.ticks.entry(*group).or_insert(0) += ticks;
        *totals.processes.entry(*group).or_insert(0) += 1;
    }
    totals
}

/// The groups' CPU at one moment.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub totals: Totals,
}

/// Reads `/proc` for every group's processes; this process is the generator.
pub fn sample() -> Sample {
    let me = std::process::id();
    let mut processes = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // A process may end between the listing and the read: skip it.
            let Some(stat) = read(&entry.path().join("stat")).and_then(|t| parse_stat(&t)) else {
                continue;
            };
            let group = if pid == me {
                Some(Group::Generator)
            } else {
                let cmdline = read(&entry.path().join("cmdline")).unwrap_or_default();
                classify(&stat.comm, &cmdline)
            };
            if let Some(group) = group {
                processes.push((stat, group));
            }
        }
    }
    Sample {
        at: Instant::now(),
        totals: totals(&processes),
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, Linux's value everywhere, if that fails).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Samples windows and turns them into [`Cost`]s; keeps each group's idle CPU per second,
/// measured once with no load, to say how much of a window's figure is idle time.
#[derive(Clone, Debug)]
pub struct Meter {
    ticks_per_second: u64,
    idle_us_per_s: Option<BTreeMap<Group, f64>>,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    pub fn new() -> Self {
        Self {
            ticks_per_second: clock_ticks_per_second(),
            idle_us_per_s: None,
        }
    }

    fn us(&self, ticks: u64) -> f64 {
        ticks as f64 * 1e6 / self.ticks_per_second as f64
    }

    /// Each group's CPU per second over `length` with no load offered.
    pub async fn measure_idle(&mut self, length: Duration) {
        let before = sample();
        tokio::time::sleep(length).await;
        let after = sample();
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let idle = Group::ALL
            .iter()
            .map(|&g| (g, self.us(delta(&before, &after, g)) / seconds))
            .collect();
        self.idle_us_per_s = Some(idle);
    }

    /// Each group's CPU per second with no load, if measured.
    pub fn idle_us_per_s(&self) -> Option<&BTreeMap<Group, f64>> {
        self.idle_us_per_s.as_ref()
    }

    /// The window from `before` to `after`, `events` acknowledged in it.
    pub fn cost(&self, before: &Sample, after: &Sample, events: usize) -> Cost {
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        let per_event = |us: f64| us / events.max(1) as f64;
        let idle = |g: Group| {
            self.idle_us_per_s
                .as_ref()
                .map(|idle| per_event(idle.get(&g).copied().unwrap_or(0.0) * seconds))
        };
        let groups: Vec<GroupCost> = Group::ALL
            .iter()
            .map(|&g| {
                let count = |s: &Sample| s.totals.processes.get(&g).copied().unwrap_or(0);
                let cpu_us = self.us(delta(before, after, g));
                GroupCost {
                    group: g.label(),
                    processes: count(before).max(count(after)),
                    cpu_ms: cpu_us / 1000.0,
                    us_per_event: per_event(cpu_us),
                    idle_us_per_event: idle(g),
                }
            })
            .collect();
        let pipeline = Group::ALL
            .iter()
            .zip(&groups)
            .filter(|(g, _)| g.in_pipeline());
        let pipeline_us_per_event = pipeline.clone().map(|(_, c)| c.us_per_event).sum();
        let pipeline_idle_us_per_event = self
            .idle_us_per_s
            .as_ref()
            .map(|_| pipeline.filter_map(|(_, c)| c.idle_us_per_event).sum());
        Cost {
            events,
            window_s: seconds,
            groups,
            pipeline_us_per_event,
            pipeline_idle_us_per_event,
            do_nothing_us_per_request: None,
        }
    }
}

/// A group's CPU ticks from `before` to `after` (zero if a restart lost some).
fn delta(before: &Sample, after: &Sample, group: Group) -> u64 {
    let ticks = |s: &Sample| s.totals.ticks.get(&group).copied().unwrap_or(0);
    ticks(after).saturating_sub(ticks(before))
}

/// CPU per acknowledged event over one window, per group and for the pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct Cost {
    /// Events acknowledged in the window (requests answered 2xx, for the do-nothing handler).
    pub events: usize,
    /// From just before the first request until the stores caught up.
    pub window_s: f64,
    /// Every group, in [`Group::ALL`]'s order.
    pub groups: Vec<GroupCost>,
    /// Ingest, nats-server, Postgres, aggregator, workers, Redis and ClickHouse together.
    pub pipeline_us_per_event: f64,
    /// How much of that the groups' idle CPU over the same window explains.
    pub pipeline_idle_us_per_event: Option<f64>,
    /// The do-nothing handler's own CPU per request at the same rate, in the same run.
    pub do_nothing_us_per_request: Option<f64>,
}

impl Cost {
    pub fn group(&self, group: Group) -> &GroupCost {
        let i = Group::ALL
            .iter()
            .position(|&g| g == group)
            .expect("a group");
        &self.groups[i]
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupCost {
    pub group: &'static str,
    /// Processes of the group seen at the start or the end (the larger); 0: not running.
    pub processes: usize,
    pub cpu_ms: f64,
    pub us_per_event: f64,
    /// The group's idle CPU per second times the window, per event: the part of
    /// `us_per_event` it would have spent with no load.
    pub idle_us_per_event: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines from this machine class: the postmaster (whose reaped backends hold most of
    // Postgres's CPU), its checkpointer, and ClickHouse's server (comm cut to 15 bytes); and a
    // comm with a space and a parenthesis in it.
    const POSTMASTER: &str = "2226 (postgres) S 1 2226 2226 0 -1 4194304 33011 2316175 0 84 8 89 3218 2727 20 0 1 0 3568 222543872 7490 18446744073709551615 93869707771904 93869713228249 140726505089008 0 0 0 0 24129536 84487 1 0 0 17 1 0 0 0 0 0 93869715707984 93869715925706 93869893578752 140726505094814 140726505094936 140726505094936 140726505095124 0";
    const CHECKPOINTER: &str = "2227 (postgres) S 2226 2227 2227 0 -1 4194368 2089 0 0 0 37 113 0 0 20 0 1 0 3570 223232000 29006 18446744073709551615 93869707771904 93869713228249 140726505089008 0 0 0 4194304 24145920 536873479 1 0 0 17 1 0 0 0 0 0 93869715707984 93869715925706 93869893578752 140726505094814 140726505094936 140726505094936 140726505095124 0";
    const CLICKHOUSE: &str = "19426 (clickhouse-serv) S 1 19426 19426 0 -1 4194368 422131 0 28 0 959 1393 0 0 20 0 34 0 74873 1943605248 22385 18446744073709551615 94037860868096 94037861954528 140731581155792 0 0 0 4096 0 1073764079 0 0 0 17 1 0 0 0 0 0 94037861959872 94037862007840 94038447443968 140731581159969 140731581160104 140731581160104 140731581161436 0";
    const ODD: &str = "77 (a b) c) R 1 77 77 0 -1 0 0 0 0 0 5 6 -1 2 20 0 1 0 1 1 1 1";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        assert_eq!(
            parse_stat(POSTMASTER),
            Some(Stat {
                pid: 2226,
                comm: "postgres".into(),
                ppid: 1,
                own: 8 + 89,
                children: 3218 + 2727,
            })
        );
        let checkpointer = parse_stat(CHECKPOINTER).unwrap();
        assert_eq!(
            (checkpointer.ppid, checkpointer.own, checkpointer.children),
            (2226, 37 + 113, 0)
        );
        let clickhouse = parse_stat(CLICKHOUSE).unwrap();
        assert_eq!(
            (clickhouse.comm.as_str(), clickhouse.own),
            ("clickhouse-serv", 959 + 1393)
        );
        let odd = parse_stat(ODD).unwrap();
        assert_eq!(
            (odd.comm.as_str(), odd.ppid, odd.own, odd.children),
            ("a b) c", 1, 11, 2)
        );
        assert_eq!(parse_stat("12 (short) S 1 2 3"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn processes_are_grouped_by_name_and_long_names_by_their_program() {
        let c = |comm: &str, cmdline: &str| classify(comm, cmdline);
        assert_eq!(
            c(
                "tally-ingest",
                "/root/.cache/tally-target/release/tally-ingest\0"
            ),
            Some(Group::Ingest)
        );
        assert_eq!(c("tally-workers", ""), Some(Group::Workers));
        // `tally-aggregator` is 16 bytes: comm holds 15, the command line the rest.
        assert_eq!(
            c("tally-aggregato", "/x/release/tally-aggregator\0--flag\0"),
            Some(Group::Aggregator)
        );
        assert_eq!(c("tally-aggregato", "/x/tally-aggregatorz\0"), None);
        assert_eq!(
            c("tally-noop", "tally-noop\0--addr\x00127.0.0.1:8099\0"),
            Some(Group::Noop)
        );
        assert_eq!(
            c("nats-server", "/usr/sbin/nats-server\0-c\0nats.conf\0"),
            Some(Group::NatsServer)
        );
        // Backends keep the postmaster's comm and rewrite only their command line.
        assert_eq!(
            c(
                "postgres",
                "postgres: 15/main: tally tally 127.0.0.1(5123) idle\0"
            ),
            Some(Group::Postgres)
        );
        assert_eq!(
            c("redis-server", "redis-server 127.0.0.1:6379\0"),
            Some(Group::Redis)
        );
        assert_eq!(
            c("clickhouse-serv", "clickhouse-server\0--daemon\0"),
            Some(Group::ClickHouse)
        );
        assert_eq!(
            c(
                "clickhouse",
                "/usr/bin/clickhouse\0server\0--config-file=x\0"
            ),
            Some(Group::ClickHouse)
        );
        assert_eq!(c("clickhouse", "/usr/bin/clickhouse\0client\0"), None);
        assert_eq!(c("clickhouse-clie", "clickhouse-client\0"), None);
        assert_eq!(c("tally-loadtest", "tally-loadtest\0cost\0"), None);
        assert_eq!(c("bash", "bash\0deploy/loadtest.sh\0"), None);
    }

    fn stat(pid: u32, ppid: u32, own: u64, children: u64) -> Stat {
        Stat {
            pid,
            comm: String::new(),
            ppid,
            own,
            children,
        }
    }

    #[test]
    fn a_group_counts_its_roots_children_time_and_its_members_own() {
        // The postmaster (100, parent init) has reaped backends worth 40 ticks; two live
        // backends; Redis is its own root; a Postgres child of Redis would be a root too.
        let processes = [
            (stat(100, 1, 10, 40), Group::Postgres),
            (stat(101, 100, 5, 7), Group::Postgres),
            (stat(102, 100, 3, 0), Group::Postgres),
            (stat(200, 1, 8, 2), Group::Redis),
            (stat(300, 200, 1, 4), Group::Postgres),
        ];
        let t = totals(&processes);
        // 10 + 40 + 5 + 3 + 1 + 4: 101 is no root (its reaped children reach 100's
        // children's time when 101 itself is reaped); 300's parent is not Postgres, so it is.
        assert_eq!(t.ticks[&Group::Postgres], 63);
        assert_eq!(t.ticks[&Group::Redis], 10);
        assert_eq!(t.processes[&Group::Postgres], 4);
        assert_eq!(t.ticks.get(&Group::Ingest), None);
    }

    fn sample_of(at: Instant, processes: &[(Stat, Group)]) -> Sample {
        Sample {
            at,
            totals: totals(processes),
        }
    }

    #[test]
    fn a_backend_that_exits_in_the_window_still_counts_through_the_postmaster() {
        // Before: the postmaster and a backend with 20 ticks. During the window the backend
        // spends 30 more and exits; a new one starts and spends 5. After: the postmaster has
        // reaped 50 more ticks of children. With 100 ticks a second, 35 ticks = 350 ms.
        let t0 = Instant::now();
        let before = sample_of(
            t0,
            &[
                (stat(100, 1, 10, 0), Group::Postgres),
                (stat(101, 100, 20, 0), Group::Postgres),
                (stat(500, 1, 100, 0), Group::Ingest),
            ],
        );
        let after = sample_of(
            t0 + Duration::from_secs(2),
            &[
                (stat(100, 1, 10, 50), Group::Postgres),
                (stat(102, 100, 5, 0), Group::Postgres),
                (stat(500, 1, 300, 0), Group::Ingest),
            ],
        );
        let mut meter = Meter {
            ticks_per_second: 100,
            idle_us_per_s: None,
        };
        let cost = meter.cost(&before, &after, 1000);
        let pg = cost.group(Group::Postgres);
        assert_eq!((pg.processes, pg.cpu_ms), (2, 350.0));
        assert_eq!(pg.us_per_event, 350.0);
        assert_eq!(cost.group(Group::Ingest).us_per_event, 2000.0);
        assert_eq!(cost.group(Group::Redis).processes, 0);
        assert_eq!(cost.pipeline_us_per_event, 2350.0);
        assert_eq!(cost.pipeline_idle_us_per_event, None);
        assert!((cost.window_s - 2.0).abs() < 1e-9);

        // Idle: Postgres 10 ms a second, ingest 5 ms; over 2 s and 1000 events, 20 and 10 µs.
        meter.idle_us_per_s = Some(BTreeMap::from([
            (Group::Postgres, 10_000.0),
            (Group::Ingest, 5_000.0),
            (Group::Generator, 1_000_000.0),
        ]));
        let cost = meter.cost(&before, &after, 1000);
        assert_eq!(cost.group(Group::Postgres).idle_us_per_event, Some(20.0));
        assert_eq!(cost.group(Group::Redis).idle_us_per_event, Some(0.0));
        // The generator is not the pipeline's.
        assert_eq!(cost.pipeline_idle_us_per_event, Some(30.0));
    }

    #[test]
    fn this_process_is_sampled_as_the_generator() {
        // Spin until the kernel has counted a tick (10 ms) or more of it, however busy the box.
        let (meter, before) = (Meter::new(), sample());
        let started = Instant::now();
        let mut x = 0u64;
        let cost = loop {
            for _ in 0..1_000_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            let cost = meter.cost(&before, &sample(), 1);
            if cost.group(Group::Generator).cpu_ms > 0.0 || started.elapsed().as_secs() > 20 {
                break cost;
            }
        };
        std::hint::black_box(x);
        assert_eq!(cost.group(Group::Generator).processes, 1);
        assert!(cost.group(Group::Generator).cpu_ms > 0.0, "{cost:?}");
    }
}
