"""What the benchmarks and tools/gpu_check.py run: mmBERT-base's shape with random weights, a
tokenizer at its special ids, Turkish words for synthetic documents, MDLM training steps.

Everything is built here with random weights: no download, the real model's cost.
"""

from __future__ import annotations

import contextlib
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
    vocab_size=256000,
    hidden_size=768,
    num_hidden_layers=22,
    intermediate_size=1152,
    num_attention_heads=12,
    global_attn_every_n_layers=3,
    local_attention=128,
    max_position_embeddings=8192,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=2,
    cls_token_id=2,
    sep_token_id=1,
)


def mmbert_shaped_model(quick_init: bool = False) -> ModernBertForMaskedLM:
    """Random weights of mmBERT-base's shape; `quick_init` draws plain normals (seconds instead of
    minutes on a loaded CPU) where the cost, not the initialisation scheme, is measured."""
    if quick_init:
        return random_masked_lm(MMBERT_BASE)
    torch.manual_seed(0)
    model = ModernBertForMaskedLM(ModernBertConfig(**MMBERT_BASE)).eval()
    with torch.no_grad():  # spread the logits a little, as a trained model's are
        model.decoder.bias.normal_(0, 1.0)
    return model


def random_masked_lm(shape: dict, device: str | torch.device = "cpu") -> ModernBertForMaskedLM:
    """A ModernBERT masked LM of `shape` (ModernBertConfig fields) with plain normal weights, built
    directly on `device`; the output bias spread a little, as a trained model's logits are."""
    torch.manual_seed(0)
    with torch.device(device), no_init_weights():  # buffers (rotary frequencies) are still computed
        model = ModernBertForMaskedLM(ModernBertConfig(**shape)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.02)
            else:
                parameter.fill_(1.0 if name.endswith("norm.weight") else 0.0)
        model.tie_weights()
        model.decoder.bias.normal_(0, 1.0)
    return model


def tokenizer_with_mmbert_ids() -> PreTrainedTokenizerFast:
    """Special tokens at mmBERT's ids (pad 0, eos 1, bos 2, unk 3, mask 4)."""
    vocab = {token: index for index, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def mdlm_training_steps(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask_id: int,
    optimizer: torch.optim.Optimizer | None = None,
    autocast_dtype: torch.dtype | None = None,
    mask_rate: float | None = None,
    on_backward: Callable[[], None] | None = None,
) -> dict[str, Callable[[], float]]:
    """One MDLM training step on `ids` (masked with a fixed noise seed) along each loss path.

    "before": logits at every position, then `MDLMObjective.loss` on the masked rows (the code
    before the masked-only loss); "after": `MaskedOutputLoss`, as `diffutron train` computes it.
    A step is forward, loss and backward, plus the optimizer update when `optimizer` is given.
    `mask_rate` fixes every row's time t (the linear schedule's mask rate) instead of drawing it;
    `on_backward` is called between backward and the optimizer update.
    """
    from diffutron.training.objective import MDLMObjective, noise_generator
    from diffutron.training.output_loss import MaskedOutputLoss

    objective = MDLMObjective()
    noise = noise_generator(0, 0, ids.device)
    t = objective.sample_times(ids.shape[0], ids.device, noise)
    if mask_rate is not None:
        t = torch.full_like(t, mask_rate)
    noisy, masked = objective.corrupt(ids, ids, t, mask_id, noise)
    attention_mask = torch.ones_like(ids)
    output_loss = MaskedOutputLoss(model)

    def autocast() -> contextlib.AbstractContextManager:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(ids.device.type, dtype=autocast_dtype)

    def finish(loss: torch.Tensor) -> float:
        loss.backward()
        if on_backward is not None:
            on_backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)
        return loss.item()

    def before() -> float:
        with autocast():
            logits = model(input_ids=noisy, attention_mask=attention_mask).logits
            loss = objective.loss(logits, ids, masked, t)
        del logits
        return finish(loss)

    def after() -> float:
        with autocast(), output_loss.scoring(masked, ids, objective.coefficients(ids, masked, t)):
            loss = model(input_ids=noisy, attention_mask=attention_mask).logits
        return finish(loss)

    return {"before": before, "after": after, "masked": lambda: float(masked.sum())}
