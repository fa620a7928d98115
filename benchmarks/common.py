"""Shapes, models and timing shared by the benchmarks (run them as `python benchmarks/NAME.py`).

Everything is built here with random weights: no download, the real model's cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tokenizers import Tokenizer, models
from transformers import ModernBertConfig, ModernBertForMaskedLM, PreTrainedTokenizerFast
from transformers.initialization import no_init_weights

# Turkish words for synthetic documents (the embedded model's tokenizer knows them)
TURKISH_WORDS = (
    "kitap okumak insanın ufkunu genişletir bugün hava çok güzel parka gidelim öğrenciler sınavdan önce "
    "düzenli çalışmalı İstanbul Boğazı iki kıtayı birbirine bağlar çay Türk kültüründe misafirperverliğin "
    "simgesidir kelimenin anlamı sözlükte yazar güneş doğudan doğar batıdan batar çocuklar bahçede top oynuyor"
).split()

MMBERT_BASE = dict(
    vocab_size=256000, hidden_size=768, num_hidden_layers=22, intermediate_size=1152,
    num_attention_heads=12, global_attn_every_n_layers=3, local_attention=128,
    max_position_embeddings=8192, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    cls_token_id=2, sep_token_id=1,
)


def mmbert_shaped_model(quick_init: bool = False) -> ModernBertForMaskedLM:
    """Random weights of mmBERT-base's shape; `quick_init` draws plain normals (seconds instead of
    minutes on a loaded CPU) where the cost, not the initialisation scheme, is measured."""
    torch.manual_seed(0)
    if quick_init:
        with no_init_weights():  # buffers (rotary frequencies) are still computed
            model = ModernBertForMaskedLM(ModernBertConfig(**MMBERT_BASE)).eval()
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.dim() > 1:
                    parameter.normal_(0, 0.02)
                else:
                    parameter.fill_(1.0 if name.endswith("norm.weight") else 0.0)
        model.tie_weights()
    else:
        model = ModernBertForMaskedLM(ModernBertConfig(**MMBERT_BASE)).eval()
    with torch.no_grad():  # spread the logits a little, as a trained model's are
        model.decoder.bias.normal_(0, 1.0)
    return model


def tokenizer_with_mmbert_ids() -> PreTrainedTokenizerFast:
    """Special tokens at mmBERT's ids (pad 0, eos 1, bos 2, unk 3, mask 4)."""
    vocab = {token: index for index, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
        pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>", mask_token="<mask>",
    )


def best_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of `repeats` timed runs after one warm-up: the least disturbed by a noisy machine."""
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
