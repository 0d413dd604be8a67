"""The registry of patches, keyed by vLLM version ranges, and the pure choice of which ones apply."""

from dataclasses import dataclass

from llamaops_vllm.facts import PATCHED_VERSIONS


@dataclass(frozen=True)
class Patch:
    name: str
    # PEP 440 specifier set, matched against the installed vLLM's version (local suffixes such as +cpu ignored).
    vllm_versions: str
    # "module:function" applying the patch; imported only when the patch is chosen, so unmatched patches never
    # import their targets. The function returns None when applied or a reason string when it had to skip.
    apply: str
    why: str


# A patch that removes a known issue takes its range from the operator's registry (facts.json: the issue's
# patched_versions), so the image and the operator's findings agree on where the patch is.
PATCHES: tuple[Patch, ...] = (
    Patch(
        name="chunked_local_attention_block_table",
        vllm_versions=PATCHED_VERSIONS["chunked_local_attention_block_table"],
        apply="llamaops_vllm.patches.local_attention_083:apply",
        why="vllm#16274/#16157: local-attention virtual batches read past the block table (fixed in 0.8.4, #16209)",
    ),
    Patch(
        name="token_guard",
        vllm_versions=PATCHED_VERSIONS["token_guard"],
        apply="llamaops_vllm.patches.token_guard:apply",
        why="out-of-vocabulary prompt token ids kill the engine; reject them with HTTP 400",
    ),
    Patch(
        name="crash_report",
        # The plugin's own: no known issue, so not in the operator's registry.
        vllm_versions=">=0.8.3",
        apply="llamaops_vllm.patches.crash_report:apply",
        why="write one classified line to the termination-message file on a fatal error",
    ),
)


@dataclass(frozen=True)
class Choice:
    chosen: tuple[Patch, ...]
    # (patch name, reason) for every patch left out.
    skipped: tuple[tuple[str, str], ...]


def version_matches(spec: str, version: str) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        public = Version(version).public
    except InvalidVersion:
        return False  # an unreadable version matches no range: nothing is patched blind
    return SpecifierSet(spec).contains(public, prereleases=True)


def choose(patches: tuple[Patch, ...], vllm_version: str, disabled: frozenset[str]) -> Choice:
    chosen: list[Patch] = []
    skipped: list[tuple[str, str]] = []
    for patch in patches:
        if patch.name in disabled:
            skipped.append((patch.name, "disabled by LLAMAOPS_DISABLED_PATCHES"))
        elif not version_matches(patch.vllm_versions, vllm_version):
            skipped.append((patch.name, f"vllm {vllm_version} outside {patch.vllm_versions}"))
        else:
            chosen.append(patch)
    return Choice(tuple(chosen), tuple(skipped))


def summary_line(applied: list[str], skipped: list[tuple[str, str]], vllm_version: str, plugin_version: str) -> str:
    done = ",".join(applied) or "none"
    left = "; ".join(f"{name} ({reason})" for name, reason in skipped) or "none"
    return f"llamaops plugin {plugin_version} on vllm {vllm_version}: applied {done}; skipped {left}"
