"""Token guard: reject, as a client error, prompts the engine cannot survive.

vLLM checks prompt token ids against the tokenizer only, and not at all under --skip-tokenizer-init; an id at or
past the embedding's vocab_size then kills the engine (IndexError on CPU, a device-side assert on CUDA). The check
runs in the API server's input processor, before the request reaches the engine, and raises vLLM's own
validation error, which the OpenAI server answers with HTTP 400.
"""

from collections.abc import Sequence
from typing import Any

_MARK = "_llamaops_token_guard"


def check_prompt(token_ids: Sequence[int], vocab_size: int, max_model_len: int | None) -> str | None:
    """The reason a prompt must be refused, or None. `max_model_len` None skips the room-for-output check
    (prompts that produce no tokens: encoder inputs, pooling models). Pure."""
    if token_ids:
        low, high = min(token_ids), max(token_ids)
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            return (
                f"prompt token id {bad} is outside the model's vocabulary [0, {vocab_size}) "
                f"(vocab_size of the model's embedding); refused by the llama-operator token guard"
            )
    if max_model_len is not None and len(token_ids) >= max_model_len:
        return (
            f"prompt of {len(token_ids)} tokens leaves no room for output within max_model_len {max_model_len}; "
            f"refused by the llama-operator token guard"
        )
    return None


def apply() -> str | None:
    try:
        from vllm.v1.engine import input_processor
    except ImportError as exc:
        return f"vllm.v1.engine.input_processor not importable ({exc})"

    cls: Any = getattr(input_processor, "InputProcessor", None)
    original = getattr(cls, "_validate_model_input", None)
    if original is None:
        return "vllm.v1.engine.input_processor.InputProcessor._validate_model_input not present"
    if getattr(original, _MARK, False):
        return None
    from vllm.exceptions import VLLMValidationError

    def _validate_model_input(self: Any, prompt_input: Any, prompt_type: str) -> None:
        if prompt_input.get("type") != "embeds":
            model_config = self.model_config
            generates = prompt_type == "decoder" and model_config.runner_type == "generate"
            reason = check_prompt(
                prompt_input["prompt_token_ids"],
                model_config.get_vocab_size(),
                model_config.max_model_len if generates else None,
            )
            if reason is not None:
                raise VLLMValidationError(reason, parameter="prompt")
        original(self, prompt_input, prompt_type)

    setattr(_validate_model_input, _MARK, True)
    cls._validate_model_input = _validate_model_input
    return None
