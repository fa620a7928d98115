"""Build SFT data: instruction rows -> chat-format conversations -> `input_ids` + `labels` rows.

Rows are unpadded; the training collator pads them with the pad token and labels the pads
(docs/reference-behaviour.md, section 4). With `eval_size`, a seeded held-out split is written as a second prepared
dataset at `eval_output`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


from diffutron.data.conversations import needed_columns, record_to_messages, record_to_text
from diffutron.data.prepared import (
    check_outputs,
    datasets_quiet,
    length_statistics,
    materialize,
    scratch_directory,
    software_versions,
    write_prepared,
)
from diffutron.data.recipes import SFTRecipe, SFTSource
from diffutron.model.tokens import IGNORE_INDEX
from diffutron.data.sft_examples import SFTCounts, encode_conversations, split_conversation
from diffutron.data.sources import RecordStream, open_source
from diffutron.model.loading import load_tokenizer
from diffutron.model.tokens import tokenizer_fingerprint, tokenizer_name
from diffutron.errors import DiffutronError
from diffutron.progress import Reporter
from diffutron.typed_config import to_mapping

BOUNDARY = "prompt (through the final '[Answer]\\n') and answer tokenized separately, ids concatenated"


def build_sft(
    recipe: SFTRecipe, *, tokenizer: Any = None, reporter: Reporter | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Build and write the SFT data of `recipe`; returns the manifest of the training split."""
    from datasets import Features, Sequence, Value, concatenate_datasets

    reporter = reporter or Reporter()
    check_outputs([recipe.output, recipe.eval_output], recipe.sources, recipe.tokenizer, overwrite=overwrite)
    name = tokenizer_name(tokenizer) if tokenizer is not None else recipe.tokenizer
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(recipe.tokenizer)
    features = Features({"input_ids": Sequence(Value("int32")), "labels": Sequence(Value("int32"))})
    counts = {source.name: SFTCounts() for source in recipe.sources}

    with scratch_directory(recipe.output) as scratch, datasets_quiet():
        streams = [open_source(source, needed_columns(source.columns)) for source in recipe.sources]  # fail fast
        parts = []
        for source, stream in zip(recipe.sources, streams, strict=True):
            pairs = _conversation_texts(source, stream, counts[source.name], reporter)
            rows = encode_conversations(
                pairs, tokenizer, counts[source.name], max_length=recipe.max_length, batch_size=recipe.batch_size
            )
            parts.append(materialize(rows, features, scratch))
        dataset = concatenate_datasets(parts)
        if len(dataset) == 0:
            raise DiffutronError(f"no SFT example is left: {_describe_counts(recipe, counts)}")

        splits = {"train": dataset}
        if recipe.eval_size:
            size = int(recipe.eval_size) if recipe.eval_size >= 1 else recipe.eval_size
            if isinstance(size, int) and size >= len(dataset):
                raise DiffutronError(f"eval_size {size} leaves no training example (only {len(dataset)} examples)")
            try:
                held_out = dataset.train_test_split(test_size=size, seed=recipe.seed)
            except ValueError as error:  # e.g. a fraction that rounds to an empty split
                raise DiffutronError(f"cannot hold out eval_size {size} of {len(dataset)} examples: {error}") from None
            splits = {"train": held_out["train"], "eval": held_out["test"]}

        manifests = {}
        fingerprint = tokenizer_fingerprint(tokenizer)
        for split in ("eval", "train"):  # train last: its manifest names the eval directory
            if split not in splits:
                continue
            output = recipe.output if split == "train" else recipe.eval_output
            assert output is not None
            manifests[split] = _manifest(recipe, name, fingerprint, counts, splits, split)
            with reporter.busy(f"writing {len(splits[split]):,} {split} rows to {output}"):
                write_prepared(
                    splits[split], output, manifests[split], overwrite=overwrite, max_shard_size=recipe.max_shard_size
                )

    reporter.table(*_summary(recipe, counts, manifests))
    return manifests["train"]


def _conversation_texts(
    source: SFTSource, stream: RecordStream, counts: SFTCounts, reporter: Reporter
) -> Iterator[tuple[str, str]]:
    """(prompt, answer) texts of each usable row; malformed rows are errors naming where they are.

    A `text` row is all answer (empty prompt, no chat tags), so every token of it is labelled: plain
    text mixed into instruction tuning keeps the model's language modelling from eroding.
    """
    for location, record in reporter.track(stream.records, f"{source.name}: reading + tokenizing", stream.total):
        counts.read += 1
        if source.format == "text":
            text = record_to_text(record, source.columns, location)
            if text is None:
                counts.empty += 1
            else:
                yield "", text
            continue
        messages = record_to_messages(source.format, record, source.columns, location)
        if messages is None:
            counts.empty += 1
            continue
        try:
            yield split_conversation(messages)
        except DiffutronError as error:
            raise DiffutronError(f"{location}: {error}") from None


def _manifest(
    recipe: SFTRecipe,
    tokenizer: str,
    fingerprint: str,
    counts: dict[str, SFTCounts],
    splits: dict[str, Any],
    split: str,
) -> dict[str, Any]:
    other = {"train": "eval", "eval": "train"}[split]
    return {
        "kind": "sft",
        "split": split,
        "columns": ["input_ids", "labels"],
        "label_ignore_index": IGNORE_INDEX,
        "boundary": BOUNDARY,
        "tokenizer": tokenizer,
        "tokenizer_fingerprint": fingerprint,
        "seed": recipe.seed,
        "max_length": recipe.max_length,
        "sources": {
            source.name: {
                "origin": source.origin,
                "format": source.format,
                "columns": source.columns,
                **counts[source.name].to_dict(),
            }
            for source in recipe.sources
        },
        "statistics": length_statistics(splits[split]),
        **(
            {
                other: {
                    "path": str(recipe.output if other == "train" else recipe.eval_output),
                    "rows": len(splits[other]),
                }
            }
            if other in splits
            else {}
        ),
        "recipe": to_mapping(recipe),
        "versions": software_versions(),
    }


def _describe_counts(recipe: SFTRecipe, counts: dict[str, SFTCounts]) -> str:
    return (
        "; ".join(
            f"{name}: read {c.read:,}, empty question or answer {c.empty:,}, prompt leaving no answer token "
            f"within max_length {recipe.max_length} {c.prompt_too_long:,}, kept {c.kept:,}"
            for name, c in counts.items()
        )
        + ". Check the column mapping, max_length and the source files."
    )


def _summary(recipe: SFTRecipe, counts: dict[str, SFTCounts], manifests: dict[str, dict[str, Any]]
) -> tuple[str, tuple[str, ...], list[tuple[Any, ...]]]:
    rows = [
        (name, c.read, c.empty, c.prompt_too_long, c.truncated, c.kept, c.tokens, c.answer_tokens)
        for name, c in counts.items()
    ]
    splits = ", ".join(f"{split} {manifest['statistics']['rows']:,} rows" for split, manifest in manifests.items())
    title = f"{recipe.output}: {splits} (max_length {recipe.max_length}, seed {recipe.seed})"
    header = ("source", "read", "empty", "prompt too long", "cut", "kept", "tokens", "answer tokens")
    return title, header, rows
