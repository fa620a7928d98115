"""`/v1/embeddings` through the official client, and `/tokenize`, `/detokenize` (vLLM's, over HTTP)."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest

from diffutron import Diffutron
from diffutron.model.chat import ANSWER_START, render_chat
from helpers.server import MODEL

TEXTS = ["Kitap okumak insanın ufkunu genişletir.", "Çay", "Bugün hava çok güzel, parka gidelim."]
HIDDEN, CONTEXT, VOCABULARY = 192, 256, 8000  # the embedded model's


@pytest.fixture(scope="module")
def embedded() -> Diffutron:
    return Diffutron.from_pretrained(device="cpu")


def vectors(response) -> np.ndarray:
    return np.array([item.embedding for item in sorted(response.data, key=lambda item: item.index)], dtype=np.float32)


# --- /v1/embeddings --------------------------------------------------------------------------------


def test_embeddings_of_a_batch_equal_one_by_one_and_the_librarys(openai_client, embedded):
    batch = openai_client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert (batch.object, batch.model, len(batch.data)) == ("list", MODEL, 3)
    assert [item.index for item in batch.data] == [0, 1, 2] and batch.data[0].object == "embedding"
    together = vectors(batch)
    assert together.shape == (3, HIDDEN)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1, atol=1e-6)
    with ThreadPoolExecutor(3) as pool:  # sent together: the worker embeds them in one batch
        alone = [
            vectors(response)[0]
            for response in pool.map(
                lambda text: openai_client.embeddings.create(model=MODEL, input=text, encoding_format="float"), TEXTS
            )
        ]
    np.testing.assert_allclose(together, np.stack(alone), atol=1e-5)
    np.testing.assert_allclose(together, embedded.embed(TEXTS).numpy(), atol=1e-5)
    tokens = sum(len(embedded.encode(text)) for text in TEXTS)
    assert (batch.usage.prompt_tokens, batch.usage.total_tokens) == (tokens, tokens)


def test_base64_embeddings_are_the_float32_bytes_of_the_floats(openai_client):
    floats = vectors(openai_client.embeddings.create(model=MODEL, input=TEXTS[:2], encoding_format="float"))
    raw = openai_client.embeddings.create(model=MODEL, input=TEXTS[:2], encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in raw.data])
    np.testing.assert_allclose(decoded, floats, atol=1e-6)
    # without encoding_format the client asks for base64 and decodes it itself
    np.testing.assert_allclose(
        vectors(openai_client.embeddings.create(model=MODEL, input=TEXTS[:2])), floats, atol=1e-6
    )


def test_token_ids_embed_as_their_text(openai_client, embedded):
    ids = [embedded.encode(text) for text in TEXTS[:2]]
    text = vectors(openai_client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float"))
    one = vectors(openai_client.embeddings.create(model=MODEL, input=ids[0], encoding_format="float"))
    several = vectors(openai_client.embeddings.create(model=MODEL, input=ids, encoding_format="float"))
    np.testing.assert_allclose(one, text, atol=1e-6)
    np.testing.assert_allclose(several[:1], text, atol=1e-5)


BAD_EMBEDDINGS = {
    "over the context": (
        {"input": [[5] * (CONTEXT + 1)]},
        400,
        "input",
        "context_length_exceeded",
        f"input 0 has {CONTEXT + 1} tokens, more than the model's context of {CONTEXT}",
    ),
    "a token id outside the vocabulary": (
        {"input": [5, VOCABULARY]},
        400,
        "input",
        "invalid_value",
        f"input 0 holds a token id outside the vocabulary of {VOCABULARY}",
    ),
    "a negative token id": ({"input": [[5], [-1]]}, 400, "input", "invalid_value", "input 1 holds a token id"),
    "an empty list": ({"input": []}, 400, "input", "invalid_value", "input is empty"),
    "an empty text": ({"input": ["Çay", ""]}, 400, "input", "invalid_value", "input 1 is empty"),
    "texts and ids mixed": ({"input": ["Çay", 5]}, 400, "input", "invalid_value", "input"),
    "other dimensions": (
        {"input": "Çay", "dimensions": 64},
        400,
        "dimensions",
        "invalid_value",
        f"this model's embeddings have {HIDDEN} dimensions, not 64",
    ),
    "an unknown format": ({"input": "Çay", "encoding_format": "int8"}, 400, "encoding_format", "invalid_value", ""),
    "an unknown model": ({"input": "Çay", "model": "text-embedding-3-small"}, 404, "model", "model_not_found", ""),
    "too many tokens": (
        {"input": [[5] * CONTEXT] * 33},
        400,
        "input",
        "request_too_large",
        f"the inputs hold {33 * CONTEXT} tokens, more than this server's limit of 8192",
    ),
}


@pytest.mark.parametrize("body, status, param, code, fragment", BAD_EMBEDDINGS.values(), ids=BAD_EMBEDDINGS.keys())
def test_bad_embedding_requests(server, body, status, param, code, fragment):
    with server.client() as http:
        response = http.post("/v1/embeddings", json={"model": MODEL, **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert fragment in error["message"] and "\n" not in error["message"]


def test_the_client_sees_an_unknown_model_as_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.embeddings.create(model="text-embedding-3-small", input="Çay")
    assert raised.value.code == "model_not_found"


# --- /tokenize, /detokenize ------------------------------------------------------------------------


def tokenize(server, **body) -> dict:
    with server.client() as http:
        response = http.post("/tokenize", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_tokenize_a_prompt_and_back(server, embedded):
    text = "Kitap okumak insanın ufkunu genişletir."
    ids = embedded.encode(text)
    assert tokenize(server, prompt=text) == {"count": len(ids), "max_model_len": CONTEXT, "tokens": ids}
    assert tokenize(server, model=MODEL, prompt=text, return_token_strs=True)["token_strs"] == (
        embedded.tokenizer.convert_ids_to_tokens(ids)
    )
    with_special = embedded.tokenizer(text, add_special_tokens=True)["input_ids"]
    assert tokenize(server, prompt=text, add_special_tokens=True)["tokens"] == with_special
    with server.client() as http:
        response = http.post("/detokenize", json={"model": MODEL, "tokens": ids})
    assert response.status_code == 200 and response.json() == {"prompt": text}


def test_tokenize_messages_as_chat_renders_them(server, embedded):
    messages = [{"role": "system", "content": "Kısa cevap ver."}, {"role": "user", "content": "Çay nedir?"}]
    rendered = render_chat(messages)
    chat = tokenize(server, messages=messages)
    assert chat["tokens"] == embedded.encode(rendered) and chat["count"] == len(chat["tokens"])
    bare = tokenize(server, messages=messages, add_generation_prompt=False)
    assert bare["tokens"] == embedded.encode(rendered.removesuffix(ANSWER_START))
    with server.client() as http:
        assert http.post("/detokenize", json={"tokens": chat["tokens"]}).json() == {"prompt": rendered}


BAD_TOKENIZE = {
    "neither prompt nor messages": ("/tokenize", {}, 400, "prompt", "give either prompt"),
    "both prompt and messages": (
        "/tokenize",
        {"prompt": "a", "messages": [{"role": "user", "content": "a"}]},
        400,
        "prompt",
        "give either prompt",
    ),
    "a conversation out of turn": (
        "/tokenize",
        {"messages": [{"role": "assistant", "content": "a"}]},
        400,
        "messages",
        "message 0 has role 'assistant' but 'user' was expected",
    ),
    "an unknown model": ("/tokenize", {"model": "gpt-4o", "prompt": "a"}, 404, "model", "model 'gpt-4o' is not served"),
    "a token id outside the vocabulary": (
        "/detokenize",
        {"tokens": [5, VOCABULARY]},
        400,
        "tokens",
        f"tokens[1] must be a token id from 0 to {VOCABULARY - 1}, got {VOCABULARY}",
    ),
    "a negative token id": ("/detokenize", {"tokens": [-3]}, 400, "tokens", "tokens[0] must be a token id"),
    "text for token ids": ("/detokenize", {"tokens": "Çay"}, 400, "tokens", ""),
}


@pytest.mark.parametrize("path, body, status, param, fragment", BAD_TOKENIZE.values(), ids=BAD_TOKENIZE.keys())
def test_bad_tokenize_requests(server, path, body, status, param, fragment):
    with server.client() as http:
        response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and fragment in error["message"]


def test_tokenize_needs_the_api_key(server):
    with server.client() as http:
        for path, body in (("/tokenize", {"prompt": "a"}), ("/detokenize", {"tokens": [5]})):
            assert http.post(path, json=body, headers={"Authorization": ""}).status_code == 401


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/embeddings", f'"model": "{MODEL}", "input": "Kitap \\ud800"', "input"),
        ("/v1/embeddings", f'"model": "{MODEL}", "input": ["Kitap", "\\udfff"]', "input.1"),
        ("/tokenize", '"prompt": "\\ud800"', "prompt"),
        ("/tokenize", '"messages": [{"role": "user", "content": "\\ud800"}]', "messages.0.content"),
    ],
)
def test_text_that_is_not_valid_unicode_is_a_400_naming_the_field(server, path, fields, param):
    with server.client() as http:
        response = http.post(path, content=f"{{{fields}}}".encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, "invalid_value")
    assert error["message"].startswith(f"{param} is not valid Unicode: character ")
