#!/usr/bin/env bash
# Lint the deployment files: hadolint on the Dockerfile (warnings and errors fail), kubernetes-validate
# --strict on every manifest in deploy/k8s, and deploy/check_manifests.py for what schemas cannot see.
# The linters come from PyPI into .tools/deploy-venv (pins: deploy/lint-requirements.txt) on first use;
# after that this runs offline. Exits non-zero on any finding.
#
#   scripts/lint_deploy.sh
#   KUBERNETES_VERSIONS="1.30.0" scripts/lint_deploy.sh   # validate against other Kubernetes versions
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.tools/deploy-venv
REQUIREMENTS=deploy/lint-requirements.txt
STAMP=$VENV/.lint-requirements.txt
# The oldest Kubernetes the manifests support (native gRPC probes, preStop sleep) and the newest schemas
# kubernetes-validate ships: an API removed or changed in between fails one of the two.
KUBERNETES_VERSIONS=${KUBERNETES_VERSIONS:-"1.30.0 1.37.0"}

if ! cmp -s "$REQUIREMENTS" "$STAMP" || [ ! -x "$VENV/bin/hadolint" ] || [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    echo "==> installing the deploy linters into $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --requirement "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$STAMP"
fi

status=0

echo "==> hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}') Dockerfile"
# deploy/hadolint.yaml ignores no rule: any ignored one is declared inline in the Dockerfile with its reason.
if "$VENV/bin/hadolint" --config deploy/hadolint.yaml --no-color --failure-threshold warning Dockerfile; then
    echo "Dockerfile: no findings"
else
    status=1
fi

mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
if [ "${#manifests[@]}" -eq 0 ]; then
    echo "no manifests found under deploy/k8s" >&2
    exit 1
fi
for version in $KUBERNETES_VERSIONS; do
    echo "==> kubernetes-validate --strict, Kubernetes $version: ${#manifests[@]} files"
    # It prints ERROR for invalid resources and only WARN, with exit code 0, for a kind or apiVersion it
    # has no schema for (a typo, or an API removed in that version): both count as findings here.
    if ! output=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}" 2>&1); then
        status=1
    fi
    if [ -n "$output" ]; then
        printf '%s\n' "$output"
        status=1
    else
        echo "all resources valid"
    fi
done

echo "==> deploy/check_manifests.py"
"$VENV/bin/python" deploy/check_manifests.py || status=1

if [ "$status" -ne 0 ]; then
    echo "deploy lint: FAILED" >&2
else
    echo "deploy lint: clean"
fi
exit "$status"
