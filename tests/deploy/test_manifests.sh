#!/usr/bin/env bash
# test_manifests.sh - the deployment files, checked without a cluster, a container engine or the
# network: every YAML document of docker/k8s/ and docker/compose.yaml parses (PyYAML's
# safe_load), and the settings that must agree do: kinds, probe paths, ports, security contexts,
# resources, the data volume, grace periods longer than preStop + the drain timeout, Services
# that select the pods, nginx's body limit equal to normd's, the Dockerfile's user, signal and
# health check. The scaled deployment (k8s/scaled/, compose's scaled profile): normd's store is a
# Redis Service or service whose port matches, Redis keeps an AOF on a volume claim, the HPA
# targets the Deployment, nginx's upstream is the replicas' headless Service (compose: every
# replica's port), NetworkPolicies select existing pods. Needs python3 with PyYAML
# (Debian: python3-yaml).
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
check(kinds.get("docker/k8s/scaled/normd.yaml") ==
      ["Deployment", "HorizontalPodAutoscaler", "Service", "Service"],
      "scaled/normd.yaml: Deployment, HPA, Service and headless Service")
check(kinds.get("docker/k8s/scaled/redis.yaml") == ["NetworkPolicy", "Service", "Service", "StatefulSet"],
      "scaled/redis.yaml: StatefulSet, its headless Service, a Service, a NetworkPolicy")
check(kinds.get("docker/k8s/scaled/nginx.yaml") == ["Deployment", "NetworkPolicy", "Service"],
      "scaled/nginx.yaml: Deployment, Service, NetworkPolicy")


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
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    check("/tmp" in mounts, f"{where}: a writable /tmp (the root is read-only)")
    if str(env.get("NORMD_STORE", "")).startswith("redis://"):
        # The layers are in Redis (checked with the Services below): no volume, no data dir.
        check("/data" not in mounts and "NORMD_DATA_DIR" not in env,
              f"{where}: no data dir beside the Redis store")
        return
    check(env.get("NORMD_DATA_DIR") == "/data", f"{where}: NORMD_DATA_DIR=/data")
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


def pod_labels(w):
    return get(w, "spec", "template", "metadata", "labels", default={})


def selects(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def container_ports(w):
    return {p.get("name"): p.get("containerPort")
            for c in get(w, "spec", "template", "spec", "containers", default=[])
            for p in c.get("ports", [])}


def check_other_workload(w):
    """Redis and nginx of k8s/scaled/: the settings every pod of the project keeps."""
    where = f"{w['kind']} {w['metadata']['name']}"
    pod = get(w, "spec", "template", "spec", default={})
    check(selects(get(w, "spec", "selector", "matchLabels", default={}), pod_labels(w)),
          f"{where}: selector matches")
    for c in pod.get("containers", []):
        csc = c.get("securityContext", {})
        check(csc.get("runAsNonRoot") is True and csc.get("readOnlyRootFilesystem") is True and
              csc.get("allowPrivilegeEscalation") is False and
              "ALL" in get(csc, "capabilities", "drop", default=[]),
              f"{where}: {c.get('name')} non-root, read-only root, no escalation, no capabilities")
        check(c.get("livenessProbe") and c.get("readinessProbe"), f"{where}: {c.get('name')} probes")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            port = get(c, probe, "httpGet", "port") or get(c, probe, "tcpSocket", "port")
            check(port is None or port in {p.get("name") for p in c.get("ports", [])},
                  f"{where}: {probe} on a named port of {c.get('name')}")
        for kind in ("requests", "limits"):
            r = get(c, "resources", kind, default={})
            check("cpu" in r and "memory" in r, f"{where}: {c.get('name')} resources.{kind}")


all_docs = [d for ds in docs.values() for d in ds]
claims = {d["metadata"]["name"]: d for d in all_docs if d["kind"] == "PersistentVolumeClaim"}
workloads = [d for d in all_docs if d["kind"] in ("Deployment", "StatefulSet")]
normds = [w for w in workloads if pod_labels(w).get("app.kubernetes.io/name") == "normd"]
for w in workloads:
    if w in normds:
        check_workload(w, claims)
    else:
        check_other_workload(w)
services = {d["metadata"]["name"]: d for d in all_docs if d["kind"] == "Service"}
for s in services.values():
    sel = get(s, "spec", "selector", default={})
    chosen = [w for w in workloads if selects(sel, pod_labels(w))]
    check(len(chosen) == 1, f"Service {s['metadata']['name']} selects the pods of exactly one workload")
    named = container_ports(chosen[0]) if chosen else {}
    check(all(p.get("targetPort") in named for p in get(s, "spec", "ports", default=[])),
          f"Service {s['metadata']['name']}: targetPort names a port of its pods")
sts = [w for w in workloads if w["kind"] == "StatefulSet"]
headless = {s["metadata"]["name"] for s in all_docs
            if s["kind"] == "Service" and get(s, "spec", "clusterIP") == "None"}
check(all(get(w, "spec", "serviceName") in headless for w in sts), "StatefulSet's headless Service")


def service_for(host_port, workload_name):
    """host_port (HOST:PORT) is a Service of the manifests, on PORT, selecting workload_name's pods."""
    host, _, port = str(host_port).rpartition(":")
    s = services.get(host)
    w = next((w for w in workloads if w["metadata"]["name"] == workload_name), None)
    return (s is not None and w is not None and selects(get(s, "spec", "selector"), pod_labels(w))
            and any(str(p.get("port")) == port for p in get(s, "spec", "ports", default=[])))


def env_from_secret(c, name):
    e = next((e for e in c.get("env", []) if e.get("name") == name), {})
    ref = get(e, "valueFrom", "secretKeyRef", default={})
    return (ref.get("name"), ref.get("key"), ref.get("optional"))


def container(w, name):
    return next((c for c in get(w, "spec", "template", "spec", "containers", default=[])
                 if c.get("name") == name), {})


# ---- Kubernetes: k8s/scaled/ (normd replicas on one Redis) ----

by_name = {(d["kind"], d["metadata"]["name"]): d for d in all_docs}
dep = by_name.get(("Deployment", "normd-scaled"), {})
redis = by_name.get(("StatefulSet", "normd-redis"), {})
ngx = by_name.get(("Deployment", "normd-nginx"), {})
hpa = by_name.get(("HorizontalPodAutoscaler", "normd-scaled"), {})
nc, rc, xc = container(dep, "normd"), container(redis, "redis"), container(ngx, "nginx")
denv = env_of(nc)
check(get(dep, "spec", "replicas") == 3, "scaled: 3 normd replicas")
store = re.fullmatch(r"redis://([^:/]+):(\d+)(/\d+)?", str(denv.get("NORMD_STORE")))
check(store and service_for(f"{store.group(1)}:{store.group(2)}", "normd-redis"),
      "scaled: NORMD_STORE names the Service and port of the Redis StatefulSet")
check(get(dep, "spec", "strategy", "type") == "RollingUpdate", "scaled: RollingUpdate (no volume to hand over)")
sec = env_from_secret(nc, "NORMD_REDIS_PASSWORD")
check(sec[0] and sec[2] is True and sec == env_from_secret(rc, "NORMD_REDIS_PASSWORD"),
      "scaled: normd and Redis read one optional Secret key for the password")
# Redis: AOF, fsync, its data from the claim template, on the port its Services name.
args = " ".join(str(a) for a in rc.get("args", []))
check("--appendonly yes" in args and re.search(r"--appendfsync (always|everysec)", args),
      "scaled: Redis runs with appendonly yes and an appendfsync")
check("--maxmemory-policy noeviction" in args, "scaled: Redis never evicts (it is the source of truth)")
rmounts = {m["mountPath"]: m["name"] for m in rc.get("volumeMounts", [])}
check(rmounts.get("/data") in [get(t, "metadata", "name") for t in
                               get(redis, "spec", "volumeClaimTemplates", default=[])],
      "scaled: Redis's /data from a volumeClaimTemplate")
check(str(env_of(rc).get("REDIS_PORT")) == str(container_ports(redis).get("redis")),
      "scaled: Redis's REDIS_PORT = its containerPort")
check(get(redis, "spec", "serviceName") in headless and
      service_for(f"{get(redis, 'spec', 'serviceName')}:6379", "normd-redis"),
      "scaled: Redis's headless Service selects it")
# The HPA: autoscaling/v2 on CPU, for the Deployment, whose pods request CPU.
check(hpa.get("apiVersion") == "autoscaling/v2", "scaled: HPA autoscaling/v2")
check(get(hpa, "spec", "scaleTargetRef", "kind") == "Deployment" and
      get(hpa, "spec", "scaleTargetRef", "name") == "normd-scaled", "scaled: the HPA scales normd-scaled")
check(any(get(m, "resource", "name") == "cpu" and get(m, "resource", "target", "type") == "Utilization"
          for m in get(hpa, "spec", "metrics", default=[])), "scaled: the HPA targets CPU utilization")
check("cpu" in get(nc, "resources", "requests", default={}), "scaled: normd requests CPU (the HPA's base)")
check((get(hpa, "spec", "minReplicas") or 1) <= (get(dep, "spec", "replicas") or 0) <=
      (get(hpa, "spec", "maxReplicas") or 0), "scaled: HPA min <= replicas <= max")
# nginx: its upstream is the replicas' headless Service (one server per pod), its probes answer.
up = str(env_of(xc).get("NORMD_UPSTREAM"))
check(up.split(":")[0] in headless and service_for(up, "normd-scaled"),
      "scaled: nginx's NORMD_UPSTREAM is the headless Service of normd-scaled's pods, on its port")
check(str(env_of(xc).get("NGINX_LISTEN", "")).endswith(f":{container_ports(ngx).get('http')}"),
      "scaled: nginx's NGINX_LISTEN port = its containerPort http")
# NetworkPolicies: they select existing pods, and admit or reach existing pods.
for np in (d for d in all_docs if d["kind"] == "NetworkPolicy"):
    where = f"NetworkPolicy {np['metadata']['name']}"
    check(any(selects(get(np, "spec", "podSelector", "matchLabels"), pod_labels(w)) for w in workloads),
          f"{where}: selects pods of the manifests")
    peers = [get(p, "podSelector", "matchLabels")
             for rule in get(np, "spec", "ingress", default=[]) + get(np, "spec", "egress", default=[])
             for p in rule.get("from", []) + rule.get("to", []) if "namespaceSelector" not in p]
    check(peers and all(any(selects(sel, pod_labels(w)) for w in workloads) for sel in peers),
          f"{where}: its peers are pods of the manifests")

# ---- compose ----

compose = (load("docker/compose.yaml") or [{}])[0]
every = compose.get("services", {})
svc = {k: s for k, s in every.items() if not s.get("profiles")}
scaled = {k: s for k, s in every.items() if "scaled" in (s.get("profiles") or [])}
check(set(svc) == {"normd", "nginx"}, "compose: services normd and nginx")
check(set(scaled) == {"redis", "normd-1", "normd-2", "normd-3", "nginx-scaled"},
      "compose: profile scaled: redis, normd-1..3, nginx-scaled")
check(set(every) == set(svc) | set(scaled), "compose: no other profile")
check(all(s.get("network_mode") == "host" for s in every.values()), "compose: network_mode host")
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

# The scaled profile: the replicas on their own ports, one Redis, nginx in front of all of them.
r = scaled.get("redis", {})
renv = r.get("environment", {})
rcmd = " ".join(str(a) for a in r.get("command", []))
check("--appendonly yes" in rcmd and "--appendfsync always" in rcmd,
      "compose scaled: Redis with appendonly yes, appendfsync always")
check("redis-data:/data" in r.get("volumes", []) and "redis-data" in (compose.get("volumes") or {}),
      "compose scaled: Redis's data in the named volume redis-data")
check(renv.get("REDIS_BIND") == "127.0.0.1", "compose scaled: Redis listens on loopback only")
check("NORMD_REDIS_PASSWORD" in renv, "compose scaled: Redis gets NORMD_REDIS_PASSWORD")
ports = []
for name in ("normd-1", "normd-2", "normd-3"):
    s = scaled.get(name, {})
    e = s.get("environment", {})
    ports.append(e.get("NORMD_PORT"))
    check(e.get("NORMD_STORE") == f"redis://127.0.0.1:{renv.get('REDIS_PORT')}",
          f"compose scaled: {name}'s NORMD_STORE is Redis's address")
    check("NORMD_REDIS_PASSWORD" in e and "NORMD_DATA_DIR" not in e and not s.get("volumes"),
          f"compose scaled: {name} has the password and no data dir")
    check(f"http://127.0.0.1:{e.get('NORMD_PORT')}/readyz" in get(s, "healthcheck", "test", default=[]),
          f"compose scaled: {name}'s health check probes its own /readyz")
    check("redis" in (s.get("depends_on") or {}), f"compose scaled: {name} depends on redis")
    check((seconds(s.get("stop_grace_period", "10s")) or 0) > DRAIN,
          f"compose scaled: {name}'s stop_grace_period > drain")
check(len(set(ports)) == 3 and None not in ports, "compose scaled: one port per replica")
ns = scaled.get("nginx-scaled", {})
ups = re.split(r"[,\s]+", str(get(ns, "environment", "NORMD_UPSTREAM", default="")))
check(sorted(ups) == sorted(f"127.0.0.1:{p}" for p in ports if p),
      "compose scaled: nginx's NORMD_UPSTREAM lists every replica")
check(ns.get("image") == svc.get("nginx", {}).get("image"),
      "compose scaled: nginx-scaled runs the nginx image")

# ---- nginx, Dockerfile ----

conf = open("docker/nginx.conf").read()
m = re.search(r'"NORMD_MAX_BODY_BYTES",\s*KIND_SIZE,\s*"(\d+)M"', open("server/config.c").read())
check(m and f"client_max_body_size {m.group(1)}m;" in conf, "nginx: body limit = normd's")
check("proxy_set_header X-Request-Id $normd_request_id;" in conf and
      re.search(r'map \$http_x_request_id \$normd_request_id \{\s*""\s+\$request_id;', conf),
      "nginx: passes the client's X-Request-Id, else its own")
check(re.search(r"upstream normd \{(?:(?!\n    \}).)*keepalive \d+;", conf, re.S) and
      'proxy_set_header Connection "";' in conf, "nginx: keepalive to normd")
m = re.search(r'"NORMD_IDLE_TIMEOUT",\s*KIND_DOUBLE,\s*"(\d+)"', open("server/config.c").read())
k = re.search(r"upstream normd \{(?:(?!\n    \}).)*keepalive_timeout (\d+)s;", conf, re.S)
check(m and k and int(k.group(1)) < int(m.group(1)),
      "nginx: idle upstream connections closed before normd's --idle-timeout closes them")
check(re.search(r"upstream normd \{(?:(?!\n    \}).)*hash \$normd_layer consistent;", conf, re.S),
      "nginx: routes by layer name on a consistent-hash ring")
nu = re.findall(r"^\s*proxy_next_upstream ([^;]*);", conf, re.M)
check(len(nu) == 1 and {"error", "timeout"} <= set(nu[0].split()) and
      "non_idempotent" not in nu[0], "nginx: passes on failed requests, never a POST it sent")
check(len(nu) == 1 and "http_503" not in nu[0],
      "nginx: normd's 503s are answers, not failures (a Redis outage must not mark replicas down)")
df = open("Dockerfile").read()
check(re.search(r"^USER 10001", df, re.M), "Dockerfile: USER 10001")
check(re.search(r"^STOPSIGNAL SIGTERM", df, re.M), "Dockerfile: STOPSIGNAL SIGTERM")
check(re.search(r"^EXPOSE 8080", df, re.M), "Dockerfile: EXPOSE 8080")
check(re.search(r"^HEALTHCHECK .*\n?.*normd --probe", df, re.M), "Dockerfile: HEALTHCHECK normd --probe")
check(len(re.findall(r"^FROM debian:bookworm-slim", df, re.M)) == 2, "Dockerfile: two bookworm-slim stages")

print(f"manifests: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
