"""GenerationConfig's field metadata is the one definition of each sampler setting: the ranges it
checks (every boundary), the field its errors name, and the CLI flags, HTTP fields and page form
derived from it."""

from __future__ import annotations

import math
import typing

import pytest
from typer.testing import CliRunner

from diffutron.errors import DiffutronError, SettingError
from diffutron.sampling.config import MAX_SEED, WORK_CAP, GenerationConfig, choices, default, field_type, settings
from diffutron.sampling.presets import SPEEDS, speed_config

HTTP_SETTINGS = (
    "steps",
    "block_length",
    "temperature",
    "remasking",
    "stochastic_transfer",
    "cfg_scale",
    "repetition_penalty",
    "penalty_scope",
    "top_k",
    "top_p",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "rule",
    "threshold",
    "factor",
    "entropy_bound",
    "commit_gap",
    "draft_threshold",
    "revoke_below",
    "confidence",
    "cache",
    "refresh_every",
)

# field: (lowest accepted, highest accepted, refused below, refused above)
BOUNDARIES = {
    "max_new_tokens": (1, WORK_CAP, 0, WORK_CAP + 1),
    "steps": (1, WORK_CAP, 0, WORK_CAP + 1),
    "block_length": (1, WORK_CAP, 0, WORK_CAP + 1),
    "refresh_every": (1, WORK_CAP, 0, WORK_CAP + 1),
    "seed": (0, MAX_SEED, -1, MAX_SEED + 1),
    "temperature": (0.0, 10.0, -1e-9, math.nextafter(10.0, math.inf)),
    "cfg_scale": (0.0, 10.0, -1e-9, math.nextafter(10.0, math.inf)),
    "repetition_penalty": (0.1, 10.0, math.nextafter(0.1, 0), math.nextafter(10.0, math.inf)),
    "threshold": (math.nextafter(0.0, 1), 1.0, 0.0, math.nextafter(1.0, 2)),
    "factor": (math.nextafter(0.0, 1), 100.0, 0.0, math.nextafter(100.0, math.inf)),
    "entropy_bound": (math.nextafter(0.0, 1), 100.0, 0.0, math.nextafter(100.0, math.inf)),
    "commit_gap": (math.nextafter(0.0, 1), 1.0, 0.0, math.nextafter(1.0, 2)),
    "draft_threshold": (math.nextafter(0.0, 1), 1.0, 0.0, math.nextafter(1.0, 2)),
    "revoke_below": (math.nextafter(0.0, 1), 1.0, 0.0, math.nextafter(1.0, 2)),
    "top_k": (0, 2**31 - 1, -1, 2**31),
    "top_p": (math.nextafter(0.0, 1), 1.0, 0.0, math.nextafter(1.0, 2)),
    "min_p": (0.0, 1.0, -1e-9, math.nextafter(1.0, 2)),
    "presence_penalty": (-2.0, 2.0, math.nextafter(-2.0, -3), math.nextafter(2.0, 3)),
    "frequency_penalty": (-2.0, 2.0, math.nextafter(-2.0, -3), math.nextafter(2.0, 3)),
}
NEEDS = {
    "refresh_every": {"cache": "dual"},
    "draft_threshold": {"revoke_below": 0.9},
    "revoke_below": {"draft_threshold": 0.5},
}  # what a field needs beside it


@pytest.mark.parametrize("name", BOUNDARIES)
def test_every_range_boundary_is_accepted_and_one_step_beyond_is_refused_naming_the_field(name):
    low, high, below, above = BOUNDARIES[name]
    extra = NEEDS.get(name, {})
    assert getattr(GenerationConfig(**{name: low}, **extra), name) == low
    assert getattr(GenerationConfig(**{name: high}, **extra), name) == high
    for value in (below, above):
        with pytest.raises(SettingError) as error:
            GenerationConfig(**{name: value}, **extra)
        assert error.value.param == name and str(error.value).startswith(f"{name} must be")


def test_every_number_has_a_finite_range():
    numbers = {name for name in settings() if field_type(name) in (int, float)}
    assert numbers == set(BOUNDARIES)
    for name in numbers:
        setting = settings()[name]
        assert setting.minimum is not None and (setting.maximum is not None or setting.cap is not None), name


def test_logit_bias_maps_token_ids_to_biases_in_range():
    from diffutron.sampling.config import MAX_BIASED_TOKENS

    config = GenerationConfig(logit_bias={"7": -100, 3: 100.0, 0: 0})  # JSON's object keys arrive as digits
    assert config.logit_bias == {0: 0.0, 3: 100.0, 7: -100.0} and list(config.logit_bias) == [0, 3, 7]
    assert hash(config) == hash(GenerationConfig(logit_bias={7: -100.0, 3: 100, 0: 0}))  # a config keys a batch
    assert config.to_dict()["logit_bias"] == {0: 0.0, 3: 100.0, 7: -100.0}
    assert (
        len(GenerationConfig(logit_bias=dict.fromkeys(range(MAX_BIASED_TOKENS), 1.0)).logit_bias) == MAX_BIASED_TOKENS
    )
    for value, message in [
        ({1: math.nextafter(100.0, 101)}, "logit_bias[1] must be in [-100, 100]"),
        ({1: math.nextafter(-100.0, -101)}, "logit_bias[1] must be in [-100, 100]"),
        ({1: math.inf}, "logit_bias[1] must be a finite number"),
        ({1: math.nan}, "logit_bias[1] must be a finite number"),
        ({-1: 1.0}, "logit_bias keys must be token ids (integers >= 0), got -1"),
        ({True: 1.0}, "logit_bias keys must be token ids (integers >= 0), got True"),
        ({"x7": 1.0}, "logit_bias keys must be token ids (integers >= 0), got 'x7'"),
        ({1.5: 1.0}, "logit_bias keys must be token ids (integers >= 0), got 1.5"),
        ([(1, 1.0)], "logit_bias must map token ids to biases, e.g. {123: -100}"),
        (dict.fromkeys(range(MAX_BIASED_TOKENS + 1), 1.0), f"logit_bias may name at most {MAX_BIASED_TOKENS} tokens"),
    ]:
        with pytest.raises(SettingError) as error:
            GenerationConfig(logit_bias=value)
        assert error.value.param == "logit_bias" and str(error.value).startswith(message)


def test_cli_logit_bias_is_a_repeatable_id_equals_bias_flag():
    from diffutron.cli import app
    from helpers.cli_probe import generation_probe

    command, seen = generation_probe()
    result = CliRunner().invoke(command, ["--logit-bias", "5=-100", "--logit-bias", "7=2.5", "--top-p", "0.9"])
    assert result.exit_code == 0, result.output
    assert seen["config"].logit_bias == {5: -100.0, 7: 2.5} and seen["config"].top_p == 0.9
    for flags, complaint in [
        (["--logit-bias", "5"], "--logit-bias takes ID=BIAS (e.g. 123=-100), got '5'"),
        (["--logit-bias", "5=lots"], "--logit-bias takes ID=BIAS"),
        (["--logit-bias", "5=-101"], "logit_bias[5] must be in [-100, 100]"),
        (["--top-p", "0"], "top_p must be in (0, 1] (1.0 disables it), got 0.0"),
        (["--top-k", "-1"], "top_k must be an integer >= 0 (0 disables it), got -1"),
    ]:
        result = CliRunner().invoke(app, ["generate", "a", *flags])
        assert result.exit_code == 2, result.output
        assert complaint in " ".join(result.output.split()) and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("change", "message", "param"),
    [
        ({"steps": 1_000_000_000}, "steps must be at most 8192 (the most work one call may ask for)", "steps"),
        ({"max_new_tokens": 10**6}, "max_new_tokens must be at most 8192", "max_new_tokens"),
        (
            {"repetition_penalty": 1e-308},
            "repetition_penalty must be in [0.1, 10] (1.0 disables it), got 1e-308",
            "repetition_penalty",
        ),
        ({"cfg_scale": 1e308}, "cfg_scale must be at most 10", "cfg_scale"),
        ({"temperature": 11}, "temperature must be at most 10 (hotter draws are noise), got 11.0", "temperature"),
        ({"factor": 101}, "factor must be at most 100", "factor"),
        ({"remasking": "best"}, "unknown remasking 'best'; choose one of: low_confidence, random", "remasking"),
        ({"early_stop": 1}, "early_stop must be True or False, got 1", "early_stop"),
        (
            {"rule": "fastest"},
            "unknown rule 'fastest'; choose one of: count, dilated, early_commit, entropy_bound, factor, revocable, "
            "threshold",
            "rule",
        ),
        ({"rule": "threshold"}, "rule 'threshold' needs threshold (a confidence; 0.9 is a good start)", "threshold"),
        ({"rule": "factor", "threshold": 0.9}, "threshold is a knob of rule 'threshold', not 'factor'", "threshold"),
        ({"rule": "count", "factor": 1.0}, "factor is a knob of rule 'factor', not 'count'", "factor"),
        ({"threshold": 0.9, "remasking": "random"}, "needs remasking='low_confidence'", "remasking"),
        ({"factor": 1.0, "stochastic_transfer": True}, "drop stochastic_transfer", "stochastic_transfer"),
        ({"threshold": 0.9, "factor": 1.0}, "threshold and factor are two parallel decoding rules", None),
        ({"refresh_every": 2}, "choose a cache too", None),
    ],
)
def test_a_refused_setting_names_its_field(change, message, param):
    with pytest.raises(SettingError) as error:
        GenerationConfig(**change)
    assert message in str(error.value)
    assert error.value.param == param  # None: a combination of settings is at fault
    assert isinstance(error.value, DiffutronError)


def test_the_rule_is_named_or_picked_by_its_knob():
    assert GenerationConfig().commit_rule == "count" and GenerationConfig().rule_settings() == {}
    assert GenerationConfig(threshold=0.8).commit_rule == "threshold"
    assert GenerationConfig(rule="threshold", threshold=0.8).rule_settings() == {"threshold": 0.8}
    assert GenerationConfig(factor=2.0).rule_settings() == {"factor": 2.0}
    assert GenerationConfig(rule="count").commit_rule == "count"


def test_naming_a_rule_or_a_knob_replaces_the_presets_rule():
    assert speed_config("fast").rule_settings() == {"threshold": 0.9}
    assert speed_config("fast", factor=1.5).rule_settings() == {"factor": 1.5}
    assert speed_config("fast", rule="factor", factor=1.5).commit_rule == "factor"
    plain = speed_config("fast", rule="count")
    assert (plain.commit_rule, plain.threshold, plain.cache) == ("count", None, "dual")


def test_cli_flags_are_derived_from_the_fields():
    from diffutron.cli.options import _GENERATION_OPTIONS

    flags = {name for name, setting in settings().items() if not isinstance(default(name), bool)}
    assert set(_GENERATION_OPTIONS) == flags | {
        "speed",
        "stochastic_transfer",
        "no_stochastic_transfer",
        "early_stop",
        "no_early_stop",
    }
    for name in ("max_new_tokens", "steps", "temperature", "remasking", "penalty_scope", "truncate"):
        assert _GENERATION_OPTIONS[name][1].default == default(name)
        assert _GENERATION_OPTIONS[name][1].help == settings()[name].help
    for name in ("rule", "threshold", "factor", "cache", "refresh_every", "seed"):
        assert _GENERATION_OPTIONS[name][1].default is None  # unset: the --speed preset decides
    assert _GENERATION_OPTIONS["rule"][1].help.endswith(
        "One of: count, dilated, early_commit, entropy_bound, factor, revocable, threshold."
    )
    assert typing.get_args(_GENERATION_OPTIONS["speed"][0]) == SPEEDS


def test_cli_passes_rule_and_knob_and_refuses_out_of_range_with_exit_2():
    from diffutron.cli import app
    from helpers.cli_probe import generation_probe

    command, seen = generation_probe()
    assert CliRunner().invoke(command, ["--rule", "factor", "--factor", "2", "--speed", "fast"]).exit_code == 0
    assert (seen["config"].commit_rule, seen["config"].factor, seen["config"].cache) == ("factor", 2.0, "dual")
    for flags, complaint in [
        (["--steps", "1000000000"], "steps must be at most 8192"),
        (["--repetition-penalty", "1e-308"], "repetition_penalty must be in [0.1, 10]"),
        (["--cfg-scale", "1e308"], "cfg_scale must be at most 10"),
        (["--rule", "threshold"], "rule 'threshold' needs threshold"),
    ]:
        result = CliRunner().invoke(app, ["generate", "a", *flags])
        assert result.exit_code == 2, result.output
        assert complaint in " ".join(result.output.split()) and "Traceback" not in result.output


def test_http_fields_are_derived_from_the_fields():
    from diffutron.serve.schemas import DiffusionSettings

    assert set(DiffusionSettings.model_fields) == {*HTTP_SETTINGS, "speed", "user"}
    body = DiffusionSettings(steps=8, rule="factor", factor=1.5, seed=3, speed="fast")
    assert body.sampler_settings() == {"steps": 8, "rule": "factor", "factor": 1.5}
    assert DiffusionSettings.model_fields["temperature"].description == settings()["temperature"].help
    schema = DiffusionSettings.model_json_schema()["properties"]
    assert schema["remasking"]["anyOf"][0]["enum"] == ["low_confidence", "random"]
    assert schema["rule"]["anyOf"][0]["enum"] == [
        "count",
        "dilated",
        "early_commit",
        "entropy_bound",
        "factor",
        "revocable",
        "threshold",
    ]
    assert schema["seed"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": MAX_SEED}


def test_a_config_error_maps_to_an_openai_param():
    from diffutron.serve.errors import APIError

    error = APIError.bad_setting(SettingError("max_new_tokens must be at most 8192, got 9000", "max_new_tokens"))
    assert (error.status, error.param, error.message) == (
        400,
        "max_tokens",
        "max_tokens must be at most 8192, got 9000",
    )
    assert APIError.bad_setting(SettingError("x and y clash")).param is None
    assert APIError.bad_setting(DiffutronError("steps must be an integer")).param is None  # no field: no guess


def test_the_page_form_is_described_from_the_fields():
    from diffutron.serve.schemas import page_settings

    described = page_settings()
    assert described["speeds"] == list(SPEEDS)
    assert set(described["fields"]) == {*HTTP_SETTINGS, "max_tokens"}
    assert described["fields"]["max_tokens"] == {
        "type": "integer",
        "default": 64,
        "help": "Tokens to generate.",
        "minimum": 1,
        "exclusive_minimum": False,
        "maximum": WORK_CAP,
    }
    assert described["fields"]["remasking"]["choices"] == list(choices("remasking"))
    assert described["fields"]["threshold"] == {
        "type": "number",
        "help": settings()["threshold"].help,
        "minimum": 0,
        "exclusive_minimum": True,
        "maximum": 1,
    }
    assert described["fields"]["seed"]["maximum"] == str(MAX_SEED) and "default" not in described["fields"]["seed"]
    assert described["fields"]["logit_bias"] == {
        "type": "object",
        "help": settings()["logit_bias"].help,
        "minimum": -100.0,
        "exclusive_minimum": False,
        "maximum": 100.0,
    }
