"""The Helm chart (deploy/helm/zkop) and the Dockerfile agree with the checkout: the chart's CRDs are
deploy/crds, its appVersion is zkop's version, and the chart runs the image's non-root user.

(The chart itself is rendered, linted and run in tests/kubernetes/test_helm.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

import zkop

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "zkop"
CRDS = ROOT / "deploy" / "crds"
DOCKERFILE = ROOT / "Dockerfile"
REGENERATE = (
    "regenerate both with `zkop kube crds --write deploy/crds` and `zkop kube crds --write deploy/helm/zkop/crds`"
)


def test_the_charts_crds_are_deploy_crds() -> None:
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    deploy = {p.name: p.read_bytes() for p in CRDS.glob("*.yaml")}
    assert sorted(chart) == sorted(deploy), f"deploy/helm/zkop/crds holds {sorted(chart)}, deploy/crds {sorted(deploy)}"
    for name, text in deploy.items():
        assert chart[name] == text, f"deploy/helm/zkop/crds/{name} differs from deploy/crds/{name}; {REGENERATE}"


def test_the_chart_is_zkops_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "zkop"
    assert chart["appVersion"] == zkop.__version__, "Chart.yaml's appVersion is the operator image's default tag"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{zkop.__version__}"' in pyproject


def test_the_rbac_rules_are_written_in_one_place() -> None:
    """The ClusterRole and the Role both take them from the helper in _helpers.tpl."""
    rbac = (CHART / "templates" / "rbac.yaml").read_text()
    assert "verbs:" not in rbac and rbac.count('include "zkop.rbac.rules"') == 2
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert helpers.count('define "zkop.rbac.rules"') == 1
    for path in (CHART / "templates").glob("*.yaml"):
        if path.name != "rbac.yaml":
            assert "verbs:" not in path.read_text(), f"{path.name} grants rights outside the helper"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_builds_a_non_root_operator_image_without_java() -> None:
    steps = _instructions()
    assert {rest.split()[0] for word, rest in steps if word == "FROM"} == {"python:3.11-slim"}
    assert "no Docker engine" in DOCKERFILE.read_text(), "the Dockerfile says it cannot be built here"
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    run = " ".join(rest for word, rest in final if word == "RUN")
    assert "pip install" in run and not re.search(r"\b(jre|jdk|java|openjdk)\b", run, re.IGNORECASE)
    entrypoint = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoint == [["zkop"]]
    user = [rest for word, rest in final if word == "USER"][-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric user, so Kubernetes can check runAsNonRoot"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == int(uid) and pod["runAsGroup"] == int(gid or uid)
    assert values["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_docker_build_context_holds_what_the_package_is_built_from() -> None:
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"]
    copied = [p for word, rest in _instructions() if word == "COPY" and "--from" not in rest for p in rest.split()[:-1]]
    assert sorted(copied) == sorted(allowed) == ["README.md", "pyproject.toml", "src"]
