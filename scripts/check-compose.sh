#!/usr/bin/env bash
# Static check of compose.yaml and Dockerfile against the workspace (no Docker engine needed; CI).
#   - the five services exist (rabbitmq, redis, order-svc, inventory-svc, notification-svc)
#   - each app service runs a binary the workspace builds, and every environment key it sets is a
#     variable that binary really reads (its --help shows `[env: KEY=` or, for values it hides, `[env: KEY]`); RUST_LOG is exempt
#   - each app service listens on all interfaces, publishes the port of its HTTP_ADDR, and its
#     healthcheck curls /health on that port; it waits for healthy rabbitmq and redis
#   - the Dockerfile builds all bins in one cargo build and copies every binary into the image
#   - state survives `docker compose down`: redis runs with deploy/redis.conf (the project's one
#     persistence definition, AOF) and keeps /data in a named volume; rabbitmq keeps
#     /var/lib/rabbitmq in a named volume under a fixed hostname (its node name)
# One PASS/FAIL line per check; exits 1 if any fails.
# YAML is read with PyYAML (installed with pip when missing); without it, a small built-in reader
# handles the plain subset compose.yaml uses. Set SAGA_CHECK_NO_PYYAML=1 to force that reader.
# The binaries' help comes from the newest of target/debug and target/release (built when absent).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { printf 'check-compose: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; exit 1; }

command -v python3 >/dev/null 2>&1 || fail "python3 not found (apt-get install -y python3)"
[ -f compose.yaml ] || fail "no compose.yaml in $ROOT"

if [ -z "${SAGA_CHECK_NO_PYYAML:-}" ] && ! python3 -c 'import yaml' 2>/dev/null; then
  say "PyYAML missing; trying: python3 -m pip install --quiet pyyaml"
  python3 -m pip install --quiet pyyaml >/dev/null 2>&1 ||
    say "could not install PyYAML; using the built-in reader for compose.yaml's plain YAML"
fi

have_bins() {
  local b
  for b in order-svc inventory-svc notification-svc; do
    [ -x "target/debug/$b" ] || [ -x "target/release/$b" ] || return 1
  done
}
if ! have_bins; then
  command -v cargo >/dev/null 2>&1 || fail "no built binaries in target/ and no cargo to build them"
  say "no binaries in target/ yet; running cargo build --bins (a few minutes the first time)"
  cargo build --bins --quiet >/dev/null 2>&1 || fail "cargo build --bins failed; run it to see why"
fi

exec python3 - "$ROOT" <<'PY'
import json
import os
import re
import shlex
import subprocess
import sys

ROOT = sys.argv[1]
APP_SERVICES = ["order-svc", "inventory-svc", "notification-svc"]
ALL_SERVICES = ["rabbitmq", "redis"] + APP_SERVICES
failures = 0


def check(ok, what, detail=""):
    global failures
    line = ("PASS: " if ok else "FAIL: ") + what
    if detail:
        line += " (" + detail + ")"
    print(line, flush=True)
    if not ok:
        failures += 1
    return ok


# ---------------------------------------------------------------- YAML -----------------------
class Unsupported(Exception):
    pass


def mini_yaml(text):
    """Block mappings and sequences, plain/quoted scalars, flow sequences of scalars, comments.
    Anything else (anchors, multi-line strings, flow mappings, tabs) raises Unsupported."""

    def strip_comment(line):
        quote = None
        for i, c in enumerate(line):
            if quote:
                if c == quote:
                    quote = None
            elif c in "\"'":
                quote = c
            elif c == "#" and (i == 0 or line[i - 1] in " \t"):
                return line[:i].rstrip()
        return line.rstrip()

    def split_outside_quotes(s, sep):
        parts, quote, cur = [], None, ""
        for c in s:
            if quote:
                cur += c
                if c == quote:
                    quote = None
            elif c in "\"'":
                quote = c
                cur += c
            elif c == sep:
                parts.append(cur)
                cur = ""
            else:
                cur += c
        parts.append(cur)
        return parts

    def scalar(s):
        s = s.strip()
        if not s:
            return None
        if s[0] in "&*!|>{" or s.startswith("<<"):
            raise Unsupported("unsupported YAML construct: " + s[:30])
        if s[0] == '"':
            if not s.endswith('"') or len(s) < 2:
                raise Unsupported("unterminated string: " + s[:30])
            return json.loads(s)
        if s[0] == "'":
            if not s.endswith("'") or len(s) < 2:
                raise Unsupported("unterminated string: " + s[:30])
            return s[1:-1].replace("''", "'")
        if s[0] == "[":
            if not s.endswith("]"):
                raise Unsupported("multi-line flow sequence: " + s[:30])
            inner = s[1:-1].strip()
            return [scalar(p) for p in split_outside_quotes(inner, ",")] if inner else []
        if re.fullmatch(r"[-+]?[0-9]+", s):
            return int(s)
        if s in ("true", "True", "TRUE"):
            return True
        if s in ("false", "False", "FALSE"):
            return False
        if s in ("null", "Null", "NULL", "~"):
            return None
        return s

    def split_key(s):
        quote = None
        for i, c in enumerate(s):
            if quote:
                if c == quote:
                    quote = None
            elif c in "\"'":
                quote = c
            elif c == ":" and (i + 1 == len(s) or s[i + 1] == " "):
                key = scalar(s[:i])
                return key, s[i + 1 :].strip()
        return None, None

    lines = []
    for raw in text.splitlines():
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise Unsupported("tab indentation")
        s = strip_comment(raw)
        if not s.strip() or s.strip() in ("---",):
            continue
        lines.append([len(s) - len(s.lstrip(" ")), s.strip()])
    pos = 0

    def is_item(text):
        return text == "-" or text.startswith("- ")

    def block(indent):
        return seq(indent) if is_item(lines[pos][1]) else mapping(indent)

    def mapping(indent):
        nonlocal pos
        out = {}
        while pos < len(lines) and lines[pos][0] == indent and not is_item(lines[pos][1]):
            key, rest = split_key(lines[pos][1])
            if key is None:
                raise Unsupported("not a 'key: value' line: " + lines[pos][1][:40])
            pos += 1
            if rest:
                out[key] = scalar(rest)
            elif pos < len(lines) and (
                lines[pos][0] > indent or (lines[pos][0] == indent and is_item(lines[pos][1]))
            ):
                out[key] = block(lines[pos][0])
            else:
                out[key] = None
        return out

    def seq(indent):
        nonlocal pos
        out = []
        while pos < len(lines) and lines[pos][0] == indent and is_item(lines[pos][1]):
            item = lines[pos][1][1:].strip()
            if not item:
                pos += 1
                out.append(block(lines[pos][0]) if pos < len(lines) and lines[pos][0] > indent else None)
            elif split_key(item)[0] is not None and not item.startswith(("'", '"', "[")):
                lines[pos] = [indent + 2, item]  # "- key: value" opens a mapping
                out.append(mapping(indent + 2))
            else:
                pos += 1
                out.append(scalar(item))
        return out

    if not lines:
        return None
    doc = block(lines[0][0])
    if pos != len(lines):
        raise Unsupported("unexpected indentation at: " + lines[pos][1][:40])
    return doc


def load_compose(path):
    text = open(path, encoding="utf-8").read()
    if not os.environ.get("SAGA_CHECK_NO_PYYAML"):
        try:
            import yaml
        except ImportError:
            pass
        else:
            return yaml.safe_load(text), "PyYAML " + yaml.__version__
    return mini_yaml(text), "built-in reader"


# ---------------------------------------------------------------- workspace ------------------
def read_toml(path):
    text = open(path, encoding="utf-8").read()
    try:
        import tomllib
    except ImportError:
        tomllib = None
    if tomllib:
        return tomllib.loads(text)
    # Python < 3.11: just what we need (package name, [[bin]] names, workspace members).
    data = {}
    m = re.search(r"^\[package\][^\[]*?^name\s*=\s*\"([^\"]+)\"", text, re.M | re.S)
    if m:
        data["package"] = {"name": m.group(1)}
    bins = re.findall(r"^\[\[bin\]\][^\[]*?^name\s*=\s*\"([^\"]+)\"", text, re.M | re.S)
    if bins:
        data["bin"] = [{"name": b} for b in bins]
    m = re.search(r"^members\s*=\s*\[([^\]]*)\]", text, re.M | re.S)
    if m:
        data["workspace"] = {"members": re.findall(r"\"([^\"]+)\"", m.group(1))}
    return data


def workspace_bins():
    """Binary name -> package name, for every binary target of every workspace member."""
    root = read_toml(os.path.join(ROOT, "Cargo.toml"))
    bins = {}
    for member in root.get("workspace", {}).get("members", []):
        manifest = os.path.join(ROOT, member, "Cargo.toml")
        if not os.path.exists(manifest):
            continue
        data = read_toml(manifest)
        pkg = data.get("package", {})
        name = pkg.get("name")
        for b in data.get("bin", []):
            bins[b["name"]] = name
        if pkg.get("autobins", True):
            if os.path.exists(os.path.join(ROOT, member, "src", "main.rs")):
                bins.setdefault(name, name)
            bindir = os.path.join(ROOT, member, "src", "bin")
            if os.path.isdir(bindir):
                for f in os.listdir(bindir):
                    if f.endswith(".rs"):
                        bins.setdefault(f[:-3], name)
    return bins


def binary_help(binary):
    candidates = [
        os.path.join(ROOT, "target", d, binary)
        for d in ("debug", "release")
        if os.access(os.path.join(ROOT, "target", d, binary), os.X_OK)
    ]
    if not candidates:
        return None, "no target/debug/%s or target/release/%s" % (binary, binary)
    path = max(candidates, key=os.path.getmtime)  # the newest build knows the newest flags
    try:
        out = subprocess.run(
            [path, "--help"],
            capture_output=True,
            text=True,
            timeout=20,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},  # help shows no inherited values
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "%s --help: %s" % (path, e)
    if out.returncode != 0:
        return None, "%s --help exited %d" % (path, out.returncode)
    return out.stdout, os.path.relpath(path, ROOT)


# ---------------------------------------------------------------- compose helpers ------------
def env_keys(env):
    if isinstance(env, dict):
        return {str(k): ("" if v is None else str(v)) for k, v in env.items()}
    keys = {}
    for item in env or []:
        k, _, v = str(item).partition("=")
        keys[k] = v
    return keys


def port_pairs(ports):
    """(published, target) pairs as strings; published may be None."""
    pairs = []
    for p in ports or []:
        if isinstance(p, dict):
            pairs.append((str(p.get("published")) if p.get("published") is not None else None,
                          str(p.get("target"))))
            continue
        s = str(p).split("/")[0]
        parts = s.rsplit(":", 2) if s.count(":") <= 2 else [s]
        if len(parts) == 1:
            pairs.append((None, parts[0]))
        else:
            pairs.append((parts[-2], parts[-1]))
    return pairs


def command_binary(cmd):
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    if not cmd:
        return None
    return os.path.basename(str(cmd[0]))


def mounts(svc):
    """(source, target) of each volume, short ("src:dst[:ro]") or long syntax."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append((str(v.get("source") or ""), str(v.get("target") or "")))
        else:
            parts = str(v).split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return out


def named_volume_check(name, svc, target):
    declared = compose.get("volumes") or {}
    sources = [src for src, dst in mounts(svc) if dst.rstrip("/") == target]
    ok = bool(sources) and sources[0] in declared
    check(ok, "%s keeps %s in a named volume (kept by docker compose down, wiped by down -v)" % (name, target),
          sources[0] if sources else "no volume on " + target)


def healthcheck_text(svc):
    test = (svc.get("healthcheck") or {}).get("test")
    if isinstance(test, list):
        return " ".join(str(t) for t in test)
    return str(test or "")


# ---------------------------------------------------------------- checks ---------------------
try:
    compose, reader = load_compose(os.path.join(ROOT, "compose.yaml"))
except Unsupported as e:
    check(False, "compose.yaml parses", "%s; install PyYAML (pip install pyyaml)" % e)
    sys.exit(1)
except Exception as e:  # a YAML syntax error from PyYAML
    check(False, "compose.yaml parses", str(e).replace("\n", " "))
    sys.exit(1)
if not check(isinstance(compose, dict) and isinstance(compose.get("services"), dict),
             "compose.yaml parses and has a services map", "read with " + reader):
    sys.exit(1)
services = compose["services"]

for name in ALL_SERVICES:
    check(name in services, "service %s exists" % name)
extra = sorted(set(services) - set(ALL_SERVICES))
if extra:
    print("note: other services: " + ", ".join(extra))


def healthy_dep_check(name, svc):
    deps = svc.get("depends_on") or {}
    bad = []
    for dep in ("rabbitmq", "redis"):
        cond = (deps.get(dep) or {}).get("condition") if isinstance(deps, dict) else None
        if cond != "service_healthy":
            bad.append(dep)
    check(not bad, "%s waits for healthy rabbitmq and redis" % name,
          "missing condition: service_healthy for " + ", ".join(bad) if bad else "")


if "rabbitmq" in services:
    r = services["rabbitmq"]
    check(str(r.get("image", "")).startswith("rabbitmq:") and "management" in str(r.get("image")),
          "rabbitmq runs a management image", str(r.get("image")))
    check("rabbitmq-diagnostics" in healthcheck_text(r) and "ping" in healthcheck_text(r),
          "rabbitmq has a rabbitmq-diagnostics ping healthcheck", healthcheck_text(r) or "none")
    published = {p for p, _ in port_pairs(r.get("ports"))}
    check({"5672", "15672"} <= published, "rabbitmq publishes 5672 and 15672",
          "published: " + ", ".join(sorted(x for x in published if x)))
if "redis" in services:
    r = services["redis"]
    check(str(r.get("image", "")).startswith("redis:"), "redis runs a redis image", str(r.get("image")))
    check("redis-cli" in healthcheck_text(r) and "ping" in healthcheck_text(r),
          "redis has a redis-cli ping healthcheck", healthcheck_text(r) or "none")
    # The persistence settings come from deploy/redis.conf, as for scripts/redis-server.sh.
    cmd = r.get("command") or []
    cmd = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
    conf = [dst for src, dst in mounts(r)
            if os.path.normpath(os.path.join(ROOT, src)) == os.path.join(ROOT, "deploy", "redis.conf")]
    check(os.path.exists(os.path.join(ROOT, "deploy", "redis.conf")) and len(cmd) > 1
          and command_binary(cmd) == "redis-server" and bool(conf) and cmd[1] == conf[0],
          "redis runs with deploy/redis.conf mounted as its config file", " ".join(cmd) or "no command")
    named_volume_check("redis", r, "/data")
if "rabbitmq" in services:
    r = services["rabbitmq"]
    named_volume_check("rabbitmq", r, "/var/lib/rabbitmq")
    check(bool(r.get("hostname")), "rabbitmq has a fixed hostname (its node name, hence its data directory)",
          str(r.get("hostname")))

ws_bins = workspace_bins()
check(bool(ws_bins), "workspace binaries found", ", ".join(sorted(ws_bins)))
images = set()
build_contexts = set()
command_bins = set()

for name in APP_SERVICES:
    svc = services.get(name)
    if not isinstance(svc, dict):
        continue
    images.add(svc.get("image"))
    build = svc.get("build")
    if build is not None:
        build_contexts.add(build if isinstance(build, str) else
                           (build.get("context", "."), build.get("dockerfile", "Dockerfile")))

    binary = command_binary(svc.get("command"))
    command_bins.add(binary)
    check(binary in ws_bins, "%s: command runs a workspace binary" % name,
          "%s (package %s)" % (binary, ws_bins[binary]) if binary in ws_bins
          else "%r is not a [[bin]]/package binary of the workspace" % binary)

    env = env_keys(svc.get("environment"))
    help_text, source = binary_help(binary) if binary in ws_bins else (None, "no binary")
    if help_text is None:
        check(False, "%s: environment keys are accepted by %s" % (name, binary), source)
    else:
        unknown = [k for k in env if k != "RUST_LOG" and not any(("[env: %s%s" % (k, end)) in help_text for end in ("=", "]"))]
        check(not unknown, "%s: environment keys are accepted by %s" % (name, binary),
              ("unknown: " + ", ".join(unknown)) if unknown
              else "%s checked against %s --help" % (", ".join(sorted(env)), source))

    healthy_dep_check(name, svc)
    check(svc.get("restart") == "unless-stopped", "%s: restart: unless-stopped" % name,
          str(svc.get("restart")))

    addr = env.get("HTTP_ADDR")
    m = re.fullmatch(r"(.*):(\d+)", addr or "")
    if not check(bool(m), "%s: sets HTTP_ADDR" % name, addr or "missing"):
        continue
    host, port = m.group(1), m.group(2)
    check(host in ("0.0.0.0", "[::]", "::"), "%s: HTTP_ADDR listens on all interfaces" % name,
          addr if host in ("0.0.0.0", "[::]", "::") else addr + ": unreachable from outside the container")
    pairs = port_pairs(svc.get("ports"))
    check((port, port) in pairs, "%s: publishes port %s of its HTTP_ADDR" % (name, port),
          "ports: " + ", ".join("%s:%s" % (p, t) for p, t in pairs) if pairs else "no ports")
    hc = healthcheck_text(svc)
    check("curl" in hc and (":%s/health" % port) in hc, "%s: healthcheck curls /health on %s" % (name, port),
          hc or "none")

check(len(images) == 1 and None not in images, "app services share one image",
      ", ".join(sorted(str(i) for i in images)))

# Dockerfile
dockerfiles = {c[1] if isinstance(c, tuple) else "Dockerfile" for c in build_contexts} or {"Dockerfile"}
contexts = {c[0] if isinstance(c, tuple) else c for c in build_contexts} or {"."}
check(len(build_contexts) >= 1, "app services have a build section", str(sorted(map(str, build_contexts))))
for ctx in sorted(contexts):
    for df in sorted(dockerfiles):
        path = os.path.normpath(os.path.join(ROOT, ctx, df))
        if not check(os.path.exists(path), "Dockerfile exists", os.path.relpath(path, ROOT)):
            continue
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"(?m)^\s*#.*\n", "", text)  # comments (and parser directives) say nothing
        joined = re.sub(r"\\\n", " ", text)  # line continuations
        builds = [l for l in joined.splitlines() if re.search(r"\bcargo\s+build\b", l)]
        ok = len(builds) == 1 and "--release" in builds[0] and re.search(r"--bins\b|--workspace\b", builds[0])
        check(bool(ok), "Dockerfile builds all bins in one cargo build --release --bins",
              "%d cargo build line(s)" % len(builds))
        # Either every binary is named, or every executable at the top of target/release is copied.
        copy_all = re.search(r"\bfind\s+\S*target/release/?\s+-maxdepth\s+1\b[^\n]*-executable[^\n]*\bcp\b", joined)
        missing = [] if copy_all else [
            b for b in sorted(ws_bins) if not re.search(r"target/release/%s(\s|$|/)" % re.escape(b), joined)]
        check(not missing, "Dockerfile copies every workspace binary into the image",
              "missing: " + ", ".join(missing) if missing else
              ("all executables in target/release: " if copy_all else "") + ", ".join(sorted(ws_bins)))
        froms = re.findall(r"^\s*FROM\s+(\S+)", text, re.M | re.I)
        check(len(froms) >= 2 and froms[0].startswith("rust:") and froms[-1].startswith("debian:"),
              "Dockerfile is multi-stage: rust build, debian runtime", " -> ".join(froms))
        runtime = re.split(r"^\s*FROM\s", joined, flags=re.M | re.I)[-1]
        check(re.search(r"apt-get install[^\n]*\bcurl\b", runtime) is not None,
              "runtime image installs curl (the healthchecks use it)")

dockerignore = os.path.join(ROOT, ".dockerignore")
ignored = open(dockerignore).read().split() if os.path.exists(dockerignore) else []
check(any(i.strip("/") == "target" for i in ignored), ".dockerignore excludes target/",
      ", ".join(ignored) or "no .dockerignore")

print("check-compose: %s" % ("all checks passed" if failures == 0 else "%d check(s) failed" % failures))
sys.exit(1 if failures else 0)
PY
