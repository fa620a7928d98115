from __future__ import annotations

import os

# Tests never reach the hub: fail fast instead of waiting on the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# The suite runs on the CPU, where its exact numerics hold, even on a machine with a GPU: GPUs are
# hidden (also from the processes tests start) unless DIFFUTRON_TEST_DEVICE names another device.
TEST_DEVICE = os.environ.get("DIFFUTRON_TEST_DEVICE", "cpu")
if TEST_DEVICE == "cpu":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["HIP_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

from helpers.tiny import build_model, build_tokenizer, save_checkpoint  # noqa: E402

# Tiny models run fastest on one thread; tests that check thread-dependent numerics set their own.
torch.set_num_threads(1)

# Property tests check values, not speed: on a shared, busy machine an example may take longer than
# Hypothesis' default 200 ms deadline, which would fail a correct test.
settings.register_profile("diffutron", deadline=None)
settings.load_profile("diffutron")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"))


@pytest.fixture(scope="session")
def test_device() -> torch.device:
    """The device DIFFUTRON_TEST_DEVICE asks for (default cpu), for tests that can run anywhere."""
    return torch.device(TEST_DEVICE)
