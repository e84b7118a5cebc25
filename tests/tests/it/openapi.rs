//! The HTTP API described (issue 20): order-svc and inventory-svc each serve an OpenAPI 3
//! document generated from their code at `/openapi.json`. The document lists exactly the routes
//! the running service answers (the hostile suite's route list, asked of the service), and
//! schemathesis, fuzzing the running services from their documents, finds every route
//! answering as documented (status, headers, body) and no 5xx for any input.
//!
//! schemathesis comes from PyPI, installed once by scripts/test.sh into a venv under
//! `${XDG_CACHE_HOME:-~/.cache}/saga/schemathesis` (`SCHEMATHESIS=<path>` names another
//! binary). Its seed is printed; `SCHEMATHESIS_SEED=<n>` replays a run and
//! `SCHEMATHESIS_EXAMPLES=<n>` sets the examples per operation (default 30).
//!
//! Run: `cargo build --workspace --bins && cargo test -p saga-tests --test it openapi::`

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use harness::hostile::http::Target;
use harness::{Endpoint, ServiceKind, ServiceProcess, TestEnv};
use reqwest::Method;
use saga_domain::owner::Claims;
use saga_platform::service::jwt::{self, JwtSecret};
use serde_json::Value;

/// Examples per operation and phase, unless `SCHEMATHESIS_EXAMPLES` says otherwise.
const EXAMPLES: u32 = 30;

/// order-svc with auth on (so the Bearer scheme is described and checked) and inventory-svc,
/// as the binaries, in a world of their own.
async fn start(test: &str) -> anyhow::Result<(TestEnv, ServiceProcess, ServiceProcess, String)> {
    let secret = format!("openapi-test-secret-{}", uuid::Uuid::new_v4().simple());
    let mut env = TestEnv::new(test).await?;
    env.service_env
        .insert(jwt::SECRET_VAR.to_owned(), secret.clone());
    let order = env.start(ServiceKind::Order).await?;
    let inventory = env.start(ServiceKind::Inventory).await?;
    Ok((env, order, inventory, secret))
}

/// A customer's token (not staff), valid for an hour.
fn token(secret: &str) -> anyhow::Result<String> {
    let now = jwt::expires_in(Duration::ZERO);
    let claims = Claims {
        sub: Some("st-user".to_owned()),
        email: Some("st-user@example.org".to_owned()),
        exp: now.saturating_add(3600),
        iat: Some(now),
        ..Claims::default()
    };
    Ok(jwt::mint(
        &JwtSecret::parse(secret).map_err(anyhow::Error::msg)?,
        &claims,
    )?)
}

async fn document(env: &TestEnv, service: &impl Endpoint) -> anyhow::Result<Value> {
    let response = env.http().get(service.url("/openapi.json")).send().await?;
    anyhow::ensure!(
        response.status() == 200,
        "/openapi.json: {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// `(METHOD, path template)` of every operation a document describes.
fn described(document: &Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// Whether the service has a route for `method` on `template`: anything but the answers to a
/// request no route takes (404 "no such route", 405).
async fn served(
    env: &TestEnv,
    service: &impl Endpoint,
    method: &str,
    template: &str,
) -> anyhow::Result<bool> {
    let path = template
        .replace("{id}", "openapi-probe")
        .replace("{item}", "burger");
    let method = Method::from_bytes(method.as_bytes())?;
    let response = env
        .http()
        .request(method, service.url(&path))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Ok(status != 405 && !(status == 404 && body["error"] == "no such route"))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_document_describes_every_route_its_service_serves() -> anyhow::Result<()> {
    let (env, order, inventory, _secret) = start("openapi-routes").await?;
    let services: [(Target, &ServiceProcess); 2] =
        [(Target::Order, &order), (Target::Inventory, &inventory)];
    for (target, service) in services {
        let document = document(&env, service).await?;
        let version = document["openapi"].as_str().unwrap_or_default();
        assert!(
            version.starts_with("3."),
            "{}: openapi {version:?}",
            target.name()
        );
        let mut answered = BTreeSet::new();
        for (method, template) in target.routes() {
            if served(&env, service, method, template).await? {
                answered.insert(((*method).to_owned(), (*template).to_owned()));
            }
        }
        assert_eq!(
            described(&document),
            answered,
            "{}: the routes its /openapi.json describes (left) and those it answers (right, \
             from tests/src/hostile/http.rs's list)",
            target.name()
        );
    }
    Ok(())
}

/// The schemathesis binary: `SCHEMATHESIS`, or the venv scripts/test.sh installs.
fn schemathesis() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return Ok(PathBuf::from(path));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    let path = cache.join("saga/schemathesis/bin/schemathesis");
    anyhow::ensure!(
        path.is_file(),
        "schemathesis is not installed ({} is missing): run scripts/test.sh, which installs it once",
        path.display()
    );
    Ok(path)
}

/// Run schemathesis against one service: every check, a bounded number of examples, this seed.
/// ASCII strings only: the schemas' lengths count characters, the code's limits bytes, and the
/// two agree only on ASCII (saga_domain::schema).
async fn fuzz(
    binary: &PathBuf,
    service: &impl Endpoint,
    seed: u64,
    examples: u32,
    authorization: Option<&str>,
) -> anyhow::Result<(bool, String)> {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/schemathesis.toml");
    // schemathesis keeps a cache (`.schemathesis/`) where it runs: not in the working tree.
    let workdir = std::env::temp_dir().join("saga-schemathesis");
    std::fs::create_dir_all(&workdir)?;
    let mut command = tokio::process::Command::new(binary);
    command
        .current_dir(&workdir)
        .args(["--config-file", config])
        .arg("run")
        .arg(service.url("/openapi.json"))
        .args(["--url", &service.url("")])
        .args(["--checks", "all"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--generation-codec", "ascii"])
        .args(["--no-color", "--output-truncate", "true"])
        .args(["--request-timeout", "10"])
        // No report files, and no example database, in the working tree.
        .args(["--generation-database", "none"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true);
    if let Some(authorization) = authorization {
        command.args(["-H", &format!("Authorization: {authorization}")]);
    }
    let output = command.output().await?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_each_service_as_documented() -> anyhow::Result<()> {
    let binary = schemathesis()?;
    let seed = std::env::var("SCHEMATHESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..1 << 53));
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(EXAMPLES);
    println!(
        "schemathesis seed {seed} ({examples} examples; replay with SCHEMATHESIS_SEED={seed})"
    );
    let (_env, order, inventory, secret) = start("openapi-fuzz").await?;
    let bearer = format!("Bearer {}", token(&secret)?);
    let mut failed = Vec::new();
    for (name, service, authorization) in [
        ("order-svc", &order, Some(bearer.as_str())),
        ("inventory-svc", &inventory, None),
    ] {
        let (passed, output) = fuzz(&binary, service, seed, examples, authorization).await?;
        println!("---- schemathesis against {name} ----\n{output}");
        if !passed {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis found failures in {failed:?} (seed {seed}; SCHEMATHESIS_SEED={seed} replays it); its report is above"
    );
    Ok(())
}
