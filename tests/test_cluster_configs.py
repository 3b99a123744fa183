"""The files in cluster/ are real configurations: checked offline, without any cloud account.

* Cluster-launcher YAML (AWS, GCP): Ray's own ``prepare_config`` (merge with the provider's
  defaults.yaml, docker checks, per-type worker bounds) and ``validate_config`` (Ray's JSON
  schema + head/min-worker rules), from ``ray.autoscaler._private.util``. That is the part of
  ``ray up`` that runs before the provider is contacted; the later steps (``fillout_available_
  node_types_resources`` and ``bootstrap_config``) call AWS / GCP APIs and need credentials, so
  they are not run. Network access is blocked while validating to prove nothing is contacted.
* KubeRay manifests: a small structural validator below (KubeRay CRDs are not installed here).
* runtime_env.yaml: keys and values checked by Ray's own ``RuntimeEnv``.
"""

from __future__ import annotations

import copy
import re
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.runtime_env import RuntimeEnv

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHER_FILES = ["aws.yaml", "gcp.yaml"]
RAY_VERSION = ray.__version__


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make any outgoing connection fail loudly."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


# ------------------------------------------------------------------------ cluster launcher


def _prepared(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = _load(CLUSTER / name)
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    return raw, prepared


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_config_passes_ray_validation(name: str, no_network: None) -> None:
    raw, cfg = _prepared(name)
    assert cfg["provider"]["type"] == name.split(".")[0]
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head must not run tasks"
    assert head["max_workers"] == 0

    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    gpu = [v for v in workers.values() if v["resources"].get("GPU", 0) > 0]
    cpu = [v for v in workers.values() if v["resources"].get("GPU", 0) == 0]
    assert len(gpu) == 1 and len(cpu) == 1, "one CPU group (preprocess), one GPU group (train)"
    assert cpu[0]["resources"]["CPU"] >= 8
    assert gpu[0]["resources"]["GPU"] == 8, "GPU group documented as 8-GPU nodes"
    for spec in workers.values():
        assert 0 <= spec["min_workers"] <= spec["max_workers"]
    assert sum(v["max_workers"] for v in workers.values()) <= cfg["max_workers"]

    docker = cfg["docker"]
    assert docker["image"] == f"rayproject/ray:{RAY_VERSION}-py311-cpu"
    assert gpu[0]["docker"]["worker_image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"
    assert any(opt.startswith("--shm-size=") for opt in docker["run_options"])

    # Our commands replaced the provider defaults (which install a Ray nightly wheel).
    commands = " ".join(cfg["setup_commands"] + cfg["head_setup_commands"])
    assert "ray-wheels" not in commands and "nightly" not in commands
    assert f'"ray[data,train,tune,default]=={RAY_VERSION}"' in commands, "Ray pinned to the image"
    install = shlex.split(cfg["setup_commands"][-1])
    mount = next(iter(raw["file_mounts"]))
    assert raw["file_mounts"][mount] == "."
    assert install[install.index("-e") + 1] == mount, "setup must install the mounted checkout"
    assert any(a.startswith("s3fs") for a in install)
    assert any("--autoscaling-config" in c for c in cfg["head_start_ray_commands"])


def test_launcher_files_describe_the_same_cluster() -> None:
    (_, aws), (_, gcp) = _prepared("aws.yaml"), _prepared("gcp.yaml")
    for key in ("max_workers", "idle_timeout_minutes", "head_node_type", "setup_commands"):
        if key == "setup_commands":
            # AWS additionally installs boto3 for its autoscaler
            assert aws[key][0].startswith(gcp[key][0])
        else:
            assert aws[key] == gcp[key], key
    for name, spec in aws["available_node_types"].items():
        other = gcp["available_node_types"][name]
        assert (spec["min_workers"], spec["max_workers"], spec["resources"]) == (
            other["min_workers"],
            other["max_workers"],
            other["resources"],
        ), name


@pytest.mark.parametrize(
    "breakage, error",
    [
        (lambda c: c["available_node_types"]["cpu_worker"].pop("resources"), "resources"),
        (lambda c: c.update(max_workerz=3), "max_workerz"),
        (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers="2"), "'2'"),
        (lambda c: c.update(head_node_type="nope"), "head_node_type"),
        (lambda c: c["available_node_types"]["cpu_worker"].update(min_workers=99), "min_workers"),
    ],
)
def test_ray_validation_rejects_broken_launcher_config(breakage: Any, error: str) -> None:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = _load(CLUSTER / "aws.yaml")
    breakage(cfg)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as info:
        validate_config(prepare_config(cfg))
    assert error in str(info.value)


# ------------------------------------------------------------------------ KubeRay manifests

_RUNTIME_ENV_KEYS = {k for k in RuntimeEnv.known_fields if not k.startswith("_")}


def _is_quantity(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or (
        isinstance(v, str) and re.fullmatch(r"\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?", v) is not None
    )


def _quantity(v: Any) -> float:
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(v))
    assert m is not None
    return float(m.group(1)) * units.get(m.group(2), 1.0)


def _check_pod_template(tpl: Any, where: str, errors: list[str], gpu: bool) -> None:
    if not isinstance(tpl, dict) or not isinstance(tpl.get("spec"), dict):
        errors.append(f"{where}.template.spec: missing")
        return
    spec = tpl["spec"]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        errors.append(f"{where}.template.spec.containers: must be a non-empty list")
        return
    volumes = {v.get("name") for v in spec.get("volumes", []) if isinstance(v, dict)}
    for i, c in enumerate(containers):
        at = f"{where}.template.spec.containers[{i}]"
        if not isinstance(c, dict):
            errors.append(f"{at}: must be a mapping")
            continue
        if not isinstance(c.get("name"), str) or not c.get("name"):
            errors.append(f"{at}.name: missing")
        image = c.get("image")
        if not isinstance(image, str) or not re.fullmatch(r"[a-z0-9][\w./:-]*:[\w.-]+", image):
            errors.append(f"{at}.image: must be a tagged image reference, got {image!r}")
        res = c.get("resources")
        if not isinstance(res, dict) or not isinstance(res.get("limits"), dict):
            errors.append(f"{at}.resources.limits: missing")
            continue
        limits, requests = res["limits"], res.get("requests", {})
        for key in ("cpu", "memory"):
            if key not in limits:
                errors.append(f"{at}.resources.limits.{key}: missing")
        for kind, table in (("limits", limits), ("requests", requests)):
            for key, value in table.items():
                if not _is_quantity(value):
                    errors.append(f"{at}.resources.{kind}.{key}: not a quantity: {value!r}")
        for key, value in requests.items():
            limit = limits.get(key)
            if (_is_quantity(value) and _is_quantity(limit)
                    and _quantity(value) > _quantity(limit)):
                errors.append(f"{at}.resources.requests.{key}: exceeds its limit")
        has_gpu = "nvidia.com/gpu" in limits
        if gpu != has_gpu:
            errors.append(f"{at}.resources.limits: nvidia.com/gpu {'missing' if gpu else 'set'}")
        for m in c.get("volumeMounts", []):
            if m.get("name") not in volumes:
                errors.append(f"{at}.volumeMounts: volume {m.get('name')!r} not declared")


def _check_ray_cluster_spec(spec: Any, where: str, errors: list[str]) -> None:
    if not isinstance(spec, dict):
        errors.append(f"{where}: must be a mapping")
        return
    if spec.get("rayVersion") != RAY_VERSION:
        got = spec.get("rayVersion")
        errors.append(f"{where}.rayVersion: expected '{RAY_VERSION}', got {got!r}")
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        errors.append(f"{where}.headGroupSpec: missing")
    else:
        params = head.get("rayStartParams")
        if not isinstance(params, dict):
            errors.append(f"{where}.headGroupSpec.rayStartParams: missing")
        else:
            for k, v in params.items():
                if not isinstance(v, str):
                    errors.append(f"{where}.headGroupSpec.rayStartParams.{k}: must be a string")
            if params.get("num-cpus") != "0":
                errors.append(f"{where}.headGroupSpec.rayStartParams.num-cpus: must be '0'")
        _check_pod_template(head.get("template"), f"{where}.headGroupSpec", errors, gpu=False)
    groups = spec.get("workerGroupSpecs")
    if not isinstance(groups, list) or not groups:
        errors.append(f"{where}.workerGroupSpecs: must be a non-empty list")
        return
    names = [g.get("groupName") for g in groups if isinstance(g, dict)]
    if len(set(names)) != len(names):
        errors.append(f"{where}.workerGroupSpecs: duplicate groupName in {names}")
    for i, g in enumerate(groups):
        at = f"{where}.workerGroupSpecs[{i}]"
        if not isinstance(g, dict):
            errors.append(f"{at}: must be a mapping")
            continue
        if not isinstance(g.get("groupName"), str) or not g["groupName"]:
            errors.append(f"{at}.groupName: missing")
        bounds = [g.get(k) for k in ("minReplicas", "replicas", "maxReplicas")]
        if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in bounds):
            errors.append(f"{at}: minReplicas/replicas/maxReplicas must be integers >= 0")
        elif not bounds[0] <= bounds[1] <= bounds[2]:
            errors.append(f"{at}: need minReplicas <= replicas <= maxReplicas, got {bounds}")
        params = g.get("rayStartParams", {})
        if not isinstance(params, dict) or any(not isinstance(v, str) for v in params.values()):
            errors.append(f"{at}.rayStartParams: must map names to strings")
        _check_pod_template(g.get("template"), at, errors, gpu=g.get("groupName") == "gpu")
    if spec.get("enableInTreeAutoscaling") is not True:
        errors.append(f"{where}.enableInTreeAutoscaling: must be true (autoscaling bounds)")


def kuberay_errors(doc: Any) -> list[str]:
    """Structural problems of a ray.io/v1 RayCluster or RayJob manifest ([] when none)."""
    errors: list[str] = []
    if not isinstance(doc, dict):
        return ["manifest: must be a mapping"]
    if doc.get("apiVersion") != "ray.io/v1":
        errors.append(f"apiVersion: expected 'ray.io/v1', got {doc.get('apiVersion')!r}")
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        errors.append(f"metadata.name: not a DNS-1123 label: {name!r}")
    kind, spec = doc.get("kind"), doc.get("spec")
    if kind == "RayCluster":
        _check_ray_cluster_spec(spec, "spec", errors)
    elif kind == "RayJob":
        if not isinstance(spec, dict):
            return [*errors, "spec: must be a mapping"]
        if not isinstance(spec.get("entrypoint"), str) or not spec["entrypoint"].strip():
            errors.append("spec.entrypoint: missing")
        try:
            env = yaml.safe_load(spec.get("runtimeEnvYAML", ""))
        except yaml.YAMLError as err:
            errors.append(f"spec.runtimeEnvYAML: not YAML: {err}")
        else:
            if not isinstance(env, dict):
                errors.append("spec.runtimeEnvYAML: must be a YAML mapping")
            elif unknown := sorted(set(env) - _RUNTIME_ENV_KEYS):
                errors.append(f"spec.runtimeEnvYAML: unknown keys {unknown}")
        if not isinstance(spec.get("shutdownAfterJobFinishes"), bool):
            errors.append("spec.shutdownAfterJobFinishes: must be true/false")
        for key, low in (("ttlSecondsAfterFinished", 0), ("activeDeadlineSeconds", 1)):
            v = spec.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                errors.append(f"spec.{key}: must be an integer >= {low}")
        if spec.get("submissionMode", "K8sJobMode") not in ("K8sJobMode", "HTTPMode",
                                                             "InteractiveMode", "SidecarMode"):
            errors.append(f"spec.submissionMode: unknown {spec.get('submissionMode')!r}")
        if ("rayClusterSpec" in spec) == ("clusterSelector" in spec):
            errors.append("spec: exactly one of rayClusterSpec / clusterSelector")
        elif "rayClusterSpec" in spec:
            _check_ray_cluster_spec(spec["rayClusterSpec"], "spec.rayClusterSpec", errors)
    else:
        errors.append(f"kind: expected RayCluster or RayJob, got {kind!r}")
    return errors


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifest_is_valid(name: str) -> None:
    docs = list(yaml.safe_load_all((CLUSTER / "kuberay" / name).read_text()))
    assert len(docs) == 1
    assert kuberay_errors(docs[0]) == []


def test_rayjob_runs_the_cluster_spec_and_existing_entry_points() -> None:
    job = _load(CLUSTER / "kuberay" / "rayjob.yaml")
    cluster = _load(CLUSTER / "kuberay" / "raycluster.yaml")
    job_spec, cluster_spec = job["spec"]["rayClusterSpec"], cluster["spec"]
    # The job's cluster differs only in how fast idle workers are returned.
    def strip(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k != "autoscalerOptions"}

    assert strip(job_spec) == strip(cluster_spec)

    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    # working_dir is a path inside the image (Ray checks it exists, which it only does there)
    workdir = re.search(r"^WORKDIR (\S+)", (CLUSTER / "Dockerfile").read_text(), re.MULTILINE)
    assert workdir is not None and env.pop("working_dir") == workdir.group(1)
    RuntimeEnv(**env)  # Ray's own type checks on the rest
    scripts = re.findall(r"python (\S+\.py)", job["spec"]["entrypoint"])
    assert scripts and all(s.startswith("ray_jobs/") for s in scripts)
    gpu_group = next(g for g in job_spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    workers = int(re.search(r"--workers (\d+)", job["spec"]["entrypoint"]).group(1))
    assert workers <= gpu_group["maxReplicas"], "pretrain workers must fit the GPU group"
    missing = [s for s in scripts if not (ROOT / s).is_file()]
    assert not missing, f"the job runs entry point(s) that do not exist: {missing}"


def _break(path: str, value: Any) -> Any:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


_DELETE = object()
_G0 = "spec/workerGroupSpecs/0"
_C0 = "spec/headGroupSpec/template/spec/containers/0"


@pytest.mark.parametrize(
    "file, breakage, message",
    [
        ("raycluster.yaml", _break("apiVersion", "ray.io/v1alpha1"), "apiVersion"),
        ("raycluster.yaml", _break("spec/rayVersion", "2.9.0"), "rayVersion"),
        ("raycluster.yaml", _break(f"{_G0}/minReplicas", 40), "minReplicas <= replicas"),
        ("raycluster.yaml", _break(f"{_G0}/maxReplicas", "32"), "integers"),
        ("raycluster.yaml", _break("spec/workerGroupSpecs/1/groupName", "cpu"), "duplicate"),
        ("raycluster.yaml", _break(f"{_C0}/image", _DELETE), "image"),
        ("raycluster.yaml", _break(f"{_C0}/resources/limits/cpu", "four"), "quantity"),
        ("raycluster.yaml", _break(f"{_C0}/resources/requests/memory", "64Gi"), "exceeds"),
        ("raycluster.yaml", _break("spec/headGroupSpec/rayStartParams/num-cpus", 0), "string"),
        ("raycluster.yaml", _break("spec/headGroupSpec/template/spec/volumes", []), "not declared"),
        ("rayjob.yaml", _break("spec/runtimeEnvYAML", "env_vars: {a: [1"), "not YAML"),
        ("rayjob.yaml", _break("spec/runtimeEnvYAML", "workdir: ."), "unknown keys"),
        ("rayjob.yaml", _break("spec/entrypoint", _DELETE), "entrypoint"),
        ("rayjob.yaml", _break("spec/shutdownAfterJobFinishes", "yes"), "shutdownAfter"),
        ("rayjob.yaml", _break("spec/activeDeadlineSeconds", 0), "activeDeadlineSeconds"),
        ("rayjob.yaml", _break("spec/rayClusterSpec", _DELETE), "exactly one"),
        ("rayjob.yaml", _break("kind", "RayService"), "kind"),
    ],
)
def test_kuberay_validator_rejects_broken_manifest(file: str, breakage: Any, message: str) -> None:
    doc = _load(CLUSTER / "kuberay" / file)
    assert kuberay_errors(doc) == []
    breakage(doc)
    errors = kuberay_errors(doc)
    assert errors, "validator accepted a broken manifest"
    assert any(message in e for e in errors), errors


def test_pvc_matches_the_volumes_used() -> None:
    pvc = _load(CLUSTER / "kuberay" / "pvc.yaml")
    assert (pvc["apiVersion"], pvc["kind"]) == ("v1", "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "all Ray pods mount it at once"
    cluster = _load(CLUSTER / "kuberay" / "raycluster.yaml")["spec"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]
    for tpl in templates:
        claims = [v["persistentVolumeClaim"]["claimName"] for v in tpl["spec"]["volumes"]
                  if "persistentVolumeClaim" in v]
        assert claims == [pvc["metadata"]["name"]]


# ------------------------------------------------------------------------ runtime env, image


def test_runtime_env_file_is_a_valid_runtime_env() -> None:
    env = _load(CLUSTER / "runtime_env.yaml")
    assert isinstance(env, dict) and set(env) <= _RUNTIME_ENV_KEYS, set(env) - _RUNTIME_ENV_KEYS
    parsed = RuntimeEnv(**env)
    assert parsed["working_dir"] == "."
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env["env_vars"].items())
    assert all(isinstance(p, str) for p in env["excludes"])
    assert ".venv*" in env["excludes"] and ".git" in env["excludes"]
    with pytest.raises((TypeError, ValueError)):
        RuntimeEnv(**{**env, "env_vars": {"N": 1}})


def test_dockerfile_base_matches_ray_version() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.MULTILINE)
    assert base is not None and base.group(1) == f"rayproject/ray:{RAY_VERSION}-py311-gpu"
    assert f'"ray[data,train,tune,default]=={RAY_VERSION}"' in text
    images = {
        image
        for doc in ("raycluster.yaml", "rayjob.yaml")
        for image in re.findall(r"image: (\S+)", (CLUSTER / "kuberay" / doc).read_text())
    }
    assert images == {"drasclr:0.1.0"}, "KubeRay pods run the image built from cluster/Dockerfile"
