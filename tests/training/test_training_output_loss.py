"""The masked-positions-only loss equals the full-logits loss it replaces, value and gradients.

Tolerance: float32 on the CPU agrees to 1e-6 relative (summation order differs: chunked rows and
a dot product instead of per-row sums); bfloat16 autocast to 2e-2 relative (both paths round the
logits to bfloat16, at different row blocks).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import ModernBertConfig, ModernBertForMaskedLM

from diffutron.training.config import LoraSettings
from diffutron.training.models import apply_lora
from diffutron.training.objective import IGNORE_INDEX, MDLMObjective
from diffutron.training.output_loss import MaskedOutputLoss, chunked_linear_cross_entropy

FLOAT32_TOLERANCE = 1e-6


def todays_loss(objective: MDLMObjective, logits, labels, masked, t) -> torch.Tensor:
    """The loss as computed before this change (full logits, per-row sums), kept as the oracle."""
    rows, columns = masked.nonzero(as_tuple=True)
    cross_entropy = F.cross_entropy(logits[rows, columns].float(), labels[rows, columns], reduction="none")
    weighted = cross_entropy * objective.weight(t)[rows].to(cross_entropy.dtype)
    labelled = (labels != IGNORE_INDEX).sum(dim=1).to(weighted.dtype)
    if objective.normalization == "token":
        return weighted.sum() / labelled.sum().clamp_min(1.0)
    per_row = torch.zeros(labels.shape[0], dtype=weighted.dtype).index_add(0, rows, weighted)
    return (per_row / labelled.clamp_min(1.0)).mean()


def close(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> bool:
    if a.numel() == 0:
        return b.numel() == 0
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-30)
    return (a - b).abs().max().item() <= tolerance * scale


@pytest.mark.parametrize(("rows", "chunk_rows"), [(37, 1), (37, 7), (37, 1000), (0, 7)])
def test_chunked_cross_entropy_equals_the_plain_one(chunk_rows, rows):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(rows, 16, generator=generator, requires_grad=True)
    weight = torch.randn(300, 16, generator=generator, requires_grad=True)
    bias = torch.randn(300, generator=generator, requires_grad=True)
    targets = torch.randint(0, 300, (rows,), generator=generator)
    coefficients = torch.rand(rows, generator=generator) * 5

    expected = (F.cross_entropy(F.linear(features, weight, bias), targets, reduction="none") * coefficients).sum()
    expected_grads = torch.autograd.grad(2.5 * expected, (features, weight, bias))
    actual = chunked_linear_cross_entropy(features, weight, bias, targets, coefficients, chunk_rows)
    actual_grads = torch.autograd.grad(2.5 * actual, (features, weight, bias))

    assert actual.dtype == torch.float32 and actual.requires_grad
    assert abs(actual.item() - expected.item()) <= FLOAT32_TOLERANCE * max(1.0, abs(expected.item()))
    for got, want in zip(actual_grads, expected_grads, strict=True):
        assert got.shape == want.shape and close(got, want, FLOAT32_TOLERANCE)


def tiny_masked_lm(vocabulary: int = 1000) -> ModernBertForMaskedLM:
    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=vocabulary,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        local_attention=8,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        cls_token_id=2,
        sep_token_id=1,
    )
    model = ModernBertForMaskedLM(config)
    with torch.no_grad():
        model.decoder.bias.normal_(0, 1.0)
    return model


def batch(vocabulary: int):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocabulary, (3, 40), generator=generator)
    labels = ids.clone()
    labels[0, 30:] = IGNORE_INDEX  # a padded row
    labels[2, :10] = IGNORE_INDEX  # a prompt
    attention_mask = torch.ones_like(ids)
    attention_mask[0, 30:] = 0
    objective = MDLMObjective()
    t = torch.tensor([0.3, 0.9, 0.6])
    noisy, masked = objective.corrupt(ids, labels, t, mask_token_id=4, generator=generator)
    return noisy, attention_mask, labels, masked, t


def losses_and_grads(model, trained, objective, chunk_rows, autocast: bool = False):
    """(today's loss, its grads, the new loss, its grads) on the same batch and weights."""
    noisy, attention_mask, labels, masked, t = batch(model.config.vocab_size if hasattr(model, "config") else 1000)
    context = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    with context:
        logits = model(input_ids=noisy, attention_mask=attention_mask).logits
        old = todays_loss(objective, logits, labels, masked, t)
    old_grads = torch.autograd.grad(old, trained)
    output_loss = MaskedOutputLoss(model, chunk_rows=chunk_rows)
    try:
        with context, output_loss.scoring(masked, labels, objective.coefficients(labels, masked, t)):
            new = model(input_ids=noisy, attention_mask=attention_mask).logits
        new_grads = torch.autograd.grad(new, trained)
    finally:
        output_loss.remove()
    return old, old_grads, new, new_grads


@pytest.mark.parametrize("normalization", ["sequence", "token"])
def test_lora_loss_and_gradients_equal_todays(normalization):
    model = apply_lora(tiny_masked_lm(), LoraSettings(r=8, alpha=16, dropout=0.0))
    trained = [p for p in model.parameters() if p.requires_grad]
    old, old_grads, new, new_grads = losses_and_grads(model, trained, MDLMObjective(normalization=normalization), 9)
    assert abs(new.item() - old.item()) <= FLOAT32_TOLERANCE * abs(old.item())
    assert len(new_grads) == len(old_grads) > 0
    for got, want in zip(new_grads, old_grads, strict=True):
        assert close(got, want, FLOAT32_TOLERANCE)


def test_full_training_gradients_equal_todays_including_the_tied_output_layer():
    model = tiny_masked_lm()
    assert model.decoder.weight is model.model.embeddings.tok_embeddings.weight  # tied
    trained = [p for p in model.parameters() if p.requires_grad]
    old, old_grads, new, new_grads = losses_and_grads(model, trained, MDLMObjective(), 16)
    assert abs(new.item() - old.item()) <= FLOAT32_TOLERANCE * abs(old.item())
    for got, want in zip(new_grads, old_grads, strict=True):
        assert close(got, want, 1e-5)  # the tied weight sums two gradients of different scales


def test_bfloat16_autocast_agrees_to_bfloat16_precision():
    model = apply_lora(tiny_masked_lm(), LoraSettings(r=8, alpha=16, dropout=0.0))
    trained = [p for p in model.parameters() if p.requires_grad]
    old, old_grads, new, new_grads = losses_and_grads(model, trained, MDLMObjective(), 9, autocast=True)
    assert abs(new.item() - old.item()) <= 2e-2 * abs(old.item())
    for got, want in zip(new_grads, old_grads, strict=True):
        assert got.dtype == want.dtype and close(got, want, 5e-2)


def test_outside_scoring_the_model_is_untouched():
    model = tiny_masked_lm().eval()
    ids = torch.randint(5, 1000, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        output_loss = MaskedOutputLoss(model)
        after = model(input_ids=ids).logits
        output_loss.remove()
    assert after.shape == (2, 12, 1000) and torch.equal(before, after)


def test_nothing_masked_gives_zero_with_a_graph():
    model = tiny_masked_lm()
    output_loss = MaskedOutputLoss(model)
    labels = torch.randint(5, 1000, (2, 12))
    masked = torch.zeros_like(labels, dtype=torch.bool)
    with output_loss.scoring(masked, labels, torch.zeros(0)):
        loss = model(input_ids=labels).logits
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert model.model.embeddings.norm.weight.grad is not None


PEAK_PROBE = """
import sys, torch
sys.path.insert(0, sys.argv[1])  # the benchmarks' exact tensor-memory counter
from measure import LiveTensorBytes
from diffutron.training.output_loss import chunked_linear_cross_entropy
torch.manual_seed(0)
rows, chunk_rows, vocabulary = 96, 32, 4000
features = torch.randn(rows, 16, requires_grad=True)
weight, targets = torch.randn(vocabulary, 16), torch.randint(0, vocabulary, (rows,))
with LiveTensorBytes() as tracker:
    chunked_linear_cross_entropy(features, weight, None, targets, torch.ones(rows), chunk_rows).backward()
print(tracker.peak)
"""


def test_only_one_chunk_of_logits_is_alive_at_a_time():
    # measured in a fresh process: the counter sees every tensor the process allocates
    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    result = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(benchmarks)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    peak = int(result.stdout.strip().splitlines()[-1])
    rows, chunk_rows, vocabulary = 96, 32, 4000
    chunk_bytes = chunk_rows * vocabulary * 4
    # one chunk's float32 logits, worked on in place, plus vectors; never two chunks, never all rows
    assert peak < 1.5 * chunk_bytes < rows * vocabulary * 4
