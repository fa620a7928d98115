"""The Turkish WordNet KeNet, read from the `nlptoolkit-wordnet` distribution's turkish_wordnet.xml.

One parser serves both the pretraining corpus (definitions and example sentences) and the
instruction data (dictionary questions, synonyms, antonyms, hypernyms).
"""

from __future__ import annotations

import unicodedata
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from diffutron.embedded.installed import InstalledSource
from diffutron.errors import DiffutronError

KENET = InstalledSource("nlptoolkit-wordnet", "GPL-3.0")
KENET_FILE = "WordNet/data/turkish_wordnet.xml"

# KeNet's part-of-speech letters (see WordNet/WordNet.py in the distribution), in Turkish
POS_NAMES = {
    "n": "isim",
    "v": "fiil",
    "a": "sıfat",
    "b": "zarf",
    "i": "ünlem",
    "c": "bağlaç",
    "p": "edat",
    "r": "zamir",
}


@dataclass(frozen=True)
class Synset:
    id: str
    pos: str
    literals: tuple[str, ...]
    senses: tuple[int, ...]  # the sense number of each literal (1 = the word's first dictionary sense)
    definition: str
    examples: tuple[str, ...]
    relations: tuple[tuple[str, str], ...]  # (type, target synset id), e.g. ("HYPERNYM", "TUR10-...")

    @property
    def words(self) -> tuple[str, ...]:
        """Literals that are real words (KeNet also has placeholders such as "(özel isim)")."""
        return tuple(literal for literal in self.literals if not literal.startswith("("))

    def related(self, kind: str) -> tuple[str, ...]:
        return tuple(target for relation, target in self.relations if relation == kind)


def primary_senses(synsets: Iterable[Synset]) -> dict[str, str]:
    """word -> id of the synset holding its lowest-numbered sense (its main dictionary meaning)."""
    best: dict[str, tuple[int, str]] = {}
    for synset in synsets:
        for word, sense in zip(synset.literals, synset.senses):
            if word in synset.words and (word not in best or sense < best[word][0]):
                best[word] = (sense, synset.id)
    return {word: identifier for word, (_, identifier) in best.items()}


def kenet_path() -> Path:
    return KENET.file(KENET_FILE)


def read_kenet(path: str | Path | None = None) -> list[Synset]:
    """Every synset with a definition, in file order (text NFC-normalised, whitespace collapsed)."""
    return list(iter_synsets(kenet_path() if path is None else Path(path)))


def iter_synsets(path: Path) -> Iterator[Synset]:
    try:
        for _, element in ElementTree.iterparse(path, events=("end",)):
            if element.tag != "SYNSET":
                continue
            synset = _synset(element)
            element.clear()
            if synset is not None:
                yield synset
    except ElementTree.ParseError as error:
        raise DiffutronError(f"{path} is not a readable KeNet XML file: {error}") from error


def _synset(element: ElementTree.Element) -> Synset | None:
    definition = _text(element.findtext("DEF"))
    identifier = _text(element.findtext("ID"))
    if not definition or not identifier:
        return None
    literals: dict[str, int] = {}
    for literal in element.iterfind("SYNONYM/LITERAL"):
        word = _text(literal.text)
        if word and word not in literals:
            sense = _text(literal.findtext("SENSE"))
            literals[word] = int(sense) if sense.isdigit() else 0
    examples = tuple(
        dict.fromkeys(filter(None, (_text(part) for part in (element.findtext("EXAMPLE") or "").split("|"))))
    )
    relations = tuple(
        (_text(relation.findtext("TYPE")), _text(relation.text))
        for relation in element.iterfind("SR")
        if relation.text and relation.findtext("TYPE")
    )
    return Synset(
        id=identifier,
        pos=_text(element.findtext("POS")),
        literals=tuple(literals),
        senses=tuple(literals.values()),
        definition=definition,
        examples=examples,
        relations=relations,
    )


def _text(value: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", value or "").split())
