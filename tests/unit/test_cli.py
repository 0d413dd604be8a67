"""The console script: --version, argument parsing for `run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llama_operator import __version__
from llama_operator.cli import SUBCOMMANDS, build_parser, main
from llama_operator.cli.run import kopf_run_kwargs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama4-scout.yaml"


def test_version_flag_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"llama-operator {__version__}"
    assert __version__ != "0.0.0+unknown", "the package is not installed (pip install -e .)"


def test_console_script_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llama_operator", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("llama-operator ")


def test_each_command_parses_alone_as_in_the_full_parser(capsys: pytest.CaptureFixture[str]) -> None:
    """`llama-operator validate ...` builds the validate parser alone: same help, same errors."""
    for argv in (["validate", "--help"], ["validate"], ["validate", "x", "--bogus"], ["crd", "--help"]):
        outputs = []
        for commands in (SUBCOMMANDS, argv[:1]):
            with pytest.raises(SystemExit) as exit_info:
                build_parser(commands).parse_args(argv)
            outputs.append((exit_info.value.code, capsys.readouterr()))
        assert outputs[0] == outputs[1], argv


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_run_defaults_to_all_namespaces_standalone() -> None:
    kwargs = kopf_run_kwargs(build_parser().parse_args(["run"]))
    assert kwargs == {
        "clusterwide": True,
        "namespaces": [],
        "liveness_endpoint": "http://0.0.0.0:8080/healthz",
        "standalone": True,
    }


def test_run_with_namespaces_and_peering() -> None:
    args = build_parser().parse_args(["run", "-n", "serving", "-n", "team-*", "--peering", "llama", "--liveness", ""])
    assert kopf_run_kwargs(args) == {
        "clusterwide": False,
        "namespaces": ["serving", "team-*"],
        "liveness_endpoint": None,
        "peering_name": "llama",
    }


def test_namespace_and_all_namespaces_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "-n", "a", "-A"])


def test_validate_imports_no_cluster_machinery() -> None:
    """Start-up counts: `llama-operator validate` loads neither kopf, the Kubernetes client, the webhook's
    cryptography nor the operator's handlers."""
    code = (
        "import sys\nfrom llama_operator.cli import main\n"
        f"status = main(['validate', {str(EXAMPLE)!r}])\n"
        "heavy = sorted(name for name in sys.modules if name.split('.')[0] in ('kopf', 'kubernetes', 'cryptography')"
        " or name.startswith(('llama_operator.handlers', 'llama_operator.webhook', 'llama_operator.api.crd')))\n"
        "print(status, heavy, file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert run.stderr.strip().splitlines()[-1] == "0 []", run.stderr
