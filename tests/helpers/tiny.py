"""Tiny tokenizers and ModernBERT masked LMs built inside the tests (no hub access)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import ModernBertConfig, ModernBertForMaskedLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]

TURKISH_TEXT = """\
[Question]
Türkiye'nin başkenti neresidir?
[/Question]

[Answer]
Türkiye'nin başkenti Ankara'dır.
[/Answer]

[SYS]
Sen yardımsever bir asistansın.
[/SYS]

Kitap okumak insanın ufkunu genişletir. Bugün hava çok güzel, parka gidelim.
Öğrenciler sınavdan önce düzenli çalışmalı. İstanbul Boğazı iki kıtayı birbirine bağlar.
Çay, Türk kültüründe misafirperverliğin simgesidir. Kelimenin anlamı sözlükte yazar.
Güneş doğudan doğar, batıdan batar. Çocuklar bahçede top oynuyor.
"""


def build_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE over a little Turkish text, with the special tokens mmBERT has."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TURKISH_TEXT.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def build_model(
    tokenizer: PreTrainedTokenizerFast,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 3,
    local_attention: int = 8,
    max_positions: int = 512,
) -> ModernBertForMaskedLM:
    """A randomly initialised ModernBERT with local and global layers, in eval mode."""
    torch.manual_seed(seed)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3 // 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        local_attention=local_attention,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        cls_token_id=tokenizer.bos_token_id,
        sep_token_id=tokenizer.eos_token_id,
    )
    model = ModernBertForMaskedLM(config).eval()
    # larger logits than the default init, so that confidences spread out like a trained model's
    with torch.no_grad():
        model.decoder.bias.normal_(0, 1.0)
    return model


def context_sensitive_model(tokenizer: PreTrainedTokenizerFast, seed: int = 3, local_attention: int = 8):
    """A random ModernBERT whose predictions depend strongly on the other tokens.

    At the default initialisation the residual stream carries the token's own embedding and
    attention barely moves it, so a stale cache or a wrong guidance row could not be told from
    a right one. Sharper, louder attention and larger logits make every position's output depend
    on its context.
    """
    model = build_model(tokenizer, seed=seed, local_attention=local_attention)
    with torch.no_grad():
        model.model.embeddings.tok_embeddings.weight.mul_(30)  # the tied output layer: larger logits
        model.decoder.bias.zero_()
        for layer in model.model.layers:
            layer.attn.Wqkv.weight.mul_(3)
            layer.attn.Wo.weight.mul_(100)
    return model


def save_checkpoint(directory: Path, seed: int = 0, **model_options: int) -> Path:
    """A complete local checkpoint (safetensors + tokenizer) in `directory`."""
    tokenizer = build_tokenizer()
    build_model(tokenizer, seed=seed, **model_options).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
