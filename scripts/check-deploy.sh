#!/usr/bin/env bash
# Checks deploy/ offline: the alert rules and their unit tests, the dashboard, the systemd
# unit and the Kubernetes manifests. A missing tool is an error with its install command,
# never a skipped check: a green run must mean every check ran.
#
# Needs: promtool (Debian package prometheus), systemd-analyze (systemd), python3, and
# kubernetes-validate in .venv (scripts/requirements.txt; `make deps` installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "check-deploy: $*" >&2
  exit 1
}
need() {
  command -v "$1" >/dev/null || fail "$1 not found; install it with: $2"
}
need promtool 'sudo apt-get install -y --no-install-recommends prometheus   (or: make deps)'
need systemd-analyze 'sudo apt-get install -y --no-install-recommends systemd'
need python3 'sudo apt-get install -y --no-install-recommends python3'
validate=.venv/bin/kubernetes-validate
[[ -x $validate ]] || fail "$validate not found; install it with: make deps   (or: .venv/bin/pip install -r scripts/requirements.txt)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rules=deploy/prometheus/regulator-rules.yaml
dashboard=deploy/grafana/regulator.json

# --- Prometheus rules ----------------------------------------------------------------------
promtool check rules "$rules" >"$tmp/out" 2>&1 || { cat "$tmp/out" >&2; fail "promtool check rules $rules"; }
# The test file names the rules relative to itself.
(cd deploy/prometheus && promtool test rules regulator-rules.test.yaml) >"$tmp/out" 2>&1 \
  || { cat "$tmp/out" >&2; fail "promtool test rules deploy/prometheus/regulator-rules.test.yaml"; }
echo "check-deploy: rules pass promtool check and their unit tests"

# --- Metric names and the dashboard --------------------------------------------------------
# Every regulator_* name the dashboard, the rules and their tests mention must be one the
# daemon exports (crates/regulator-daemon/src/metrics.rs): a renamed metric would otherwise leave an empty
# panel or an alert that can never fire. The dashboard's queries are also parsed by
# promtool, with Grafana's variables filled in, so a typo in PromQL fails here rather than
# on someone's screen.
python3 - "$dashboard" "$rules" deploy/prometheus/regulator-rules.test.yaml "$tmp/dashboard-rules.yaml" <<'EOF'
import json, re, sys

dashboard, *texts, out = sys.argv[1:]
gauges = ["knob", "knob_min", "knob_max", "signal", "target", "throttles", "leader",
          "dry_run", "redis_up"]
counters = ["ticks", "decisions", "no_data", "knob_writes", "errors", "reloads",
            "template_refused"]
histograms = ["tick_duration_seconds"]
known = {f"regulator_{g}" for g in gauges}
known |= {f"regulator_{c}_total" for c in counters}
for h in histograms:
    # The bare family name only appears in prose; queries need a suffix.
    known |= {f"regulator_{h}{s}" for s in ("", "_bucket", "_sum", "_count")}
name = re.compile(r"\bregulator_\w+")

try:
    with open(dashboard) as f:
        raw = f.read()
    model = json.loads(raw)
except (OSError, ValueError) as e:
    sys.exit(f"check-deploy: {dashboard} is not valid JSON: {e}")

problems = []
for path, text in [(dashboard, raw)] + [(p, open(p).read()) for p in texts]:
    for n in sorted(set(name.findall(text)) - known):
        problems.append(f"{path}: {n} is not a metric the daemon exports")

exprs = []
def walk(node, where):
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") != "${datasource}":
            problems.append(f"{dashboard}: {where} uses datasource {ds.get('uid')!r}, not ${{datasource}}")
        if isinstance(node.get("expr"), str):
            exprs.append((where, node["expr"]))
        for k, v in node.items():
            walk(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, f"{where}[{i}]")
walk(model.get("panels", []), "panels")
for var in model.get("templating", {}).get("list", []):
    if var.get("type") == "query":
        q = var.get("definition", "")
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
        if not m:
            problems.append(f"{dashboard}: variable {var.get('name')}: cannot read {q!r}")
        else:
            exprs.append((f"variable {var['name']}", m.group(1)))
ids = [p.get("id") for p in model.get("panels", [])]
if len(ids) != len(set(ids)):
    problems.append(f"{dashboard}: duplicate panel ids {ids}")
if not exprs:
    problems.append(f"{dashboard}: no queries found")

fill = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
        "$policy": ".*", "$throttle": ".*"}
with open(out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (where, e) in enumerate(exprs):
        for k, v in fill.items():
            e = e.replace(k, v)
        if "$" in e:
            problems.append(f"{dashboard}: {where}: unknown variable in {e!r}")
        f.write(f"      - record: dashboard_query_{i}\n        expr: {json.dumps(e)}\n")

if problems:
    sys.exit("\n".join(f"check-deploy: {p}" for p in problems))
print(f"check-deploy: {dashboard}: valid JSON, {len(model['panels'])} panels, "
      f"{len(exprs)} queries; every regulator_* name in it, the rules and their tests is exported")
EOF
promtool check rules "$tmp/dashboard-rules.yaml" >"$tmp/out" 2>&1 \
  || { cat "$tmp/out" >&2; fail "a query in $dashboard does not parse (as filled in: $tmp/dashboard-rules.yaml)"; }
echo "check-deploy: every dashboard query parses"

# --- systemd unit --------------------------------------------------------------------------
# verify fails on an ExecStart binary that is not installed, so the copy starts /bin/true;
# everything else is checked as written. Unknown keys are only warnings (exit 0): any line
# that names the unit fails the check.
unit=deploy/systemd/regulator.service
sed 's#^ExecStart=/usr/local/bin/regulator #ExecStart=/bin/true #' "$unit" >"$tmp/regulator.service"
grep -q '^ExecStart=/bin/true ' "$tmp/regulator.service" \
  || fail "$unit: ExecStart no longer runs /usr/local/bin/regulator; update this check"
status=0
systemd-analyze verify "$tmp/regulator.service" >"$tmp/out" 2>&1 || status=$?
if ((status != 0)) || grep -q 'regulator\.service' "$tmp/out"; then
  cat "$tmp/out" >&2
  fail "systemd-analyze verify $unit (exit $status)"
fi
if [[ -s $tmp/out ]]; then
  echo "check-deploy: systemd-analyze said, about other units:"
  sed 's/^/  /' "$tmp/out"
fi
echo "check-deploy: $unit passes systemd-analyze verify"

# --- Kubernetes manifests ------------------------------------------------------------------
# Strict: an unknown field is an error, as kubectl apply --validate=strict makes it. Against
# 1.30, an old release clusters still run, and 1.37, the newest the package knows.
k8s=deploy/kubernetes
for version in 1.30.0 1.37.0; do
  "$validate" --strict --quiet -k "$version" \
    "$k8s/deployment.yaml" "$k8s/service.yaml" "$k8s/configmap.yaml" "$k8s/poddisruptionbudget.yaml" \
    || fail "kubernetes-validate -k $version rejected a manifest in $k8s"
done
echo "check-deploy: deployment, service, configmap, poddisruptionbudget pass kubernetes-validate --strict (1.30, 1.37)"
echo "check-deploy: servicemonitor.yaml has no schema there (a prometheus-operator CRD) and kustomization.yaml is no resource: both checked below instead"

# What no schema sees: the pieces must point at each other. The Service selects the pods and
# names their port, the ServiceMonitor selects the Service and its port, and the scrape job
# is named after the Service: the job="regulator" every rule and panel filters on.
.venv/bin/python - "$k8s" <<'EOF'
import os, sys, yaml

d = sys.argv[1]
def load(name):
    with open(os.path.join(d, name)) as f:
        docs = [x for x in yaml.safe_load_all(f) if x]
    if len(docs) != 1:
        sys.exit(f"check-deploy: {d}/{name}: expected one document, found {len(docs)}")
    return docs[0]

problems = []
def want(ok, msg):
    if not ok:
        problems.append(msg)

kust = load("kustomization.yaml")
for r in kust.get("resources", []):
    want(os.path.exists(os.path.join(d, r)), f"kustomization.yaml lists {r}, which does not exist")

dep, svc, pdb, cm = (load(n) for n in ("deployment.yaml", "service.yaml",
                                       "poddisruptionbudget.yaml", "configmap.yaml"))
sm = load("servicemonitor.yaml")
pod = dep["spec"]["template"]
pod_labels = pod["metadata"].get("labels", {})
def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

want(selects(dep["spec"]["selector"].get("matchLabels"), pod_labels),
     "deployment.yaml: spec.selector does not match the pod template's labels")
want(selects(svc["spec"].get("selector"), pod_labels), "service.yaml: selector does not match the pods")
want(selects(pdb["spec"]["selector"].get("matchLabels"), pod_labels),
     "poddisruptionbudget.yaml: selector does not match the pods")

ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
for p in svc["spec"]["ports"]:
    want(p.get("targetPort") in ports or isinstance(p.get("targetPort"), int),
         f"service.yaml: targetPort {p.get('targetPort')!r} is no container port name ({sorted(ports)})")
svc_ports = {p.get("name") for p in svc["spec"]["ports"]}

volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
want(any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in volumes.values()),
     f"deployment.yaml: no volume mounts the ConfigMap {cm['metadata']['name']}")
args = [a for c in pod["spec"]["containers"] for a in c.get("args", [])]
mounts = [m["mountPath"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])]
config = args[args.index("--config") + 1] if "--config" in args else None
want(config is not None and any(config == os.path.join(m, k) for m in mounts for k in cm.get("data", {})),
     f"deployment.yaml: --config {config} is not a key of the mounted ConfigMap")

want(sm.get("apiVersion") == "monitoring.coreos.com/v1" and sm.get("kind") == "ServiceMonitor",
     "servicemonitor.yaml: not a monitoring.coreos.com/v1 ServiceMonitor")
want(bool(sm.get("metadata", {}).get("name")), "servicemonitor.yaml: metadata.name is missing")
spec = sm.get("spec", {})
want(selects(spec.get("selector", {}).get("matchLabels"), svc["metadata"].get("labels", {})),
     "servicemonitor.yaml: spec.selector.matchLabels does not select the Service")
endpoints = spec.get("endpoints") or []
want(bool(endpoints), "servicemonitor.yaml: spec.endpoints is empty")
for e in endpoints:
    want(e.get("port") in svc_ports, f"servicemonitor.yaml: endpoint port {e.get('port')!r} is not a Service port ({sorted(svc_ports)})")
want("jobLabel" not in spec and svc["metadata"]["name"] == "regulator",
     "the scrape job would not be named regulator (Service name or jobLabel changed): the rules and dashboard filter on job=\"regulator\"")

if problems:
    sys.exit("\n".join(f"check-deploy: {p}" for p in problems))
print("check-deploy: manifests agree: selectors, port names, config path, ServiceMonitor, job=\"regulator\"")
EOF
echo "check-deploy: ok"
