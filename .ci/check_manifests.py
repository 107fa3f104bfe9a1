"""Structural checks of deploy/kubernetes that no schema validator makes (and the only check
of the PodMonitor, a CRD whose schema kubernetes-validate does not carry). Run by .ci/run
after `kubernetes-validate --strict`; exits 1 naming each problem."""

import glob
import sys

import yaml

problems = []
docs = []
for path in sorted(glob.glob("deploy/kubernetes/**/*.yaml", recursive=True)):
    with open(path) as f:
        docs += [(path, d) for d in yaml.safe_load_all(f) if d]

by_kind = {}
for path, d in docs:
    by_kind.setdefault(d["kind"], []).append((path, d))

deployments = by_kind.get("Deployment", [])
if {d["metadata"]["name"] for _, d in deployments} != {
    "snapline-populator",
    "snapline-syncer",
    "snapline-backfiller",
}:
    problems.append("expected the three service Deployments")

budgets = [d for _, d in by_kind.get("PodDisruptionBudget", [])]
monitors = [d for _, d in by_kind.get("PodMonitor", [])]
if len(monitors) != 1:
    problems.append("expected one PodMonitor")


def selects(selector, labels):
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] != "In" or labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def check_pod(name, pod, containers):
    ctx = pod.get("securityContext", {})
    if not ctx.get("runAsNonRoot") or ctx.get("runAsUser", 0) == 0:
        problems.append(f"{name}: pod must run as a non-root user")
    if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{name}: pod needs the RuntimeDefault seccomp profile")
    for c in containers:
        cctx = c.get("securityContext", {})
        if cctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}/{c['name']}: root filesystem must be read-only")
        if cctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}/{c['name']}: privilege escalation must be off")
        if "ALL" not in cctx.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}/{c['name']}: must drop all capabilities")


for path, d in deployments:
    name = d["metadata"]["name"]
    pod = d["spec"]["template"]
    labels = pod["metadata"]["labels"]
    if not selects(d["spec"]["selector"], labels):
        problems.append(f"{name}: its selector does not select its own pods")
    containers = pod["spec"]["containers"]
    check_pod(name, pod["spec"], containers)
    if not [b for b in budgets if selects(b["spec"]["selector"], labels)]:
        problems.append(f"{name}: no PodDisruptionBudget selects its pods")
    ports = {p.get("name") for c in containers for p in c.get("ports", [])}
    for m in monitors:
        if not selects(m["spec"]["selector"], labels):
            problems.append(f"{name}: the PodMonitor does not select its pods")
        for endpoint in m["spec"]["podMetricsEndpoints"]:
            if endpoint["port"] not in ports:
                problems.append(f"{name}: no port named {endpoint['port']} for the PodMonitor")
            if endpoint.get("path") != pod["metadata"]["annotations"].get("prometheus.io/path"):
                problems.append(f"{name}: PodMonitor path differs from the scrape annotation")
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= 30:
        problems.append(f"{name}: grace period must exceed serve.shutdown_grace_secs (30)")

for b in budgets:
    if not any(selects(b["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]) for _, d in deployments):
        problems.append(f"{b['metadata']['name']}: selects no Deployment's pods")

for path, job in by_kind.get("Job", []):
    name = job["metadata"]["name"]
    spec = job["spec"]["template"]["spec"]
    check_pod(name, spec, spec["containers"])
    if spec["containers"][0]["command"][:2] != ["migration", "up"]:
        problems.append(f"{name}: the pre-deploy Job must run `migration up`")
    if int(job["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0")) >= 0:
        problems.append(f"{name}: must run in an earlier sync wave than the Deployments")

for p in problems:
    print(f"deploy/kubernetes: {p}", file=sys.stderr)
print(f"deploy/kubernetes: {len(docs)} documents checked, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
