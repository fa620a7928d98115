"""Model calls of a structured (JSON) answer against a free answer of the same length, on the embedded model.

A structured answer costs the likelihood passes that settle its choices (booleans, enum, optional
properties; one round per choice, all rows together) plus the sampler's calls over its slots only:
the skeleton's fixed tokens are never generated. The free answer generates as many tokens as the
structured answer has, with early stopping off, under the same settings.

    python benchmarks/bench_structured.py [--speed exact fast fastest] [--seed 0]
"""

from __future__ import annotations

import argparse
import json

from diffutron import Diffutron, GenerationConfig
from diffutron.sampling.presets import speed_config
from diffutron.sampling.structured import fill

SCHEMA = {
    "type": "object",
    "properties": {
        "ad": {"type": "string", "maxLength": 8},
        "yas": {"type": "integer", "minimum": 0, "maximum": 120},
        "sehir": {"enum": ["Ankara", "İstanbul", "İzmir"]},
        "ogrenci": {"type": "boolean"},
        "notlar": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 100}, "maxItems": 3},
        "eposta": {"type": "string", "maxLength": 8},
    },
    "required": ["ad", "yas", "sehir", "ogrenci", "notlar"],
}
PROMPT = "Bir öğrenciyi tanıt."


class CallCounter:
    """Counts the encoder's forward passes: the sampler's (a cached step may take two) and the likelihood's."""

    def __init__(self, lm: Diffutron) -> None:
        self.calls = 0
        lm.model.model.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1

    def since(self, start: int) -> int:
        return self.calls - start


def counting_choices(counter: CallCounter) -> list[int]:
    """Wrap the structured fill's choice settling so that its passes are counted apart (one entry per answer)."""
    passes: list[int] = []
    settle = fill.settle_choices

    def counted(*args: object, **kwargs: object) -> object:
        start = counter.calls
        readers = settle(*args, **kwargs)
        passes.append(counter.since(start))
        return readers

    fill.settle_choices = counted
    return passes


def measure(lm: Diffutron, counter: CallCounter, config: GenerationConfig, choices: list[int]) -> dict[str, object]:
    response_format = {"type": "json_schema", "json_schema": {"name": "student", "schema": SCHEMA}}
    steps: list[int] = []
    start = counter.calls
    answer = lm.chat(PROMPT, config, response_format=response_format, callback=lambda event: steps.append(1))
    structured = counter.since(start)
    length = len(lm.encode(answer))
    free_steps: list[int] = []
    start = counter.calls
    free = config.replace(max_new_tokens=length, early_stop=False)
    lm.chat(PROMPT, free, callback=lambda event: free_steps.append(1))
    return {
        "answer": json.loads(answer),
        "answer_tokens": length,
        "structured": {"passes": structured, "choice_passes": choices[-1], "sampler_steps": len(steps)},
        "free": {"passes": counter.since(start), "sampler_steps": len(free_steps)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", nargs="+", default=["exact", "fast", "fastest"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for speed in args.speed:
        lm = Diffutron.from_pretrained(speed=speed)
        counter = CallCounter(lm)
        choices = counting_choices(counter)
        config = speed_config(speed, GenerationConfig(seed=args.seed))
        print(json.dumps({"speed": speed, **measure(lm, counter, config, choices)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
