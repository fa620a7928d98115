"""Synthetic rows in the exact schema of each CETVEL dataset (the hub is not reachable in tests)."""

from __future__ import annotations

import json
from pathlib import Path

ROWS = {
    "belebele_tr.jsonl": [
        {
            "link": "https://tr.wikinews.org/wiki/Ornek",
            "question_number": 1,
            "flores_passage": "Ankara, Türkiye'nin başkentidir. Şehir İç Anadolu'dadır.",
            "question": "Türkiye'nin başkenti neresidir?",
            "mc_answer1": "İstanbul",
            "mc_answer2": "Ankara",
            "mc_answer3": "İzmir",
            "mc_answer4": "Bursa",
            "correct_answer_num": "2",
            "dialect": "tur_Latn",
            "ds": "2023-05-03",
        },
        {
            "link": "https://tr.wikinews.org/wiki/Ornek2",
            "question_number": 2,
            "flores_passage": "Çay, Türk kültüründe misafirperverliğin simgesidir.",
            "question": "Çay neyin simgesidir?",
            "mc_answer1": "Misafirperverlik",
            "mc_answer2": "Savaş",
            "mc_answer3": "Deniz",
            "mc_answer4": "Kış",
            "correct_answer_num": "1",
            "dialect": "tur_Latn",
            "ds": "2023-05-03",
        },
    ],
    "exams_tr.jsonl": [
        {
            "id": "exams-tr-1",
            "question": {
                "stem": "Güneş hangi yönden doğar?",
                "choices": {
                    "text": ["Batı", "Doğu", "Kuzey", "Güney"],
                    "label": ["A", "B", "C", "D"],
                    "para": ["", "", "", ""],
                },
            },
            "answerKey": "B",
            "info": {"grade": 12, "subject": "Geography", "language": "Turkish"},
        },
        {
            "id": "exams-tr-2",
            "question": {
                "stem": "İstanbul Boğazı hangi iki kıtayı bağlar?",
                "choices": {
                    "text": ["Asya ve Avrupa", "Afrika ve Asya", "Avrupa ve Afrika"],
                    "label": ["A", "B", "C"],
                    "para": ["", "", ""],
                },
            },
            "answerKey": "A",
            "info": {"grade": 11, "subject": "Geography", "language": "Turkish"},
        },
    ],
    "ironytr.jsonl": [
        {"text": "Harika, yine yağmur yağıyor.", "label": 1},
        {"text": "Bugün hava çok güzel.", "label": 0},
        {"text": "Tabii ki sınavdan önce uyumak en iyisi.", "label": 1},
    ],
    "news_cat.jsonl": [  # the hub dataset's labels are English category names
        {"text": "Takım dün akşam maçı üç golle kazandı.", "label": "sport"},
        {"text": "Merkez bankası faizleri sabit tuttu.", "label": "economy"},
        {"text": "Meclis yeni yasayı kabul etti.", "label": "politics"},
    ],
    "mnli_tr.jsonl": [  # label -1: the annotators did not agree, no gold label (dropped)
        {"idx": 0, "premise": "Çocuklar bahçede top oynuyor.", "hypothesis": "Çocuklar dışarıda.", "label": 0},
        {"idx": 1, "premise": "Kitap okumak ufku genişletir.", "hypothesis": "Kitap pahalıdır.", "label": 1},
        {"idx": 2, "premise": "Hava güneşli.", "hypothesis": "Kar yağıyor.", "label": 2},
        {"idx": 3, "premise": "Deniz mavi.", "hypothesis": "Deniz soğuk.", "label": -1},
    ],
    "sts_tr.jsonl": [
        {"sentence1": "Bir adam gitar çalıyor.", "sentence2": "Bir kadın yemek yapıyor.", "score": 0.2},
        {"sentence1": "Bir kedi uyuyor.", "sentence2": "Kedi uyuyor.", "score": 4.8},
        {"sentence1": "Çocuk koşuyor.", "sentence2": "Bir çocuk hızla koşuyor.", "score": 3.5},
    ],
    "xcopa_tr.jsonl": [
        {
            "premise": "Adam bardağı düşürdü.",
            "choice1": "Bardak kırıldı.",
            "choice2": "Işıklar söndü.",
            "question": "effect",
            "label": 0,
            "idx": 1,
            "changed": False,
        },
        {
            "premise": "Kız ağladı.",
            "choice1": "İğne battı.",
            "choice2": "Güneş doğdu.",
            "question": "cause",
            "label": 0,
            "idx": 2,
            "changed": False,
        },
    ],
}


def gold_rows(name: str) -> list[dict]:
    """The rows of `name` (e.g. "mnli_tr.jsonl") that have a gold label: what a task evaluates."""
    return [row for row in ROWS[name] if row.get("label") != -1]


def write_cetvel_rows(directory: Path) -> Path:
    """One `<task>.jsonl` file per packaged CETVEL task, as `--data-dir` expects."""
    for name, rows in ROWS.items():
        with open(directory / name, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return directory
