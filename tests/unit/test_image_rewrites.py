"""Image rewrites for private registries: the rules (render.images), the `run` flag and its environment fallback,
and what the reconcile renders and reports with them (children and status carry the rewritten image)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from llama_operator.cli import build_parser, main
from llama_operator.cli.run_images import rewrites_from_args
from llama_operator.handlers.options import Options, options, set_options
from llama_operator.handlers.reconcile import plan
from llama_operator.knowledge import load_knowledge
from llama_operator.planning import validate
from llama_operator.render.images import (
    ENV,
    ImageRewrite,
    ImageRewriteError,
    canonical,
    parse_env,
    parse_rule,
    parse_rules,
    rewrite_image,
    split_reference,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGEST = "sha256:" + "0" * 64
# The air-gapped sandbox's mirror: CPU builds under honest names of their own.
MIRROR = parse_rules(
    [
        "ghcr.io/llamaops/vllm=127.0.0.1:5000/llamaops/vllm-cpu",
        "docker.io/vllm/vllm-openai=127.0.0.1:5000/vllm/vllm-openai-cpu",
    ]
)


@pytest.mark.parametrize(
    ("image", "rewritten"),
    [
        ("ghcr.io/llamaops/vllm:0.8.3-llamaops", "127.0.0.1:5000/llamaops/vllm-cpu:0.8.3-llamaops"),
        ("docker.io/vllm/vllm-openai:v0.8.3", "127.0.0.1:5000/vllm/vllm-openai-cpu:v0.8.3"),
        # The digest is kept, and so are tag and digest together.
        (f"ghcr.io/llamaops/vllm@{DIGEST}", f"127.0.0.1:5000/llamaops/vllm-cpu@{DIGEST}"),
        (f"ghcr.io/llamaops/vllm:0.9.0@{DIGEST}", f"127.0.0.1:5000/llamaops/vllm-cpu:0.9.0@{DIGEST}"),
        # Below FROM, the rest of the path follows.
        ("ghcr.io/llamaops/vllm/nightly:1", "127.0.0.1:5000/llamaops/vllm-cpu/nightly:1"),
        # Only on a path-segment boundary.
        ("ghcr.io/llamaops/vllm-foo:1", "ghcr.io/llamaops/vllm-foo:1"),
        ("ghcr.io/llamaops/vll:1", "ghcr.io/llamaops/vll:1"),
        # Docker Hub's short name is docker.io/vllm/vllm-openai to the runtime, and to the rules.
        ("vllm/vllm-openai:v0.9.0", "127.0.0.1:5000/vllm/vllm-openai-cpu:v0.9.0"),
        ("index.docker.io/vllm/vllm-openai:v0.9.0", "127.0.0.1:5000/vllm/vllm-openai-cpu:v0.9.0"),
        # No rule: unchanged, including an image already in the mirror and one without a tag.
        ("127.0.0.1:5000/llamaops/vllm-cpu:0.8.3-llamaops", "127.0.0.1:5000/llamaops/vllm-cpu:0.8.3-llamaops"),
        ("registry.local:5000/team/vllm", "registry.local:5000/team/vllm"),
        ("python:3.11", "python:3.11"),
    ],
)
def test_the_repository_part_is_rewritten_and_the_tag_or_digest_kept(image: str, rewritten: str) -> None:
    assert rewrite_image(image, MIRROR) == rewritten


def test_the_longest_matching_prefix_wins_whatever_the_order() -> None:
    rules = [
        parse_rule("ghcr.io/llamaops=mirror.local/llamaops"),
        parse_rule("ghcr.io/llamaops/vllm=mirror.local/vllm-cpu"),
    ]
    for ordered in (rules, rules[::-1]):
        assert rewrite_image("ghcr.io/llamaops/vllm:1", ordered) == "mirror.local/vllm-cpu:1"
        assert rewrite_image("ghcr.io/llamaops/other:1", ordered) == "mirror.local/llamaops/other:1"


def test_a_whole_registry_and_a_registry_with_a_port_can_be_rules() -> None:
    rules = parse_rules(["ghcr.io=127.0.0.1:5000/ghcr", "registry.local:5000=127.0.0.1:5000/local"])
    assert rewrite_image("ghcr.io/llamaops/vllm:1", rules) == "127.0.0.1:5000/ghcr/llamaops/vllm:1"
    assert rewrite_image("registry.local:5000/a/b@" + DIGEST, rules) == "127.0.0.1:5000/local/a/b@" + DIGEST
    # A short name in a rule means what it means to the runtime.
    official = parse_rules(["python=127.0.0.1:5000/python", "vllm/vllm-openai=127.0.0.1:5000/vllm"])
    assert rewrite_image("docker.io/library/python:3.11", official) == "127.0.0.1:5000/python:3.11"
    assert rewrite_image("docker.io/vllm/vllm-openai:v1", official) == "127.0.0.1:5000/vllm:v1"


def test_references_split_at_the_tag_not_at_a_registry_port() -> None:
    assert split_reference("127.0.0.1:5000/a/b") == ("127.0.0.1:5000/a/b", "")
    assert split_reference("127.0.0.1:5000/a/b:1") == ("127.0.0.1:5000/a/b", ":1")
    assert split_reference(f"a/b@{DIGEST}") == ("a/b", f"@{DIGEST}")
    assert canonical("vllm") == "docker.io/library/vllm"
    assert canonical("ghcr.io", prefix=True) == "ghcr.io"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("ghcr.io/llamaops/vllm", "no '='"),
        ("=127.0.0.1:5000/vllm", "FROM is empty"),
        ("ghcr.io/llamaops/vllm=", "TO is empty"),
        ("  =  ", "FROM is empty"),
        ("ghcr.io/llamaops/vllm:0.8.3=127.0.0.1:5000/vllm", "FROM 'ghcr.io/llamaops/vllm:0.8.3' carries a tag"),
        ("vllm:latest=127.0.0.1:5000/vllm", "carries a tag"),
        (f"ghcr.io/llamaops/vllm@{DIGEST}=127.0.0.1:5000/vllm", "carries a digest"),
        ("ghcr.io/llamaops/vllm=127.0.0.1:5000/vllm:cpu", "TO '127.0.0.1:5000/vllm:cpu' carries a tag"),
        ("ghcr.io/llamaops/vllm/=127.0.0.1:5000/vllm", "not an image repository"),
        ("ghcr.io/Llamaops/vllm=127.0.0.1:5000/vllm", "not an image repository"),
        ("ghcr.io/llamaops/vllm=127.0.0.1:5000/vllm cpu", "not an image repository"),
        ("ghcr.io/" + "a" * 260 + "=b.io/c", "longer than 255"),
    ],
)
def test_malformed_rules_are_refused_with_the_reason(rule: str, message: str) -> None:
    with pytest.raises(ImageRewriteError, match="image rewrite") as error:
        parse_rule(rule)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "rules",
    [
        # Its own output would be rewritten again (status records the output; a rollback renders it again).
        ["docker.io=docker.io/mirror"],
        ["docker.io/vllm=mirror.local/x", "mirror.local=other.local"],
        ["docker.io/vllm=mirror.local/x", "mirror.local/x/special=other.local"],
        # A short Docker Hub name as TO is docker.io/...
        ["ghcr.io/llamaops=mirror", "docker.io/mirror=other.local"],
    ],
)
def test_rule_sets_that_would_rewrite_their_own_output_are_refused(rules: list[str]) -> None:
    with pytest.raises(ImageRewriteError, match="rewritten again"):
        parse_rules(rules)


def test_two_targets_for_one_source_are_refused_and_repeats_collapse() -> None:
    with pytest.raises(ImageRewriteError, match="both rewrite"):
        parse_rules(["ghcr.io/llamaops/vllm=a.local/x", "ghcr.io/llamaops/vllm=b.local/x"])
    with pytest.raises(ImageRewriteError, match="both rewrite"):
        parse_rules(["vllm/vllm-openai=a.local/x", "docker.io/vllm/vllm-openai=b.local/x"])
    assert parse_rules(["a.io/x=b.io/y", " a.io/x = b.io/y "]) == (ImageRewrite("a.io/x", "b.io/y"),)


REPOSITORY = st.lists(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True), min_size=1, max_size=4).map("/".join)
IMAGE = st.tuples(
    st.sampled_from(["", "ghcr.io/", "docker.io/", "127.0.0.1:5000/", "mirror.local/"]),
    REPOSITORY,
    st.sampled_from(["", ":1", ":v0.8.3-llamaops", f"@{DIGEST}"]),
).map("".join)


@given(image=IMAGE)
def test_the_sandbox_mirror_is_idempotent_and_keeps_the_suffix(image: str) -> None:
    once = rewrite_image(image, MIRROR)
    assert rewrite_image(once, MIRROR) == once
    assert split_reference(once)[1] == split_reference(image)[1]


def test_the_environment_list_is_comma_separated() -> None:
    assert parse_env("") == ()
    assert parse_env(" a.io/x=b.io/y , ,c.io=d.io/c ") == (
        ImageRewrite("a.io/x", "b.io/y"),
        ImageRewrite("c.io", "d.io/c"),
    )
    with pytest.raises(ImageRewriteError, match="no '='"):
        parse_env("a.io/x=b.io/y,c.io")


def run_args(*argv: str) -> Any:
    return build_parser().parse_args(["run", *argv])


def test_the_flag_is_repeatable_and_wins_over_the_environment() -> None:
    environ = {ENV: "quay.io/x=mirror.local/x"}
    args = run_args(
        "--image-rewrite=ghcr.io/llamaops/vllm=127.0.0.1:5000/llamaops/vllm-cpu",
        "--image-rewrite",
        "docker.io/vllm/vllm-openai=127.0.0.1:5000/vllm/vllm-openai-cpu",
    )
    assert rewrites_from_args(args, environ) == MIRROR
    assert rewrites_from_args(run_args(), environ) == (ImageRewrite("quay.io/x", "mirror.local/x"),)
    assert rewrites_from_args(run_args(), {}) == ()


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--image-rewrite", "ghcr.io/llamaops/vllm"], {}, "--image-rewrite: image rewrite 'ghcr.io/llamaops/vllm'"),
        ([], {ENV: "ghcr.io/llamaops/vllm:1=a.local/b"}, f"${ENV}: image rewrite"),
    ],
)
def test_run_refuses_to_start_on_a_malformed_rule(
    argv: list[str],
    environ: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with caplog.at_level(logging.ERROR):
        assert main(["run", *argv]) == 2  # before kopf starts: nothing else runs
    assert message in caplog.text


# --- the reconcile: children and status carry the rewritten image --------------------------------------------------


def body(example: str, **engine: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / example).read_text())
    document["metadata"].update(uid="0f0f0f0f-0000-0000-0000-000000000001", generation=2)
    document["spec"]["engine"].update(engine)
    return document


def workload_images(manifests: list[dict[str, Any]]) -> list[str]:
    images = []
    for manifest in manifests:
        spec = manifest["spec"]
        if manifest["kind"] == "Deployment":
            images += [c["image"] for c in spec["template"]["spec"]["containers"]]
        elif manifest["kind"] == "LeaderWorkerSet":
            group = spec["leaderWorkerTemplate"]
            for template in (group["leaderTemplate"], group["workerTemplate"]):
                images += [c["image"] for c in template["spec"]["containers"]]
    return images


def test_the_default_image_is_deployed_and_reported_rewritten() -> None:
    version = body("llama31-8b-h100.yaml")["spec"]["engine"]["vllmVersion"]
    planned = plan(body("llama31-8b-h100.yaml"), service_monitors=False, image_rewrites=MIRROR)
    expected = f"127.0.0.1:5000/llamaops/vllm-cpu:{version}-llamaops"
    assert workload_images(planned.manifests) == [expected]
    assert planned.result.effective is not None
    assert planned.result.effective.image == expected  # status.effective: what is deployed
    # The upstream image through its own rule.
    upstream = plan(body("llama31-8b-h100.yaml", patched=False), service_monitors=False, image_rewrites=MIRROR)
    assert workload_images(upstream.manifests) == [f"127.0.0.1:5000/vllm/vllm-openai-cpu:v{version}"]
    # Without rules, the knowledge base's image as it is.
    plain = plan(body("llama31-8b-h100.yaml"), service_monitors=False, image_rewrites=())
    assert workload_images(plain.manifests) == [f"ghcr.io/llamaops/vllm:{version}-llamaops"]


def test_a_multi_node_deployment_runs_the_rewritten_image_on_leader_and_workers() -> None:
    planned = plan(body("llama4-maverick-bf16-h100-multinode.yaml"), service_monitors=False, image_rewrites=MIRROR)
    images = workload_images(planned.manifests)
    assert len(images) == 2
    assert all(image.startswith("127.0.0.1:5000/llamaops/vllm-cpu:") for image in images)


def test_a_spec_image_is_rewritten_when_a_rule_matches_it_and_kept_otherwise() -> None:
    hub = body("llama31-8b-h100.yaml", image="vllm/vllm-openai:v0.32.0", patched=False)
    planned = plan(hub, service_monitors=False, image_rewrites=MIRROR)
    assert workload_images(planned.manifests) == ["127.0.0.1:5000/vllm/vllm-openai-cpu:v0.32.0"]
    own = body("llama31-8b-h100.yaml", image="registry.corp/ml/vllm:0.32.0-custom", patched=False)
    assert workload_images(plan(own, service_monitors=False, image_rewrites=MIRROR).manifests) == [
        "registry.corp/ml/vllm:0.32.0-custom"
    ]


def test_a_rollback_to_the_recorded_image_renders_it_unchanged() -> None:
    document = body("llama31-8b-h100.yaml")
    running = plan(document, service_monitors=False, image_rewrites=MIRROR).result.effective
    assert running is not None
    # status.lastKnownGood recorded the rewritten image; a rollback renders it verbatim, through the rules again.
    document["status"] = {
        "overrides": {
            "generation": 2,
            "action": "Rollback",
            "image": running.image,
            "args": list(running.args),
        }
    }
    rolled_back = plan(document, service_monitors=False, image_rewrites=MIRROR)
    assert workload_images(rolled_back.manifests) == [running.image]


def test_an_invalid_spec_reports_the_image_it_would_pull() -> None:
    document = body("llama31-8b-h100.yaml", tensorParallelSize=5)
    assert not validate(copy.deepcopy(document)).valid
    planned = plan(document, service_monitors=False, image_rewrites=MIRROR)
    assert planned.manifests == []
    assert planned.result.effective is not None
    assert planned.result.effective.image.startswith("127.0.0.1:5000/llamaops/vllm-cpu:")


def test_the_reconcile_reads_the_operators_rules_by_default() -> None:
    saved = options()
    try:
        set_options(Options(image_rewrites=MIRROR))
        planned = plan(body("llama31-8b-h100.yaml"), service_monitors=False)
        assert workload_images(planned.manifests)[0].startswith("127.0.0.1:5000/llamaops/vllm-cpu:")
    finally:
        set_options(saved)


def test_the_webhook_and_validate_see_the_spec_not_the_mirror() -> None:
    # Validation (the admission webhook, `llama-operator validate`) plans the user's spec; the rules are the
    # operator's deployment concern and never change a verdict.
    document = body("llama31-8b-h100.yaml")
    result = validate(document, load_knowledge())
    assert result.valid
    assert result.effective is not None
    assert result.effective.image.startswith("ghcr.io/llamaops/vllm:")
