"""deploy/k8s/ cannot be applied here (no cluster): every document is parsed and checked
against the Kubernetes API's models (the `kubernetes` client package: a field the model does
not know is lost on the round trip and reported), KEDA's objects by their required fields, and
against the code: each variable a container sets is one the settings read
(store.settings.known_variables, as for docker-compose.yml), each Secret and ConfigMap
reference exists, probes and scrape annotations name real routes that admission never sheds,
and the commands are real `lth` commands with real options."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"

#: The kubernetes client's model for each kind the manifests use.
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("batch/v1", "Job"): "V1Job",
}
KEDA = "keda.sh/v1alpha1"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path.name, doc))
    return found


DOCUMENTS = _documents()


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in DOCUMENTS if d["kind"] == kind}


def _lost(original: Any, round_trip: Any, path: str = "") -> list[str]:
    """Where ``original`` has something the model's serialization lacks or changed."""
    if isinstance(original, dict):
        if not isinstance(round_trip, dict):
            return [path or "/"]
        return [
            p
            for key, value in original.items()
            for p in (
                _lost(value, round_trip[key], f"{path}.{key}")
                if key in round_trip
                else [f"{path}.{key}"]
            )
        ]
    if isinstance(original, list):
        if not isinstance(round_trip, list) or len(original) != len(round_trip):
            return [path]
        return [
            p
            for i, (a, b) in enumerate(zip(original, round_trip, strict=True))
            for p in _lost(a, b, f"{path}[{i}]")
        ]
    return [] if original == round_trip else [f"{path}: {original!r} -> {round_trip!r}"]


def test_the_kustomization_lists_every_manifest_but_the_one_off_job() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "first-key-job.yaml"}
    assert sorted(listed) == sorted(on_disk)


@pytest.mark.parametrize(
    "name,doc", DOCUMENTS, ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in DOCUMENTS]
)
def test_every_document_is_a_valid_kubernetes_object(name: str, doc: dict[str, Any]) -> None:
    from kubernetes.client import ApiClient

    assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "lth", name
    if doc["apiVersion"] == KEDA:
        assert doc["kind"] in {"ScaledObject", "TriggerAuthentication"}
        return  # a CRD the client has no model for: test_keda_* checks it
    model = MODELS[(doc["apiVersion"], doc["kind"])]
    client = ApiClient()
    # The client's own deserializer (it validates required fields and types as it goes).
    obj = client._ApiClient__deserialize(doc, model)  # type: ignore[attr-defined]
    lost = _lost(doc, client.sanitize_for_serialization(obj))
    assert not lost, f"{name}: fields the {model} model does not know or changed: {lost}"


def _containers() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for kind in ("Deployment", "Job"):
        for name, doc in _of_kind(kind).items():
            for container in doc["spec"]["template"]["spec"]["containers"]:
                found.append((f"{kind}/{name}/{container['name']}", container))
    return found


def test_containers_set_only_known_settings_from_existing_secrets() -> None:
    from store.settings import known_variables

    secrets = {
        n: set(d.get("stringData", {})) | set(d.get("data", {}))
        for n, d in _of_kind("Secret").items()
    }
    config_maps = {n: d["data"] for n, d in _of_kind("ConfigMap").items()}
    for where, container in _containers():
        names = {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, f"{where}: envFrom only for ConfigMaps"
            names |= set(config_maps[source["configMapRef"]["name"]])
        unknown = names - known_variables()
        assert not unknown, f"{where} sets what no setting reads: {unknown}"
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["key"] in secrets[ref["name"]], f"{where}: {ref}"


def test_api_and_workers_share_database_broker_and_store() -> None:
    def env_of(container: dict[str, Any]) -> dict[str, Any]:
        return {e["name"]: e.get("valueFrom", e.get("value")) for e in container["env"]}

    containers = dict(_containers())
    api = containers["Deployment/lth-api/api"]
    worker = containers["Deployment/lth-worker-gpu/worker"]
    assert env_of(api) == env_of(worker)
    assert api["envFrom"] == worker["envFrom"] and api["image"] == worker["image"]
    assert {"LTH_DATABASE_URL", "LTH_BROKER_URL", "LTH_ARTIFACTS_URL"} <= set(env_of(api))


def test_commands_are_lth_commands_with_real_options() -> None:
    from cli.main import app

    click_app = typer.main.get_command(app)
    for where, container in _containers():
        cmd = container["command"]
        assert cmd[0] == "lth", where
        group = click_app
        args = cmd[1:]
        while hasattr(group, "commands") and args and args[0] in group.commands:
            group, args = group.commands[args[0]], args[1:]
        assert not hasattr(group, "commands"), f"{where}: `{shlex.join(cmd)}` is not a command"
        known = {opt for param in group.params for opt in param.opts}
        for arg in args:
            if arg.startswith("--"):
                assert arg in known, f"{where}: `{shlex.join(cmd)}` has no option {arg}"


def test_probes_and_scrape_annotations_name_real_unshed_routes() -> None:
    from service.admission import is_exempt
    from service.main import create_app

    routes = set(create_app().openapi()["paths"])  # every route, as published
    api = _of_kind("Deployment")["lth-api"]["spec"]["template"]
    (container,) = api["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    annotations = api["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    paths = [p["path"] for p in probes.values()] + [annotations["prometheus.io/path"]]
    for path in paths:
        assert path in routes and is_exempt(path), path
    assert {ports[p["port"]] for p in probes.values()} == {int(annotations["prometheus.io/port"])}
    cmd = container["command"]
    assert int(cmd[cmd.index("--port") + 1]) == ports["http"]
    service = _of_kind("Service")["lth-api"]["spec"]
    assert service["selector"] == api["metadata"]["labels"]
    assert service["ports"][0]["targetPort"] == "http"


def test_gpu_workers_one_gpu_each_graceful_and_scaled_by_keda_from_zero() -> None:
    from store.broker import DEFAULT_QUEUE, GPU_QUEUE

    deployment = _of_kind("Deployment")["lth-worker-gpu"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    cmd = container["command"]
    assert cmd[cmd.index("--gpus") + 1] == "0" and cmd[cmd.index("--concurrency") + 1] == "1"
    queues = cmd[cmd.index("--queues") + 1].split(",")
    assert pod["terminationGracePeriodSeconds"] >= 600, "a level must be able to finish"

    (scaled,) = _of_kind("ScaledObject").values()
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert spec["minReplicaCount"] == 0 < spec["maxReplicaCount"]
    redis = [t for t in spec["triggers"] if t["type"] == "redis"]
    assert {t["metadata"]["listName"] for t in redis} == set(queues) == {DEFAULT_QUEUE, GPU_QUEUE}
    auths = _of_kind("TriggerAuthentication")
    secrets = {n: set(d["stringData"]) for n, d in _of_kind("Secret").items()}
    for trigger in spec["triggers"]:
        assert trigger["type"] in {"redis", "postgresql"}
        metadata = trigger["metadata"]
        assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata are strings"
        auth = auths[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
        for ref in auth:
            assert set(ref) == {"parameter", "name", "key"} and ref["key"] in secrets[ref["name"]]
        if trigger["type"] == "redis":
            assert int(metadata["listLength"]) >= 1
            assert {r["parameter"] for r in auth} >= {"address"}
        else:
            assert (
                int(metadata["targetQueryValue"]) >= 1 and "FROM experiments" in metadata["query"]
            )
            assert {r["parameter"] for r in auth} == {"connection"}


def test_keda_counts_what_the_store_calls_active() -> None:
    """The database trigger's statuses are the active ones (store.status)."""
    from store.status import ACTIVE_STATUSES

    (scaled,) = _of_kind("ScaledObject").values()
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "postgresql"]
    query = trigger["metadata"]["query"]
    for status in ACTIVE_STATUSES:
        assert f"'{status}'" in query
