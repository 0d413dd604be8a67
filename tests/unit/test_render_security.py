"""Serving pods of every workload kind run non-root under the restricted Pod Security Standard, as the image's user.

tests/integration/test_security.py has the API server's PodSecurity admission judge the same templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_operator.render.deployment import RUN_AS_USER
from tests.dockerfile import parse
from tests.unit.rendered_examples import pod_templates, rendered

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.yaml") if not p.name.startswith("invalid-"))
# Volume types the restricted profile allows (Pod Security Standards, "Volume Types").
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
RESTRICTED_VOLUMES |= {"projected", "secret"}


def test_the_examples_cover_both_workload_kinds() -> None:
    kinds = {where.split()[0] for example in EXAMPLES for where, _ in pod_templates(rendered(example))}
    assert kinds == {"Deployment", "LeaderWorkerSet"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_serving_pods_are_non_root_and_restricted(example: str) -> None:
    templates = list(pod_templates(rendered(example)))
    assert templates
    for where, template in templates:
        pod = template["spec"]
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] == context["runAsGroup"] == RUN_AS_USER != 0, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), (where, key)
        for volume in pod["volumes"]:
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (where, volume)
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}, where
            assert not any("hostPort" in port for port in container.get("ports", [])), where


@pytest.mark.parametrize("example", EXAMPLES)
def test_home_and_caches_are_writable_volumes_for_any_image(example: str) -> None:
    """A UID the image may not know (an upstream, root image) still gets a writable $HOME for vLLM's caches."""
    for where, template in pod_templates(rendered(example)):
        pod = template["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        home = mounts[env["HOME"]]
        assert volumes[home["name"]] == {"name": home["name"], "emptyDir": {}}, where
        assert not home.get("readOnly"), where
        assert env["HF_HOME"].startswith(env["HOME"] + "/"), where
        assert env["USER"]
        # The home is mounted before anything mounted inside it.
        paths = [m["mountPath"] for m in container["volumeMounts"]]
        assert paths.index(env["HOME"]) == 0, where


def test_the_pods_run_as_the_patched_images_user() -> None:
    _, instructions = parse((ROOT / "images" / "vllm" / "Dockerfile").read_text())
    users = [i for i, (ins, _) in enumerate(instructions) if ins == "USER"]
    assert users, "images/vllm/Dockerfile sets no USER: vLLM's base image runs as root"
    assert instructions[users[-1]][1] == f"{RUN_AS_USER}:{RUN_AS_USER}"
    assert RUN_AS_USER != 0
    # The user is made (as root) before the image switches to it.
    (run,) = [i for i, (ins, rest) in enumerate(instructions) if ins == "RUN" and f"--uid {RUN_AS_USER}" in rest]
    assert run < users[-1]
    env = dict(rest.split("=", 1) for ins, rest in instructions if ins == "ENV")
    (container,) = next(pod_templates(rendered("llama4-scout.yaml")))[1]["spec"]["containers"]
    assert {"name": "HOME", "value": env["HOME"]} in container["env"]
