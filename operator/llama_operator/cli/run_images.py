"""The private-registry flag of `llama-operator run`: `--image-rewrite FROM=TO` (render.images)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from llama_operator.render.images import ENV, ImageRewrite, ImageRewriteError, parse_env, parse_rules


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "private registry",
        "Rewrite the images the operator renders (the default vLLM images and spec.engine.image) so that they are "
        "pulled from a mirror: FROM=TO replaces the repository prefix FROM, on a path-segment boundary, with TO and "
        "keeps the tag or digest; the longest matching FROM wins; images no rule matches stay as they are. "
        "status.effective.image shows the rewritten image.",
    )
    group.add_argument(
        "--image-rewrite",
        action="append",
        default=[],
        dest="image_rewrites",
        metavar="FROM=TO",
        help=f"e.g. ghcr.io/llamaops/vllm=127.0.0.1:5000/llamaops/vllm-cpu (repeatable); without the flag, "
        f"${ENV} (comma-separated FROM=TO rules)",
    )


def rewrites_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[ImageRewrite, ...]:
    """The rules: the flags when given, else the environment variable. Raises ImageRewriteError (a ValueError
    naming where the rules came from and the rule) on a malformed rule or an inconsistent set."""
    try:
        if args.image_rewrites:
            return parse_rules(args.image_rewrites)
        return parse_env(environ.get(ENV, ""))
    except ImageRewriteError as error:
        where = "--image-rewrite" if args.image_rewrites else f"${ENV}"
        raise ImageRewriteError(f"{where}: {error}") from error
