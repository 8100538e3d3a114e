"""Cross-file checks of deploy/k8s that schema validation cannot make (run by scripts/lint_deploy.sh).

    python deploy/check_manifests.py [REPO_ROOT]

Checks: YAML without duplicate keys; kustomization.yaml lists every manifest; selectors match the pod
labels; ports agree between the ConfigMap, the container, the probes and the Services; the shutdown
timeline fits (preStop + TRANSCRIBE_GRACE_PERIOD_SECONDS + 5s <= terminationGracePeriodSeconds); the pod's UID
is the Dockerfile's; service links are off. Prints one line per finding and exits 1 when there is any.
Needs PyYAML (the deploy lint venv has it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

SERVER_SETTINGS_PREFIX = "TRANSCRIBE_"
SHUTDOWN_MARGIN_SECONDS = 5
"""Time the server needs after its grace period to close the backends and exit."""

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
    deployment = docs.get(("Deployment", "transcribe"))
    if deployment is None:
        return ["deployment/transcribe is missing"]
    config: dict[str, str] = docs.get(("ConfigMap", "transcribe-config"), {}).get("data", {})
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return [
        *_check_selectors(docs, deployment),
        *_check_ports(docs, container, config),
        *_check_shutdown(pod["spec"], container, config),
        *_check_security(pod["spec"], root),
    ]


def _check_selectors(docs: Docs, deployment: dict[str, Any]) -> list[str]:
    pod_labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [("deployment/transcribe", deployment["spec"]["selector"]["matchLabels"])]
    findings: list[str] = []
    for (kind, name), doc in docs.items():
        if kind == "Service":
            selectors.append((f"service/{name}", doc["spec"]["selector"]))
        elif kind == "PodDisruptionBudget":
            selectors.append((f"poddisruptionbudget/{name}", doc["spec"]["selector"]["matchLabels"]))
        elif kind == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) != ("Deployment", "transcribe"):
                findings.append(f"horizontalpodautoscaler/{name} scales {target}, not deployment/transcribe")
            if "replicas" in deployment["spec"]:
                findings.append("deployment/transcribe sets replicas although an HPA owns the count")
    findings += [
        f"{what} selector {selector} does not select the pod labels {pod_labels}"
        for what, selector in selectors
        if not selector or any(pod_labels.get(key) != value for key, value in selector.items())
    ]
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
    findings += [
        f"service/{name} targets port {port['targetPort']!r}, which is no container port name"
        for (kind, name), doc in docs.items()
        if kind == "Service"
        for port in doc["spec"]["ports"]
        if port["targetPort"] not in ports
    ]
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


def _check_security(spec: dict[str, Any], root: Path) -> list[str]:
    findings: list[str] = []
    user = re.search(r"^USER\s+(\d+)(?::\d+)?\s*$", (root / "Dockerfile").read_text(), re.MULTILINE)
    run_as = spec.get("securityContext", {}).get("runAsUser")
    if user is None or str(run_as) != user[1]:
        findings.append(f"pod runAsUser {run_as} is not the Dockerfile's numeric USER")
    if spec.get("enableServiceLinks") is not False:
        findings.append(
            f"enableServiceLinks must be false: links such as {SERVER_SETTINGS_PREFIX}METRICS_PORT=tcp://..."
            " would be read as server settings"
        )
    return findings


if __name__ == "__main__":
    sys.exit(main(sys.argv))
