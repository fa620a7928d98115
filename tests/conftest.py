from __future__ import annotations

import os

# Tests never reach the hub: fail fast instead of waiting on the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers.tiny import build_model, build_tokenizer, save_checkpoint  # noqa: E402

# Tiny models run fastest on one thread; tests that check thread-dependent numerics set their own.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"))
