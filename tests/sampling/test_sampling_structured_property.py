"""Structured answers of the embedded model to random schemas of the supported subset: every one
parses and validates (with the `jsonschema` package, independent of the code under test)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffutron import Diffutron, GenerationConfig
from diffutron.sampling.presets import speed_config

EXAMPLES = 200
KEY = st.text(alphabet='ab "\\şÜ:{', min_size=1, max_size=3)
JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(alphabet='xy"\\\nç ', max_size=4))


def _with(kind: str, **optional: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({"type": st.just(kind)}, optional=optional)


SCALARS = st.one_of(
    _with("string", minLength=st.integers(0, 2), maxLength=st.integers(2, 5)),
    _with("integer", minimum=st.integers(-60, 5), maximum=st.integers(6, 300)),
    _with("number", minimum=st.floats(-50, 0.5), maximum=st.floats(0.75, 80)),
    _with("boolean"),
    _with("null"),
    st.builds(lambda options: {"enum": options}, st.lists(JSON_SCALAR, min_size=1, max_size=3, unique=True)),
    st.builds(lambda value: {"const": value}, JSON_SCALAR),
)


def _object(members: st.SearchStrategy, most: int = 2) -> st.SearchStrategy:
    def build(properties: dict, flags: list[bool]) -> dict:
        required = [key for key, flag in zip(properties, flags) if flag]
        return {"type": "object", "properties": properties, "required": required}

    return st.dictionaries(KEY, members, min_size=0, max_size=most).flatmap(
        lambda properties: st.builds(build, st.just(properties), st.lists(st.booleans(), min_size=3, max_size=3))
    )


def _array(items: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        lambda item, low, extra: {"type": "array", "items": item, "minItems": low, "maxItems": low + extra},
        items,
        st.integers(0, 1),
        st.integers(0, 1),
    )


# small enough that prompt and skeleton fit the embedded model's context of 256 tokens
SCHEMAS = _object(st.recursive(SCALARS, lambda inner: st.one_of(_object(inner), _array(inner)), max_leaves=3), most=3)


@pytest.fixture(scope="module")
def lm() -> Diffutron:
    return Diffutron.from_pretrained()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schema=SCHEMAS)
def test_every_answer_parses_and_validates(lm, schema):
    config = speed_config("fastest", GenerationConfig(temperature=0.0, seed=7))
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    (answer,) = lm.generate(["Bir kayıt yaz."], config, response_format=response_format)
    jsonschema.validate(json.loads(answer), schema)
