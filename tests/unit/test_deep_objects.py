"""Objects nested deep or grown large (issue 12's bad input): bounded messages, a finding for too deep, and an
operator process that can read whatever the apiserver stores (Go's JSON decoder stops at 10,000 levels)."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from llama_operator.cli.run import OBJECT_RECURSION_LIMIT
from llama_operator.planning import validate
from llama_operator.planning.depth import MAX_DEPTH, too_deep
from llama_operator.webhook import decide

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def nested(depth: int, value: Any = 1) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def test_a_deep_inline_config_value_is_an_invalid_model_config_not_an_internal_error() -> None:
    # Was: config.json key 'head_dim' must be an integer, got {value!r}: RecursionError -> internal_error.
    document = example("custom-model-inline.yaml")
    document["spec"]["model"]["config"]["inline"]["head_dim"] = nested(1500)
    result = validate(document)
    assert [f.code for f in result.errors] == ["nesting_too_deep"]
    shallow = example("custom-model-inline.yaml")
    shallow["spec"]["model"]["config"]["inline"]["head_dim"] = nested(20)
    [finding] = validate(shallow).errors
    assert finding.code == "invalid_model_config"
    assert len(finding.message) < 200


def test_a_huge_inline_config_value_is_quoted_briefly() -> None:
    # Was: the whole 2.4 MB value in the finding, past the status's 4,096 characters: every status write refused.
    document = example("custom-model-inline.yaml")
    document["spec"]["model"]["config"]["inline"]["vocab_size"] = "x" * 2_400_000
    [finding] = validate(document).errors
    assert finding.code == "invalid_model_config"
    assert len(finding.message) < 200


def test_a_deep_or_odd_architecture_or_dtype_is_refused_by_name() -> None:
    for key in ("architecture", "torch_dtype"):
        document = example("custom-model-inline.yaml")
        inline = document["spec"]["model"]["config"]["inline"]
        inline.pop("architectures", None)
        inline[key] = nested(3)  # str() of it was the architecture name; of 1,500 levels, a RecursionError
        [finding] = validate(document).errors
        assert (finding.code, finding.field) == ("invalid_model_config", f"spec.model.config.inline.{key}")


def test_nesting_deeper_than_the_limit_is_refused_with_its_place() -> None:
    document = example("llama4-scout.yaml")
    assert too_deep(document) is None
    document["spec"]["model"]["config"] = {"inline": {"text_config": nested(MAX_DEPTH)}}
    [finding] = validate(document).findings
    assert finding.code == "nesting_too_deep"
    assert finding.field.startswith("spec.model.config.inline.text_config")
    fine = copy.deepcopy(document)
    fine["spec"]["model"]["config"]["inline"]["text_config"] = nested(MAX_DEPTH - 6)
    assert "nesting_too_deep" not in [f.code for f in validate(fine).findings]


def test_ten_thousand_levels_are_measured_without_recursion() -> None:
    assert too_deep(nested(10_000)) == (0,) * (MAX_DEPTH + 1)


def test_a_deep_name_does_not_break_the_refusal_message() -> None:
    # Was: RecursionError formatting metadata.name into the refusal: decide() raised.
    document = example("invalid-llama4-tp5.yaml")
    document["metadata"]["name"] = nested(1500)
    decision = decide("CREATE", document)
    assert not decision.allowed
    assert decision.message.startswith("LlamaDeployment refused (1 error finding")
    document["metadata"]["name"] = "x" * 1_000_000
    assert len(decide("CREATE", document).message) < 5_000


def test_the_operator_process_reads_and_copies_ten_thousand_levels_on_its_stacks() -> None:
    # What kopf does with a listed object, at the limit `llama-operator run` sets: parse it (the event loop's
    # thread), copy it and dump it (also in a worker thread, where sync handlers run). A crash would kill the child.
    script = textwrap.dedent(
        f"""
        import copy, json, sys, threading
        sys.setrecursionlimit({OBJECT_RECURSION_LIMIT})
        text = '{{"a":' * 10_000 + '1' + '}}' * 10_000
        def work():
            value = json.loads(text)
            json.dumps(copy.deepcopy(value))
        work()
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr[-2000:]
