"""deploy/k8s must stay deployable: every manifest is checked offline against the real
Kubernetes schemas (bundled in kubernetes-validate, strict: unknown fields are errors),
and the wiring between the files -- kustomization, labels, ports, probes, settings -- is
checked against the worker's contract and the README's configuration table.

Valid YAML is not a pod that starts: the settings parser refuses contradictions (SASL
credentials with a PLAINTEXT protocol stopped every pod of this example once, while every
schema check passed). So each container's environment is built as the kubelet would --
the image's ENV, then envFrom in order, then env -- and run through ``Settings.from_env``.
"""

from __future__ import annotations

import base64
import re
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor
from packaging.version import Version

from funnelpulse.settings import Settings, SettingsError
from tests.deploy.kustomize import rendered

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
SERVICEMONITOR = K8S / "servicemonitor.yaml"  # a CRD: deliberately outside the base
NAMESPACE = "funnelpulse"
OLDEST_K8S = "1.29"  # validated against every bundled Kubernetes minor from this one up
WEB_PORT = 6066

# Settings the manifests may carry before the code reads them (their comment must say so).
# Once one is in the README's table it must leave this set: see test_pending_settings_...
PENDING_SETTINGS: frozenset[str] = frozenset()  # manifests may name settings before they land

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p not in (KUSTOMIZATION, SERVICEMONITOR))


def all_docs() -> list[Doc]:
    return [doc for path in manifest_files() for doc in load_docs(path)]


def find(kind: str, name: str) -> Doc:
    matches = [d for d in all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def k8s_versions() -> list[str]:
    bundled = sorted({major_minor(v) for v in all_versions()}, key=Version)
    return [v for v in bundled if Version(v) >= Version(OLDEST_K8S)]


def pod_specs(docs: list[Doc] | None = None) -> Iterator[tuple[str, Doc]]:
    for doc in all_docs() if docs is None else docs:
        if doc["kind"] in {"StatefulSet", "Deployment", "DaemonSet", "Job"}:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]


def documented_settings() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings:begin -->", 1)[1].split("<!-- settings:end -->", 1)[0]
    names = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", table, flags=re.MULTILINE))
    assert "REDIS_URL" in names and "FUNNELPULSE_WEB_HOST" in names, "settings table not parsed"
    return names


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schemas come from the installed package; any connection attempt is a failure."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted during a manifest test: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# -- schemas --------------------------------------------------------------------------------


def test_bundled_schemas_cover_recent_kubernetes() -> None:
    versions = k8s_versions()
    assert {"1.29", "1.30"} <= set(versions), f"kubernetes-validate bundles only {versions}"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_against_kubernetes_schemas(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path.name} is empty"
    errors = []
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in k8s_versions():
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                at = ".".join(str(part) for part in exc.path)
                errors.append(f"{what} (k8s {exc.version}): {at}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                errors.append(f"{what}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_strict_validation_rejects_a_broken_manifest() -> None:
    """The check has teeth: a typo'd field and a wrong type are both reported."""
    good = find("StatefulSet", "funnelpulse-worker")
    kubernetes_validate.validate(good, OLDEST_K8S, strict=True)
    typo = yaml.safe_load(yaml.safe_dump(good))
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, OLDEST_K8S, strict=True)
    wrong_type = yaml.safe_load(yaml.safe_dump(good))
    wrong_type["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, OLDEST_K8S, strict=True)


# -- kustomization ----------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_servicemonitor() -> None:
    kustomization = load_docs(KUSTOMIZATION)[0]
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert all((K8S / name).is_file() for name in listed), listed
    assert set(listed) == {p.name for p in manifest_files()}
    assert SERVICEMONITOR.name not in listed, "a CRD in the base breaks clusters without it"


def test_every_object_is_in_the_funnelpulse_namespace() -> None:
    for doc in [*all_docs(), *load_docs(SERVICEMONITOR)]:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


def test_kustomize_builds_the_base() -> None:
    docs = rendered(K8S)
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == {
        (d["kind"], d["metadata"]["name"]) for d in all_docs()
    }


# -- the worker -------------------------------------------------------------------------------


def worker() -> Doc:
    return find("StatefulSet", "funnelpulse-worker")


def worker_container() -> Doc:
    listed = worker()["spec"]["template"]["spec"]["containers"]
    assert len(listed) == 1
    container: Doc = listed[0]
    return container


def config() -> dict[str, str]:
    data: dict[str, str] = find("ConfigMap", "funnelpulse-config")["data"]
    return data


def test_worker_runs_three_parallel_replicas_of_the_worker_command() -> None:
    spec = worker()["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    assert worker_container()["args"] == ["worker"]
    headless = find("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"


def test_worker_probes_healthz_on_the_web_port() -> None:
    container = worker_container()
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names == {"http-metrics": WEB_PORT}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz", probe
        assert port_names.get(http["port"], http["port"]) == WEB_PORT, probe
    startup = container["startupProbe"]
    # recovery time: several minutes before liveness may restart a starting worker
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30


def test_worker_has_resources_and_time_to_shut_down() -> None:
    resources = worker_container()["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[bound]), bound
    # SIGTERM: commit and flush may take ~60 s
    assert worker()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60


@pytest.mark.parametrize("workload", [name for name, _ in pod_specs()])
def test_pods_run_as_non_root_on_a_read_only_filesystem(workload: str) -> None:
    template = dict(pod_specs())[workload]
    pod = template["spec"]
    pod_security = pod.get("securityContext", {})
    for container in pod["containers"]:
        security = {**pod_security, **container.get("securityContext", {})}
        assert security.get("runAsNonRoot") is True, container["name"]
        assert security.get("runAsUser", 0) != 0, container["name"]
        assert security.get("readOnlyRootFilesystem") is True, container["name"]
        assert security.get("allowPrivilegeEscalation") is False, container["name"]
        assert security.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        volumes = {v["name"] for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get("/tmp") in volumes, f"{container['name']}: no writable /tmp"


def test_data_dir_is_a_persistent_volume_claim_per_pod() -> None:
    """The tables are on disk (RocksDB) under FUNNELPULSE_DATA_DIR: that path must be a
    claim of the StatefulSet's volumeClaimTemplates (kept across restarts), never an
    emptyDir (gone with the pod: every restart would rebuild every table)."""
    for source in (worker(), next(d for d in rendered(K8S) if d["kind"] == "StatefulSet")):
        pod = source["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        data_dir = config()["FUNNELPULSE_DATA_DIR"]
        assert data_dir in mounts, f"FUNNELPULSE_DATA_DIR={data_dir} is not a mounted volume"
        assert not mounts[data_dir].get("readOnly", False)
        name = mounts[data_dir]["name"]
        assert name not in {v["name"] for v in pod.get("volumes", [])}, f"{name}: a pod volume"
        claims = {c["metadata"]["name"]: c for c in source["spec"].get("volumeClaimTemplates", [])}
        assert name in claims, f"{name} is not one of the volumeClaimTemplates"
        spec = claims[name]["spec"]
        assert spec["accessModes"] == ["ReadWriteOnce"]  # RocksDB: one writer per store
        assert Quantity(spec["resources"]["requests"]["storage"]) >= Quantity("1Gi")


def test_the_tables_are_stored_on_disk_explicitly() -> None:
    """Set in the ConfigMap, not left to the default (which the lead may change): the
    claim above is only worth its cost with the RocksDB store."""
    assert config()["FUNNELPULSE_STORE"] == "rocksdb"
    assert Settings.from_env(container_env(all_docs(), worker_container())).store == "rocksdb"


class Quantity:
    """A Kubernetes storage quantity (``10Gi``, ``500M``), comparable."""

    UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6,
             "G": 10**9, "T": 10**12, "": 1}  # fmt: skip

    def __init__(self, text: str) -> None:
        number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text).groups()  # type: ignore[union-attr]
        self.bytes = float(number) * self.UNITS[unit]

    def __ge__(self, other: Quantity) -> bool:
        return self.bytes >= other.bytes


def test_worker_is_scraped_by_prometheus_annotations() -> None:
    annotations = worker()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(WEB_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_worker_pods_prefer_separate_nodes() -> None:
    spec = worker()["spec"]
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    labels = spec["template"]["metadata"]["labels"]
    assert any(
        t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        and selects(t["podAffinityTerm"]["labelSelector"]["matchLabels"], labels)
        for t in terms
    )


def test_simulator_is_off_by_default() -> None:
    simulator = find("Deployment", "funnelpulse-simulator")
    assert simulator["spec"]["replicas"] == 0
    assert simulator["spec"]["template"]["spec"]["containers"][0]["args"][0] == "simulate"


# -- services, disruption budget, monitoring --------------------------------------------------


def test_services_select_the_worker_pods_only() -> None:
    worker_labels = worker()["spec"]["template"]["metadata"]["labels"]
    simulator = find("Deployment", "funnelpulse-simulator")
    simulator_labels = simulator["spec"]["template"]["metadata"]["labels"]
    services = [d for d in all_docs() if d["kind"] == "Service"]
    assert services
    for service in services:
        name = service["metadata"]["name"]
        assert selects(service["spec"]["selector"], worker_labels), name
        assert not selects(service["spec"]["selector"], simulator_labels), name
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["http-metrics"]["port"] == WEB_PORT, name
        assert ports["http-metrics"]["targetPort"] in ("http-metrics", WEB_PORT), name
    main = find("Service", "funnelpulse-worker")
    assert main["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_disruption_budget_allows_one_worker_down() -> None:
    budget = find("PodDisruptionBudget", "funnelpulse-worker")
    assert budget["spec"]["maxUnavailable"] == 1
    labels = worker()["spec"]["template"]["metadata"]["labels"]
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)


def test_servicemonitor_scrapes_the_worker_service_port() -> None:
    docs = load_docs(SERVICEMONITOR)
    assert len(docs) == 1
    monitor = docs[0]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    spec = monitor["spec"]
    assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
    services = [d for d in all_docs() if d["kind"] == "Service"]
    wanted = spec["selector"]["matchLabels"]
    chosen = [s for s in services if selects(wanted, s["metadata"]["labels"])]
    # one Service only, or every worker would be scraped once per matching Service
    assert [s["metadata"]["name"] for s in chosen] == ["funnelpulse-worker"]
    port_names = {p["name"] for p in chosen[0]["spec"]["ports"]}
    assert spec["endpoints"], "no endpoints"
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint.get("path", "/metrics") == "/metrics"


# -- settings ---------------------------------------------------------------------------------


def referenced_settings() -> dict[str, str]:
    """Every environment variable the manifests set, with where it is set."""
    found: dict[str, str] = {}
    for doc in all_docs():
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in {"ConfigMap", "Secret"}:
            for key in [*doc.get("data", {}), *doc.get("stringData", {})]:
                found[key] = where
    for where, template in pod_specs():
        spec = template["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            for var in container.get("env", []):
                found[var["name"]] = where
    return found


def test_every_setting_is_in_the_readme_table() -> None:
    documented = documented_settings()
    unknown = {
        name: where
        for name, where in referenced_settings().items()
        if name not in documented and name not in PENDING_SETTINGS
    }
    assert not unknown, f"not in README's configuration table (typo?): {unknown}"


def test_pending_settings_are_not_documented_yet() -> None:
    landed = PENDING_SETTINGS & documented_settings()
    assert not landed, f"{sorted(landed)} now documented: remove from PENDING_SETTINGS"


def test_env_sources_exist_and_do_not_overlap() -> None:
    config_keys = set(config())
    secret = find("Secret", "funnelpulse-secrets")
    secret_keys = {*secret.get("data", {}), *secret.get("stringData", {})}
    assert not config_keys & secret_keys, "a key in both: the Secret's value silently wins"
    assert "REDIS_URL" in secret_keys and "REDIS_URL" not in config_keys
    for where, template in pod_specs():
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    find("ConfigMap", source["configMapRef"]["name"])
                if "secretRef" in source:
                    find("Secret", source["secretRef"]["name"])
            assert container.get("envFrom"), f"{where}: no settings"


def test_web_server_listens_on_the_pod_network_at_the_probed_port() -> None:
    assert config()["FUNNELPULSE_WEB_HOST"] == "0.0.0.0"
    assert int(config()["FUNNELPULSE_WEB_PORT"]) == WEB_PORT


# -- the pods' environment through the settings parser ---------------------------------------

DOCKERFILE = ROOT / "Dockerfile"
# A commented-out setting in a ConfigMap or Secret, e.g. `  # FUNNELPULSE_WINDOWS: "1m,5m"`.
COMMENTED_SETTING = re.compile(r'^\s*#\s*([A-Z][A-Z0-9_]*):\s*"([^"]*)"\s*$', re.MULTILINE)
ENV_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")  # $(VAR) in an env value


def image_env() -> dict[str, str]:
    """The Dockerfile's ``ENV NAME=value ...``: every container's environment starts there."""
    env: dict[str, str] = {}
    for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("ENV "):
            for word in shlex.split(line)[1:]:
                name, equals, value = word.partition("=")
                assert equals, f"Dockerfile: ENV {word!r}: only the NAME=value form is read here"
                env[name] = value
    return env


def secret_values(secret: Doc) -> dict[str, str]:
    """A Secret's keys as a pod gets them: ``data`` base64-decoded, ``stringData`` winning."""
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**data, **{k: str(v) for k, v in (secret.get("stringData") or {}).items()}}


def source_values(docs: list[Doc], kind: str, ref: Doc) -> dict[str, str] | None:
    """The keys of the ConfigMap or Secret ``ref`` names; None when it is optional and absent
    (a missing required one keeps the pod in CreateContainerConfigError)."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == ref["name"]]
    if not found:
        assert ref.get("optional"), f"{kind}/{ref['name']} is missing: the pod would not start"
        return None
    if kind == "Secret":
        return secret_values(found[0])
    return {k: str(v) for k, v in (found[0].get("data") or {}).items()}


def env_value(docs: list[Doc], var: Doc, env: dict[str, str]) -> str | None:
    """One ``env`` entry's value: literal (with ``$(VAR)`` expanded) or a key reference."""
    if "valueFrom" not in var:
        return ENV_REFERENCE.sub(lambda m: env.get(m[1], m[0]), str(var.get("value", "")))
    refs = {"configMapKeyRef": "ConfigMap", "secretKeyRef": "Secret"}
    kinds = [(refs[key], ref) for key, ref in var["valueFrom"].items() if key in refs]
    assert kinds, f"{var['name']}: valueFrom {sorted(var['valueFrom'])} is not modelled here"
    kind, ref = kinds[0]
    values = source_values(docs, kind, ref) or {}
    assert ref["key"] in values or ref.get("optional"), f"{var['name']}: no {kind} key"
    return values.get(ref["key"])


def container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The environment the container starts with: the image's ENV, then each envFrom source
    in order (a later one wins), then ``env`` (which wins over all of them)."""
    env = image_env()
    for source in container.get("envFrom", []):
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source["configMapRef" if kind == "ConfigMap" else "secretRef"]
        values = source_values(docs, kind, ref) or {}
        env.update({source.get("prefix", "") + k: v for k, v in values.items()})
    for var in container.get("env", []):
        value = env_value(docs, var, env)
        if value is not None:
            env[var["name"]] = value
    return env


def containers(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for where, template in pod_specs(docs):
        spec = template["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{where}/{container['name']}", container


def with_commented_settings(path: Path) -> list[Doc]:
    """The file's objects with every commented-out ``# NAME: "value"`` setting enabled
    (later lines winning): the alternatives the comments offer must start too."""
    docs = load_docs(path)
    commented = dict(COMMENTED_SETTING.findall(path.read_text()))
    holders = [d for d in docs if d["kind"] in ("ConfigMap", "Secret")]
    if commented:
        assert len(holders) == 1, f"{path.name}: commented settings but not one ConfigMap/Secret"
        field = "data" if holders[0]["kind"] == "ConfigMap" else "stringData"
        holders[0].setdefault(field, {}).update(commented)
    return docs


def settings_failures(docs: list[Doc]) -> list[str]:
    failures = []
    for where, container in containers(docs):
        try:
            Settings.from_env(container_env(docs, container))
        except SettingsError as exc:
            failures.append(f"{where}: {exc}")
    return failures


def test_every_container_environment_passes_the_settings_parser() -> None:
    docs = all_docs()
    assert len(list(containers(docs))) >= 2, "the worker and the simulator"
    assert not settings_failures(docs), "\n".join(settings_failures(docs))
    settings = Settings.from_env(container_env(docs, worker_container()))
    assert settings.web_host == "0.0.0.0" and settings.web_port == WEB_PORT
    assert settings.data_dir == config()["FUNNELPULSE_DATA_DIR"], "the ConfigMap beats the image"
    assert settings.redis_url == secret_values(find("Secret", "funnelpulse-secrets"))["REDIS_URL"]


def test_the_commented_alternatives_pass_the_settings_parser_too() -> None:
    files = [p for p in manifest_files() if COMMENTED_SETTING.search(p.read_text())]
    assert {p.name for p in files} >= {"configmap.yaml", "secret.yaml"}
    docs = [doc for path in manifest_files() for doc in with_commented_settings(path)]
    assert not settings_failures(docs), "\n".join(settings_failures(docs))
    settings = Settings.from_env(container_env(docs, worker_container()))
    assert settings.kafka_security_protocol.startswith("SASL_")
    assert settings.kafka_sasl_username and settings.kafka_sasl_password


def test_the_environment_check_has_teeth() -> None:
    """The example as it once was -- SASL credentials, PLAINTEXT protocol -- is refused."""
    docs = yaml.safe_load(yaml.safe_dump(all_docs()))
    secret = next(d for d in docs if d["kind"] == "Secret")
    secret.setdefault("stringData", {}).update(
        FUNNELPULSE_KAFKA_SASL_USERNAME="user", FUNNELPULSE_KAFKA_SASL_PASSWORD="secret"
    )
    assert any("would not use them" in failure for failure in settings_failures(docs))


def test_container_env_follows_the_kubelet_precedence() -> None:
    docs: list[Doc] = [
        {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"A": "config", "B": "config"}},
        {"kind": "Secret", "metadata": {"name": "s"},
         "data": {"B": base64.b64encode(b"secret-data").decode(), "C": "ZGF0YQ=="},
         "stringData": {"C": "string-data"}},
    ]  # fmt: skip
    container: Doc = {
        "envFrom": [{"configMapRef": {"name": "c"}}, {"secretRef": {"name": "s"}},
                    {"secretRef": {"name": "absent", "optional": True}},
                    {"configMapRef": {"name": "c"}, "prefix": "P_"}],
        "env": [{"name": "A", "value": "env $(B)"},
                {"name": "D", "valueFrom": {"secretKeyRef": {"name": "s", "key": "C"}}}],
    }  # fmt: skip
    env = container_env(docs, container)
    assert {k: env[k] for k in ("A", "B", "C", "D", "P_A")} == {
        "A": "env secret-data", "B": "secret-data", "C": "string-data", "D": "string-data",
        "P_A": "config",
    }  # fmt: skip
    assert env["FUNNELPULSE_DATA_DIR"] == image_env()["FUNNELPULSE_DATA_DIR"]
