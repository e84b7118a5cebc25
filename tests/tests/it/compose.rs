//! compose.yaml, the Dockerfile and the scripts, checked against the binaries they run. No Docker
//! engine runs on the course machines, so CI cannot start the Compose profile; instead this reads
//! the file and holds it to what the code says: each service's environment keys are variables its binary
//! really reads (clap's `CommandFactory` knows every one), its HTTP port is published and health
//! checked, and state lives in named volumes, Redis with the project's one persistence file. Every
//! script answers `--help` with all its verbs, before it does anything else.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::CommandFactory;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Yaml {
    let docs = YamlLoader::load_from_str(&repo_file("compose.yaml")).expect("compose.yaml is YAML");
    docs.into_iter()
        .next()
        .expect("compose.yaml has a document")
}

/// A list of strings, or a string split on spaces (Compose accepts both for commands and tests).
fn words(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Yaml::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every environment variable a binary reads, from its clap definition.
fn env_vars(command: clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect()
}

/// `name:/path` volumes of a service whose source is a named volume declared at the top level.
fn named_volume_at(compose: &Yaml, service: &Yaml, path: &str) -> bool {
    strings(&service["volumes"]).iter().any(|v| {
        let mut parts = v.split(':');
        let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
            return false;
        };
        target == path && !compose["volumes"][source].is_badvalue()
    })
}

#[test]
fn the_app_services_run_real_binaries_with_real_settings() {
    let compose = compose();
    let services = &compose["services"];
    let apps = [
        ("order-svc", env_vars(order_svc::Config::command())),
        ("inventory-svc", env_vars(inventory_svc::Config::command())),
        (
            "notification-svc",
            env_vars(notification_svc::Config::command()),
        ),
    ];
    let mut images = BTreeSet::new();
    for (name, known) in apps {
        let svc = &services[name];
        assert!(!svc.is_badvalue(), "service {name} missing");
        assert_eq!(
            words(&svc["command"]),
            [name],
            "{name}: runs its own binary"
        );
        images.insert(svc["image"].as_str().unwrap_or("").to_owned());

        let env = svc["environment"].as_hash().expect("environment is a map");
        for key in env.keys().filter_map(Yaml::as_str) {
            assert!(
                key == "RUST_LOG" || known.contains(key),
                "{name}: sets {key}, which {name} does not read (it reads {known:?})"
            );
        }
        let addr = svc["environment"]["HTTP_ADDR"]
            .as_str()
            .expect("HTTP_ADDR set");
        let (host, port) = addr.rsplit_once(':').expect("HTTP_ADDR is host:port");
        assert_eq!(host, "0.0.0.0", "{name}: listens beyond the container");
        assert!(
            strings(&svc["ports"]).contains(&format!("127.0.0.1:{port}:{port}")),
            "{name}: publishes {port} on the host's loopback"
        );
        let health = words(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains("curl") && health.contains(&format!(":{port}/health")),
            "{name}: health check {health:?}"
        );
        for dep in ["rabbitmq", "redis"] {
            assert_eq!(
                svc["depends_on"][dep]["condition"].as_str(),
                Some("service_healthy"),
                "{name}: waits for a healthy {dep}"
            );
        }
        assert_eq!(svc["restart"].as_str(), Some("unless-stopped"), "{name}");
    }
    assert_eq!(images.len(), 1, "one image for every service: {images:?}");
}

#[test]
fn every_published_port_is_on_the_hosts_loopback_only() {
    let compose = compose();
    let services = compose["services"].as_hash().expect("services is a map");
    for (name, svc) in services {
        for port in strings(&svc["ports"]) {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name:?} publishes {port} on every interface of the host"
            );
        }
    }
}

#[test]
fn state_lives_in_named_volumes_and_redis_persists_as_everywhere_else() {
    let compose = compose();
    let redis = &compose["services"]["redis"];
    // The persistence settings of every Redis this project runs: deploy/redis.conf, mounted.
    let conf = strings(&redis["volumes"])
        .into_iter()
        .find_map(|v| {
            v.strip_prefix("./deploy/redis.conf:")
                .map(|t| t.trim_end_matches(":ro").to_owned())
        })
        .expect("deploy/redis.conf mounted into the redis container");
    assert_eq!(words(&redis["command"]), ["redis-server", conf.as_str()]);
    assert!(repo_file("deploy/redis.conf").contains("appendonly yes"));
    assert!(
        named_volume_at(&compose, redis, "/data"),
        "redis keeps /data in a named volume"
    );

    let rabbitmq = &compose["services"]["rabbitmq"];
    assert!(named_volume_at(&compose, rabbitmq, "/var/lib/rabbitmq"));
    // The node is rabbit@<hostname> and keeps its data under that name: it must not change.
    assert!(rabbitmq["hostname"].as_str().is_some_and(|h| !h.is_empty()));
}

#[test]
fn the_image_builds_and_carries_every_binary() {
    let dockerfile = repo_file("Dockerfile");
    let code: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let code = code.join("\n").replace("\\\n", " ");
    let builds: Vec<&str> = code.lines().filter(|l| l.contains("cargo build")).collect();
    assert_eq!(builds.len(), 1, "one cargo build: {builds:?}");
    assert!(builds[0].contains("--release") && builds[0].contains("--bins"));
    assert!(
        code.contains("find target/release -maxdepth 1 -type f -executable"),
        "every binary at the top of target/release is copied out"
    );
    let stages: Vec<&str> = code
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("FROM "))
        .collect();
    assert!(
        stages.first().is_some_and(|s| s.starts_with("rust:")),
        "{stages:?}"
    );
    assert!(
        stages.last().is_some_and(|s| s.starts_with("debian:")),
        "{stages:?}"
    );
    assert!(
        code.contains("curl"),
        "the runtime image has curl for the health checks"
    );
    assert!(
        repo_file(".dockerignore")
            .lines()
            .any(|l| l.trim().trim_matches('/') == "target"),
        ".dockerignore keeps target/ out of the build context"
    );
}

/// Every script of scripts/ and scripts/lab/, with what its `--help` must name: all its verbs
/// and options (or that it takes none). A script added without an entry here fails the test.
const SCRIPTS: &[(&str, &[&str])] = &[
    ("scripts/bench.sh", &["--quick", "--out", "--lines-mix"]),
    (
        "scripts/board-screenshot.sh",
        &["[URL] [OUT.png] [ORDER_ID]", "CHROMEDRIVER_PORT"],
    ),
    ("scripts/broker-users.sh", &["[VHOST]", "--remove [VHOST]"]),
    (
        "scripts/cluster.sh",
        &[
            "cluster.sh up",
            "cluster.sh down [--wipe]",
            "cluster.sh status",
            "cluster.sh kill NODE",
            "cluster.sh start NODE",
            "cluster.sh env",
        ],
    ),
    ("scripts/deps.sh", &["no arguments"]),
    ("scripts/down.sh", &["down.sh --all"]),
    (
        "scripts/prometheus.sh",
        &["no arguments", "PROMETHEUS_PORT"],
    ),
    ("scripts/redis-server.sh", &["start PORT DIR", "stop PORT"]),
    (
        "scripts/svc.sh",
        &[
            "start|stop|restart|status NAME",
            "status all",
            "url NAME",
            "board",
        ],
    ),
    ("scripts/test.sh", &["no arguments", "TEST_THREADS"]),
    ("scripts/up.sh", &["up.sh --hardened"]),
    ("scripts/lab/backlog-drain.sh", &["no arguments"]),
    ("scripts/lab/classic.sh", &["classic.sh LAB_CHECKOUT"]),
    ("scripts/lab/common.sh", &["sourced"]),
    ("scripts/lab/dlq.sh", &["no arguments"]),
    ("scripts/lab/idempotency.sh", &["no arguments"]),
    ("scripts/lab/persistence.sh", &["no arguments"]),
    ("scripts/lab/run_all.sh", &["no arguments"]),
    (
        "scripts/lab/schema_evolution.sh",
        &["no arguments", "ORDER_PLACED_READS"],
    ),
    ("scripts/lab/smoke.sh", &["no arguments"]),
];

/// `bash SCRIPT ARG` from the repository's root: exit code and standard output. Only ever run
/// with `--help`/`-h`, which every script answers before it does anything else (some install
/// packages, stop the shared broker or run the whole suite when given anything else).
fn run_script(script: &str, arg: &str) -> (Option<i32>, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(arg)
        .current_dir(&root)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("bash {script} {arg}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn every_script_answers_help_with_all_its_verbs_and_exits_0() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let on_disk: BTreeSet<String> = ["scripts", "scripts/lab"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).expect("scripts/ is readable"))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let rel = path.strip_prefix(&root).ok()?.to_str()?.to_owned();
            rel.ends_with(".sh").then_some(rel)
        })
        .collect();
    let listed: BTreeSet<String> = SCRIPTS.iter().map(|(s, _)| (*s).to_owned()).collect();
    assert_eq!(on_disk, listed, "every script has its entry in SCRIPTS");

    for (script, verbs) in SCRIPTS {
        for arg in ["--help", "-h"] {
            let (code, usage) = run_script(script, arg);
            assert_eq!(
                code,
                Some(0),
                "{script} {arg} exits 0; it printed:\n{usage}"
            );
            for verb in *verbs {
                assert!(
                    usage.contains(verb),
                    "{script} {arg} names {verb:?}:\n{usage}"
                );
            }
        }
    }
}

/// scripts/bench.sh passes its arguments to saga-bench: its usage lists every flag the binary
/// takes, so the two cannot drift apart.
#[test]
fn bench_sh_help_lists_every_flag_of_saga_bench() {
    let bench = harness::process::bin_dir().join("saga-bench");
    let out = std::process::Command::new(&bench)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it first: cargo build --workspace --bins)",
                bench.display()
            )
        });
    assert!(out.status.success());
    let flags: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .filter(|w| w != "--help" && w != "--version")
        .collect();
    assert!(flags.contains("--orders"), "{flags:?}");
    let (code, usage) = run_script("scripts/bench.sh", "--help");
    assert_eq!(code, Some(0));
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| !usage.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "scripts/bench.sh --help lacks {missing:?}:\n{usage}"
    );
}
