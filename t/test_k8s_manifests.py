"""docker/k8s/: every YAML document parses and has the structure a cluster
needs (no cluster here: structure only).  Needs python3-yaml (Debian)."""

import re
from pathlib import Path

import pytest

from llmroute_harness import REPO_ROOT

yaml = pytest.importorskip("yaml", reason="python3-yaml not installed")

K8S = REPO_ROOT / "docker" / "k8s"
API = {"Namespace": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1",
       "Deployment": "apps/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
       "PodDisruptionBudget": "policy/v1", "CronJob": "batch/v1",
       "Kustomization": "kustomize.config.k8s.io/v1beta1"}


def docs():
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d is not None:
                out.append((f.name, d))
    return out


DOCS = docs()


def by_kind(kind):
    return [d for _, d in DOCS if d["kind"] == kind]


def one(kind, name):
    found = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def pod_specs():
    """(owner name, pod template) of Deployments and CronJobs."""
    for d in by_kind("Deployment"):
        yield d["metadata"]["name"], d["spec"]["template"]
    for c in by_kind("CronJob"):
        yield c["metadata"]["name"], c["spec"]["jobTemplate"]["spec"][
            "template"]


def test_every_document_is_well_formed():
    assert len(DOCS) >= 12
    for fname, d in DOCS:
        assert d.get("kind") in API, (fname, d.get("kind"))
        assert d.get("apiVersion") == API[d["kind"]], (fname, d["kind"])
        if d["kind"] == "Kustomization":
            continue
        assert d["metadata"].get("name"), fname
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == "llmroute", fname


def test_kustomization_lists_every_file():
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(k["resources"]) == files


def test_required_kinds_present():
    kinds = {d["kind"] for _, d in DOCS}
    assert kinds >= {"Deployment", "ConfigMap", "Secret", "Service",
                     "HorizontalPodAutoscaler", "PodDisruptionBudget",
                     "CronJob"}
    one("Deployment", "llmroute-redis")
    one("Service", "llmroute-redis")


def test_selectors_match_template_labels():
    for d in by_kind("Deployment"):
        sel = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert sel.items() <= labels.items(), d["metadata"]["name"]
    deployments = by_kind("Deployment")
    for s in by_kind("Service"):
        sel = s["spec"]["selector"]
        targets = [d for d in deployments if sel.items()
                   <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert targets, "service %s selects nothing" % s["metadata"]["name"]
        ports = set()
        for c in targets[0]["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                ports |= {p.get("name"), p["containerPort"]}
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in ports, (s["metadata"]["name"], p)
    pdb = one("PodDisruptionBudget", "llmroute-gateway")
    gw = one("Deployment", "llmroute-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= \
        gw["spec"]["template"]["metadata"]["labels"].items()
    hpa = one("HorizontalPodAutoscaler", "llmroute-gateway")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "llmroute-gateway")
    assert hpa["spec"]["minReplicas"] >= 2     # with the PDB: drains work
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_containers_have_resources_and_run_as_non_root():
    for owner, tpl in pod_specs():
        spec = tpl["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, owner
        for c in spec["containers"]:
            r = c["resources"]
            assert r["requests"]["cpu"] and r["requests"]["memory"], owner
            assert r["limits"]["cpu"] and r["limits"]["memory"], owner
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
        for d in by_kind("Deployment"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert "readinessProbe" in c and "livenessProbe" in c, \
                    d["metadata"]["name"]


def test_gateway_graceful_shutdown():
    gw = one("Deployment", "llmroute-gateway")
    spec = gw["spec"]["template"]["spec"]
    c = spec["containers"][0]
    pre = " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    assert "nginx -s quit" in pre
    conf = (REPO_ROOT / "conf.d/examples/nginx-gateway.conf").read_text()
    wst = int(re.search(r"worker_shutdown_timeout (\d+)s;", conf).group(1))
    assert spec["terminationGracePeriodSeconds"] > wst
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz"
        assert c[probe]["httpGet"]["port"] == "metrics"
    assert "location = /healthz" in conf and "listen 9145;" in conf


def test_configmap_matches_the_repository_files():
    cm = one("ConfigMap", "llmroute-config")["data"]
    files = {"nginx.conf": "conf.d/examples/nginx-gateway.conf",
             "providers.conf": "conf.d/examples/providers.conf",
             "models.conf": "conf.d/examples/models.conf",
             "regions.conf": "conf.d/examples/regions.conf",
             "log-json.conf": "conf.d/log-json.conf",
             "catalog.map": "tools/llmroute-catalog/catalog.map"}
    for key, path in files.items():
        assert cm[key] == (REPO_ROOT / path).read_text(), \
            "%s drifted from %s (regenerate configmap.yaml)" % (key, path)


def test_volumes_provide_every_include():
    gw = one("Deployment", "llmroute-gateway")
    spec = gw["spec"]["template"]["spec"]
    conf = one("ConfigMap", "llmroute-config")["data"]["nginx.conf"]
    includes = set(re.findall(r"include llmroute/(\S+);", conf))
    projected = [v for v in spec["volumes"] if v["name"] == "llmroute"][0]
    paths = set()
    for src in projected["projected"]["sources"]:
        kind = "configMap" if "configMap" in src else "secret"
        obj = src[kind]
        if kind == "configMap":
            data = one("ConfigMap", obj["name"])["data"]
        else:
            data = one("Secret", obj["name"])["stringData"]
        for item in obj["items"]:
            assert item["key"] in data, item
            paths.add(item["path"])
    assert includes <= paths, includes - paths


def test_provider_keys_reach_nginx():
    """every key_env is in the Secret, the Deployment's envFrom, and an
    `env` directive of nginx.conf (else nginx -t fails in the pod)."""
    providers = (REPO_ROOT / "conf.d/examples/providers.conf").read_text()
    keys = set(re.findall(r"key_env=(\w+)", providers))
    secret = one("Secret", "llmroute-provider-keys")["stringData"]
    assert keys <= set(secret), keys - set(secret)
    conf = one("ConfigMap", "llmroute-config")["data"]["nginx.conf"]
    assert keys <= set(re.findall(r"(?m)^env (\w+);", conf))
    gw = one("Deployment", "llmroute-gateway")
    refs = [e["secretRef"]["name"] for e in
            gw["spec"]["template"]["spec"]["containers"][0]["envFrom"]]
    assert "llmroute-provider-keys" in refs


def test_cronjobs_run_the_catalog_tool():
    cmds = {}
    for c in by_kind("CronJob"):
        spec = c["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert c["spec"]["concurrencyPolicy"] == "Forbid"
        assert spec["restartPolicy"] in ("OnFailure", "Never")
        cmds[c["metadata"]["name"]] = " ".join(
            spec["containers"][0]["command"] + spec["containers"][0]["args"])
    cat = cmds["llmroute-catalog"]
    assert "llmroute-catalog fetch" in cat and "llmroute-catalog publish" in cat
    assert "--map /etc/llmroute/catalog.map" in cat
    assert "--redis llmroute-redis:6379" in cat and "{llmroute}:" in cat
    assert "llmroute-catalog probe" in cmds["llmroute-probe"]
