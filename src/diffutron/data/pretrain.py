"""Build the continual-pretraining corpus (docs/reference-behaviour.md, section 5, the paper's recipe by default).

Each source is read, cleaned, tokenized with the model's tokenizer and length-filtered (documents
too long for one row are dropped, never cut). `keep` sources (the encyclopedic one) are kept whole;
`pool` sources (web/news) are merged, shuffled with the seed and sampled to `pool_size`. The rows
are then shuffled with the seed and, in packing mode, concatenated and cut into max_length chunks.
Same recipe and seed, same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from diffutron.data.documents import DocumentCounts, encode_documents
from diffutron.data.packing import PackingCounts, pack
from diffutron.data.prepared import (
    check_outputs,
    column_array,
    datasets_quiet,
    length_statistics,
    materialize,
    row_lengths,
    scratch_directory,
    software_versions,
    write_prepared,
)
from diffutron.data.readers import text_value
from diffutron.data.recipes import PretrainRecipe, PretrainSource
from diffutron.data.sources import RecordStream, open_source
from diffutron.model.loading import load_tokenizer
from diffutron.model.tokens import tokenizer_fingerprint, tokenizer_name
from diffutron.errors import DiffutronError
from diffutron.progress import Reporter
from diffutron.model.tokens import SpecialIds
from diffutron.typed_config import to_mapping


def build_pretrain(
    recipe: PretrainRecipe, *, tokenizer: Any = None, reporter: Reporter | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Build and write the corpus described by `recipe`; returns the manifest written beside it."""
    from datasets import Features, Sequence, Value, concatenate_datasets

    reporter = reporter or Reporter()
    check_outputs([recipe.output], recipe.sources, recipe.tokenizer, overwrite=overwrite)
    name = tokenizer_name(tokenizer) if tokenizer is not None else recipe.tokenizer
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(recipe.tokenizer)
    eos_id = SpecialIds.from_tokenizer(tokenizer).eos if recipe.append_eos else None
    features = Features({"input_ids": Sequence(Value("int32")), "source": Value("int32")})
    counts = {source.name: DocumentCounts() for source in recipe.sources}

    with scratch_directory(recipe.output) as scratch, datasets_quiet():
        streams = [open_source(source, [source.text_field]) for source in recipe.sources]  # fail fast
        parts = {"keep": [], "pool": []}
        for index, (source, stream) in enumerate(zip(recipe.sources, streams, strict=True)):
            rows = _source_rows(source, stream, index, tokenizer, counts[source.name], recipe, eos_id, reporter)
            parts[source.mode].append(materialize(rows, features, scratch))
        kept = concatenate_datasets(parts["keep"]) if parts["keep"] else None
        pool = concatenate_datasets(parts["pool"]) if parts["pool"] else None
        if sum(c.kept for c in counts.values()) == 0:
            raise DiffutronError(f"the corpus is empty after filtering: {_describe_counts(recipe, counts)}")

        pool_report: dict[str, Any] = {}
        if pool is not None:
            available = len(pool)
            if recipe.pool_size is not None and recipe.pool_size < available:
                pool = pool.shuffle(seed=recipe.seed).select(range(recipe.pool_size))
            elif recipe.pool_size is not None:
                reporter.warn(
                    f"pool_size {recipe.pool_size:,} > the {available:,} documents "
                    "left in the pool after filtering: all of them are used"
                )
            pool_report = {"available": available, "requested": recipe.pool_size, "sampled": len(pool)}

        corpus = concatenate_datasets([part for part in (kept, pool) if part is not None])
        if recipe.shuffle:
            corpus = corpus.shuffle(seed=recipe.seed)
        in_corpus = _per_source(corpus, len(recipe.sources))

        packing_counts = PackingCounts()
        if recipe.packing:
            documents = (row["input_ids"] for row in reporter.track(corpus, "packing", len(corpus)))
            chunks = ({"input_ids": chunk} for chunk in pack(documents, recipe.max_length, packing_counts))
            corpus = materialize(chunks, Features({"input_ids": Sequence(Value("int32"))}), scratch)
            if len(corpus) == 0:
                raise DiffutronError(
                    f"packing made no full chunk of {recipe.max_length} tokens from "
                    f"{packing_counts.dropped_tail_tokens:,} tokens: add data or lower max_length"
                )
        else:
            corpus = corpus.remove_columns("source")

        fingerprint = tokenizer_fingerprint(tokenizer)
        manifest = _manifest(recipe, name, fingerprint, counts, in_corpus, pool_report, packing_counts, corpus)
        with reporter.busy(f"writing {len(corpus):,} rows to {recipe.output}"):
            write_prepared(corpus, recipe.output, manifest, overwrite=overwrite, max_shard_size=recipe.max_shard_size)

    reporter.table(*_summary(recipe, counts, in_corpus, manifest))
    return manifest


def _source_rows(
    source: PretrainSource,
    stream: RecordStream,
    index: int,
    tokenizer: Any,
    counts: DocumentCounts,
    recipe: PretrainRecipe,
    eos_id: int | None,
    reporter: Reporter,
) -> Iterator[dict[str, Any]]:
    records = reporter.track(stream.records, f"{source.name}: reading + tokenizing", stream.total)
    texts = (text_value(record, source.text_field, location) for location, record in records)
    documents = encode_documents(
        texts, tokenizer, counts, eos_id=eos_id, max_tokens=recipe.max_document_tokens, batch_size=recipe.batch_size
    )
    return ({"input_ids": ids, "source": index} for ids in documents)


def _per_source(corpus: Any, sources: int) -> dict[str, np.ndarray]:
    """Documents and tokens each source has in the final corpus (after sampling)."""
    source = column_array(corpus, "source")
    lengths = row_lengths(corpus)
    return {
        "documents": np.bincount(source, minlength=sources),
        "tokens": np.bincount(source, weights=lengths, minlength=sources).astype(np.int64),
    }


def _manifest(
    recipe: PretrainRecipe,
    tokenizer: str,
    fingerprint: str,
    counts: dict[str, DocumentCounts],
    in_corpus: dict[str, np.ndarray],
    pool: dict[str, Any],
    packing: PackingCounts,
    corpus: Any,
) -> dict[str, Any]:
    sources = {
        source.name: {
            "origin": source.origin,
            "mode": source.mode,
            **counts[source.name].to_dict(),
            "in_corpus": int(in_corpus["documents"][index]),
            "tokens_in_corpus": int(in_corpus["tokens"][index]),
        }
        for index, source in enumerate(recipe.sources)
    }
    return {
        "kind": "pretrain",
        "columns": ["input_ids"],
        "tokenizer": tokenizer,
        "tokenizer_fingerprint": fingerprint,
        "seed": recipe.seed,
        "max_length": recipe.max_length,
        "max_document_tokens": recipe.max_document_tokens,
        "packing": recipe.packing,
        "append_eos": recipe.append_eos,
        "sources": sources,
        "pool": pool,
        **(
            {"packing_counts": {"chunks": packing.chunks, "dropped_tail_tokens": packing.dropped_tail_tokens}}
            if recipe.packing
            else {}
        ),
        "statistics": length_statistics(corpus),
        "recipe": to_mapping(recipe),
        "versions": software_versions(),
    }


def _describe_counts(recipe: PretrainRecipe, counts: dict[str, DocumentCounts]) -> str:
    limit = recipe.max_document_tokens
    return "; ".join(
        f"{name}: read {c.read:,}, empty {c.empty:,}, too long (> {limit} tokens) {c.too_long:,}, kept {c.kept:,}"
        for name, c in counts.items()
    ) + (". Check text_field, max_length/max_document_tokens and the source files." if limit else ".")


def _summary(
    recipe: PretrainRecipe,
    counts: dict[str, DocumentCounts],
    in_corpus: dict[str, np.ndarray],
    manifest: dict[str, Any],
) -> tuple[str, tuple[str, ...], list[tuple[Any, ...]]]:
    rows = [
        (
            source.name,
            source.mode,
            counts[source.name].read,
            counts[source.name].empty,
            counts[source.name].too_long,
            counts[source.name].kept,
            int(in_corpus["documents"][index]),
            int(in_corpus["tokens"][index]),
        )
        for index, source in enumerate(recipe.sources)
    ]
    stats = manifest["statistics"]
    title = (
        f"{recipe.output}: {stats['rows']:,} rows, {stats['tokens']:,} tokens "
        f"(mean {stats.get('mean', 0)}, max {stats.get('max', 0)}; seed {recipe.seed}"
        + (", packed" if recipe.packing else "")
        + ")"
    )
    header = ("source", "mode", "read", "empty", "too long", "kept", "in corpus", "tokens in corpus")
    return title, header, rows
