#!/usr/bin/env bash
# test_manifests.sh - the deployment files, checked without a cluster, a container engine or the
# network: every YAML document of docker/k8s/ and docker/compose.yaml parses (PyYAML's
# safe_load), and the settings that must agree do: kinds, probe paths, ports, security contexts,
# resources, the data volume, grace periods longer than preStop + the drain timeout, Services
# that select the pods, nginx's body limit equal to normd's, the Dockerfile's user, signal and
# health check. Needs python3 with PyYAML (Debian: python3-yaml).
set -u
cd "$(dirname "$0")/../.." || exit 2
# The python3 first on PATH may be another interpreter than Debian's, without PyYAML.
PY=python3
python3 -c 'import yaml' 2>/dev/null || PY=/usr/bin/python3
exec "$PY" - "$@" <<'EOF'
import glob
import re
import sys

try:
    import yaml
except ImportError:
    sys.exit("test_manifests: needs PyYAML (Debian: apt-get install python3-yaml)")

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}", file=sys.stderr)


def load(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        check(False, f"{path}: {e}")
        return []


def get(obj, *keys, default=None):
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and k < len(obj):
            obj = obj[k]
        else:
            return default
    return obj


def seconds(text):
    m = re.fullmatch(r"(\d+)(s|m)?", str(text))
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1) if m else None


def drain_timeout():
    """normd's default NORMD_DRAIN_TIMEOUT, from server/config.c's settings table."""
    m = re.search(r'"NORMD_DRAIN_TIMEOUT",\s*KIND_DOUBLE,\s*"(\d+)"', open("server/config.c").read())
    return int(m.group(1)) if m else None


DRAIN = drain_timeout()
check(DRAIN is not None, "server/config.c: the default drain timeout")

# ---- Kubernetes ----

docs = {}
for path in sorted(glob.glob("docker/k8s/**/*.yaml", recursive=True)):
    for d in load(path):
        check(isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and
              get(d, "metadata", "name"), f"{path}: apiVersion, kind and metadata.name")
        docs.setdefault(path, []).append(d)
kinds = {p: sorted(d["kind"] for d in ds) for p, ds in docs.items()}
check(kinds.get("docker/k8s/deployment.yaml") == ["Deployment"], "deployment.yaml is a Deployment")
check(kinds.get("docker/k8s/service.yaml") == ["Service"], "service.yaml is a Service")
check(kinds.get("docker/k8s/pvc.yaml") == ["PersistentVolumeClaim"], "pvc.yaml is a PVC")
check(kinds.get("docker/k8s/sharded/statefulset.yaml") == ["StatefulSet"], "sharded StatefulSet")
check(kinds.get("docker/k8s/sharded/service.yaml") == ["Service", "Service"], "sharded Services")


def env_of(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def check_probes(where, c):
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        check(get(c, probe, "httpGet", "path") == path, f"{where}: {probe} GETs {path}")
        check(get(c, probe, "httpGet", "port") in ("admin", 8081), f"{where}: {probe} on the admin port")


def check_security(where, pod, c):
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001,
          f"{where}: pod runs as non-root uid 10001")
    check(csc.get("runAsNonRoot") is True and csc.get("runAsUser") == 10001,
          f"{where}: container runAsNonRoot, runAsUser 10001")
    check(csc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"{where}: no privilege escalation")
    check("ALL" in get(csc, "capabilities", "drop", default=[]), f"{where}: drops ALL capabilities")


def check_shutdown(where, pod, c, env):
    drain = float(env.get("NORMD_DRAIN_TIMEOUT") or DRAIN or 0)
    cmd = get(c, "lifecycle", "preStop", "exec", "command", default=[])
    pre = seconds(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" else None
    check(pre is not None and pre > 0, f"{where}: preStop sleeps before SIGTERM")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace >= (pre or 0) + drain, f"{where}: grace {grace} s >= preStop {pre} + drain {drain}")
    check(drain == DRAIN or "NORMD_DRAIN_TIMEOUT" in env, f"{where}: drain timeout stated")


def check_data(where, w, pod, c, env, claims):
    check(env.get("NORMD_DATA_DIR") == "/data", f"{where}: NORMD_DATA_DIR=/data")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    check("/tmp" in mounts, f"{where}: a writable /tmp (the root is read-only)")
    vol = mounts.get("/data")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    templates = [get(t, "metadata", "name") for t in get(w, "spec", "volumeClaimTemplates", default=[])]
    if w["kind"] == "StatefulSet":
        check(vol in templates, f"{where}: /data from a volumeClaimTemplate (one per replica)")
    else:
        claim = get(vols.get(vol), "persistentVolumeClaim", "claimName")
        check(claim in claims, f"{where}: /data from the PVC {claim}")
        rwo = "ReadWriteOnce" in get(claims.get(claim), "spec", "accessModes", default=[])
        check(not rwo or get(w, "spec", "replicas") == 1,
              f"{where}: one replica on a ReadWriteOnce volume")
        check(not rwo or get(w, "spec", "strategy", "type") == "Recreate",
              f"{where}: Recreate, so the old pod releases the volume first")


def check_workload(w, claims):
    where = f"{w['kind']} {w['metadata']['name']}"
    pod = get(w, "spec", "template", "spec", default={})
    labels = get(w, "spec", "template", "metadata", "labels", default={})
    sel = get(w, "spec", "selector", "matchLabels", default={})
    check(sel and all(labels.get(k) == v for k, v in sel.items()), f"{where}: selector matches")
    cs = [c for c in pod.get("containers", []) if c.get("name") == "normd"]
    check(len(cs) == 1, f"{where}: a container named normd")
    if not cs:
        return
    c, env = cs[0], env_of(cs[0])
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    check(ports.get("http") == int(env.get("NORMD_PORT", 8080)), f"{where}: port http = NORMD_PORT")
    check(ports.get("admin") == int(env.get("NORMD_ADMIN_PORT", 0)), f"{where}: port admin = NORMD_ADMIN_PORT")
    check_probes(where, c)
    check_security(where, pod, c)
    check_shutdown(where, pod, c, env)
    check_data(where, w, pod, c, env, claims)
    for kind in ("requests", "limits"):
        r = get(c, "resources", kind, default={})
        check("cpu" in r and "memory" in r, f"{where}: resources.{kind} cpu and memory")
    check(env.get("NORMD_THREADS") is not None, f"{where}: NORMD_THREADS set (not the node's cores)")


all_docs = [d for ds in docs.values() for d in ds]
claims = {d["metadata"]["name"]: d for d in all_docs if d["kind"] == "PersistentVolumeClaim"}
workloads = [d for d in all_docs if d["kind"] in ("Deployment", "StatefulSet")]
for w in workloads:
    check_workload(w, claims)
for s in (d for d in all_docs if d["kind"] == "Service"):
    sel = get(s, "spec", "selector", default={})
    pods = [get(w, "spec", "template", "metadata", "labels", default={}) for w in workloads]
    check(sum(all(p.get(k) == v for k, v in sel.items()) for p in pods) == 1,
          f"Service {s['metadata']['name']} selects the pods of exactly one workload")
    check(all(p.get("targetPort") == "http" for p in get(s, "spec", "ports", default=[])),
          f"Service {s['metadata']['name']}: targetPort http")
sts = [w for w in workloads if w["kind"] == "StatefulSet"]
headless = {s["metadata"]["name"] for s in all_docs
            if s["kind"] == "Service" and get(s, "spec", "clusterIP") == "None"}
check(all(get(w, "spec", "serviceName") in headless for w in sts), "StatefulSet's headless Service")

# ---- compose ----

compose = (load("docker/compose.yaml") or [{}])[0]
svc = compose.get("services", {})
check(set(svc) == {"normd", "nginx"}, "compose: services normd and nginx")
check(all(s.get("network_mode") == "host" for s in svc.values()), "compose: network_mode host")
n = svc.get("normd", {})
env = n.get("environment", {})
check(env.get("NORMD_DATA_DIR") == "/data" and "normd-data:/data" in n.get("volumes", []) and
      "normd-data" in (compose.get("volumes") or {}), "compose: the named volume at /data")
check(env.get("NORMD_HOST") == "127.0.0.1", "compose: normd listens on loopback only")
check("--probe" in get(n, "healthcheck", "test", default=[]), "compose: normd --probe health check")
for name, s in svc.items():
    lim = get(s, "deploy", "resources", "limits", default={})
    check("cpus" in lim and "memory" in lim, f"compose: {name} resource limits")
check((seconds(n.get("stop_grace_period", "10s")) or 0) > DRAIN, "compose: stop_grace_period > drain")

# ---- nginx, Dockerfile ----

conf = open("docker/nginx.conf").read()
m = re.search(r'"NORMD_MAX_BODY_BYTES",\s*KIND_SIZE,\s*"(\d+)M"', open("server/config.c").read())
check(m and f"client_max_body_size {m.group(1)}m;" in conf, "nginx: body limit = normd's")
check("proxy_set_header X-Request-Id $normd_request_id;" in conf and
      re.search(r'map \$http_x_request_id \$normd_request_id \{\s*""\s+\$request_id;', conf),
      "nginx: passes the client's X-Request-Id, else its own")
check(re.search(r"upstream normd \{(?:(?!\n    \}).)*keepalive \d+;", conf, re.S) and
      'proxy_set_header Connection "";' in conf, "nginx: keepalive to normd")
df = open("Dockerfile").read()
check(re.search(r"^USER 10001", df, re.M), "Dockerfile: USER 10001")
check(re.search(r"^STOPSIGNAL SIGTERM", df, re.M), "Dockerfile: STOPSIGNAL SIGTERM")
check(re.search(r"^EXPOSE 8080", df, re.M), "Dockerfile: EXPOSE 8080")
check(re.search(r"^HEALTHCHECK .*\n?.*normd --probe", df, re.M), "Dockerfile: HEALTHCHECK normd --probe")
check(len(re.findall(r"^FROM debian:bookworm-slim", df, re.M)) == 2, "Dockerfile: two bookworm-slim stages")

print(f"manifests: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
