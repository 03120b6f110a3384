//! The operations files are checked like code: alert rules by promtool's own unit tests,
//! the compose file by docker-compose, dashboards as Grafana JSON whose queries run against
//! the real ClickHouse and Postgres and whose metrics the services emit, Kubernetes manifests
//! for the references between their objects, and every metric name against the scheme.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use tally_tests::nats_cluster::repo_root;
use tally_tests::{TestEnv, clickhouse_url, setting};

fn tool(variable: &str) -> String {
    let path = setting(variable, "");
    assert!(
        !path.is_empty() && Path::new(&path).exists(),
        "{variable} is not installed: run deploy/tools.sh"
    );
    path
}

fn run(command: &mut Command) -> String {
    let out = command.output().expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

fn files(dir: &str, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .expect("directory exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    found
}

/// One metric the services emit: its name, kind and label keys, from the source.
#[derive(Debug)]
struct Emitted {
    kind: &'static str,
    labels: BTreeSet<String>,
    at: String,
}

/// Every `metrics::counter!/gauge!/histogram!` call in the services' source.
fn emitted_metrics() -> BTreeMap<String, Vec<Emitted>> {
    let mut found: BTreeMap<String, Vec<Emitted>> = BTreeMap::new();
    for krate in ["ingest", "workers", "aggregator", "kit", "schema"] {
        let mut dirs = vec![repo_root().join(krate).join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("source dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source file");
                for kind in ["counter", "gauge", "histogram"] {
                    let marker = format!("metrics::{kind}!(");
                    for (at, _) in text.match_indices(&marker) {
                        let call = &text[at + marker.len()..];
                        let end = call.find(')').expect("macro call closes");
                        let args = &call[..end];
                        let mut quoted = args.split('"').skip(1).step_by(2);
                        let name = quoted.next().expect("metric name literal").to_owned();
                        // Each label key is the quoted word right before a `=>`.
                        let pieces: Vec<&str> = args.split("=>").collect();
                        let labels = pieces[..pieces.len() - 1]
                            .iter()
                            .filter_map(|before| before.trim_end().strip_suffix('"'))
                            .filter_map(|s| s.rsplit('"').next())
                            .map(str::to_owned)
                            .collect();
                        let line = text[..at].lines().count();
                        found.entry(name).or_default().push(Emitted {
                            kind,
                            labels,
                            at: format!("{}:{line}", path.display()),
                        });
                    }
                }
            }
        }
    }
    found
}

#[test]
fn metric_names_follow_one_scheme_with_bounded_labels() {
    // tally_<component>_<name>_<unit>; labels name classes of things, never ids.
    const COMPONENTS: [&str; 4] = ["ingest", "workers", "aggregator", "jetstream"];
    const UNITS: [&str; 10] = [
        "leases",
        "total",
        "streams",
        "seconds",
        "bytes",
        "events",
        "messages",
        "rows",
        "keys",
        "resources",
    ];
    const LABELS: [&str; 10] = [
        "route",
        "status",
        "reason",
        "view",
        "sink",
        "kind",
        "consumer",
        "stream",
        "step",
        "transport",
    ];
    let metrics = emitted_metrics();
    assert!(metrics.len() >= 25, "found only {} metrics", metrics.len());
    for (name, uses) in &metrics {
        let rest = name
            .strip_prefix("tally_")
            .unwrap_or_else(|| panic!("{name}: no tally_ prefix"));
        assert!(
            COMPONENTS
                .iter()
                .any(|c| rest.starts_with(&format!("{c}_"))),
            "{name}: component not one of {COMPONENTS:?}"
        );
        assert!(
            UNITS.iter().any(|u| name.ends_with(&format!("_{u}"))),
            "{name}: unit not one of {UNITS:?}"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}: not snake case"
        );
        for used in uses {
            assert_eq!(
                used.kind == "counter",
                name.ends_with("_total"),
                "{name} at {}: counters and only counters end in _total",
                used.at
            );
            for label in &used.labels {
                assert!(
                    LABELS.contains(&label.as_str()),
                    "{name} at {}: label {label} is not one of the bounded {LABELS:?}",
                    used.at
                );
            }
        }
    }
}

/// The `tally_*` metric names an expression reads (histogram series mapped to their metric).
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in expr.match_indices("tally_") {
        if at > 0 && expr.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = expr[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        names.insert(base.to_owned());
    }
    names
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = tool("TALLY_PROMTOOL");
    let dir = repo_root().join("deploy/prometheus");
    let checked =
        run(Command::new(&promtool)
            .current_dir(&dir)
            .args(["check", "rules", "alerts.yml"]));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested =
        run(Command::new(&promtool)
            .current_dir(&dir)
            .args(["test", "rules", "alerts_test.yml"]));
    assert!(tested.contains("SUCCESS"), "{tested}");
    let config = run(Command::new(&promtool).current_dir(&dir).args([
        "check",
        "config",
        "--syntax-only",
        "prometheus.yml",
    ]));
    assert!(config.contains("SUCCESS"), "{config}");

    // Every alert has a test that makes it fire, and reads only metrics the services emit.
    let rules: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("alerts.yml")).unwrap()).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts_test.yml")).unwrap();
    let emitted = emitted_metrics();
    let runbooks = heading_anchors(&repo_root().join("docs/operations.md"));
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = rule["alert"].as_str().expect("alert name");
            // Every alert links its runbook, and the section exists.
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
            let anchor = url
                .strip_prefix("docs/operations.md#")
                .unwrap_or_else(|| panic!("{alert}'s runbook is not in docs/operations.md"));
            assert!(
                runbooks.contains(anchor),
                "{alert} links #{anchor}, which docs/operations.md has no heading for"
            );
            let expr = rule["expr"].as_str().expect("expr");
            assert!(
                tests.contains(&format!(
                    "alertname: {alert}\n        exp_alerts:\n          -"
                )),
                "{alert} has no test in which it fires"
            );
            for metric in metrics_in(expr) {
                assert!(
                    emitted.contains_key(&metric),
                    "{alert} reads {metric}, which nothing emits"
                );
            }
        }
    }
}

/// The anchors a Markdown renderer gives a file's headings (GitHub's rule: lower case,
/// spaces to dashes, punctuation dropped).
fn heading_anchors(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn compose_file_is_valid_and_mounts_files_that_exist() {
    let compose = tool("TALLY_DOCKER_COMPOSE");
    let dir = repo_root().join("deploy/compose");
    let rendered = run(Command::new(compose)
        .current_dir(&dir)
        .env("TALLY_PG_PASSWORD", "example")
        .env("TALLY_GRAFANA_PG_PASSWORD", "example")
        .args(["-f", "compose.yaml", "config"]));
    let config: serde_norway::Value = serde_norway::from_str(&rendered).expect("config is YAML");
    let services = config["services"].as_mapping().expect("services");
    for name in [
        "postgres",
        "redis",
        "nats",
        "clickhouse",
        "ingest",
        "workers",
        "aggregator",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.contains_key(serde_norway::Value::from(name)),
            "compose runs {name}"
        );
    }
    // Bind mounts point at files of this repository.
    let source = std::fs::read_to_string(dir.join("compose.yaml")).unwrap();
    for line in source.lines().map(str::trim) {
        if let Some(mount) = line
            .strip_prefix("- ./")
            .or_else(|| line.strip_prefix("- ../"))
        {
            let relative = mount.split(':').next().unwrap();
            let prefix = if line.starts_with("- ./") { "" } else { "../" };
            let path = dir.join(format!("{prefix}{relative}"));
            assert!(
                path.exists(),
                "compose mounts {} which does not exist",
                path.display()
            );
        }
    }
}

/// Datasource uids the provisioning declares.
fn provisioned_datasources() -> BTreeMap<String, String> {
    let file = repo_root().join("deploy/grafana/provisioning/datasources/tally.yml");
    let yaml: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    yaml["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .map(|d| {
            (
                d["uid"].as_str().expect("uid").to_owned(),
                d["type"].as_str().expect("type").to_owned(),
            )
        })
        .collect()
}

/// A Grafana macro replaced by what it expands to, for running the query here.
fn expand_macros(sql: &str, time_column: &str) -> String {
    sql.replace(
        &format!("$__timeFilter({time_column})"),
        &format!("{time_column} >= now() - 3600"),
    )
}

#[tokio::test]
async fn dashboards_are_grafana_json_whose_queries_run_and_metrics_exist() {
    let datasources = provisioned_datasources();
    let emitted = emitted_metrics();
    let env = TestEnv::new().await;
    let database = format!("tally_{}", env.name);
    let sink = tally_aggregator::analytics::ClickHouseSink::new(&clickhouse_url(), &database);
    sink.prepare(&database).await.expect("ClickHouse schema");

    let dashboards = files("deploy/grafana/dashboards", "json");
    assert!(
        dashboards.len() >= 3,
        "ingest, pipeline and business dashboards"
    );
    let mut uids = BTreeSet::new();
    let (mut promql, mut clickhouse, mut postgres) = (0, 0, 0);
    for path in &dashboards {
        let name = path.display().to_string();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
        let uid = dashboard["uid"].as_str().expect("uid");
        assert!(uids.insert(uid.to_owned()), "{name}: uid {uid} used twice");
        assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(
            dashboard["schemaVersion"].as_u64().is_some(),
            "{name}: schemaVersion"
        );
        let panels = dashboard["panels"].as_array().expect("panels");
        let mut ids = BTreeSet::new();
        for panel in panels {
            let id = panel["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "{name}: panel id {id} twice");
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
            assert!(
                x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
                "{name}: panel {id} off grid"
            );
            if panel["type"] == "row" {
                continue;
            }
            let title = panel["title"].as_str().expect("title");
            let ds_uid = panel["datasource"]["uid"].as_str().expect("datasource uid");
            let ds_type = datasources.get(ds_uid).unwrap_or_else(|| {
                panic!("{name}: {title} uses unprovisioned datasource {ds_uid}")
            });
            assert_eq!(panel["datasource"]["type"].as_str(), Some(ds_type.as_str()));
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {title} queries nothing");
            for target in targets {
                match ds_type.as_str() {
                    "prometheus" => {
                        let expr = target["expr"].as_str().expect("expr");
                        let metrics = metrics_in(expr);
                        assert!(!metrics.is_empty(), "{title}: {expr}");
                        for metric in metrics {
                            assert!(
                                emitted.contains_key(&metric),
                                "{title} reads {metric}, which nothing emits"
                            );
                        }
                        promql += 1;
                    }
                    "grafana-clickhouse-datasource" => {
                        let sql =
                            expand_macros(target["rawSql"].as_str().expect("rawSql"), "minute")
                                .replace("tally.", &format!("{database}."));
                        let response = reqwest::Client::new()
                            .post(clickhouse_url())
                            .body(sql.clone())
                            .send()
                            .await
                            .expect("ClickHouse answers");
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        assert!(
                            status.is_success(),
                            "{title}: ClickHouse refused\n{sql}\n{text}"
                        );
                        clickhouse += 1;
                    }
                    "grafana-postgresql-datasource" => {
                        let sql = target["rawSql"].as_str().expect("rawSql");
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                            .execute(&env.pool)
                            .await
                            .unwrap_or_else(|e| panic!("{title}: Postgres refused: {e}\n{sql}"));
                        postgres += 1;
                    }
                    other => panic!("{title}: unexpected datasource type {other}"),
                }
            }
        }
    }
    println!("{promql} PromQL, {clickhouse} ClickHouse and {postgres} Postgres queries checked");
    assert!(
        clickhouse >= 3 && postgres >= 1,
        "business panels query ClickHouse and Postgres"
    );
    // The provisioning loads the directory the compose file mounts the dashboards into.
    let provider = std::fs::read_to_string(
        repo_root().join("deploy/grafana/provisioning/dashboards/tally.yml"),
    )
    .unwrap();
    assert!(provider.contains("/var/lib/grafana/dashboards/tally"));
    let _ = reqwest::Client::new()
        .post(clickhouse_url())
        .body(format!("DROP DATABASE IF EXISTS {database}"))
        .send()
        .await;
}

/// Every object of every manifest under deploy/k8s.
fn manifests() -> Vec<(String, serde_norway::Value)> {
    let mut objects = Vec::new();
    for path in files("deploy/k8s", "yaml") {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value: serde_norway::Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            objects.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                value,
            ));
        }
    }
    objects
}

fn labels_match(selector: &serde_norway::Value, labels: &serde_norway::Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[test]
fn kubernetes_manifests_reference_each_other_correctly() {
    let objects = manifests();
    let of_kind = |kind: &str| -> Vec<&serde_norway::Value> {
        objects
            .iter()
            .filter(|(_, o)| o["kind"] == kind)
            .map(|(_, o)| o)
            .collect()
    };
    let deployments = of_kind("Deployment");
    let names: BTreeSet<&str> = deployments
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["ingest", "workers", "aggregator"]));
    let config_maps: BTreeSet<&str> = of_kind("ConfigMap")
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    for d in &deployments {
        let name = d["metadata"]["name"].as_str().unwrap();
        let template = &d["spec"]["template"];
        assert!(
            labels_match(
                &d["spec"]["selector"]["matchLabels"],
                &template["metadata"]["labels"]
            ),
            "{name}: selector does not match its pods"
        );
        let containers = template["spec"]["containers"]
            .as_sequence()
            .expect("containers");
        for c in containers {
            let ports: BTreeMap<&str, u64> = c["ports"]
                .as_sequence()
                .expect("ports")
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap(),
                        p["containerPort"].as_u64().unwrap(),
                    )
                })
                .collect();
            for probe in ["readinessProbe", "livenessProbe"] {
                let port = c[probe]["httpGet"]["port"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {probe}"));
                assert!(
                    ports.contains_key(port),
                    "{name}: {probe} on unknown port {port}"
                );
            }
            let scraped: u64 = template["metadata"]["annotations"]["prometheus.io/port"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{name}: scrape annotation"));
            assert!(
                ports.values().any(|&p| p == scraped),
                "{name}: scrapes a port it does not open"
            );
            let resources = &c["resources"];
            for (part, what) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "memory"),
            ] {
                assert!(
                    resources[part][what].as_str().is_some(),
                    "{name}: {part}.{what}"
                );
            }
            for source in c["envFrom"].as_sequence().into_iter().flatten() {
                if let Some(map) = source["configMapRef"]["name"].as_str() {
                    assert!(
                        config_maps.contains(map),
                        "{name}: ConfigMap {map} not defined"
                    );
                }
            }
        }
    }
    let pods_of = |selector: &serde_norway::Value| {
        deployments
            .iter()
            .filter(|d| labels_match(selector, &d["spec"]["template"]["metadata"]["labels"]))
            .count()
    };
    for service in of_kind("Service") {
        assert_eq!(
            pods_of(&service["spec"]["selector"]),
            1,
            "Service selects one Deployment"
        );
    }
    for pdb in of_kind("PodDisruptionBudget") {
        assert_eq!(
            pods_of(&pdb["spec"]["selector"]["matchLabels"]),
            1,
            "PDB selects one Deployment"
        );
    }
    let hpas = of_kind("HorizontalPodAutoscaler");
    assert!(
        hpas.iter()
            .any(|h| h["spec"]["scaleTargetRef"]["name"] == "ingest"),
        "ingest has an autoscaler"
    );
    for hpa in hpas {
        let target = hpa["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
        assert!(
            names.contains(target),
            "autoscaler targets unknown {target}"
        );
    }
    // The kustomization lists every manifest file.
    let listed: BTreeSet<String> = objects
        .iter()
        .find(|(_, o)| o["kind"] == "Kustomization")
        .expect("kustomization.yaml")
        .1["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let on_disk: BTreeSet<String> = files("deploy/k8s", "yaml")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk);
}
