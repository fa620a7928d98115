"""Structured output: the schema subset, the skeleton's tokens, the slots' token sets, reading values back."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from typer.testing import CliRunner

from diffutron import Diffutron, GenerationConfig
from diffutron.cli import app
from diffutron.errors import DiffutronError
from diffutron.model.chat import render_chat, tool_call_text
from diffutron.sampling.processors import AllowedTokens, DuePositions
from diffutron.sampling.structured import (
    Function,
    call_probability,
    response_format,
    schema_format,
    tool_call_format,
    with_instruction,
)
from diffutron.sampling.structured.schema import Numeral
from diffutron.sampling.structured.skeleton import Reading, Skeleton, clamp, parse_numeral, plan
from diffutron.sampling.structured.tokens import TokenSet, token_sets

PERSON = {
    "type": "object",
    "properties": {
        "ad": {"type": "string", "minLength": 1, "maxLength": 3},
        "yas": {"type": "integer", "minimum": 0, "maximum": 99},
        "puan": {"type": "number"},
        "etiket": {"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 5}, "maxItems": 2},
    },
    "required": ["ad", "yas", "puan", "etiket"],
}


@pytest.fixture(scope="module")
def lm() -> Diffutron:
    return Diffutron.from_pretrained()


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "string", "pattern": "a+"}, "schema uses the keyword 'pattern'"),
        ({"type": "string", "format": "date"}, "keyword 'format'"),
        ({"anyOf": [{"type": "string"}]}, "schema uses the keyword 'anyOf'"),
        ({"properties": {}}, "schema needs a 'type'"),
        ({"type": "integer", "exclusiveMinimum": 0}, "keyword 'exclusiveMinimum'"),
        ({"type": "integer", "multipleOf": 2}, "keyword 'multipleOf'"),
        ({"type": "array", "items": {"type": "null"}, "uniqueItems": True}, "keyword 'uniqueItems'"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}}, "schema.properties.a uses the keyword '$ref'"),
        ({"type": "object", "patternProperties": {}}, "keyword 'patternProperties'"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "additionalProperties may only be"),
        ({"type": ["string", "null"]}, "has type ['string', 'null']"),
        ({"type": "tuple"}, "has type 'tuple'"),
        ({"enum": []}, "enum must be a non-empty list"),
        ({"enum": [1, "a"], "type": "boolean"}, "no value satisfies"),
        ({"enum": [float("inf")]}, "JSON cannot write"),
        ({"const": 1, "minimum": 0}, "keyword 'minimum'"),
        ({"type": "string", "minLength": 4, "maxLength": 2}, "minLength 4 > maxLength 2"),
        ({"type": "integer", "minimum": 1.5, "maximum": 1.7}, "minimum 2 > maximum 1"),
        ({"type": "number", "maximum": float("nan")}, "maximum must be a finite number"),
        ({"type": "array"}, "without 'items'"),
        ({"type": "array", "items": {"type": "null"}, "minItems": 3, "maxItems": 1}, "minItems 3 > maxItems 1"),
        ({"type": "array", "items": {"type": "null"}, "maxItems": -1}, "maxItems must be an integer >= 0"),
        ({"type": "object", "properties": {"a": {"type": "null"}}, "required": ["b"]}, "required must list"),
        ({"type": "object", "properties": {"a": {"type": "null", "oneOf": []}}}, "schema.properties.a uses"),
        ("string", "must be a JSON object"),
    ],
)
def test_unsupported_schemas_are_refused_naming_the_problem(schema, fragment):
    with pytest.raises(DiffutronError, match=None) as error:
        schema_format(schema)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"type": "xml"}, "unknown response_format type 'xml'"),
        ({"type": "json_schema"}, 'needs "json_schema"'),
        ("json", 'must be {"type": "text"}'),
    ],
)
def test_bad_response_formats_are_refused(value, fragment):
    with pytest.raises(DiffutronError) as error:
        response_format(value)
    assert fragment in str(error.value)


def test_text_format_is_a_free_answer():
    assert response_format({"type": "text"}) is None
    assert response_format(None) is None


def _layout(lm: Diffutron, schema: dict) -> list[str | int]:
    """The skeleton: fixed tokens as their text, slot positions as their token set's number."""
    skeleton = Skeleton(lm.tokenizer, [])
    steps = plan(schema_format(schema).node, skeleton)
    with pytest.raises(StopIteration):
        steps.send(None)
    skeleton.flush()
    return [lm.tokenizer.decode([i]) if s < 0 else s for i, s in zip(skeleton.ids, skeleton.sets, strict=True)]


def test_skeleton_token_layout_is_pinned(lm):
    S, SP, SIGN, DIGIT, DIGIT_PAD, NUMBER_PAD, COMMA, SPACE = range(8)
    assert [TokenSet.STRING, TokenSet.SPACE_OR_PAD] == [S, SPACE]
    assert _layout(lm, PERSON) == [
        "{", '"', "ad", '"', ":", ' "', S, SP, SP, '"',
        ",", ' "', "yas", '"', ":", " ", DIGIT, DIGIT_PAD,
        ",", ' "', "p", "uan", '"', ":", " ", SIGN, *[NUMBER_PAD] * 7,
        ",", ' "', "etik", "et", '"', ":", " ", "[", SPACE, SIGN, DIGIT_PAD, COMMA, " ", SIGN, DIGIT_PAD, "]", "}",
    ]  # fmt: skip


def test_fixed_text_is_encoded_apart_from_the_slots(lm):
    """A quote next to a slot stays its own token: what fills the slot cannot merge with it."""
    layout = _layout(lm, {"type": "object", "properties": {"k": {"type": "string", "maxLength": 1}}, "required": ["k"]})
    assert layout == ["{", '"', "k", '"', ":", ' "', TokenSet.STRING_OR_PAD, '"', "}"]


def test_token_sets_by_text(lm):
    sets = token_sets(lm.tokenizer, lm.model.config.vocab_size)
    text = {token: lm.tokenizer.decode([token]) for token in range(len(lm.tokenizer))}
    assert sets.shape == (8, 8000)
    assert sets.sum(dim=1).tolist() == [7829, 7831, 22, 20, 22, 24, 4, 9]
    quote, comma, minus, point = (lm.encode(c)[0] for c in ('"', ",", "-", "."))
    assert not sets[TokenSet.STRING, quote] and not sets[TokenSet.STRING, lm.encode("\n")[0]]
    assert not sets[TokenSet.STRING, lm.special.pad] and sets[TokenSet.STRING_OR_PAD, lm.special.eos]
    # a digit is its own token and a byte-fallback token too
    assert sorted(text[t] for t in sets[TokenSet.DIGIT].nonzero()[:, 0].tolist()) == sorted("0123456789" * 2)
    assert sets[TokenSet.SIGN_OR_DIGIT, minus] and not sets[TokenSet.DIGIT, minus]
    assert sets[TokenSet.NUMBER_OR_PAD, point] and not sets[TokenSet.DIGIT_OR_PAD, point]
    assert sets[TokenSet.COMMA_OR_PAD].nonzero()[:, 0].tolist() == [lm.special.pad, lm.special.eos, 49, comma]
    assert text[49] == "," and comma == 274


def test_allowed_tokens_mask_every_other_token():
    sets = torch.tensor([[True, False, True, False]])
    due = DuePositions(torch.tensor([0, 0]), torch.tensor([1, 2]), [2], torch.zeros(1, 3), torch.zeros(1, 3), None)
    logits = torch.tensor([[1.0, 5.0, 2.0, 3.0], [1.0, 5.0, 2.0, 3.0]])
    restricted = DuePositions(due.rows, due.columns, [2], due.canvas, due.given, torch.tensor([0, -1]))
    assert AllowedTokens(sets)(logits.clone(), due).tolist() == logits.tolist()
    inf = float("-inf")
    assert AllowedTokens(sets)(logits.clone(), restricted).tolist() == [[1.0, inf, 2.0, inf], [1.0, 5.0, 2.0, 3.0]]


@pytest.mark.parametrize(
    ("text", "integer", "value"),
    [("-12", True, -12), ("007", True, 7), ("-", True, 0), ("3.5.1", False, 3.5), ("-.5", False, -0.5),
     ("-.", False, 0), ("42", False, 42), ("4.", False, 4.0)],
)  # fmt: skip
def test_numerals_read_leniently(text, integer, value):
    parsed = parse_numeral(text, integer)
    assert parsed == value and type(parsed) is type(value)


def test_out_of_range_numbers_are_clamped_to_the_nearest_bound():
    node = Numeral(True, 3, minimum=-5, maximum=40)
    assert [clamp(value, node) for value in (-99, -5, 7, 40, 999)] == [-5, -5, 7, 40, 40]
    assert clamp(0.25, Numeral(False, 8, minimum=0.5)) == 0.5


def test_chat_prompt_says_json_is_expected():
    fmt = response_format({"type": "json_object"})
    assert render_chat(with_instruction("Soru?", fmt)) == (
        "[SYS]\nYanıtını yalnızca JSON olarak ver.\n[/SYS]\n\n[Question]\nSoru?\n[/Question]\n\n[Answer]\n"
    )
    turns = with_instruction([{"role": "system", "content": "Kısa yaz."}, {"role": "user", "content": "Soru?"}], fmt)
    assert turns[0] == {"role": "system", "content": "Kısa yaz.\nYanıtını yalnızca JSON olarak ver."}


def test_answers_are_what_the_slots_hold(lm):
    answer = lm.chat("Bir kişi", GenerationConfig(temperature=0.0, seed=3), response_format=_as_format(PERSON))
    value = json.loads(answer)
    jsonschema.validate(value, PERSON)
    assert answer == json.dumps(value, ensure_ascii=False)
    assert list(value) == ["ad", "yas", "puan", "etiket"]


def _as_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"remasking": "random", "temperature": 0.7},
        {"stochastic_transfer": True},
        {"threshold": 0.7, "cache": "dual"},
        {"factor": 1.0, "cache": "prefix"},
        {"cfg_scale": 1.0, "block_length": 4},
    ],
)
def test_every_rule_fills_a_valid_answer_and_batches_like_alone(lm, options):
    config = GenerationConfig(seed=11, **options)
    schema = {**PERSON, "properties": {**PERSON["properties"], "ok": {"type": "boolean"}}}
    prompts = ["Bir kişi", "Başka bir kişi anlat lütfen"]
    together = lm.generate(prompts, config, response_format=_as_format(schema))
    for answer in together:
        jsonschema.validate(json.loads(answer), schema)
    if not config.stochastic_transfer:  # with stochastic transfer the rows' plans are drawn together
        assert together[1] == lm.generate(prompts[1:], config, first_index=1, response_format=_as_format(schema))[0]


def test_json_object_is_an_object_of_strings(lm):
    value = json.loads(lm.generate(["Bir kayıt"], GenerationConfig(seed=5), response_format={"type": "json_object"})[0])
    assert isinstance(value, dict) and 1 <= len(value) <= 4
    assert all(isinstance(key, str) and key and isinstance(text, str) for key, text in value.items())


def test_cli_json_schema_and_exit_2_on_a_bad_schema(tmp_path):
    runner = CliRunner()
    good, bad, broken = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "broken.json"
    good.write_text(json.dumps(PERSON), encoding="utf-8")
    bad.write_text(json.dumps({"type": "string", "pattern": "x"}), encoding="utf-8")
    broken.write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["generate", "Bir kişi", "--json-schema", str(good), "--temperature", "0"])
    assert result.exit_code == 0, result.output
    jsonschema.validate(json.loads(result.output), PERSON)
    for path, fragment in ((bad, "keyword 'pattern'"), (broken, "cannot be read")):
        result = runner.invoke(app, ["generate", "Bir kişi", "--json-schema", str(path)])
        assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output
    both = runner.invoke(app, ["chat", "--json", "--json-schema", str(good)], input="/exit\n")
    assert both.exit_code == 2 and "not both" in both.output


def test_a_tool_call_s_function_is_a_choice_then_its_arguments_are_laid_out(lm):
    functions = [
        Function("saat"),
        Function("hava", {"type": "object", "properties": {"gun": {"enum": [1]}}, "required": ["gun"]}),
    ]
    skeleton = Skeleton(lm.tokenizer, lm.encode("Soru"))
    steps = plan(tool_call_format(functions).node, skeleton)
    request = next(steps)
    assert [lm.tokenizer.decode(option) for option in request.options] == [
        '{"name": "saat", "arguments": ',
        '{"name": "hava", "arguments": ',
    ]
    with pytest.raises(StopIteration) as laid_out:
        steps.send(1)
    skeleton.flush()
    assert (
        lm.tokenizer.decode(skeleton.ids[skeleton.prompt_length :])
        == ('{"name": "hava", "arguments": {"gun": 1}}')
        == tool_call_text("hava", {"gun": 1})
    )
    assert laid_out.value.value(Reading(skeleton.ids, lm.tokenizer)) == {"name": "hava", "arguments": {"gun": 1}}


def test_one_function_is_laid_out_without_a_choice(lm):
    skeleton = Skeleton(lm.tokenizer, [])
    with pytest.raises(StopIteration):
        next(plan(tool_call_format([Function("saat")]).node, skeleton))
    skeleton.flush()
    assert lm.tokenizer.decode(skeleton.ids) == '{"name": "saat", "arguments": {}}'


def test_tools_instruction_lists_the_functions():
    functions = [Function("saat", description=" Saati söyler. "), Function("hava")]
    assert tool_call_format(functions).instruction == (
        "Şu araçları çağırabilirsin:\n- saat: Saati söyler.\n- hava\n"
        'Bir araç çağırmak için yalnızca {"name": "araç adı", "arguments": {...}} biçiminde JSON yaz.'
    )


def test_a_tool_s_parameters_outside_the_subset_are_refused_naming_their_place():
    bad = {"type": "object", "properties": {"x": {"type": "string", "pattern": "a"}}}
    with pytest.raises(
        DiffutronError, match=r"^tools\.1\.function\.parameters\.properties\.x uses the keyword 'pattern'"
    ):
        tool_call_format([Function("a"), Function("b", bad)])


def test_tool_results_are_question_turns():
    messages = [
        {"role": "user", "content": "Saat kaç?"},
        {"role": "assistant", "content": tool_call_text("saat", {})},
        {"role": "tool", "name": "saat", "content": "14:00"},
        {"role": "tool", "content": "UTC"},
    ]
    assert render_chat(messages) == (
        "[Question]\nSaat kaç?\n[/Question]\n\n"
        '[Answer]\n{"name": "saat", "arguments": {}}\n[/Answer]\n\n'
        "[Question]\nsaat aracının sonucu:\n14:00\n\ntool aracının sonucu:\nUTC\n[/Question]\n\n[Answer]\n"
    )
    with pytest.raises(DiffutronError, match="turns must alternate"):
        render_chat([*messages, {"role": "assistant", "content": "x"}, {"role": "user", "content": "a"}, messages[0]])


def test_call_probability_is_that_of_a_call_s_first_token_opening_the_answer(lm):
    prompt = lm.encode(render_chat("Saat kaç?"))
    canvas = torch.tensor([[*prompt, *[lm.special.mask] * 8]])
    with torch.inference_mode():
        logits = lm.model(input_ids=canvas, attention_mask=torch.ones_like(canvas)).logits[0, len(prompt)]
    brace = lm.encode("{")[0]
    assert lm.encode(tool_call_text("f", {}))[0] == brace
    probability = call_probability(lm.model, lm.tokenizer, prompt, 8)
    assert probability == pytest.approx(torch.softmax(logits.float(), dim=-1)[brace].item(), rel=1e-5)
    assert 0 < probability < 0.5  # the embedded model answers this question rather than calling
