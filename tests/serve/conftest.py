"""The shared server of the serve tests (the embedded model, with an API key)."""

from __future__ import annotations

import openai
import pytest

from helpers.server import API_KEY, ServerProcess


@pytest.fixture(scope="session")
def server():
    """The shared server: an API key, batches of up to 16 filled for up to 300 ms."""
    process = ServerProcess("--api-key", API_KEY, "--batch-wait-ms", "300", "--request-timeout", "60")
    yield process
    assert process.terminate() == 0


@pytest.fixture(scope="session")
def openai_client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
