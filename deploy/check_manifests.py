"""Cross-file checks of deploy/k8s that schema validation cannot make (run by scripts/lint_deploy.sh).

    python deploy/check_manifests.py [REPO_ROOT]

Checks: YAML without duplicate keys; kustomization.yaml lists every manifest; each Deployment's and
StatefulSet's selector matches its pod labels, and each Service and PodDisruptionBudget selects the pods of
exactly one of them; ports agree between the ConfigMap, the server container, the probes and the Services; the
server's shutdown timeline fits (preStop + TRANSCRIBE_GRACE_PERIOD_SECONDS + 5s <= terminationGracePeriodSeconds);
every pod runs as non-root, and the pods of the transcribe image with the Dockerfile's UID and with service links
off; jobs at scale hang together (TRANSCRIBE_BROKER_URL names a Service and its port, a worker Deployment runs
`transcribe-worker` from the server's image, and server and worker mount the same ReadWriteMany claim at
TRANSCRIBE_DATA_DIR). Prints one line per finding and exits 1 when there is any.
Needs PyYAML (the deploy lint venv has it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

SERVER_SETTINGS_PREFIX = "TRANSCRIBE_"
SHUTDOWN_MARGIN_SECONDS = 5
"""Time the server needs after its grace period to close the backends and exit."""

SERVER = ("Deployment", "transcribe")
WORKER = ("Deployment", "transcribe-worker")
WORKER_COMMAND = ["transcribe-worker"]
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
IMAGE = "transcribe"
"""The image name of the server and the worker (kustomization.yaml's images entry)."""

Docs = dict[tuple[str, str], dict[str, Any]]
"""Resources by (kind, name)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects a mapping with the same key twice (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    k8s = root / "deploy" / "k8s"
    findings: list[str] = []
    docs: Docs = {}
    for path in sorted(k8s.rglob("*.yaml")):
        try:
            loaded = [doc for doc in yaml.load_all(path.read_text(), Loader=_UniqueKeyLoader) if doc]
        except yaml.YAMLError as error:
            findings.append(f"{path.relative_to(root)}: {error}")
            continue
        for doc in loaded:
            docs[(doc.get("kind", ""), doc.get("metadata", {}).get("name", ""))] = doc
    if not findings:
        findings += _check_kustomization(k8s, docs)
        findings += _check_workload(docs, root)
    for finding in findings:
        print(f"FINDING {finding}")
    if not findings:
        print(f"deploy/k8s: {len(docs)} resources consistent")
    return 1 if findings else 0


def _check_kustomization(k8s: Path, docs: Docs) -> list[str]:
    kustomization = docs.get(("Kustomization", ""))
    if kustomization is None:
        return ["deploy/k8s/kustomization.yaml is missing"]
    listed = set(kustomization.get("resources", []))
    present = {path.name for path in k8s.glob("*.yaml")} - {"kustomization.yaml"}
    findings = [f"kustomization.yaml lists {name}, which does not exist" for name in sorted(listed - present)]
    findings += [f"kustomization.yaml does not list {name}" for name in sorted(present - listed)]
    return findings


def _check_workload(docs: Docs, root: Path) -> list[str]:
    deployment = docs.get(SERVER)
    if deployment is None:
        return ["deployment/transcribe is missing"]
    config: dict[str, str] = docs.get(("ConfigMap", "transcribe-config"), {}).get("data", {})
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return [
        *_check_selectors(docs, deployment),
        *_check_ports(docs, container, config),
        *_check_shutdown(pod["spec"], container, config),
        *_check_security(docs, root),
        *_check_jobs(docs, config),
    ]


def _workloads(docs: Docs) -> Docs:
    return {key: doc for key, doc in docs.items() if key[0] in WORKLOAD_KINDS}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _selected(docs: Docs, selector: dict[str, str]) -> list[tuple[str, str]]:
    """The workloads whose pods the selector selects."""
    return [
        key
        for key, doc in _workloads(docs).items()
        if _selects(selector, doc["spec"]["template"]["metadata"]["labels"])
    ]


def _name(key: tuple[str, str]) -> str:
    return f"{key[0].lower()}/{key[1]}"


def _check_selectors(docs: Docs, deployment: dict[str, Any]) -> list[str]:
    findings: list[str] = []
    for key, workload in _workloads(docs).items():
        pod_labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
        selector = workload["spec"]["selector"]["matchLabels"]
        if not _selects(selector, pod_labels):
            findings.append(f"{_name(key)} selector {selector} does not select its pod labels {pod_labels}")
    selectors: list[tuple[str, dict[str, str]]] = []
    for (kind, name), doc in docs.items():
        if kind == "Service":
            selectors.append((f"service/{name}", doc["spec"]["selector"]))
        elif kind == "PodDisruptionBudget":
            selectors.append((f"poddisruptionbudget/{name}", doc["spec"]["selector"]["matchLabels"]))
        elif kind == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) != SERVER:
                findings.append(f"horizontalpodautoscaler/{name} scales {target}, not deployment/transcribe")
            if "replicas" in deployment["spec"]:
                findings.append("deployment/transcribe sets replicas although an HPA owns the count")
    for what, selector in selectors:
        selected = _selected(docs, selector)
        if not selected:
            findings.append(f"{what} selector {selector} selects the pods of no Deployment or StatefulSet")
        elif len(selected) > 1:
            findings.append(f"{what} selector {selector} selects the pods of {', '.join(map(_name, selected))}")
    return findings


def _check_ports(docs: Docs, container: dict[str, Any], config: dict[str, str]) -> list[str]:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    findings = [
        f"container port {name} is {ports.get(name)}, but the ConfigMap's {setting} is {config.get(setting)}"
        for name, setting in (("grpc", "TRANSCRIBE_PORT"), ("metrics", "TRANSCRIBE_METRICS_PORT"))
        if str(ports.get(name)) != config.get(setting)
    ]
    findings += [
        f"{probe} is not a gRPC probe on the grpc port {ports.get('grpc')}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        if container.get(probe, {}).get("grpc", {}).get("port") != ports.get("grpc")
    ]
    for (kind, name), doc in docs.items():
        if kind != "Service":
            continue
        selected = _selected(docs, doc["spec"]["selector"])
        if len(selected) != 1:
            continue  # reported by _check_selectors
        port_names = {
            port["name"]
            for pod_container in docs[selected[0]]["spec"]["template"]["spec"]["containers"]
            for port in pod_container.get("ports", [])
        }
        findings += [
            f"service/{name} targets port {port['targetPort']!r}, which is no port name of {_name(selected[0])}"
            for port in doc["spec"]["ports"]
            if port["targetPort"] not in port_names
        ]
    for (kind, name), doc in docs.items():
        if kind != "StatefulSet":
            continue
        service = docs.get(("Service", doc["spec"].get("serviceName", "")))
        if service is None or _selected(docs, service["spec"]["selector"]) != [(kind, name)]:
            findings.append(f"statefulset/{name} serviceName names no Service that selects its pods")
    return findings


def _check_shutdown(spec: dict[str, Any], container: dict[str, Any], config: dict[str, str]) -> list[str]:
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    setting = "TRANSCRIBE_GRACE_PERIOD_SECONDS"
    grace = float(env.get(setting) or config.get(setting) or 30)
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    termination = spec.get("terminationGracePeriodSeconds", 30)
    if pre_stop + grace + SHUTDOWN_MARGIN_SECONDS <= termination:
        return []
    return [
        f"preStop {pre_stop}s + {setting} {grace:g}s leaves less than {SHUTDOWN_MARGIN_SECONDS}s "
        f"of terminationGracePeriodSeconds {termination}s for the exit"
    ]


def _runs_image(spec: dict[str, Any]) -> bool:
    return any(container["image"].split(":")[0] == IMAGE for container in spec["containers"])


def _check_security(docs: Docs, root: Path) -> list[str]:
    findings: list[str] = []
    user = re.search(r"^USER\s+(\d+)(?::\d+)?\s*$", (root / "Dockerfile").read_text(), re.MULTILINE)
    for key, workload in _workloads(docs).items():
        spec = workload["spec"]["template"]["spec"]
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            findings.append(f"{_name(key)} pod does not set runAsNonRoot: true")
        if not _runs_image(spec):
            continue
        run_as = spec.get("securityContext", {}).get("runAsUser")
        if user is None or str(run_as) != user[1]:
            findings.append(f"{_name(key)} pod runAsUser {run_as} is not the Dockerfile's numeric USER")
        if spec.get("enableServiceLinks") is not False:
            findings.append(
                f"{_name(key)}: enableServiceLinks must be false: links such as "
                f"{SERVER_SETTINGS_PREFIX}METRICS_PORT=tcp://... would be read as settings"
            )
    return findings


def _check_jobs(docs: Docs, config: dict[str, str]) -> list[str]:
    """With a broker: it is a Service of these manifests, a worker runs the jobs, both share the data folder."""
    broker = config.get("TRANSCRIBE_BROKER_URL")
    if not broker:
        return []
    worker = docs.get(WORKER)
    if worker is None:
        return [
            *_check_broker(docs, broker),
            "TRANSCRIBE_BROKER_URL is set, but deployment/transcribe-worker, which runs the jobs, is missing",
        ]
    return [*_check_broker(docs, broker), *_check_worker(docs, worker), *_check_data_dir(docs, worker, config)]


def _check_broker(docs: Docs, broker: str) -> list[str]:
    url = urlsplit(broker)
    host = url.hostname or ""
    # A host outside the cluster (a managed Redis) is not checked; a Service name is.
    if "." in host and ".svc" not in host:
        return []
    service = docs.get(("Service", host.split(".")[0]))
    if service is None:
        return [f"TRANSCRIBE_BROKER_URL {broker} names no Service of these manifests"]
    if (url.port or 6379) not in {port["port"] for port in service["spec"]["ports"]}:
        return [f"TRANSCRIBE_BROKER_URL {broker}: service/{service['metadata']['name']} has no such port"]
    return []


def _check_worker(docs: Docs, worker: dict[str, Any]) -> list[str]:
    (server,) = docs[SERVER]["spec"]["template"]["spec"]["containers"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    findings: list[str] = []
    if container["image"] != server["image"]:
        findings.append(f"deployment/transcribe-worker runs {container['image']}, the server {server['image']}")
    if container.get("command") != WORKER_COMMAND:
        findings.append(f"deployment/transcribe-worker command is {container.get('command')}, not {WORKER_COMMAND}")
    return findings


def _check_data_dir(docs: Docs, worker: dict[str, Any], config: dict[str, str]) -> list[str]:
    """Uploaded jobs' audio is written by a server and read by a worker: one ReadWriteMany claim for both."""
    data_dir = config.get("TRANSCRIBE_DATA_DIR")
    if not data_dir:
        return ["TRANSCRIBE_BROKER_URL is set without TRANSCRIBE_DATA_DIR on a shared volume"]
    findings: list[str] = []
    claims: set[str] = set()
    for key, doc in ((SERVER, docs[SERVER]), (WORKER, worker)):
        spec = doc["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        claim = next(
            (
                volumes.get(mount["name"], {}).get("persistentVolumeClaim", {}).get("claimName")
                for mount in container.get("volumeMounts", [])
                if mount["mountPath"] == data_dir
            ),
            None,
        )
        if claim is None:
            findings.append(f"{_name(key)} mounts no PersistentVolumeClaim at TRANSCRIBE_DATA_DIR {data_dir}")
        else:
            claims.add(claim)
    if len(claims) > 1:
        findings.append(f"server and worker mount different claims at TRANSCRIBE_DATA_DIR: {sorted(claims)}")
    for claim in sorted(claims):
        pvc = docs.get(("PersistentVolumeClaim", claim))
        if pvc is None:
            findings.append(f"persistentvolumeclaim/{claim} (TRANSCRIBE_DATA_DIR) is missing")
        elif "ReadWriteMany" not in pvc["spec"].get("accessModes", []):
            findings.append(f"persistentvolumeclaim/{claim} (TRANSCRIBE_DATA_DIR) is not ReadWriteMany")
    return findings


if __name__ == "__main__":
    sys.exit(main(sys.argv))
