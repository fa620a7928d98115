from __future__ import annotations

import pytest
import torch

from helpers.tiny import build_model, build_tokenizer, save_checkpoint

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"))
