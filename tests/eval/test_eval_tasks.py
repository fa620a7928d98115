"""The packaged CETVEL task files build exactly the requests of docs/reference-behaviour.md, section 8 from rows in each
dataset's schema, fed through lm-eval's custom dataset hook."""

from __future__ import annotations

import json

import pytest
import yaml

from diffutron.errors import DiffutronError
from diffutron.eval import task_functions
from diffutron.eval.cetvel import TASKS, resolve_tasks, task_manager, tasks_dir
from diffutron.eval.sources import DATA_DIR_ENV, cetvel_split
from helpers.cetvel_rows import gold_rows

TWO_SENTENCES = 'Aşağıda iki cümle verilmektedir:\n\nCümle 1: "{}"\nCümle 2: "{}"\n\n'
STS_CHOICES = [
    "Benzerlik Yok",
    "Düşük Benzerlik",
    "Orta Benzerlik",
    "Yüksek Benzerlik",
    "Çok Yüksek Benzerlik",
    "Mantıksal Olarak Aynı",
]

# (context, choices, gold index) of each fixture row, written out from docs/reference-behaviour.md, section 8
EXPECTED = {
    "belebele_tr": [
        (
            "P: Ankara, Türkiye'nin başkentidir. Şehir İç Anadolu'dadır.\nQ: Türkiye'nin başkenti neresidir?\n"
            "A: İstanbul\nB: Ankara\nC: İzmir\nD: Bursa\nAnswer:",
            ["A", "B", "C", "D"],
            1,
        ),
        (
            "P: Çay, Türk kültüründe misafirperverliğin simgesidir.\nQ: Çay neyin simgesidir?\n"
            "A: Misafirperverlik\nB: Savaş\nC: Deniz\nD: Kış\nAnswer:",
            ["A", "B", "C", "D"],
            0,
        ),
    ],
    "exams_tr": [
        ("Güneş hangi yönden doğar?", ["Batı", "Doğu", "Kuzey", "Güney"], 1),
        ("İstanbul Boğazı hangi iki kıtayı bağlar?", ["Asya ve Avrupa", "Afrika ve Asya", "Avrupa ve Afrika"], 0),
    ],
    "ironytr": [
        ("Cümle: Harika, yine yağmur yağıyor.\nSoru: Bu cümlede ironi var mı?\n", ["Hayır", "Evet"], 1),
        ("Cümle: Bugün hava çok güzel.\nSoru: Bu cümlede ironi var mı?\n", ["Hayır", "Evet"], 0),
        ("Cümle: Tabii ki sınavdan önce uyumak en iyisi.\nSoru: Bu cümlede ironi var mı?\n", ["Hayır", "Evet"], 1),
    ],
    "news_cat": [
        (
            f"Cümle: {text}\nSoru: Bu cümlenin konusu nedir?\n Cevap:",
            ["spor", "magazin", "siyaset", "sağlık", "ekonomi"],
            gold,
        )
        for text, gold in (
            ("Takım dün akşam maçı üç golle kazandı.", 0),
            ("Merkez bankası faizleri sabit tuttu.", 4),
            ("Meclis yeni yasayı kabul etti.", 2),
        )
    ],
    "mnli_tr": [
        (
            TWO_SENTENCES.format(premise, hypothesis) + "Bu iki cümle arasındaki ilişki nedir:",
            ["TUTARLI", "ALAKASIZ", "ÇELİŞKİLİ"],
            gold,
        )
        for premise, hypothesis, gold in (
            ("Çocuklar bahçede top oynuyor.", "Çocuklar dışarıda.", 0),
            ("Kitap okumak ufku genişletir.", "Kitap pahalıdır.", 1),
            ("Hava güneşli.", "Kar yağıyor.", 2),
        )
    ],
    "sts_tr": [
        (TWO_SENTENCES.format(first, second) + "Bu iki cümle arasında ne kadar benzerlik vardır:", STS_CHOICES, gold)
        for first, second, gold in (
            ("Bir adam gitar çalıyor.", "Bir kadın yemek yapıyor.", 0),
            ("Bir kedi uyuyor.", "Kedi uyuyor.", 5),
            ("Çocuk koşuyor.", "Bir çocuk hızla koşuyor.", 4),
        )
    ],
    "xcopa_tr": [
        ("Adam bardağı düşürdü bu yüzden", ["bardak kırıldı.", "ışıklar söndü."], 0),
        ("Kız ağladı çünkü", ["iğne battı.", "güneş doğdu."], 0),
    ],
}


def requests_of(task):
    task.build_all_requests(rank=0, world_size=1)
    by_doc: dict[int, list] = {}
    for instance in task.instances:
        by_doc.setdefault(instance.doc_id, []).append(instance)
    return [by_doc[doc_id] for doc_id in sorted(by_doc)]


def test_every_task_builds_the_spec_requests(cetvel_data_dir):
    loaded = task_manager(cetvel_data_dir).load(["diffutron_cetvel"])["tasks"]
    assert sorted(loaded) == sorted(task.harness_name for task in TASKS)
    for task in TASKS:
        harness_task = loaded[task.harness_name]
        assert harness_task.OUTPUT_TYPE == "multiple_choice"
        documents = requests_of(harness_task)
        assert len(documents) == len(gold_rows(f"{task.name}.jsonl")) == len(EXPECTED[task.name])
        for instances, (context, choices, gold) in zip(documents, EXPECTED[task.name]):
            assert [i.request_type for i in instances] == ["loglikelihood"] * len(choices)
            assert [i.args for i in instances] == [(context, " " + choice) for choice in choices]
            assert harness_task.doc_to_target(instances[0].doc) == gold


def test_task_files_use_tags_distinct_names_and_spec_metrics():
    metrics = {
        "belebele_tr": ["acc", "acc_norm"],
        "exams_tr": ["acc", "acc_norm"],
        "ironytr": ["acc", "acc_norm", "f1"],
        "news_cat": ["acc", "acc_norm", "f1"],
        "mnli_tr": ["acc", "acc_norm"],
        "sts_tr": ["acc", "acc_norm"],
        "xcopa_tr": ["acc"],
    }
    splits = {
        "belebele_tr": ("facebook/belebele", "tur_Latn", "test"),
        "exams_tr": ("mhardalov/exams", "crosslingual_tr", "validation"),
        "ironytr": ("mcemilg/IronyTR", None, "validation"),
        "news_cat": ("mcemilg/news-cat", None, "test"),
        "mnli_tr": ("boun-tabi/nli_tr", "multinli_tr", "validation_matched"),
        "sts_tr": ("emrecan/stsb-mt-turkish", None, "test"),
        "xcopa_tr": ("cambridgeltl/xcopa", "tr", "test"),
    }
    common = yaml.safe_load((tasks_dir() / "_cetvel_common").read_text().replace("!function", ""))
    assert common["tag"] == "diffutron_cetvel" and "group" not in common
    for task in TASKS:
        text = (tasks_dir() / f"{task.name}.yaml").read_text()
        config = yaml.safe_load(text.replace("!function", ""))
        assert config["task"] == task.harness_name and "group" not in config
        assert [m["metric"] for m in config["metric_list"]] == metrics[task.name]
        kwargs = config["dataset_kwargs"]
        assert (kwargs["hf_dataset"], kwargs.get("hf_config"), kwargs["hf_split"]) == splits[task.name]
        assert config["test_split"] == kwargs["hf_split"] and kwargs["local_file"] == f"{task.name}.jsonl"


def test_names_do_not_collide_with_lm_eval_builtins():
    from pathlib import Path

    import lm_eval.tasks

    ours = set(task_manager().all_tasks)
    assert ours == {task.harness_name for task in TASKS} | {"diffutron_cetvel"}
    builtin_files = Path(lm_eval.tasks.__file__).parent.glob("**/*.y*ml")
    assert not [path for path in builtin_files if "diffutron" in path.read_text(encoding="utf-8", errors="replace")]


def test_prompt_helpers():
    assert [task_functions.sts_target({"score": s}) for s in (0.0, 0.49, 0.5, 1.5, 2.4, 3.5, 4.49, 4.5, 5.0)] == [
        0,
        0,
        1,
        2,
        2,
        4,
        4,
        5,
        5,
    ]
    assert task_functions.lower_first("Işık") == "ışık" and task_functions.lower_first("İğne") == "iğne"
    assert task_functions.lower_first("Çay") == "çay"
    assert task_functions.xcopa_context({"premise": " Su kaynadı ", "question": "cause"}) == "Su kaynadı çünkü"
    assert task_functions.macro_f1([(0, 0), (1, 1), (2, 1), (2, 2)]) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    broken = {"id": "q1", "answerKey": "E", "question": {"choices": {"label": ["A", "B"], "text": ["x", "y"]}}}
    with pytest.raises(DiffutronError, match="answerKey 'E'"):
        task_functions.exams_target(broken)


# one task file per form (a dataset column holds one type); every file lists the five categories
NEWS_CAT_LABELS = {
    "indices": [0, 1, 2, 3, 4],
    "digits": ["0", "1", "2", "3", "4"],
    "english": ["sport", "magazine", "politics", "health", " economy "],
    "turkish": ["spor", "magazin", "siyaset", "sağlık", "ekonomi"],
}


def _built_task(directory, name, rows):
    with open(directory / f"{name}.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    task = task_manager(directory).load([f"diffutron_{name}"])["tasks"][f"diffutron_{name}"]
    task.build_all_requests(rank=0, world_size=1)
    return task


@pytest.mark.parametrize("form", NEWS_CAT_LABELS)
def test_news_cat_takes_indices_english_names_and_turkish_choices(tmp_path, form):
    rows = [{"text": f"Haber {n}.", "label": label} for n, label in enumerate(NEWS_CAT_LABELS[form])]
    task = _built_task(tmp_path, "news_cat", rows)
    assert [task.doc_to_target(documents[0].doc) for documents in requests_of(task)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("name", "row", "complaint"),
    [
        ("news_cat", {"text": "Haber.", "label": "weather"}, "news_cat row 'Haber.': label 'weather' names no choice"),
        ("news_cat", {"text": "Haber.", "label": 5}, "label 5 names no choice; a label is one of 0-4"),
        ("news_cat", {"text": "Haber.", "label": -1}, "label -1 names no choice"),
        ("news_cat", {"text": "Haber.", "label": None}, "label None names no choice"),
        (
            "ironytr",
            {"text": "Cümle.", "label": 2},
            "ironytr row 'Cümle.': label 2 names no choice; a label is one of 0-1",
        ),
        ("mnli_tr", {"idx": 7, "premise": "A.", "hypothesis": "B.", "label": 3}, "mnli_tr row idx=7: label 3"),
        (
            "xcopa_tr",
            {"premise": "A.", "choice1": "B.", "choice2": "C.", "question": "cause", "label": 2, "idx": 9},
            "xcopa_tr row idx=9: label 2 names no choice",
        ),
        ("sts_tr", {"sentence1": "A.", "sentence2": "B.", "score": 7.5}, "score 7.5 is not a number from 0 to 5"),
        ("sts_tr", {"sentence1": "A.", "sentence2": "B.", "score": float("nan")}, "score nan is not a number"),
        (
            "belebele_tr",
            {
                "flores_passage": "P.",
                "question": "Q?",
                "mc_answer1": "a",
                "mc_answer2": "b",
                "mc_answer3": "c",
                "mc_answer4": "d",
                "correct_answer_num": "5",
                "question_number": 3,
            },
            "belebele_tr row question_number=3: correct_answer_num '5' is not one of 1, 2, 3, 4",
        ),
    ],
)
def test_a_label_out_of_range_is_an_error_naming_it(tmp_path, name, row, complaint):
    with pytest.raises(DiffutronError) as error:
        _built_task(tmp_path, name, [row])
    assert complaint in str(error.value)


def test_mnli_drops_pairs_without_gold_and_says_how_many(tmp_path, caplog):
    rows = [{"idx": n, "premise": "A.", "hypothesis": "B.", "label": label} for n, label in enumerate([0, -1, 2, -1])]
    with caplog.at_level("WARNING", logger="diffutron.eval.task_functions"):
        task = _built_task(tmp_path, "mnli_tr", rows)
    assert [task.doc_to_target(documents[0].doc) for documents in requests_of(task)] == [0, 2]
    assert task_functions.DROPPED_DOCUMENTS["diffutron_mnli_tr"] == 2
    assert "dropped 2 of 4 pairs without a gold label" in caplog.text


def test_data_directory_from_the_environment(cetvel_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(cetvel_data_dir))
    rows = cetvel_split(hf_dataset="mcemilg/IronyTR", hf_split="validation", local_file="ironytr.jsonl", version=1.0)
    assert rows["validation"]["label"] == [1, 0, 1]


def test_bad_data(tmp_path, monkeypatch):
    with pytest.raises(DiffutronError, match="xcopa_tr.jsonl does not exist"):
        cetvel_split(
            hf_dataset="cambridgeltl/xcopa", hf_split="test", local_file="xcopa_tr.jsonl", data_dir=str(tmp_path)
        )
    (tmp_path / "ironytr.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DiffutronError, match="is empty"):
        cetvel_split(
            hf_dataset="mcemilg/IronyTR", hf_split="validation", local_file="ironytr.jsonl", data_dir=str(tmp_path)
        )
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    with pytest.raises(DiffutronError) as error:
        cetvel_split(hf_dataset="mcemilg/IronyTR", hf_split="validation", local_file="ironytr.jsonl")
    message = str(error.value)
    assert "mcemilg/IronyTR" in message and "huggingface-cli download" in message and "--data-dir" in message


def test_unknown_task_lists_the_tasks():
    with pytest.raises(DiffutronError, match="unknown task.*belebele_tr, exams_tr, ironytr, news_cat, mnli_tr"):
        resolve_tasks(["belebele_tr", "hellaswag"])
    assert [t.name for t in resolve_tasks(["xcopa_tr,diffutron_ironytr"])] == ["ironytr", "xcopa_tr"]
