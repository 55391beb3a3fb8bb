"""Tiny random causal LMs of each architecture the RLHF template supports, saved to disk.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here on a few sentences,
with ``<|im_end|>`` as its EOS and pad (pad = eos, as SmolLM2, Llama and GPT-2 ship) and,
where asked, a ChatML chat template like SmolLM2's. The model is a random-init
``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``GPT2LMHeadModel`` or SmolLM2's shape (a Llama
with tied embeddings), a few tens of thousands of parameters, written with
``save_pretrained`` (safetensors).
"""

from __future__ import annotations

from pathlib import Path

import torch

EOS = "<|im_end|>"
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ARCHITECTURES = ("llama", "qwen2", "gpt2", "smollm")
_TEXT = [
    "What is 3 + 4? Answer with the number only. 7",
    "Name a colour: red, green, blue, yellow. The sky is blue.",
    "user assistant system hello world yes no maybe 0 1 2 3 4 5 6 7 8 9 + - = ?",
    "Write a short poem about the sea. Waves come and go, the sea is wide.",
]


def tokenizer(chat_template: bool = True):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_TEXT * 4, vocab_size=320, min_frequency=1, special_tokens=[EOS, "<|im_start|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, pad_token=EOS)
    if chat_template:
        tok.chat_template = CHATML
    return tok


def model_config(arch: str, vocab: int, eos: int):
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    small = dict(vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    if arch == "gpt2":
        return GPT2Config(n_positions=256, n_embd=32, n_layer=2, n_head=2, **small)
    common = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        **small,
    )
    if arch == "qwen2":
        return Qwen2Config(**common)
    return LlamaConfig(tie_word_embeddings=arch == "smollm", **common)  # SmolLM2: tied embeddings


def save_tiny_lm(folder: Path, arch: str = "llama", seed: int = 0, chat_template: bool = True) -> Path:
    """A random-init causal LM of ``arch`` and its tokenizer in ``folder``; returns ``folder``."""
    from transformers import AutoModelForCausalLM

    tok = tokenizer(chat_template)
    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(model_config(arch, len(tok), tok.eos_token_id))
    folder.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
