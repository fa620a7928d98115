"""Random schemas of the supported subset through the server: every answer parses and validates
(with the `jsonschema` package); the library's own property test runs 200 of them."""

from __future__ import annotations

import json

import jsonschema
from hypothesis import HealthCheck, given, settings

from helpers.schemas import SCHEMAS
from helpers.server import MODEL

EXAMPLES = 40


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schema=SCHEMAS)
def test_every_answer_over_http_parses_and_validates(openai_client, schema):
    response = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Bir kayıt yaz."}],
        response_format={"type": "json_schema", "json_schema": {"name": "kayit", "schema": schema, "strict": True}},
        temperature=0,
        seed=7,
        extra_body={"speed": "fastest"},
    )
    jsonschema.validate(json.loads(response.choices[0].message.content), schema)
