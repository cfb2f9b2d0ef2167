"""The examples: each command names a file that exists and a spec that loads; the KubeRay manifest is a
RayCluster hpo submit can target, on the Ray release hpo is bounded to, with no secret written in it.

No RayCluster CRD schema is installable here, so the manifest is checked for the structure hpo relies on."""

from __future__ import annotations

import re

import yaml

from hpo.core.spec import load_spec
from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def test_every_file_and_spec_the_examples_name_exists_and_loads(monkeypatch):
    monkeypatch.chdir(REPO)
    text = (EXAMPLES / "README.md").read_text()
    specs = set(re.findall(r"search_spaces/[\w.-]+\.yaml", text))
    assert {"search_spaces/quickstart.yaml", "search_spaces/distilbert_imdb.yaml"} <= specs
    for spec in specs:
        load_spec(spec)
    for name in ("cluster.yaml", "kuberay/raycluster.yaml", "kuberay/Dockerfile"):
        assert name in text
    assert (REPO / "cluster.yaml").is_file()


def test_the_kuberay_cluster_is_one_hpo_submit_can_target():
    import ray

    manifest = yaml.safe_load((EXAMPLES / "kuberay" / "raycluster.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    assert spec["rayVersion"].rsplit(".", 1)[0] == ray.__version__.rsplit(".", 1)[0]  # the release pyproject bounds
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    (head_container,) = head["template"]["spec"]["containers"]
    assert 8265 in {p["containerPort"] for p in head_container["ports"]}  # hpo submit --address http://HEAD:8265
    (gpu,) = spec["workerGroupSpecs"]
    (worker,) = gpu["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1" and gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    for container in (head_container, worker):
        assert container["image"] == head_container["image"]  # every pod runs the same hpo
        assert "env" not in container and container["envFrom"] == [{"secretRef": {"name": "hpo-credentials"}}]
    dockerfile = (EXAMPLES / "kuberay" / "Dockerfile").read_text()
    assert f"rayproject/ray:{spec['rayVersion']}" in dockerfile
