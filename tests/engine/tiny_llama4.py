"""A tiny random-weight Llama-4 text model, written with transformers into a directory vLLM can serve."""

from pathlib import Path

# Small enough to load and run in seconds on 2 cores, shaped so vLLM's CPU path accepts it: head_dim 64 (CPU
# attention needs 64+) and attention_chunk_size a multiple of the CPU block size 128, below max_model_len so
# chunked local attention really runs.
VOCAB_SIZE = 1000
ATTENTION_CHUNK_SIZE = 128
MAX_MODEL_LEN = 512
# float32, not bfloat16: for bfloat16 vLLM's CPU attention picks its AMX kernel, which died with SIGILL on the
# development VM (it advertises AMX, the kernel is not allowed to use it); float32 takes the portable AVX path.
DTYPE = "float32"

# vLLM pads the embedding to a multiple of 64 rows (1024 here): ids in [VOCAB_SIZE, 1024) read padding without
# crashing, so the id that kills an unguarded engine is taken well past the padded table.
FATAL_TOKEN_ID = 5 * VOCAB_SIZE


def write_tiny_llama4(path: Path) -> Path:
    import torch
    from transformers import Llama4ForCausalLM, Llama4TextConfig

    torch.manual_seed(0)
    config = Llama4TextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=512,
        intermediate_size_mlp=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        num_local_experts=2,
        num_experts_per_tok=1,
        interleave_moe_layer_step=1,
        max_position_embeddings=4096,
        attention_chunk_size=ATTENTION_CHUNK_SIZE,
        no_rope_layers=[1, 0],
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        dtype=DTYPE,
    )
    config.architectures = ["Llama4ForCausalLM"]
    Llama4ForCausalLM(config).save_pretrained(path)
    return path
