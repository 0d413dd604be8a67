"""checkov (pinned) on the chart rendered in several modes and on the operator's Dockerfile: exit 1 on any finding
the chart README's "checkov" table does not list with its reason, and on a listed one that no longer occurs.

    python charts/checkov.py      (from the repository root, with the project's virtualenv)

checkov is installed on first use into its own virtualenv in the cache (it pins many packages the operator must not
share); helm is the sandbox's (scripts/sandbox-build.sh kubectl).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from llamaops_sandbox.layout import Layout, default_cache

CHECKOV = "checkov==3.3.30"
ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "llama-operator"
RELEASE, NAMESPACE = "llo", "ops"
FULLNAME = f"{RELEASE}-llama-operator"
# The modes a platform team would look at: the default install; high availability with cert-manager and every
# monitoring object; an image pinned by digest without the webhook.
VALUE_SETS = {
    "default": [],
    "ha": [
        "rbac.clusterWide=true", "watch.allNamespaces=true", "peering.enabled=true", "replicas=2",
        "podDisruptionBudget.enabled=true", "webhook.certificates.mode=cert-manager",
        "metrics.serviceMonitor.enabled=true", "prometheusRule.enabled=true",
    ],
    "pinned": ["webhook.enabled=false", f"image.digest=sha256:{'0' * 64}", "image.pullPolicy=Always"],
}  # fmt: skip
# A row of the README's table: | `CKV_...` | Kind `name` | reason |
ROW = re.compile(r"^\| `(CKV2?_[A-Z0-9_]+)` \| (\w+) `([^`]+)` \| .+\|$")


def run(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    # Our own argv: the pinned tools and this script's constants.
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=check)  # noqa: S603


def checkov() -> Path:
    venv = default_cache() / "venvs" / CHECKOV.replace("==", "-")
    binary = venv / "bin" / "checkov"
    if not binary.exists():
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "--quiet", CHECKOV])
    return binary


def failures(binary: Path, framework: str, target: list[str]) -> set[tuple[str, str, str]]:
    """(check id, kind, name) of every failed check; names with the release's full name as <fullname>."""
    # BC_SKIP_MAPPING: no call to checkov's web service for guideline links (offline, and not needed).
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    done = run([str(binary), *target, "--framework", framework, "--quiet", "-o", "json"], env, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"checkov failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    found = set()
    for failed in report.get("results", {}).get("failed_checks", []):
        kind, _, rest = failed["resource"].partition(".")
        name = rest.rpartition(".")[2] if kind != "Dockerfile" else rest or "(image)"
        found.add((failed["check_id"], kind, name.replace(FULLNAME, "<fullname>")))
    return found


def listed() -> set[tuple[str, str, str]]:
    rows = (ROW.match(line) for line in (CHART / "README.md").read_text(encoding="utf-8").splitlines())
    return {(m[1], m[2], m[3]) for m in rows if m}


def main() -> int:
    binary = checkov()
    helm = Layout(default_cache()).bin / "helm"
    found: set[tuple[str, str, str]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for name, sets in VALUE_SETS.items():
            args = [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
            for item in sets:
                args += ["--set", item]
            rendered = run(args).stdout
            (Path(tmp) / f"{name}.yaml").write_text(rendered, encoding="utf-8")
        found |= failures(binary, "kubernetes", ["-d", tmp])
    found |= failures(binary, "dockerfile", ["-f", "Dockerfile"])
    expected = listed()
    unexpected, gone = sorted(found - expected), sorted(expected - found)
    for check, kind, name in unexpected:
        print(f"new finding, fix it or list it in charts/llama-operator/README.md: {check} {kind} {name}")
    for check, kind, name in gone:
        print(f"listed in the README but no longer found, remove the row: {check} {kind} {name}")
    print(f"checkov: {len(found)} findings, all listed with a reason" if not unexpected + gone else "")
    return 1 if unexpected or gone else 0


if __name__ == "__main__":
    sys.exit(main())
