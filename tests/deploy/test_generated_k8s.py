"""deploy/k8s/monitoring: the dashboard ConfigMap and the PrometheusRules are generated
(funnelpulse/manifests.py) from the dashboard generator and deploy/prometheus/rules.

The committed files must be the generator's output, the ConfigMap must hold the very
dashboard Grafana provisions in compose and pass the Kubernetes schemas, and each
PrometheusRule must carry its rule file's groups unchanged, in the fields the operator's
CRD knows. A second kustomization keeps them out of the base (a CRD there breaks clusters
without the Prometheus Operator).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from funnelpulse import manifests
from funnelpulse.dashboard import default_options
from tests.deploy.kustomize import rendered

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "k8s" / "monitoring"
RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "funnelpulse.json"
NAMESPACE = "funnelpulse"
K8S_VERSION = "1.29"
# kubectl apply (client-side) copies the object into an annotation of at most 256 KiB.
LAST_APPLIED_LIMIT = 262_144
# Fields of the operator's PrometheusRule CRD (monitoring.coreos.com/v1).
GROUP_FIELDS = {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset"}
RULE_FIELDS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
Doc = dict[str, Any]


def load(name: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all((MONITORING / name).read_text()) if doc]


def configmap() -> Doc:
    docs = load(manifests.CONFIGMAP)
    assert len(docs) == 1
    return docs[0]


def rules() -> list[Doc]:
    return load(manifests.PROMETHEUS_RULE)


def test_committed_files_are_the_generators_output() -> None:
    generated = manifests.manifests(default_options(), manifests.read_rules(RULES))
    assert set(generated) == {manifests.CONFIGMAP, manifests.PROMETHEUS_RULE}
    for name, text in generated.items():
        assert (MONITORING / name).read_text(encoding="utf-8") == text, (
            f"deploy/k8s/monitoring/{name} differs from the generator: run `make dashboard`"
        )


def test_cli_writes_the_same_files(tmp_path: Path) -> None:
    assert manifests.main(["--output-dir", str(tmp_path)]) == 0
    for name in (manifests.CONFIGMAP, manifests.PROMETHEUS_RULE):
        assert (tmp_path / name).read_text() == (MONITORING / name).read_text(), name


def test_configmap_holds_the_provisioned_dashboard() -> None:
    doc = configmap()
    assert doc["kind"] == "ConfigMap"
    assert doc["metadata"]["namespace"] == NAMESPACE
    assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's label
    assert set(doc["data"]) == {"funnelpulse.json"}
    assert json.loads(doc["data"]["funnelpulse.json"]) == json.loads(DASHBOARD.read_text())


def test_configmap_fits_kubectl_apply() -> None:
    doc = configmap()
    assert len(json.dumps(doc).encode()) < LAST_APPLIED_LIMIT // 2, "dashboard too large"


def test_configmap_validates_against_kubernetes_schemas() -> None:
    kubernetes_validate.validate(configmap(), K8S_VERSION, strict=True)


def test_one_prometheusrule_per_rule_file_with_its_groups_unchanged() -> None:
    sources = {path.stem: yaml.safe_load(path.read_text()) for path in RULES.glob("*.yml")}
    found = {doc["metadata"]["name"]: doc for doc in rules()}
    assert set(found) == set(sources)
    for name, doc in found.items():
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["kind"] == "PrometheusRule"
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert set(doc["spec"]) == {"groups"}
        assert doc["spec"]["groups"] == sources[name]["groups"], name


def test_prometheusrule_uses_only_fields_the_crd_knows() -> None:
    for doc in rules():
        groups = doc["spec"]["groups"]
        names = [group["name"] for group in groups]
        assert len(names) == len(set(names)), f"{doc['metadata']['name']}: duplicate group"
        for group in groups:
            assert set(group) <= GROUP_FIELDS, group["name"]
            for rule in group["rules"]:
                assert set(rule) <= RULE_FIELDS, rule
                assert ("record" in rule) != ("alert" in rule), rule
                assert isinstance(rule["expr"], str) and rule["expr"].strip()


def test_monitoring_kustomization_lists_the_generated_files() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    assert kustomization["resources"] == [manifests.CONFIGMAP, manifests.PROMETHEUS_RULE]
    assert {p.name for p in MONITORING.glob("*.yaml")} == {
        "kustomization.yaml",
        *kustomization["resources"],
    }


def test_kustomize_builds_the_monitoring_objects() -> None:
    docs = rendered(MONITORING)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
        [("ConfigMap", "funnelpulse-grafana-dashboard")]
        + [("PrometheusRule", path.stem) for path in RULES.glob("*.yml")]
    )
    built = next(d for d in docs if d["kind"] == "ConfigMap")
    assert built["data"] == configmap()["data"]  # the block scalar survives kustomize
