"""Local corpus files: documents per paragraph or line, JSONL/JSON/parquet rows, errors that say where."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diffutron.data.readers import iter_local_records, iter_local_texts
from diffutron.errors import DiffutronError


def texts(path, field="text", **options):
    return [text for _, text in iter_local_texts(path, field, **options)]


def test_txt_documents_are_paragraphs_or_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("Birinci paragraf\nikinci satırı.\n\n\n  İkinci paragraf.  \r\n\nÜçüncü.\n", encoding="utf-8")
    assert texts(path) == ["Birinci paragraf\nikinci satırı.", "İkinci paragraf.", "Üçüncü."]
    assert texts(path, txt_split="line") == ["Birinci paragraf", "ikinci satırı.", "İkinci paragraf.", "Üçüncü."]
    locations = [location for location, _ in iter_local_texts(path)]
    assert locations == [f"{path}:1", f"{path}:5", f"{path}:7"]


def test_jsonl_json_and_parquet_rows(tmp_path):
    rows = [{"metin": "bir", "n": 1}, {"metin": "iki", "n": 2}, {"metin": None, "n": 3}]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n\n", encoding="utf-8")
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    for path in (jsonl, array, parquet):
        assert texts(path, "metin") == ["bir", "iki", ""], path  # null text reads as empty
    assert [record for _, record in iter_local_records(parquet)] == rows


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".txt"])
def test_missing_text_field_lists_the_columns(tmp_path, suffix):
    path = tmp_path / f"rows{suffix}"
    rows = [{"content": "bir", "id": 1}]
    if suffix == ".jsonl":
        path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("bir\n", encoding="utf-8")
    with pytest.raises(DiffutronError, match=r"no column 'body'; columns found: '(content|text)'") as caught:
        texts(path, "body")
    assert str(path) in str(caught.value)


def test_a_later_row_without_the_field_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "bir"}\n{"metin": "iki"}\n', encoding="utf-8")
    with pytest.raises(DiffutronError, match=rf"{path}:2: no column 'text'; columns found: 'metin'"):
        texts(path)


def test_non_utf8_and_malformed_json_name_file_and_line(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"iyi\n\n" + "kötü".encode("latin-1") + b"\n")
    with pytest.raises(DiffutronError, match=rf"{latin}:3: not valid UTF-8"):
        texts(latin)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "bir"}\n\n{"text": "iki",}\n', encoding="utf-8")
    with pytest.raises(DiffutronError, match=rf"{broken}:3: not valid JSON"):
        texts(broken)
    not_object = tmp_path / "list.jsonl"
    not_object.write_text('["text"]\n', encoding="utf-8")
    with pytest.raises(DiffutronError, match=rf"{not_object}:1: expected a JSON object"):
        texts(not_object)
    latin_jsonl = tmp_path / "latin.jsonl"
    latin_jsonl.write_bytes(b'{"text": "a"}\n{"text": "' + "ş".encode("cp1254") + b'"}\n')
    with pytest.raises(DiffutronError, match=rf"{latin_jsonl}:2: not valid UTF-8"):
        texts(latin_jsonl)


def test_unsupported_or_missing_files(tmp_path):
    with pytest.raises(DiffutronError, match="does not exist"):
        texts(tmp_path / "absent.jsonl")
    csv = tmp_path / "rows.csv"
    csv.write_text("text\nbir\n", encoding="utf-8")
    with pytest.raises(DiffutronError, match=r"unsupported file type \.csv"):
        texts(csv)
    with pytest.raises(DiffutronError, match="must be text, got int"):
        path = tmp_path / "numbers.jsonl"
        path.write_text('{"text": 3}\n', encoding="utf-8")
        texts(path)


def test_generation_prompts_are_read_with_the_same_reader(tmp_path):
    from diffutron.cli.jsonl_batch import read_prompts

    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "Merhaba", "id": 1}\n\n{"prompt": "Selam"}\n', encoding="utf-8")
    assert read_prompts(path) == [{"prompt": "Merhaba", "id": 1}, {"prompt": "Selam"}]
    path.write_text('{"prompt": "Merhaba"}\n{"text": "Selam"}\n', encoding="utf-8")
    with pytest.raises(DiffutronError, match=rf"{path}:2: expected an object like"):
        read_prompts(path)
    path.write_bytes(b'{"prompt": "\xfe"}\n')
    with pytest.raises(DiffutronError, match=rf"{path}:1: not valid UTF-8"):
        read_prompts(path)
    with pytest.raises(DiffutronError, match="cannot read"):
        read_prompts(tmp_path / "absent.jsonl")


def test_an_endless_line_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    from diffutron.data import readers
    from diffutron.data.readers import iter_jsonl

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "endless.jsonl"
    path.write_bytes(b'{"prompt": "a"}\n' + b"x" * 5000)
    with pytest.raises(DiffutronError, match=r"endless.jsonl:2: a line longer than"):
        list(iter_jsonl(path))
