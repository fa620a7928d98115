"""`diffutron serve` refuses options it cannot serve with: one line, exit status 2, before loading anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import diffutron.serve.server as server_module
from diffutron.cli import app

BAD_OPTIONS = [
    # (name, arguments, a fragment of the one line)
    ("batch wait inf", ["--batch-wait-ms", "inf"], "Invalid value for '--batch-wait-ms'"),
    ("batch wait nan", ["--batch-wait-ms", "nan"], "Invalid value for '--batch-wait-ms'"),
    ("batch wait -1", ["--batch-wait-ms", "-1"], "Invalid value for '--batch-wait-ms'"),
    ("batch wait 1e9", ["--batch-wait-ms", "1e9"], "Invalid value for '--batch-wait-ms'"),
    ("request timeout inf", ["--request-timeout", "inf"], "Invalid value for '--request-timeout'"),
    ("request timeout nan", ["--request-timeout", "nan"], "Invalid value for '--request-timeout'"),
    ("request timeout 0", ["--request-timeout", "0"], "Invalid value for '--request-timeout'"),
    ("read timeout inf", ["--read-timeout", "inf"], "Invalid value for '--read-timeout'"),
    ("read timeout nan", ["--read-timeout", "nan"], "Invalid value for '--read-timeout'"),
    ("read timeout 0", ["--read-timeout", "0"], "Invalid value for '--read-timeout'"),
    ("max connections 0", ["--max-connections", "0"], "Invalid value for '--max-connections'"),
    ("max request tokens 0", ["--max-request-tokens", "0"], "Invalid value for '--max-request-tokens'"),
    ("user tags", ["--user-tags", "strip"], "Invalid value for '--user-tags'"),
    ("key with a space before", ["--api-key", " key"], "--api-key starts or ends with white space"),
    ("key with a newline after", ["--api-key", "key\n"], "--api-key starts or ends with white space"),
    ("key not ASCII", ["--api-key", "anahtar-ğ"], "not printable ASCII (character 9)"),
    ("key with a tab inside", ["--api-key", "a\tb"], "not printable ASCII (character 2)"),
    ("empty key", ["--api-key", " "], "--api-key is empty"),
]


@pytest.mark.parametrize("arguments, fragment", [row[1:] for row in BAD_OPTIONS], ids=[row[0] for row in BAD_OPTIONS])
def test_bad_serve_option_is_one_line(monkeypatch, arguments, fragment):
    def started(*args, **kwargs):
        raise AssertionError("the server started with a bad option")

    monkeypatch.setattr(server_module, "run_server", started)
    result = CliRunner().invoke(app, ["serve", *arguments], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert fragment in lines[0], lines[0]


def test_every_row_has_a_distinct_name():
    assert len({row[0] for row in BAD_OPTIONS}) == len(BAD_OPTIONS)
