//! The demo's service processes, found from their pid files.
//!
//! scripts/svc.sh (and so scripts/up.sh) writes `$SAGA_RUN_DIR/<name>.pid` for each service it
//! starts. A profile that runs several instances of a service writes one pid file per instance,
//! named after the service (`inventory-svc-2.pid`): every one is listed, so each instance can be
//! stopped or killed on its own. A pid is trusted only if that process is alive (not a zombie)
//! and runs the service's binary, as svc.sh checks too: a pid file outlives its process, and
//! the pid may have been reused since.

use std::path::Path;

use serde::Serialize;

/// The services the demo runs, as their binaries are named.
pub const SERVICES: [&str; 3] = ["order-svc", "inventory-svc", "notification-svc"];

/// One instance of a service, as its pid file and /proc describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// The pid file's name without `.pid`, e.g. `inventory-svc` or `inventory-svc-2`.
    pub name: String,
    /// The service it is an instance of.
    pub service: &'static str,
    /// The pid the file names (alive or not).
    pub pid: Option<u32>,
    /// The pid is alive and runs the service's binary.
    pub running: bool,
    /// scripts/svc.sh can start it (it knows the three base names only).
    pub startable: bool,
}

/// Every instance with a pid file in `run_dir`, plus the three base services when they have
/// none (so a stopped demo can still be started), in a stable order.
pub fn scan(run_dir: &Path) -> Vec<Instance> {
    let mut found: Vec<Instance> = std::fs::read_dir(run_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let name = file.strip_suffix(".pid")?.to_owned();
                    let service = service_of(&name)?;
                    let pid = std::fs::read_to_string(entry.path())
                        .ok()
                        .and_then(|text| text.trim().parse::<u32>().ok());
                    Some(instance(name, service, pid))
                })
                .collect()
        })
        .unwrap_or_default();
    for service in SERVICES {
        if !found.iter().any(|i| i.name == service) {
            found.push(instance(service.to_owned(), service, None));
        }
    }
    found.sort_by(|a, b| {
        let rank = |i: &Instance| SERVICES.iter().position(|s| *s == i.service);
        (rank(a), &a.name).cmp(&(rank(b), &b.name))
    });
    found
}

fn instance(name: String, service: &'static str, pid: Option<u32>) -> Instance {
    Instance {
        startable: name == service,
        running: pid.is_some_and(|pid| runs(pid, service)),
        name,
        service,
        pid,
    }
}

/// Which service a pid file's name belongs to: the service's own name, or it followed by a
/// separator and an instance label (`-2`, `.b`, `@east`).
pub fn service_of(name: &str) -> Option<&'static str> {
    SERVICES.into_iter().find(|service| {
        name == *service
            || name
                .strip_prefix(service)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| matches!(c, '-' | '.' | '@' | '_'))
    })
}

/// Is `pid` alive (not a zombie) and running the binary `service`?
pub fn runs(pid: u32, service: &str) -> bool {
    alive(pid) && argv0_is(pid, service)
}

/// Alive and not a zombie: a killed child whose parent has not reaped it yet is gone for all
/// that matters here.
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain spaces.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

fn argv0_is(pid: u32, service: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    Path::new(argv0.as_ref())
        .file_name()
        .is_some_and(|name| name == service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_name_their_service() {
        assert_eq!(service_of("inventory-svc"), Some("inventory-svc"));
        assert_eq!(service_of("inventory-svc-2"), Some("inventory-svc"));
        assert_eq!(service_of("notification-svc@b"), Some("notification-svc"));
        assert_eq!(service_of("inventory-svcx"), None);
        assert_eq!(service_of("board"), None);
        assert_eq!(service_of("redis"), None);
    }

    #[test]
    fn the_run_dir_is_scanned_and_stale_pids_are_not_running() {
        let dir = std::env::temp_dir().join(format!("board-scan-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        // Our own pid is alive but is not inventory-svc: a stale or reused pid.
        std::fs::write(
            dir.join("inventory-svc.pid"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        std::fs::write(dir.join("inventory-svc-2.pid"), "not a pid").unwrap();
        std::fs::write(dir.join("board.pid"), "1").unwrap();
        let found = scan(&dir);
        let names: Vec<&str> = found.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "order-svc",
                "inventory-svc",
                "inventory-svc-2",
                "notification-svc"
            ]
        );
        assert!(found.iter().all(|i| !i.running));
        assert_eq!(found[1].pid, Some(std::process::id()));
        assert!(found[1].startable);
        assert!(!found[2].startable, "svc.sh knows the base names only");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_is_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }
}
