//! compose.yaml and the Dockerfile, checked against the binaries they run. No Docker engine runs
//! on the course machines, so CI cannot start the Compose profile; instead this reads the file and
//! holds it to what the code says: each service's environment keys are variables its binary
//! really reads (clap's `CommandFactory` knows every one), its HTTP port is published and health
//! checked, and state lives in named volumes, Redis with the project's one persistence file.

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
