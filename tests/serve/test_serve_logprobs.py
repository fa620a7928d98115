"""logprobs, echo and suffix through the official `openai` client against the shared server process (the
embedded model), pinned against the library's own answers and log-probabilities."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from helpers.server import MODEL

QUESTION = "Kitap okumak neden önemlidir?"
PROMPT = "Kitap okumak"
MIDDLE = ("Türk kahvesi", " kültürümüzün bir parçasıdır.")  # a prompt and the suffix after its middle
EOS_BIAS = 14  # a logit bias on EOS that ends the greedy middle of MIDDLE after one token


@pytest.fixture(scope="module")
def lm():
    """The same embedded model in this process: the server must score what the library scores."""
    return Diffutron.from_pretrained(None, device="cpu")


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_chat_logprobs_of_a_greedy_answer_are_each_their_rows_maximum(openai_client, lm):
    response = openai_client.chat.completions.create(
        model=MODEL, messages=user(QUESTION), max_tokens=16, temperature=0, logprobs=True, top_logprobs=5
    )
    [choice] = response.choices
    content = choice.logprobs.content
    [scored] = lm.generate([QUESTION], GenerationConfig(max_new_tokens=16, temperature=0), logprobs=5)
    assert choice.message.content == scored.text and content
    for token in content:
        assert len(token.top_logprobs) == 5
        assert token.top_logprobs[0].token == token.token
        assert token.logprob == token.top_logprobs[0].logprob == max(top.logprob for top in token.top_logprobs)
        assert token.bytes == list(token.token.encode("utf-8")) and token.logprob < 0
    assert [token.token for token in content] == [token.text for token in scored.tokens]
    assert [token.logprob for token in content] == pytest.approx([token.logprob for token in scored.tokens], abs=1e-5)
    assert "".join(token.token for token in content).strip() == choice.message.content


def test_chat_logprobs_with_no_alternatives_and_without_logprobs(openai_client):
    request = dict(model=MODEL, messages=user(QUESTION), max_tokens=8, temperature=0)
    scored = openai_client.chat.completions.create(**request, logprobs=True).choices[0]
    assert scored.logprobs.content and all(token.top_logprobs == [] for token in scored.logprobs.content)
    assert openai_client.chat.completions.create(**request).choices[0].logprobs is None
    assert openai_client.chat.completions.create(**request, logprobs=False, top_logprobs=0).choices[0].logprobs is None


def test_streamed_chat_logprobs_join_to_the_whole_answer_s(openai_client):
    request = dict(
        model=MODEL,
        messages=user(QUESTION),
        max_tokens=40,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        extra_body={"block_length": 8},
    )
    whole = openai_client.chat.completions.create(**request).choices[0]
    chunks = [chunk for chunk in openai_client.chat.completions.create(**request, stream=True) if chunk.choices]
    scored_chunks = [chunk.choices[0].logprobs.content for chunk in chunks if chunk.choices[0].logprobs]
    streamed = [token for tokens in scored_chunks for token in tokens]
    assert len(scored_chunks) >= 2  # the tokens arrive with their text, block by block
    assert [token.token for token in streamed] == [token.token for token in whole.logprobs.content]
    assert [token.logprob for token in streamed] == pytest.approx([token.logprob for token in whole.logprobs.content])
    assert [[top.token for top in token.top_logprobs] for token in streamed] == [
        [top.token for top in token.top_logprobs] for token in whole.logprobs.content
    ]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == whole.message.content


def test_completion_logprobs_with_echo(openai_client, lm):
    response = openai_client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0, logprobs=3, echo=True
    )
    [choice] = response.choices
    [scored] = lm.generate([PROMPT], GenerationConfig(max_new_tokens=12, temperature=0), chat=False, logprobs=3)
    prompt_ids = lm.encode(PROMPT)
    echoed = len(prompt_ids)
    logprobs = choice.logprobs
    assert choice.text == PROMPT + scored.text and scored.text
    assert logprobs.tokens == [lm.tokenizer.decode([token]) for token in prompt_ids] + [
        token.text for token in scored.tokens
    ]
    assert logprobs.token_logprobs[:echoed] == [None] * echoed and logprobs.top_logprobs[:echoed] == [None] * echoed
    answer = logprobs.token_logprobs[echoed:]
    assert answer == pytest.approx([token.logprob for token in scored.tokens], abs=1e-5)
    for value, top in zip(answer, logprobs.top_logprobs[echoed:], strict=True):
        assert len(top) == 3 and value == max(top.values())
    assert (choice.text, logprobs.tokens) == (
        "Kitap okumak(fiil): Bir şeyi bir biçimde, sıkıntı gibi olmak.",
        [
            "Kitap",
            " okumak",
            " (",
            "fiil",
            "):",
            " Bir",
            " şeyi",
            " bir",
            " biçimde",
            ",",
            " sıkıntı",
            " gibi",
            " olmak",
            ".",
        ],
    )
    assert logprobs.text_offset == [0, 5, 12, 13, 17, 19, 23, 28, 32, 40, 41, 49, 54, 60]  # the answer's space trimmed


def test_streamed_completion_logprobs_and_echo_join_to_the_whole_answer_s(openai_client):
    request = dict(
        model=MODEL,
        prompt=PROMPT,
        max_tokens=24,
        temperature=0,
        logprobs=2,
        echo=True,
        extra_body={"block_length": 8},
    )
    whole = openai_client.completions.create(**request).choices[0]
    chunks = [chunk.choices[0] for chunk in openai_client.completions.create(**request, stream=True) if chunk.choices]
    assert chunks[0].text == PROMPT and chunks[0].logprobs.token_logprobs[0] is None  # the echo comes first
    scored = [chunk.logprobs for chunk in chunks if chunk.logprobs]
    assert "".join(chunk.text for chunk in chunks) == whole.text
    assert [token for part in scored for token in part.tokens] == whole.logprobs.tokens
    assert [offset for part in scored for offset in part.text_offset] == whole.logprobs.text_offset
    streamed = [value for part in scored for value in part.token_logprobs]
    assert streamed == pytest.approx(whole.logprobs.token_logprobs)


def test_suffix_fills_the_middle_as_the_library_does(openai_client, lm):
    prompt, suffix = MIDDLE
    request = dict(model=MODEL, prompt=prompt, suffix=suffix, max_tokens=24, temperature=0)
    choice = openai_client.completions.create(**request).choices[0]
    greedy = GenerationConfig(max_new_tokens=24, temperature=0)
    assert choice.text == lm.generate([prompt], greedy, chat=False, suffix=suffix)[0]
    assert suffix.strip() not in choice.text and 0 < len(lm.encode(choice.text)) <= 24
    assert choice.finish_reason == "length"


def test_a_middle_shorter_than_max_tokens_drops_its_padding(openai_client, lm):
    prompt, suffix = MIDDLE
    eos = lm.special.eos
    request = dict(model=MODEL, prompt=prompt, suffix=suffix, max_tokens=24, temperature=0, logprobs=1)
    choice = openai_client.completions.create(**request, logit_bias={str(eos): EOS_BIAS}).choices[0]
    biased = GenerationConfig(max_new_tokens=24, temperature=0, logit_bias={eos: EOS_BIAS})
    assert choice.text == lm.generate([prompt], biased, chat=False, suffix=suffix)[0] == ","
    assert choice.finish_reason == "stop" and choice.logprobs.tokens == [","]


def test_suffixed_and_plain_completions_decoded_together_answer_as_alone(openai_client):
    prompt, suffix = MIDDLE
    requests = [
        dict(prompt=prompt, suffix=suffix, logprobs=1),
        dict(prompt="Kitap okumak", logprobs=1),
        dict(prompt="Bugün hava çok uzun bir süre", suffix=" güzeldi.", logprobs=1),
    ]

    def complete(fields: dict) -> tuple[str, list[str], dict]:
        response = openai_client.completions.create(model=MODEL, max_tokens=12, temperature=0, **fields)
        return response.choices[0].text, response.choices[0].logprobs.tokens, response.model_extra["diffutron"]

    alone = [complete(fields) for fields in requests]
    with ThreadPoolExecutor(len(requests)) as pool:  # sent together: the worker batches them
        together = list(pool.map(complete, requests))
    assert [extension["batch_rows"] for *_, extension in alone] == [1, 1, 1]
    assert max(extension["batch_rows"] for *_, extension in together) > 1
    assert [answer[:2] for answer in together] == [answer[:2] for answer in alone]


def test_echo_with_a_suffix_sends_the_prompt_and_the_middle_back(openai_client):
    prompt, suffix = MIDDLE
    request = dict(model=MODEL, prompt=prompt, suffix=suffix, max_tokens=12, temperature=0)
    middle = openai_client.completions.create(**request).choices[0].text
    assert openai_client.completions.create(**request, echo=True).choices[0].text == prompt + middle


def test_echo_of_several_prompts_and_copies(openai_client):
    prompts = ["Kitap okumak", "Bugün hava çok"]
    request = dict(model=MODEL, prompt=prompts, max_tokens=6, temperature=0.8, seed=5, n=2)
    plain = openai_client.completions.create(**request).choices
    echoed = openai_client.completions.create(**request, echo=True).choices
    assert [choice.text for choice in echoed] == [
        prompts[choice.index // 2] + choice.text for choice in sorted(plain, key=lambda choice: choice.index)
    ]


BAD_REQUESTS = {
    # name: (endpoint, fields, param, a fragment of the message)
    "top_logprobs above 20": (
        "chat",
        {"logprobs": True, "top_logprobs": 21},
        "top_logprobs",
        "less than or equal to 20",
    ),
    "top_logprobs below 0": ("chat", {"logprobs": True, "top_logprobs": -1}, "top_logprobs", "greater than or equal"),
    "top_logprobs without logprobs": ("chat", {"top_logprobs": 2}, "top_logprobs", "top_logprobs needs logprobs"),
    "chat logprobs not a bool": ("chat", {"logprobs": 1}, "logprobs", "valid boolean"),
    "echo on chat": ("chat", {"echo": True}, "echo", "echo is not supported by this server"),
    "suffix on chat": ("chat", {"suffix": "x"}, "suffix", "suffix is not supported by this server"),
    "completion logprobs above 5": ("text", {"logprobs": 6}, "logprobs", "less than or equal to 5"),
    "completion logprobs a bool": ("text", {"logprobs": True}, "logprobs", "valid integer"),
    "mask token in the suffix": ("text", {"suffix": "a <mask> b"}, "suffix", "suffix contains the mask token"),
    "a suffix of more characters than the context can hold": (
        "text",
        {"suffix": "a" * (32 * 256 + 1)},
        "suffix",
        "suffix has 8193 characters, more than the 8192 this server reads",
    ),
    "suffix over the context": (
        "text",
        {"suffix": "kitap " * 120, "max_tokens": 200},
        "prompt",
        "the prompt has 2 tokens, max_tokens is 200 and the suffix has 122 tokens: together more than the model's "
        "context of 256",
    ),
}


@pytest.mark.parametrize("endpoint, fields, param, fragment", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_logprobs_echo_and_suffix_are_a_400_naming_the_field(openai_client, endpoint, fields, param, fragment):
    with pytest.raises(openai.BadRequestError) as raised:
        if endpoint == "chat":
            openai_client.chat.completions.create(model=MODEL, messages=user(QUESTION), max_tokens=4, extra_body=fields)
        else:
            openai_client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, extra_body=fields)
    error = raised.value.body
    assert raised.value.status_code == 400 and set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and fragment in error["message"]
