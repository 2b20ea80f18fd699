"""A tiny randomly initialised Llama for offline tests (a few hundred K parameters, no download).

It shares the real tokenizer's vocabulary so prompts, tries and titles tokenize exactly as with SmolLM2,
while a forward pass costs microseconds.
"""

from __future__ import annotations


def tiny_llama(
    vocab_size: int = 49152,
    hidden: int = 8,
    layers: int = 2,
    heads: int = 2,
    kv_heads: int = 1,
    max_positions: int = 2048,
    eos_token_id: int = 2,
    pad_token_id: int = 2,
    init_std: float = 0.2,
    seed: int = 0,
):
    """A ``LlamaForCausalLM`` in eval mode, float32, seeded (same seed -> same weights).

    The defaults match SmolLM2's tokenizer (vocabulary 49,152, eos = pad = 2) and give ~394 K parameters,
    almost all in the tied embedding. Grouped-query attention (``kv_heads < heads``) is on by default so
    cache code paths see the same head layout as real Llama models.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        initializer_range=init_std,
    )
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()
