"""Generation settings, with the model card's defaults: the one definition of each sampler setting.

Each field of `GenerationConfig` carries a `Setting` (help, range, the commit rule it belongs to)
from which the command-line flags (`cli/options.py`), the HTTP request fields (`serve/schemas.py`)
and the web page's form (served by `diffutron serve`) are derived, and by which the field is
checked here. A refused setting raises `SettingError` naming the field.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from diffutron.errors import SettingError
from diffutron.sampling.rule_registry import DEFAULT_RULE, rule_class, rule_names

MAX_SEED = 2**64 - 1  # torch generators take seeds of at most 64 bits; JSON carries any integer
# The most new tokens, model calls (steps) or block length one call may ask for: longer than the
# context of any model Diffutron runs, and small enough that planning the schedule is instant.
WORK_CAP = 8192
Confidence = Literal["probability", "margin", "entropy"]  # what ranks positions under low-confidence remasking
MODEL_CARD_GROUP = "model card"  # the model card's sampler settings
FAST_GROUP = "fast"  # fast generation: the commit rules and the block cache
CONTROLS_GROUP = "controls"  # OpenAI's sampling controls, neutral by default
MAX_LOGIT_BIAS = 100.0  # OpenAI's range for a logit_bias value: -100 bans a token, 100 forces it
MAX_BIASED_TOKENS = 1024  # tokens one logit_bias may name (OpenAI allows 300)
# why the float settings stop where they do (docs/fast-generation.md, "Limits")
_OVERFLOW = "further out the logits overflow the sampler's float64 draw"
_NOISE = "hotter draws are noise"


@dataclass(frozen=True)
class Setting:
    """How a field is described and checked; the type and the choices come from its annotation."""

    help: str
    minimum: float | None = None
    open_minimum: bool = False  # the minimum itself is refused
    maximum: float | None = None  # the domain's upper end (a probability's 1, a seed's 64 bits)
    cap: float | None = None  # a documented upper bound beyond the domain: what one call may ask for
    cap_reason: str = "the most work one call may ask for"
    hint: str = ""  # said after a range error, e.g. " (1.0 disables it)"
    rule: str | None = None  # the commit rule this field is a knob of
    group: str = MODEL_CARD_GROUP
    http: bool = True  # a field of the HTTP requests' diffusion settings


def _setting(default: Any, help: str, **options: Any) -> Any:
    return field(default=default, metadata={"setting": Setting(help, **options)})


def _fraction_knob(help: str, rule: str, hint: str) -> Any:
    """A commit rule's knob that is a probability (or a gap between two): unset by default, in (0, 1]."""
    return _setting(None, help, minimum=0, open_minimum=True, maximum=1, hint=hint, rule=rule, group=FAST_GROUP)


@dataclass(frozen=True)
class GenerationConfig:
    """Options of the masked-diffusion sampler (docs/reference-behaviour.md, section 3).

    Defaults reproduce the DiffutronLM model card: 64 new tokens in 64 steps, blocks of 32,
    temperature 0.1, repetition penalty 1.2, low-confidence remasking.

    Fast generation (docs/fast-generation.md): `rule` names the commit rule (`count`, the model
    card's schedule; `threshold` or `factor`, Fast-dLLM's parallel decoding, whose knobs are the
    fields of the same names: setting one alone picks its rule); `cache` reuses the keys and values
    of the positions outside the block between refreshes (once per block, and every
    `refresh_every` calls if set). Presets: `diffutron.sampling.presets.speed_config`.
    """

    max_new_tokens: int = _setting(64, "Tokens to generate.", minimum=1, cap=WORK_CAP, http=False)
    steps: int = _setting(64, "Model calls in total.", minimum=1, cap=WORK_CAP)
    block_length: int = _setting(32, "Tokens per semi-autoregressive block.", minimum=1, cap=WORK_CAP)
    temperature: float = _setting(0.1, "0 = greedy.", minimum=0, cap=10, cap_reason=_NOISE)
    remasking: Literal["low_confidence", "random"] = _setting("low_confidence", "Which masks to commit first.")
    stochastic_transfer: bool = _setting(False, "Binomial reveal counts.")
    cfg_scale: float = _setting(
        0.0,
        "Classifier-free guidance; 0 disables it.",
        minimum=0,
        hint=" (0 disables guidance)",
        cap=10,
        cap_reason=_OVERFLOW,
    )
    repetition_penalty: float = _setting(1.2, "1.0 disables it.", minimum=0.1, maximum=10, hint=" (1.0 disables it)")
    penalty_scope: Literal["canvas", "generated"] = _setting(
        "canvas", "Tokens penalised: the whole canvas (model card) or generated ones."
    )
    top_k: int = _setting(
        0,
        "Draw only among the k most probable tokens; 0 disables it.",
        minimum=0,
        hint=" (0 disables it)",
        cap=2**31 - 1,
        cap_reason="more tokens than any vocabulary has",
        group=CONTROLS_GROUP,
    )
    top_p: float = _setting(
        1.0,
        "Draw only from the nucleus of this probability mass; 1 disables it.",
        minimum=0,
        open_minimum=True,
        maximum=1,
        hint=" (1.0 disables it)",
        group=CONTROLS_GROUP,
    )
    min_p: float = _setting(
        0.0,
        "Draw only tokens at least this fraction as probable as the likeliest; 0 disables it.",
        minimum=0,
        maximum=1,
        hint=" (0 disables it)",
        group=CONTROLS_GROUP,
    )
    presence_penalty: float = _setting(
        0.0,
        "Subtracted from the logit of each token already generated; 0 disables it.",
        minimum=-2,
        maximum=2,
        hint=" (0 disables it)",
        group=CONTROLS_GROUP,
    )
    frequency_penalty: float = _setting(
        0.0,
        "Subtracted from a token's logit once per time it was generated; 0 disables it.",
        minimum=-2,
        maximum=2,
        hint=" (0 disables it)",
        group=CONTROLS_GROUP,
    )
    logit_bias: Mapping[int | str, float] | None = _setting(
        None,
        "Token id -> bias added to its logit (-100 bans it, 100 forces it).",
        minimum=-MAX_LOGIT_BIAS,
        maximum=MAX_LOGIT_BIAS,
        group=CONTROLS_GROUP,
    )
    early_stop: bool = _setting(True, "Run to the end even once every answer is complete.", http=False)
    seed: int | None = _setting(
        None, "Random seed for reproducible sampling.", minimum=0, maximum=MAX_SEED, hint=" (None draws a random one)"
    )
    truncate: Literal["error", "left"] = _setting("error", "Long prompts: refuse, or cut from the left.", http=False)
    rule: str | None = _setting(None, "Commit rule (a knob alone picks its rule).", group=FAST_GROUP)
    threshold: float | None = _fraction_knob(
        "Parallel decoding: commit every token this confident.",
        rule="threshold",
        hint=" (a confidence; 0.9 is a good start)",
    )
    factor: float | None = _setting(
        None,
        "Parallel decoding by Fast-dLLM's factor rule.",
        minimum=0,
        open_minimum=True,
        hint=" (1.0 is a good start)",
        cap=100,
        cap_reason="above it every position passes: use threshold",
        rule="factor",
        group=FAST_GROUP,
    )
    entropy_bound: float | None = _setting(
        None,
        "Entropy-bounded decoding: commit the least uncertain tokens while their entropies sum to at most this.",
        minimum=0,
        open_minimum=True,
        hint=" (in nats; 0.5 is a good start)",
        cap=100,
        cap_reason="above it every position passes",
        rule="entropy_bound",
        group=FAST_GROUP,
    )
    commit_gap: float | None = _fraction_knob(
        "Early commit: once every open token's top-1/top-2 probability gap is at least this, commit them all.",
        rule="early_commit",
        hint=" (a probability gap; 0.5 is a good start)",
    )
    draft_threshold: float | None = _fraction_knob(
        "Revocable commits: commit every token this confident (low: drafts), with revoke_below.",
        rule="revocable",
        hint=" (a confidence; 0.7 is a good start)",
    )
    revoke_below: float | None = _fraction_knob(
        "Revocable commits: mask a decided token again when its new probability is below this.",
        rule="revocable",
        hint=" (a probability; 0.9 is a good start)",
    )
    confidence: Confidence = _setting(
        "probability",
        "What ranks positions and meets thresholds: the token's probability, top-1 minus top-2, or exp(-entropy).",
        group=FAST_GROUP,
    )
    cache: Literal["none", "prefix", "dual"] = _setting("none", "Block cache.", group=FAST_GROUP)
    refresh_every: int | None = _setting(
        None, "Also refresh the cache every N calls of a block.", minimum=1, cap=WORK_CAP, group=FAST_GROUP
    )

    def __post_init__(self) -> None:
        for name, setting in settings().items():
            self._normalize(name, _checked(name, getattr(self, name), setting, field_type(name)))
        self._check_rule()
        if self.confidence != "probability" and self.remasking != "low_confidence":
            raise SettingError(
                "confidence ranks positions under remasking='low_confidence' only: drop it", "confidence"
            )
        if self.refresh_every is not None and self.cache == "none":
            raise SettingError("refresh_every sets how often the cache is refreshed: choose a cache too")

    def _normalize(self, name: str, value: object) -> None:
        """Store a checked value as a plain int or float (a frozen dataclass needs the detour)."""
        object.__setattr__(self, name, value)

    @property
    def commit_rule(self) -> str:
        """The commit rule's name: `rule` if given, else the rule whose knob is set, else `count`."""
        if self.rule is not None:
            return self.rule
        return next(
            (knob_rule for name, knob_rule in _knobs().items() if getattr(self, name) is not None), DEFAULT_RULE
        )

    def rule_settings(self) -> dict[str, Any]:
        """The knobs of the commit rule, by field name."""
        return {name: getattr(self, name) for name, knob_rule in _knobs().items() if knob_rule == self.commit_rule}

    def _check_rule(self) -> None:
        given = [name for name in _knobs() if getattr(self, name) is not None]
        if self.rule is None and len({_knobs()[name] for name in given}) > 1:
            raise SettingError(f"{' and '.join(given)} are two parallel decoding rules: choose one")
        rule = self.commit_rule
        for name in given:
            if _knobs()[name] != rule:
                raise SettingError(f"{name} is a knob of rule {_knobs()[name]!r}, not {rule!r}: leave it out", name)
        for name in self.rule_settings():
            if getattr(self, name) is None:
                raise SettingError(f"rule {rule!r} needs {name}{settings()[name].hint}", name)
        if rule != DEFAULT_RULE:  # the count schedule takes every setting (and importing it needs torch)
            rule_class(rule).check(self)

    def replace(self, **changes: object) -> GenerationConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@functools.cache
def settings() -> dict[str, Setting]:
    """Every field's `Setting`, in declaration order."""
    return {item.name: item.metadata["setting"] for item in dataclasses.fields(GenerationConfig)}


@functools.cache
def _knobs() -> dict[str, str]:
    """Field name -> the rule it is a knob of."""
    return {name: setting.rule for name, setting in settings().items() if setting.rule is not None}


@functools.cache
def field_type(name: str) -> Any:
    """The field's annotation with None left out (int, float, bool, str or a Literal)."""
    annotation = typing.get_type_hints(GenerationConfig)[name]
    members = [member for member in typing.get_args(annotation) if member is not type(None)]
    return members[0] if typing.get_origin(annotation) is not Literal and members else annotation


def choices(name: str) -> tuple[str, ...] | None:
    """The values a text field takes (its Literal's, or the commit rules), None for other fields."""
    if name == "rule":
        return rule_names()
    annotation = field_type(name)
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None


def default(name: str) -> Any:
    """The field's default (the model card's value; None where unset means "not used")."""
    return _defaults()[name]


@functools.cache
def _defaults() -> dict[str, Any]:
    return {item.name: item.default for item in dataclasses.fields(GenerationConfig)}


def checked_config(config: object, default: GenerationConfig | None = None) -> GenerationConfig:
    """`config`, or `default` (the model card's settings) when it is None; anything else is refused."""
    if config is None:
        return default or GenerationConfig()
    if not isinstance(config, GenerationConfig):
        raise SettingError(
            f"config must be a GenerationConfig (GenerationConfig(**options) builds one), got {type(config).__name__}"
        )
    return config


def _checked(name: str, value: object, setting: Setting, kind: Any) -> object:
    """`value` checked against the field's type and range; None stays None where the default is None."""
    if value is None and default(name) is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingError(f"{name} must be True or False, got {value!r}", name)
        return value
    if kind is int:
        return _integer(name, value, setting)
    if kind is float:
        return _number(name, value, setting)
    if typing.get_origin(kind) is Mapping:
        return _token_bias(name, value, setting)
    options = choices(name) or ()
    if value not in options:
        raise SettingError(f"unknown {name} {value!r}; choose one of: {', '.join(options)}", name)
    return value


def _integer(name: str, value: object, setting: Setting) -> int:
    """`value` as an int within the bounds (bool is not an integer here), or a clear error."""
    minimum, maximum = int(setting.minimum or 0), setting.maximum
    valid = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not (valid and minimum <= value and (maximum is None or value <= maximum)):
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {int(maximum)}"
        raise SettingError(f"{name} must be an integer {bounds}{setting.hint}, got {value!r}", name)
    _check_cap(name, value, setting)
    return int(value)


def _number(name: str, value: object, setting: Setting) -> float:
    """`value` as a float in the field's range; NaN and infinity would pass every comparison unnoticed."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)):
        raise SettingError(f"{name} must be a finite number, got {value!r}", name)
    value = float(value)
    low, high = setting.minimum, setting.maximum
    below = low is not None and (value < low or (setting.open_minimum and value == low))
    if below or (high is not None and value > high):
        if high is None:
            bounds = f"{'>' if setting.open_minimum else '>='} {low:g}"
        else:
            bounds = f"in {'(' if setting.open_minimum else '['}{low:g}, {high:g}]"
        raise SettingError(f"{name} must be {bounds}{setting.hint}, got {value}", name)
    _check_cap(name, value, setting)
    return value


class TokenBias(Mapping[int, float]):
    """A checked `logit_bias`: token id -> bias, read-only and hashable (a config keys a batch)."""

    def __init__(self, biases: Mapping[int, float]) -> None:
        self._biases = dict(sorted(biases.items()))

    def __getitem__(self, token: int) -> float:
        return self._biases[token]

    def __iter__(self) -> Iterator[int]:
        return iter(self._biases)

    def __len__(self) -> int:
        return len(self._biases)

    def __hash__(self) -> int:
        return hash(tuple(self._biases.items()))

    def __repr__(self) -> str:
        return repr(self._biases)

    def __deepcopy__(self, memo: dict[int, object]) -> dict[int, float]:
        """As a plain dict: what `GenerationConfig.to_dict` (dataclasses.asdict) writes out."""
        return dict(self._biases)


def _token_bias(name: str, value: object, setting: Setting) -> TokenBias | None:
    """A mapping of token ids (ints, or their digits as JSON object keys carry them) to finite biases
    in the setting's range; empty is None (nothing to do)."""
    if not isinstance(value, Mapping):
        raise SettingError(f"{name} must map token ids to biases, e.g. {{123: -100}}, got {value!r}", name)
    if len(value) > MAX_BIASED_TOKENS:
        raise SettingError(f"{name} may name at most {MAX_BIASED_TOKENS} tokens, got {len(value)}", name)
    biases = {}
    for key, bias in value.items():
        token = int(key) if isinstance(key, str) and key.isascii() and key.isdigit() else key
        if not (isinstance(token, numbers.Integral) and not isinstance(token, bool) and token >= 0):
            raise SettingError(f"{name} keys must be token ids (integers >= 0), got {key!r}", name)
        try:
            biases[int(token)] = _number(f"{name}[{key}]", bias, setting)
        except SettingError as error:
            raise SettingError(str(error), name) from None
    return TokenBias(biases) if biases else None


def _check_cap(name: str, value: float, setting: Setting) -> None:
    if setting.cap is not None and value > setting.cap:
        raise SettingError(f"{name} must be at most {setting.cap:g} ({setting.cap_reason}), got {value}", name)
