"""Structured answers of the embedded model to random schemas of the supported subset: every one
parses and validates (with the `jsonschema` package, independent of the code under test)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from diffutron import Diffutron, GenerationConfig
from diffutron.sampling.presets import speed_config
from helpers.schemas import SCHEMAS

EXAMPLES = 200


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
