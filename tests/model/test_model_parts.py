"""The output layer on a few selected rows gives bit-identical logits to a full-canvas pass.

This is what keeps the fast sampler exact while it computes logits only at the positions it may
commit: CPU BLAS rounds a GEMM of a few rows differently, so `MaskedLMParts.logits` pads the rows,
and the sampler runs the full pass on canvases smaller than MIN_GEMM_ROWS positions.
"""

from __future__ import annotations

import pytest
import torch

from diffutron.model.parts import MIN_GEMM_ROWS, MaskedLMParts

WIDTH = 40


@pytest.fixture()
def threads(request):
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@torch.no_grad()
def test_selected_rows_equal_the_full_pass_bitwise(tiny_model, threads):
    parts = MaskedLMParts(tiny_model)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, tiny_model.config.vocab_size, (1, WIDTH), generator=generator)
    for width in range(1, WIDTH + 1):
        canvas = ids[:, :width]
        full = tiny_model(input_ids=canvas).logits  # the pass the reference sampler makes
        hidden = parts.hidden(canvas, None)
        assert torch.equal(parts.logits(hidden, pad=False), full)
        if width < MIN_GEMM_ROWS:
            continue  # the sampler computes such canvases in full
        # every row count on the widest canvas, the small counts and all rows on the others
        counts = range(1, width + 1) if width == WIDTH else sorted({1, 2, 3, 5, 6, 7, width})
        for count in counts:
            rows = torch.randperm(width, generator=generator)[:count]
            assert torch.equal(parts.logits(hidden[0, rows]), full[0, rows]), (width, count)
