"""The `diffutron` lm-eval model end to end on the tiny random model, and the CETVEL report."""

from __future__ import annotations

import math

import pytest
from lm_eval.api.instance import Instance

from diffutron import Diffutron, GenerationConfig
from diffutron.errors import DiffutronError
from diffutron.eval.cetvel import TASKS, baselines, resolve_tasks, run_cetvel, task_manager
from diffutron.eval.harness_model import DiffutronHarnessLM, cut_at
from helpers.answers import reference_answers
from helpers.cetvel_rows import gold_rows
from helpers.likelihood import exact_bound


@pytest.fixture(scope="module")
def tiny_lm(tiny_model, tiny_tokenizer):
    return Diffutron(tiny_model, tiny_tokenizer)


def request(kind, arguments, task="test_task", doc_id=0):
    return Instance(request_type=kind, doc={}, arguments=arguments, idx=0, metadata=(task, doc_id, 1))


def test_registered_and_built_from_an_argument_string(tiny_checkpoint):
    from lm_eval.api.registry import get_model

    model_class = get_model("diffutron")
    assert model_class is DiffutronHarnessLM
    lm = model_class.create_from_arg_string(
        f"pretrained={tiny_checkpoint},mc_num=4,steps=8,temperature=0.0", {"batch_size": "auto", "device": "cpu"}
    )
    assert lm.scorer.mc_num == 4 and lm.batch_size == 32 and lm.generation.steps == 8
    with pytest.raises(DiffutronError, match="unknown diffutron model argument.*top_q.*valid: pretrained"):
        model_class.create_from_arg_string(f"pretrained={tiny_checkpoint},top_q=3")
    with pytest.raises(DiffutronError, match="no embedded default model"):
        import diffutron.model.loading as loading

        original = loading.default_model_path
        loading.default_model_path = lambda: None
        try:
            DiffutronHarnessLM()
        finally:
            loading.default_model_path = original


def test_cetvel_end_to_end(tiny_lm, cetvel_data_dir):
    harness = DiffutronHarnessLM(lm=tiny_lm, mc_num=4, batch_size=16)
    report = run_cetvel(harness, TASKS, data_dir=cetvel_data_dir, bootstrap_iters=0)
    rows = {row["task"]: row for row in report["tasks"]}
    assert list(rows) == [task.name for task in TASKS]
    expected_chance = {
        "belebele_tr": 25.0,
        "exams_tr": 100 * (1 / 4 + 1 / 3) / 2,
        "ironytr": 50.0,
        "news_cat": 20.0,
        "mnli_tr": 100 / 3,
        "sts_tr": 100 / 6,
        "xcopa_tr": 50.0,
    }
    expected_majority = {
        "belebele_tr": 50.0,
        "exams_tr": 50.0,
        "ironytr": 200 / 3,
        "news_cat": 100 / 3,
        "mnli_tr": 100 / 3,
        "sts_tr": 100 / 3,
        "xcopa_tr": 100.0,
    }
    for name, row in rows.items():
        assert row["n"] == len(gold_rows(f"{name}.jsonl"))
        assert row["dropped_documents"] == (1 if name == "mnli_tr" else 0)  # its pair without gold
        assert row["chance"] == pytest.approx(expected_chance[name])
        assert row["majority"] == pytest.approx(expected_majority[name])
        assert 0 <= row["score"] <= 100 and row["score"] == pytest.approx(100 * row["metrics"]["acc"])
        assert row["truncated_contexts"] == 0
    assert set(rows["ironytr"]["metrics"]) == {"acc", "acc_norm", "f1"}
    assert set(rows["xcopa_tr"]["metrics"]) == {"acc"}
    assert report["average"] == pytest.approx(sum(r["score"] for r in rows.values()) / 7)
    assert report["paper_average"] == 34.68
    assert report["settings"]["mc_num"] == 4 and report["settings"]["data"] == str(cetvel_data_dir)


def test_cetvel_accuracy_is_the_argmax_of_the_likelihoods(tiny_lm, cetvel_data_dir):
    """Checked against likelihoods computed directly: IronyTR's choices are 5 tokens, which 31 rows make exact."""
    harness = DiffutronHarnessLM(lm=tiny_lm, mc_num=31)
    report = run_cetvel(harness, resolve_tasks(["ironytr"]), data_dir=cetvel_data_dir, bootstrap_iters=0)
    task = task_manager(cetvel_data_dir).load(["diffutron_ironytr"])["tasks"]["diffutron_ironytr"]
    correct = 0
    for doc in task.eval_docs:
        context = tiny_lm.encode(task.doc_to_text(doc))
        choices = [tiny_lm.encode(" " + choice) for choice in task.doc_to_choice(doc)]
        assert all(len(choice) <= 5 for choice in choices)
        scores = [exact_bound(tiny_lm.model, tiny_lm.special.mask, context, choice) for choice in choices]
        correct += scores.index(max(scores)) == doc["label"]
    assert report["tasks"][0]["score"] == pytest.approx(100 * correct / 3)


def test_long_contexts_are_cut_counted_and_reported(tiny_lm, cetvel_data_dir):
    harness = DiffutronHarnessLM(lm=tiny_lm, mc_num=2, max_length=12)
    report = run_cetvel(harness, resolve_tasks(["ironytr"]), data_dir=cetvel_data_dir, limit=2, bootstrap_iters=0)
    assert report["tasks"][0]["n"] == 2
    assert report["tasks"][0]["truncated_contexts"] == 4  # 2 documents x 2 choices, all too long
    assert report["settings"]["max_length"] == 12 and report["settings"]["limit"] == 2


def test_loglikelihood_requests(tiny_lm):
    harness = DiffutronHarnessLM(lm=tiny_lm, mc_num=31)  # every mask set of up to 5 tokens: exact
    pairs = [("Bugün hava", " Evet"), ("", "Çay"), ("Kitap okumak", "")]
    results = harness.loglikelihood([request("loglikelihood", pair) for pair in pairs], disable_tqdm=True)
    mask = tiny_lm.special.mask
    expected = [exact_bound(tiny_lm.model, mask, tiny_lm.encode(c), tiny_lm.encode(x) if x else []) for c, x in pairs]
    assert [r[0] for r in results] == pytest.approx(expected, abs=1e-4)
    assert results[2] == (0.0, True)


def test_loglikelihood_rolling_chunks_long_texts(tiny_lm):
    harness = DiffutronHarnessLM(lm=tiny_lm, mc_num=15, max_length=8)  # chunks of 4 tokens: exact
    text = "Güneş doğudan doğar, batıdan batar."
    ids = tiny_lm.encode(text)
    assert len(ids) > 8
    # chunks of half the window, each after the tokens before it that fit the window of 8
    expected = sum(
        exact_bound(tiny_lm.model, tiny_lm.special.mask, ids[max(0, start + 4 - 8) : start], ids[start : start + 4])
        for start in range(0, len(ids), 4)
    )
    totals = harness.loglikelihood_rolling(
        [request("loglikelihood_rolling", (text,)), request("loglikelihood_rolling", ("",))], disable_tqdm=True
    )
    assert totals[0] == pytest.approx(expected, abs=1e-4) and totals[0] < 0 and math.isfinite(totals[0])
    assert totals[1] == 0.0


def test_generate_until_uses_the_sampler_and_cuts_at_until(tiny_lm):
    harness = DiffutronHarnessLM(lm=tiny_lm, repetition_penalty=1.0)
    prompts = ["Türkiye'nin başkenti", "Bugün hava çok"]
    gen = {"max_gen_toks": 6, "do_sample": False}
    plain = harness.generate_until([request("generate_until", (p, dict(gen))) for p in prompts], disable_tqdm=True)
    config = GenerationConfig(max_new_tokens=6, steps=6, temperature=0.0, repetition_penalty=1.0)
    assert plain == reference_answers(tiny_lm.model, tiny_lm.tokenizer, [tiny_lm.encode(p) for p in prompts], config)
    assert all(plain)
    stop = next(ch for ch in plain[0] if ch.strip())  # a character the answer really contains
    cut = harness.generate_until([request("generate_until", (prompts[0], {**gen, "until": [stop]}))], disable_tqdm=True)
    assert cut == [plain[0][: plain[0].index(stop)]]


def test_small_helpers(tiny_lm):
    assert cut_at("abc</s>def\n\nx", ["\n\n", "</s>"]) == "abc"
    assert cut_at("abc", []) == "abc"
    harness = DiffutronHarnessLM(lm=tiny_lm)
    chat = [{"role": "user", "content": "Merhaba"}, {"role": "assistant", "content": "Selam"}]
    assert harness.apply_chat_template(chat[:1]) == "[Question]\nMerhaba\n[/Question]\n\n[Answer]\n"
    assert harness.apply_chat_template(chat, add_generation_prompt=False).endswith("[Answer]\nSelam")
    samples = [
        {"arguments": [("c", " A"), ("c", " B")], "target": 1},
        {"arguments": [("c", " A"), ("c", " B"), ("c", " C")], "target": "B"},
    ]
    assert baselines(samples) == pytest.approx((100 * (1 / 2 + 1 / 3) / 2, 100.0))
