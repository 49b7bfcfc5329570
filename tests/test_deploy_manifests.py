"""The Kubernetes manifests: each object validates against the Kubernetes API schemas (bundled with
kubernetes-validate, so no network), and the objects fit together: Services select Deployments, probes reach the
ports the commands listen on, every setting named is a real one, and the autoscalers watch the queue time the
model services export and the length of the workers' `books` queue.

KEDA's objects are custom resources with no schema in that bundle, so their required fields are checked here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes these manifests are written for, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", latest_version())
# Files kept beside the kustomizations on purpose: credentials are never applied from the repository, and the HPA
# file replaces the KEDA one on clusters without KEDA.
NOT_APPLIED = {"secret.example.yaml", "autoscaling-hpa.yaml"}

MODEL_SERVICE_PORTS = {"caption": 8101, "illustrate": 8102, "llm": 8103, "narrate": 8104}
GPU_SERVICES = {"caption", "illustrate", "llm"}
WORKER_PORT = 8110
WEB_PORT = 7860


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


MANIFESTS: list[tuple[Path, dict[str, Any]]] = [
    (path, document) for path in sorted(KUBERNETES.rglob("*.yaml")) for document in _documents(path)
]


def _is_custom(document: dict[str, Any]) -> bool:
    """Kustomize's own files and KEDA's resources: kinds no Kubernetes API schema describes."""
    return document["apiVersion"].startswith(("kustomize.config.k8s.io/", "keda.sh/"))


API_OBJECTS = [(path, document) for path, document in MANIFESTS if not _is_custom(document)]


def objects(kind: str, *, in_file: str | None = None) -> list[dict[str, Any]]:
    return [document for path, document in MANIFESTS if document["kind"] == kind and (in_file is None or path.name == in_file)]


def by_name(kind: str, **kwargs: Any) -> dict[str, dict[str, Any]]:
    return {document["metadata"]["name"]: document for document in objects(kind, **kwargs)}


def pod_specs() -> dict[str, dict[str, Any]]:
    """Every pod template: the Deployments' and the Jobs'."""
    return {document["metadata"]["name"]: document["spec"]["template"]["spec"] for document in objects("Deployment") + objects("Job")}


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [(name, container) for name, spec in pod_specs().items() for container in spec["containers"] + spec.get("initContainers", [])]


def listening_port(deployment: str, container: dict[str, Any]) -> int:
    """The port the container's command listens on: `--port N`, or the worker's fixed health and metrics port."""
    arguments = container["args"]
    if deployment == "worker":
        return WORKER_PORT
    return int(arguments[arguments.index("--port") + 1])


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    named = {declared["name"]: declared["containerPort"] for declared in container["ports"] if "name" in declared}
    assert port in named, f"{container['name']}: probe port {port!r} is not a declared container port ({sorted(named)})"
    return named[port]


# ---- the Kubernetes API schemas -------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("path", "document"), API_OBJECTS, ids=[f"{path.relative_to(KUBERNETES)}:{doc['kind']}/{doc['metadata']['name']}" for path, doc in API_OBJECTS]
)
def test_every_object_validates_against_the_kubernetes_schemas(path: Path, document: dict[str, Any], version: str) -> None:
    # strict: an unknown field (a misspelt `readinesProbe`) is an error, as `kubectl apply --validate=strict` makes it.
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        pytest.fail(f"{path.name}: {document['kind']}/{document['metadata']['name']} at {where}: {error.message} (Kubernetes {version})")


def test_the_validator_rejects_a_misspelt_field() -> None:
    deployment = yaml.safe_load(yaml.safe_dump(by_name("Deployment")["web"]))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")

    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_every_object_is_in_the_fabula_namespace() -> None:
    for path, document in API_OBJECTS + [(path, doc) for path, doc in MANIFESTS if doc["apiVersion"].startswith("keda.sh/")]:
        if document["kind"] == "Namespace":
            assert document["metadata"]["name"] == "fabula"
        else:
            assert document["metadata"].get("namespace") == "fabula", f"{path.name}: {document['kind']}/{document['metadata']['name']}"


# ---- kustomize ------------------------------------------------------------------------------------------------------
def _kustomizations() -> dict[Path, dict[str, Any]]:
    return {path.parent: document for path, document in MANIFESTS if document["kind"] == "Kustomization"}


def test_every_manifest_is_applied_by_a_kustomization() -> None:
    kustomizations = _kustomizations()
    listed: set[Path] = set()
    for folder, kustomization in kustomizations.items():
        assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
        for entry in kustomization["resources"]:
            target = (folder / entry).resolve()
            assert target.exists(), f"{folder.name}/kustomization.yaml lists {entry}, which does not exist"
            if target.is_dir():
                assert target in kustomizations, f"{entry} is a folder without a kustomization.yaml"
            else:
                # kustomize refuses files above its own folder; a parent is only reachable as a kustomization.
                assert target.parent == folder, f"{folder.name}/kustomization.yaml lists {entry} outside its folder"
                listed.add(target)
    files = {path.resolve() for path in KUBERNETES.rglob("*.yaml") if path.name != "kustomization.yaml"}

    assert {path.name for path in files - listed} == NOT_APPLIED


def test_both_kustomizations_deploy_the_same_image() -> None:
    kustomizations = _kustomizations()
    images = {folder.name: kustomization["images"] for folder, kustomization in kustomizations.items() if "images" in kustomization}

    assert set(images) == {"kubernetes", "jobs"}
    assert images["kubernetes"] == images["jobs"]
    (image,) = images["kubernetes"]
    assert {name for _, container in containers() for name in [container["image"]]} == {image["name"]}


# ---- workloads ------------------------------------------------------------------------------------------------------
def test_there_is_a_deployment_for_the_web_app_the_workers_and_each_model_service() -> None:
    deployments = by_name("Deployment")

    assert set(deployments) == {"web", "worker", *MODEL_SERVICE_PORTS}
    assert deployments["web"]["spec"]["replicas"] == 2
    assert deployments["worker"]["spec"]["replicas"] == 2
    for name, deployment in deployments.items():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), name


def test_each_model_service_runs_its_own_serve_command() -> None:
    deployments = by_name("Deployment")
    for name, port in MODEL_SERVICE_PORTS.items():
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        device = "cuda" if name in GPU_SERVICES else "cpu"

        assert container["args"] == ["serve", name, "--profile", "gpu", "--device", device, "--host", "0.0.0.0", "--port", str(port)]
    (web,) = deployments["web"]["spec"]["template"]["spec"]["containers"]
    (worker,) = deployments["worker"]["spec"]["template"]["spec"]["containers"]
    assert web["args"] == ["serve", "web", "--host", "0.0.0.0", "--port", str(WEB_PORT)]
    assert worker["args"][:3] == ["worker", "--profile", "gpu"] and int(worker["args"][worker["args"].index("--concurrency") + 1]) >= 1


def test_every_container_is_probed_for_readiness_and_liveness_on_the_port_it_listens_on() -> None:
    for name, deployment in by_name("Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            port = listening_port(name, container)
            # The workers answer /healthz and /metrics only: nothing is routed to them, alive is ready.
            readiness_path = "/healthz" if name == "worker" else "/readyz"

            assert port in {declared["containerPort"] for declared in container["ports"]}, name
            assert container["readinessProbe"]["httpGet"]["path"] == readiness_path, name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                if kind in container:
                    assert probe_port(container, container[kind]) == port, f"{name}: {kind}"


def test_model_services_have_minutes_to_load_their_model_before_liveness_counts() -> None:
    deployments = by_name("Deployment")
    for name in MODEL_SERVICE_PORTS:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        startup = container["startupProbe"]
        budget_s = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)

        assert startup["httpGet"]["path"] == "/readyz", name
        # LLaVA-13B takes minutes from a network volume; compose's health checks allow 20.
        assert budget_s >= (15 * 60 if name in GPU_SERVICES else 60), f"{name}: {budget_s} s"


def test_gpu_services_request_one_gpu_and_narrate_none() -> None:
    deployments = by_name("Deployment")
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        resources = container["resources"]

        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name
        if name in GPU_SERVICES:
            assert resources["requests"]["nvidia.com/gpu"] == 1 and resources["limits"]["nvidia.com/gpu"] == 1, name
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"], name
        else:
            assert "nvidia.com/gpu" not in resources["requests"] and "nvidia.com/gpu" not in resources["limits"], name


def test_every_pod_runs_as_a_non_root_user_without_privilege_escalation_on_a_read_only_root() -> None:
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 1000, f"{name}: the image's fabula user"
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            security = container["securityContext"]

            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{name}: a read-only root needs a writable /tmp"


def test_model_services_read_the_weights_and_only_the_pull_job_writes_them() -> None:
    specs = pod_specs()
    for name, spec in specs.items():
        claims = {volume["name"]: volume["persistentVolumeClaim"] for volume in spec["volumes"] if "persistentVolumeClaim" in volume}
        (container,) = spec["containers"]
        mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
        models = [volume for volume, claim in claims.items() if claim["claimName"] == "fabula-models"]
        if name in GPU_SERVICES:
            (volume,) = models
            assert mounts[volume]["mountPath"] == "/models" and mounts[volume]["readOnly"] is True, name
        elif name == "fabula-models-pull":
            (volume,) = models
            assert not mounts[volume].get("readOnly", False)
            environment = {variable["name"]: variable.get("value") for variable in container["env"]}
            assert environment["HF_HUB_OFFLINE"] == "0", "the pull is the one pod that may download"
            assert container["args"] == ["models", "pull", "gpu"]
        else:
            assert not models, name


def test_web_and_workers_share_the_artifacts_volume_at_the_data_dir() -> None:
    (config,) = objects("ConfigMap")
    claims = by_name("PersistentVolumeClaim")
    specs = pod_specs()

    assert claims["fabula-artifacts"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claims["fabula-models"]["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("web", "worker"):
        spec = specs[name]
        (volume,) = [volume["name"] for volume in spec["volumes"] if volume.get("persistentVolumeClaim", {}).get("claimName") == "fabula-artifacts"]
        (container,) = spec["containers"]
        (mount,) = [mount for mount in container["volumeMounts"] if mount["name"] == volume]
        assert mount["mountPath"] == config["data"]["FABULA_DATA_DIR"], name


def test_the_migration_job_runs_fabula_db_upgrade_against_the_database() -> None:
    job = by_name("Job")["fabula-db-upgrade"]
    (container,) = job["spec"]["template"]["spec"]["containers"]

    assert container["args"] == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert "FABULA_DATABASE_URL" in {variable["name"] for variable in container["env"]}


# ---- services, ingress, disruption budgets --------------------------------------------------------------------------
def test_every_service_selects_a_deployment_and_targets_a_declared_container_port() -> None:
    deployments = by_name("Deployment")
    services = by_name("Service")

    assert set(services) == set(deployments)
    for name, service in services.items():
        selector = service["spec"]["selector"]
        selected = [deployment for deployment in deployments.values() if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()]
        assert [deployment["metadata"]["name"] for deployment in selected] == [name], f"Service {name} selects {selector}"
        (container,) = selected[0]["spec"]["template"]["spec"]["containers"]
        declared = {port["name"]: port["containerPort"] for port in container["ports"]}
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in declared or target in declared.values(), f"Service {name} targets {target!r}, declared: {declared}"
            assert port["port"] == declared.get(target, target), f"Service {name}: the cluster port is the container's"


def test_the_service_addresses_in_the_config_are_the_services() -> None:
    (config,) = objects("ConfigMap")
    services = by_name("Service")
    for name, port in MODEL_SERVICE_PORTS.items():
        assert config["data"][f"FABULA_{name.upper()}_URL"] == f"http://{name}:{port}"
        assert [declared["port"] for declared in services[name]["spec"]["ports"]] == [port]


def test_the_ingress_keeps_event_streams_open_and_unbuffered() -> None:
    (ingress,) = objects("Ingress")
    annotations = ingress["metadata"]["annotations"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]

    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie", "Gradio keeps a browser's queue on one replica"
    assert backend["name"] == "web"
    assert backend["port"]["name"] in {port["name"] for port in by_name("Service")["web"]["spec"]["ports"]}


def test_every_deployment_has_a_disruption_budget_that_never_blocks_a_drain() -> None:
    deployments = by_name("Deployment")
    budgets = objects("PodDisruptionBudget")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (budget,) = [budget for budget in budgets if budget["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        minimum = budget["spec"].get("minAvailable")
        # A budget of minAvailable >= replicas would stop every node drain.
        assert minimum is None or minimum < deployment["spec"]["replicas"], name


def test_prometheus_scrapes_every_deployment_on_a_port_it_declares() -> None:
    for name, deployment in by_name("Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]

        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert int(annotations["prometheus.io/port"]) == listening_port(name, container), name


# ---- settings -------------------------------------------------------------------------------------------------------
def _environment_names() -> dict[str, str]:
    """Every environment variable a manifest sets, with where it is set."""
    names: dict[str, str] = {}
    for config in objects("ConfigMap"):
        names.update({key: f"ConfigMap {config['metadata']['name']}" for key in config["data"]})
    for secret in objects("Secret"):
        names.update({key: f"Secret {secret['metadata']['name']}" for key in secret["stringData"] if key.isupper()})
    for pod, container in containers():
        names.update({variable["name"]: f"{pod}/{container['name']}" for variable in container.get("env", [])})
    return names


def test_every_fabula_variable_in_the_manifests_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    unknown = {
        name: where for name, where in _environment_names().items() if name.startswith("FABULA_") and name.removeprefix("FABULA_").lower() not in fields
    }

    assert not unknown, f"not fields of shared.settings.Settings: {unknown}"


def test_every_secret_and_config_a_pod_reads_is_in_the_manifests() -> None:
    (secret,) = objects("Secret")
    config_maps = set(by_name("ConfigMap"))
    for pod, container in containers():
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps, pod
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference and not reference.get("optional", False):
                assert reference["name"] == secret["metadata"]["name"], f"{pod}: {variable['name']}"
                assert reference["key"] in secret["stringData"], f"{pod}: {variable['name']} reads {reference['key']}, not in the Secret"


# ---- autoscaling ----------------------------------------------------------------------------------------------------
def test_keda_objects_have_the_fields_keda_requires() -> None:
    deployments = by_name("Deployment")
    scaled = by_name("ScaledObject")
    authentications = by_name("TriggerAuthentication")
    (secret,) = objects("Secret")

    assert set(scaled) == {"worker", *MODEL_SERVICE_PORTS}
    for name, scaled_object in scaled.items():
        spec = scaled_object["spec"]
        assert scaled_object["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"]["name"] in deployments, name
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], f"{name}: never to zero, a model takes minutes to load"
        assert spec["minReplicaCount"] == deployments[spec["scaleTargetRef"]["name"]]["spec"]["replicas"], name
        assert spec["triggers"], name
        for trigger in spec["triggers"]:
            assert trigger["type"] and trigger["metadata"], name
            assert all(isinstance(value, str) for value in trigger["metadata"].values()), f"{name}: KEDA metadata values are strings"
            if "authenticationRef" in trigger:
                authentication = authentications[trigger["authenticationRef"]["name"]]
                for reference in authentication["spec"]["secretTargetRef"]:
                    assert {"parameter", "name", "key"} <= set(reference)
                    assert reference["name"] == secret["metadata"]["name"] and reference["key"] in secret["stringData"]


def test_model_services_scale_on_the_p90_queue_wait_they_export() -> None:
    scaled = by_name("ScaledObject")
    for name in MODEL_SERVICE_PORTS:
        (trigger,) = scaled[name]["spec"]["triggers"]
        metadata = trigger["metadata"]
        query = metadata["query"]

        assert trigger["type"] == "prometheus"
        assert metadata["serverAddress"].startswith("http")
        assert f'fabula_queue_wait_seconds_bucket{{service="{name}"}}' in query
        assert "histogram_quantile(0.9," in query and "[2m]" in query
        assert float(metadata["threshold"]) > 0
        # A wait does not divide among replicas the way a request rate does.
        assert trigger["metricType"] == "Value"


def test_workers_scale_on_the_length_of_the_books_queue() -> None:
    (trigger,) = by_name("ScaledObject")["worker"]["spec"]["triggers"]
    metadata = trigger["metadata"]

    assert trigger["type"] == "redis"
    assert metadata["listName"] == "books"
    assert int(metadata["listLength"]) >= 1
    # KEDA resolves the address from its own namespace.
    assert metadata["address"].startswith("redis.fabula.svc")


def test_the_hpa_alternative_scales_the_same_deployments_on_the_same_signals() -> None:
    keda = by_name("ScaledObject")
    autoscalers = by_name("HorizontalPodAutoscaler", in_file="autoscaling-hpa.yaml")

    assert set(autoscalers) == set(keda)
    for name, autoscaler in autoscalers.items():
        spec = autoscaler["spec"]
        (metric,) = spec["metrics"]

        assert autoscaler["apiVersion"] == "autoscaling/v2"
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": keda[name]["spec"]["scaleTargetRef"]["name"]}
        assert (spec["minReplicas"], spec["maxReplicas"]) == (keda[name]["spec"]["minReplicaCount"], keda[name]["spec"]["maxReplicaCount"])
        assert metric["type"] == "External"
        if name == "worker":
            assert metric["external"]["metric"]["name"] == "fabula_books_queued"
        else:
            assert metric["external"]["metric"]["name"] == "fabula_queue_wait_seconds_p90"
            assert metric["external"]["metric"]["selector"]["matchLabels"] == {"service": name}
            assert metric["external"]["target"] == {"type": "Value", "value": keda[name]["spec"]["triggers"][0]["metadata"]["threshold"]}
