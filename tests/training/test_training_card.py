"""Model cards written from a run: Hub metadata checked by huggingface_hub, the run's own numbers,
evaluation reports, refresh, merged models, `push_to_hub` at the end of `train`."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load
from typer.testing import CliRunner

from diffutron.cli import app
from diffutron.data.pretrain import build_pretrain
from diffutron.data.recipes import PretrainRecipe, PretrainSource
from diffutron.errors import DiffutronError
from diffutron.model import hub_upload
from diffutron.training import card_facts, run
from diffutron.training.callbacks import read_log
from diffutron.training.card import NOTES_MARKER, _derived_license, _introduction, _usage, format_duration, write_card
from diffutron.training.card_facts import (
    DataFacts,
    data_facts,
    device_name,
    hub_base_model,
    hub_license,
    load_stage,
    record_session,
    report_kind,
    source_license,
)
from diffutron.training.config import load_training_recipe
from helpers.tiny import TURKISH_TEXT
from helpers.training_data import pretrain_sections, write_recipe

RUNNER = CliRunner()
STEPS = 6
TAGS = ["turkish", "masked-diffusion", "diffusion", "dllm", "diffutron"]


def invoke(*arguments) -> tuple[int, str]:
    result = RUNNER.invoke(app, [str(argument) for argument in arguments])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def corpus_data(tmp_path_factory, tiny_tokenizer, tokenizer_dir) -> Path:
    """Pretraining data built by `build_pretrain` from a corpus folder whose manifest records its license."""
    folder = tmp_path_factory.mktemp("corpus")
    sentences = [line for line in TURKISH_TEXT.replace(". ", ".\n").splitlines() if len(line) > 10]
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in sentences * 4), "utf-8")
    manifest = {"kind": "offline-corpus", "sources": [{"name": "sentences", "license": "MIT"}]}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    recipe = PretrainRecipe(
        output=folder / "data",
        tokenizer=str(tokenizer_dir),
        sources=[PretrainSource(name="tiny-corpus", path=folder / "train.jsonl", mode="keep")],
        max_length=64,
    )
    build_pretrain(recipe, tokenizer=tiny_tokenizer)
    return folder / "data"


def train_tiny(folder: Path, tokenizer_dir: Path, data: Path, **changes) -> Path:
    sections = pretrain_sections(folder / "run", tokenizer_dir, data, **changes)
    sections["training"]["max_steps"] = STEPS
    sections["checkpoints"] = {"save_steps": 3, "keep_last": 2}
    run.train(load_training_recipe(write_recipe(folder / "recipe.yaml", **sections)))
    return folder / "run"


@pytest.fixture(scope="module")
def card_run(tmp_path_factory, tokenizer_dir, corpus_data) -> Path:
    return train_tiny(tmp_path_factory.mktemp("card"), tokenizer_dir, corpus_data)


@pytest.fixture
def run_copy(card_run, tmp_path) -> Path:
    shutil.copytree(card_run, tmp_path / "run")
    return tmp_path / "run"


def logged_seconds(records: list[dict]) -> float:
    total, previous = 0.0, 0
    for record in records:
        if "tokens" in record:
            total += (record["tokens"] - previous) / record["tokens_per_second"]
            previous = record["tokens"]
    return total


def test_train_writes_a_card_whose_metadata_passes_the_hub_clients_checks(card_run):
    path = card_run / "final" / "README.md"
    card = ModelCard.load(path, ignore_metadata_errors=False)  # the client's parsing and metadata checks
    expected = {
        "language": "tr",
        "license": "mit",  # the data's one license, from the corpus manifest
        "library_name": "transformers",
        "pipeline_tag": "fill-mask",
        "tags": TAGS,
    }
    assert card.data.to_dict() == expected
    assert metadata_load(path) == expected
    assert str(ModelCard(path.read_text(encoding="utf-8"))) == path.read_text(encoding="utf-8")  # canonical form
    assert (card_run / "final" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![Training loss per step](loss.png)" in card.text


def test_the_cards_numbers_are_the_runs(card_run, corpus_data):
    text = (card_run / "final" / "README.md").read_text(encoding="utf-8")
    records = read_log(card_run / "log.jsonl")
    tokens = records[-1]["tokens"]
    info = json.loads((card_run / "run.json").read_text(encoding="utf-8"))
    parameters = card_facts.model_facts(card_run / "final")["parameters"]
    assert info["parameters"] == {"trainable": parameters, "total": parameters}  # every weight trained, all saved
    assert [(s["steps"], s["processes"], s["device"], s["precision"]) for s in info["sessions"]] == [
        ([0, STEPS], 1, device_name("cpu"), "fp32")
    ]
    time = format_duration(logged_seconds(records))
    assert f"| 1 | run | pretraining, full | from scratch | {STEPS} | 8 | {tokens:,} | 0.003 | {time} |" in text
    assert f"- Trained: {parameters:,} of {parameters:,} parameters (100.00%)." in text
    assert f"- Time: {time} of training steps; hardware: 1 x {device_name('cpu')}, fp32." in text
    loss = [record for record in records if "loss" in record][-1]["loss"]
    assert f"tokens seen {tokens:,}; last logged training loss {loss:.4f} at step {STEPS}." in text
    manifest = json.loads((corpus_data / "manifest.json").read_text(encoding="utf-8"))
    source, statistics = manifest["sources"]["tiny-corpus"], manifest["statistics"]
    assert (
        f"| tiny-corpus | {source['origin']} | MIT | {source['in_corpus']:,} | {source['tokens_in_corpus']:,} |" in text
    )
    assert f"- `{corpus_data}` (pretrain): {statistics['rows']:,} rows, {statistics['tokens']:,} tokens" in text
    assert (card_run / "recipe.yaml").read_text(encoding="utf-8").strip() in text
    assert f"diffutron chat --model {card_run / 'final'}\n" in text and "No evaluation report was found" in text
    config = json.loads((card_run / "final" / "config.json").read_text(encoding="utf-8"))
    assert "\n# run\n" in text and "It is pretrained (not instruction-tuned)" in text
    assert (
        f"- `ModernBertForMaskedLM` (loaded by transformers without custom code), {parameters:,} parameters: " in text
    )
    assert f"{parameters:,} parameters: hidden size 32, 2 layers, 2 attention heads, intermediate size 48, " in text
    assert f"context 128 tokens, vocabulary {config['vocab_size']:,}." in text


PERPLEXITY = {
    "perplexity": 41.2345,
    "cross_entropy": 3.719,
    "tokens": 1234,
    "documents": 10,
    "sequences": 10,
    "interval": [39.5, 43.25],
    "confidence": 0.95,
    "settings": {"mlm_probability": 0.15, "max_length": 64, "seed": 0},
    "model": "runs/x/final",
    "data": "heldout.jsonl",
}
UNIGRAM = {"perplexity": 1645.2, "cross_entropy": 7.4, "tokens": 1234, "training_tokens": 5000, "settings": {}}
CETVEL = {
    "tasks": [
        {"title": "Belebele_TR", "score": 27.5, "chance": 25.0, "majority": 26.125, "n": 900},
        {"title": "XCOPA_TR", "score": 52.0, "chance": 50.0, "majority": 51.0, "n": 500},
    ],
    "average": 39.75,
    "average_chance": 37.5,
    "average_majority": 38.5625,
}
DEFINITIONS = {
    "splits": {"heldout": {"chrf": 10.84, "questions": 200, "empty_answers": 1}},
    "answers": [],
    "sampler": {"max_new_tokens": 48, "steps": 48, "block_length": 16, "temperature": 0.2},
}


def test_reports_beside_the_model_fill_the_evaluation_and_a_refresh_keeps_the_options(run_copy, tmp_path):
    final = run_copy / "final"
    for name, report in (("ppl", PERPLEXITY), ("unigram", UNIGRAM), ("defs", DEFINITIONS)):
        (final / f"eval-{name}.json").write_text(json.dumps(report), encoding="utf-8")
    (run_copy / "cetvel.json").write_text(json.dumps(CETVEL), encoding="utf-8")  # the run folder counts too
    (final / "broken.json").write_text("{", encoding="utf-8")  # not a report: ignored
    notes = tmp_path / "notes.md"
    notes.write_text("## Limitations\n\nA test model.\n", encoding="utf-8")
    code, output = invoke("card", run_copy, "--license", "apache-2.0", "--repo-id", "someone/tiny-tr", "--notes", notes)
    assert code == 0 and output == f"wrote {final / 'README.md'} and {final / 'loss.png'}"
    text = (final / "README.md").read_text(encoding="utf-8")
    assert "| heldout.jsonl | model | 0.15 | 1,234 | 41.23 (95% interval 39.50-43.25) |" in text
    assert "| eval-unigram.json | unigram baseline |  | 1,234 | 1645.20 |" in text
    assert "| Belebele_TR | 27.50 | 25.00 | 26.12 | 900 |\n| XCOPA_TR | 52.00 | 50.00 | 51.00 | 500 |" in text
    assert "| **Average** | **39.75** | 37.50 | 38.56 | |" in text
    assert "| heldout | 10.8 | 200 | 1 |" in text
    assert text.count("| heldout.jsonl | model |") == 1 and text.count("| **Average** |") == 1  # each report once
    assert "Sampler settings (used in the evaluation below):" in text and "| `block_length` | 16 |" in text
    assert "diffutron chat --model someone/tiny-tr\n" in text and text.startswith("---\n") and "# tiny-tr\n" in text
    assert text.endswith(f"{NOTES_MARKER}\n\n## Limitations\n\nA test model.\n")
    metadata = ModelCard.load(final / "README.md").data.to_dict()
    assert metadata["license"] == "apache-2.0" and metadata["metrics"] == ["perplexity", "accuracy", "chrf"]

    first = text
    code, _ = invoke("card", final)  # a refresh: the options and notes recorded in the card stay
    assert code == 0 and (final / "README.md").read_text(encoding="utf-8") == first


def test_a_readme_it_did_not_write_is_replaced_only_with_overwrite(run_copy):
    readme = run_copy / "final" / "README.md"
    readme.write_text("# My own card\n", encoding="utf-8")
    code, output = invoke("card", run_copy)
    assert code == 2 and output == (
        f"error: {readme} was not written by `diffutron card`; it is left as it is: pass --overwrite to replace it"
    )
    assert readme.read_text(encoding="utf-8") == "# My own card\n"
    assert invoke("card", run_copy, "--overwrite")[0] == 0 and "diffutron-card" in readme.read_text(encoding="utf-8")


def test_bad_card_inputs_are_refused_before_anything_is_written(run_copy, tmp_path):
    final = run_copy / "final"
    before = (final / "README.md").read_text(encoding="utf-8")
    (tmp_path / "empty").mkdir()
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_copy, unfinished, ignore=shutil.ignore_patterns("final"))
    cases = [
        ((tmp_path / "empty",), "is neither a run folder (recipe.yaml and log.jsonl) nor a model folder"),
        ((unfinished,), "is a run without a final model yet"),
        ((final, "--license", "GPL 3"), "--license 'GPL 3' is not a Hub license id"),
        ((final, "--repo-id", "a/b/c"), "--repo-id: 'a/b/c' is not a valid Hub repo id"),
        ((final, "--base-model", "x--y"), "--base-model: 'x--y' is not a valid Hub repo id"),
        ((final, "--run", tmp_path / "empty"), "is not a run folder (recipe.yaml and log.jsonl)"),
        ((final, "--notes", tmp_path / "missing.md"), "--notes"),
    ]
    for arguments, fragment in cases:
        code, output = invoke("card", *arguments)
        assert code == 2 and fragment in output and output.startswith("error: "), (arguments, output)
        assert len(output.splitlines()) == 1
    assert (final / "README.md").read_text(encoding="utf-8") == before


def test_a_model_folder_without_a_run_gets_a_card_of_its_weights(tiny_checkpoint, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    card, plot = write_card(model, license="other")
    text = card.read_text(encoding="utf-8")
    assert plot is None and "No training run was found beside it" in text and "## Training" not in text
    assert ModelCard.load(card).data.to_dict() == {
        "language": "tr",
        "license": "other",
        "library_name": "transformers",
        "pipeline_tag": "fill-mask",
        "tags": TAGS,
    }


def test_a_stage_continued_from_another_runs_final_lists_both_and_inherits_its_license(
    card_run, tmp_path, tokenizer_dir, corpus_data
):
    second = train_tiny(
        tmp_path,
        tokenizer_dir,
        corpus_data,
        model={"name_or_path": str(card_run / "final"), "from_scratch": None},
        lora={"r": 2, "alpha": 4},
    )
    text = (second / "final" / "README.md").read_text(encoding="utf-8")
    assert f"| 1 | run | pretraining, full | from scratch | {STEPS} |" in text
    assert f"| 2 | run | pretraining, LoRA r=2 | {card_run / 'final'} | {STEPS} |" in text
    info = json.loads((second / "run.json").read_text(encoding="utf-8"))["parameters"]
    share = 100 * info["trainable"] / info["total"]
    assert 0 < info["trainable"] < info["total"]
    assert (
        f"- Trained: {info['trainable']:,} of {info['total']:,} parameters ({share:.2f}%): LoRA r=2, alpha=4, "
        "dropout 0.1 on Wqkv, Wo, Wi, merged into the weights." in text
    )
    metadata = ModelCard.load(second / "final" / "README.md").data.to_dict()
    assert metadata["license"] == "mit" and metadata["tags"] == [*TAGS, "lora"]  # the base's card's license

    merged = tmp_path / "merged"
    code, _ = invoke("merge-lora", second / "checkpoint-3", merged)
    assert code == 0
    merged_text = (merged / "README.md").read_text(encoding="utf-8")
    assert f"| 2 | run | pretraining, LoRA r=2 | {card_run / 'final'} | 3 |" in merged_text  # the checkpoint's step
    assert (merged / "loss.png").is_file()


def test_push_to_hub_is_checked_when_the_recipe_loads_and_before_training(
    tmp_path, tokenizer_dir, corpus_data, monkeypatch
):
    sections = pretrain_sections(tmp_path / "run", tokenizer_dir, corpus_data, push_to_hub="not a repo")
    with pytest.raises(DiffutronError, match=re.escape("push_to_hub: 'not a repo' is not a valid Hub repo id")):
        load_training_recipe(write_recipe(tmp_path / "bad.yaml", **sections))
    sections["push_to_hub"] = "someone/tiny-tr"
    recipe = load_training_recipe(write_recipe(tmp_path / "good.yaml", **sections))
    monkeypatch.setattr(hub_upload.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_upload, "get_token", lambda: None)
    monkeypatch.setattr(run, "build_trainer", lambda *_: pytest.fail("training started"))
    with pytest.raises(DiffutronError, match=re.escape("push_to_hub someone/tiny-tr: no Hugging Face token is set")):
        run.train(recipe)
    assert not (tmp_path / "run").exists()


def test_push_to_hub_uploads_the_final_model_at_the_end(tmp_path, tokenizer_dir, corpus_data, monkeypatch):
    from helpers.hub import FakeHubApi

    monkeypatch.setattr(hub_upload.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_upload, "get_token", lambda: "hf_test")
    monkeypatch.setattr(hub_upload, "HfApi", FakeHubApi)
    FakeHubApi.instances.clear()
    final = train_tiny(tmp_path, tokenizer_dir, corpus_data, push_to_hub="someone/tiny-tr") / "final"
    (api,) = FakeHubApi.instances
    assert api.uploaded == ["README.md", "config.json", "loss.png", "model.safetensors", "tokenizer.json"] + [
        "tokenizer_config.json"
    ]
    assert api.calls[0] == (
        "create_repo",
        "someone/tiny-tr",
        {"private": False, "repo_type": "model", "exist_ok": True},
    )
    assert api.calls[1][2]["commit_message"] == "diffutron train run" and api.calls[1][2]["folder_path"] == final
    assert "training_args.bin" in {path.name for path in final.iterdir()}  # there, and never uploaded
    assert "diffutron chat --model someone/tiny-tr\n" in (final / "README.md").read_text(encoding="utf-8")


def test_report_kinds_licenses_durations_and_hub_datasets():
    assert [report_kind(report) for report in (PERPLEXITY, UNIGRAM, CETVEL, DEFINITIONS, {"tasks": []}, {})] == [
        "perplexity",
        "unigram",
        "cetvel",
        "definitions",
        None,
        None,
    ]
    assert report_kind({"splits": {}}) is None and report_kind({"splits": {"a": {"bleu": 1}}}) is None
    assert [
        hub_license(text)
        for text in ("GPL-3.0 (derived from KeNet)", "MIT", "Apache-2.0", "user-provided", "", "GPL-3.0, MIT", "GPL 3")
    ] == [
        "gpl-3.0",
        "mit",
        "apache-2.0",
        None,
        None,
        None,
        None,
    ]
    assert [format_duration(s) for s in (None, 0.4, 59.4, 59.6, 61, 3599.4, 3600, 3725)] == [
        "not logged",
        "0 s",
        "59 s",
        "1 min 00 s",
        "1 min 01 s",
        "59 min 59 s",
        "1 h 00 min",
        "1 h 02 min",
    ]
    manifest = {
        "recipe": {"sources": [{"name": "news", "dataset": "turkish-nlp-suite/Havadis"}]},
        "sources": {"news": {"origin": "turkish-nlp-suite/Havadis", "in_corpus": 7, "tokens_in_corpus": 70}},
    }
    assert DataFacts("data", manifest).sources() == [
        {
            "name": "news",
            "origin": "turkish-nlp-suite/Havadis",
            "dataset": "turkish-nlp-suite/Havadis",
            "license": None,
            "kept": 7,
            "tokens": 70,
        }
    ]


def test_a_model_copied_out_of_its_run_is_described_with_run(run_copy, tmp_path):
    (run_copy / "final" / "eval-ppl.json").write_text(json.dumps(PERPLEXITY), encoding="utf-8")
    copy = tmp_path / "shipped"
    shutil.copytree(run_copy / "final", copy, ignore=shutil.ignore_patterns("README.md", "loss.png", "*.json"))
    shutil.copy(run_copy / "final" / "config.json", copy)
    code, output = invoke("card", copy, "--run", run_copy)
    assert code == 0 and output == f"wrote {copy / 'README.md'} and {copy / 'loss.png'}"
    text = (copy / "README.md").read_text(encoding="utf-8")
    assert f"| 1 | run | pretraining, full | from scratch | {STEPS} |" in text and "# shipped\n" in text
    assert "| heldout.jsonl | model | 0.15 | 1,234 |" in text  # the report beside the run's own final model
    assert '"run": "../run"' in text.splitlines()[text.splitlines().index("---", 1) + 2]
    assert invoke("card", copy)[0] == 0 and (copy / "README.md").read_text(encoding="utf-8") == text  # kept


def test_write_card_keeps_a_readme_it_did_not_write_unless_told(run_copy):
    (run_copy / "final" / "README.md").write_text("# mine\n", encoding="utf-8")
    with pytest.raises(DiffutronError, match="was not written by `diffutron card`"):
        write_card(run_copy)
    assert (run_copy / "final" / "README.md").read_text(encoding="utf-8") == "# mine\n"


def test_a_checkpoint_folder_is_described_up_to_its_step(run_copy):
    code, _ = invoke("card", run_copy / "checkpoint-3")
    assert code == 0
    text = (run_copy / "checkpoint-3" / "README.md").read_text(encoding="utf-8")
    assert "| 1 | run | pretraining, full | from scratch | 3 | 8 |" in text


def test_a_card_whose_run_is_gone_asks_for_it(run_copy, tmp_path):
    moved = tmp_path / "elsewhere" / "final"
    shutil.copytree(run_copy / "final", moved)  # its card records the run as ".."
    code, output = invoke("card", moved)
    assert code == 2 and output == (
        f"error: {(tmp_path / 'elsewhere').resolve()} (the run this card was written from) is not a run folder; "
        "pass --run RUN_DIR"
    )


def test_a_run_without_records_data_or_losses_says_so(run_copy):
    (run_copy / "run.json").unlink()
    (run_copy / "log.jsonl").write_text('{"step": 6, "epoch": 1.0, "eval_loss": 2.5}\n', encoding="utf-8")
    (run_copy / "final" / "loss.png").unlink()
    recipe = (run_copy / "recipe.yaml").read_text(encoding="utf-8")
    (run_copy / "recipe.yaml").write_text(re.sub(r"train: .*", "train: no-such-data", recipe), encoding="utf-8")
    card, plot = write_card(run_copy)
    text = card.read_text(encoding="utf-8")
    assert plot is None and not (run_copy / "final" / "loss.png").exists() and "## Training loss" not in text
    assert (
        "| 1 | run | pretraining, full | from scratch | 6 | 8 per process | not logged | 0.003 | not logged |" in text
    )
    assert "- Trained: all parameters.\n" in text and "hardware: not recorded." in text
    assert "last logged training loss not logged." in text
    assert "- `no-such-data`: its manifest is not here, so its sources are not listed." in text
    assert ModelCard.load(card).data.to_dict()["license"] == "other"  # no data license known


def test_explicit_base_model_and_hub_ids_in_the_history(card_run):
    stage = load_stage(card_run)
    hub = dataclasses.replace(stage, recipe=dataclasses.replace(stage.recipe, model=type(stage.recipe.model)("a/b")))
    assert hub_base_model([hub]) == "a/b" and hub_base_model([stage]) is None and hub_base_model([]) is None
    local = dataclasses.replace(stage, recipe=dataclasses.replace(stage.recipe, model=type(stage.recipe.model)("./a")))
    assert hub_base_model([local]) is None


def test_base_model_option_goes_into_the_metadata(run_copy):
    assert invoke("card", run_copy, "--base-model", "jhu-clsp/mmBERT-base")[0] == 0
    assert ModelCard.load(run_copy / "final" / "README.md").data.to_dict()["base_model"] == "jhu-clsp/mmBERT-base"


def test_an_instruction_tuned_stage_is_introduced_and_used_as_a_chat_model(card_run):
    stage = load_stage(card_run)
    sft = dataclasses.replace(stage, recipe=dataclasses.replace(stage.recipe, task="sft"))
    model = card_facts.model_facts(card_run / "final")
    reports = {kind: [] for kind in card_facts.REPORT_KINDS}
    assert "It is instruction-tuned: it answers prompts in the chat format" in _introduction("m", model, [sft])
    assert "No training run was found beside it" in _introduction("m", model, [])
    assert 'print(lm.chat("Türkiye\'nin başkenti neresidir?"))' in _usage("a/b", [sft], reports)
    assert 'print(lm.infill("Kitap okumak insanın [MASK] genişletir."))' in _usage("a/b", [stage], reports)
    assert "print(lm.chat(" in _usage("a/b", [], reports)


def test_the_packages_own_model_is_named_and_used_without_model(run_copy, tmp_path, monkeypatch):
    embedded = tmp_path / "assets" / "default"
    shutil.copytree(run_copy / "final", embedded, ignore=shutil.ignore_patterns("README.md", "loss.png"))
    monkeypatch.setattr("diffutron.training.card.default_model_path", lambda: embedded)
    code, _ = invoke("card", embedded, "--run", run_copy)
    text = (embedded / "README.md").read_text(encoding="utf-8")
    assert code == 0 and "\n# diffutron-tiny-tr\n\ndiffutron-tiny-tr is a Turkish masked diffusion" in text
    assert "```bash\npip install diffutron\ndiffutron chat\ndiffutron serve\n```" in text
    assert "lm = Diffutron.from_pretrained()\n" in text and "--model" not in text.split("## Training")[0]
    code, _ = invoke("card", embedded, "--repo-id", "someone/tiny-tr")  # a Hub id names it instead
    text = (embedded / "README.md").read_text(encoding="utf-8")
    assert code == 0 and "\n# tiny-tr\n" in text and "diffutron chat --model someone/tiny-tr\n" in text


def test_a_cards_name_comes_from_the_repo_id_the_package_or_the_folder(tmp_path, monkeypatch):
    from diffutron.training.card import CardOptions, _identity

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "sft" / "final").mkdir(parents=True)
    monkeypatch.setattr("diffutron.training.card.default_model_path", lambda: tmp_path / "assets" / "default")
    (tmp_path / "assets" / "default").mkdir(parents=True)
    assert _identity(Path("assets/default"), CardOptions()) == ("diffutron-tiny-tr", "")  # relative or not
    assert _identity(Path("runs/sft/final/../final"), CardOptions()) == ("sft", "runs/sft/final/../final")
    assert _identity(Path("runs/sft"), CardOptions()) == ("sft", "runs/sft")
    assert _identity(Path("assets/default"), CardOptions(repo_id="someone/tiny-tr")) == ("tiny-tr", "someone/tiny-tr")


def licensed(*licenses):
    sources = {f"s{i}": {"origin": "x"} for i in range(len(licenses))}
    facts = DataFacts("d", {"sources": sources})
    facts.sources = lambda: [{"license": license} for license in licenses]  # as source_license found them
    return facts


def test_the_derived_license_is_the_datas_one_license_or_other():
    assert _derived_license([], []) == "other"
    assert _derived_license([], [licensed("MIT"), licensed("MIT")]) == "mit"
    assert _derived_license([], [licensed("MIT", None)]) == "other"
    assert _derived_license([], [licensed("MIT", "Apache-2.0")]) == "other"
    assert _derived_license([], [licensed("GPL-3.0, MIT")]) == "other"


def test_source_licenses_come_from_the_manifest_beside_the_file(tmp_path):
    def folder(name: str, manifest: str | None) -> dict:
        (tmp_path / name).mkdir()
        if manifest is not None:
            (tmp_path / name / "manifest.json").write_text(manifest, encoding="utf-8")
        return {"path": str(tmp_path / name / "train.jsonl")}

    assert (
        source_license(folder("kenet", '{"license": "GPL-3.0 (derived from KeNet)"}')) == "GPL-3.0 (derived from KeNet)"
    )
    corpus = '{"sources": [{"license": "GPL-3.0"}, {"license": "MIT"}, {"license": "GPL-3.0"}, 3]}'
    assert source_license(folder("corpus", corpus)) == "GPL-3.0, MIT"
    assert source_license(folder("none", '{"sources": [{"name": "x"}]}')) is None
    assert source_license(folder("broken", "{")) is None
    assert source_license(folder("bare", None)) is None
    assert source_license({"dataset": "a/b"}) is None
    assert data_facts(None) is None and data_facts("") is None
    assert data_facts(str(tmp_path / "missing")) == DataFacts(str(tmp_path / "missing"), None)
    assert DataFacts("x", None).sources() == []


def test_stage_figures_from_the_log_and_run_json(card_run):
    stage = load_stage(card_run)
    records = [
        {"step": 1, "tokens": 100, "tokens_per_second": 50.0},
        {"step": 1, "eval_loss": 2.0},
        {"step": 2, "tokens": 300, "tokens_per_second": 100.0},
        {"step": 3, "tokens": 400, "tokens_per_second": None},
        {"step": 4, "tokens": 500, "tokens_per_second": 0.0},
        {"step": 5, "tokens": 700, "tokens_per_second": 200.0},
        {"step": 6, "tokens": 800, "tokens_per_second": float("inf")},
        {"step": 7, "tokens": 801, "tokens_per_second": 0.5},
    ]
    logged = dataclasses.replace(stage, records=records)
    assert (logged.steps, logged.tokens, logged.seconds) == (7, 801, 7.0)  # 100/50 + 200/100 + 200/200 + 1/0.5
    empty = dataclasses.replace(stage, records=[], info={})
    assert (empty.steps, empty.tokens, empty.seconds, empty.global_batch, empty.hardware) == (
        0,
        None,
        None,
        "8 per process",
        [],
    )
    unmeasured = dataclasses.replace(stage, records=[{"step": 1, "tokens": 5}])
    assert unmeasured.seconds is None
    sessions = [
        {"processes": 2, "device": "GPU", "precision": "bf16"},
        {"processes": 2, "device": "GPU", "precision": "bf16"},
        {"processes": 1, "device": "CPU", "precision": "fp32"},
    ]
    two = dataclasses.replace(stage, info={"sessions": sessions})
    assert two.global_batch == "16" and two.hardware == ["2 x GPU, bf16", "1 x CPU, fp32"]


def test_record_session_appends_and_survives_a_damaged_record(tmp_path, caplog):
    from datetime import datetime, timezone

    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with caplog.at_level(logging.WARNING):
        for precision in ("bf16", "fp16"):
            args = SimpleNamespace(world_size=2, device="cpu", bf16=precision == "bf16", fp16=precision == "fp16")
            record_session(tmp_path, started=started, steps=(0, 4), args=args, parameters=(10, 40))
    assert caplog.text == ""  # a first session finds no record, which is no damage
    info = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert info["parameters"] == {"trainable": 10, "total": 40}
    assert [{k: v for k, v in s.items() if k != "finished"} for s in info["sessions"]] == [
        {
            "started": "2026-01-02T03:04:05+00:00",
            "steps": [0, 4],
            "processes": 2,
            "device": device_name("cpu"),
            "precision": precision,
        }
        for precision in ("bf16", "fp16")
    ]
    assert (tmp_path / "run.json").read_text(encoding="utf-8").startswith('{\n  "parameters"')
    assert (tmp_path / "run.json").read_text(encoding="utf-8").endswith("}\n")
    (tmp_path / "run.json").write_text("{", encoding="utf-8")
    args = SimpleNamespace(world_size=1, device="cpu", bf16=False, fp16=False)
    with caplog.at_level(logging.WARNING):
        record_session(tmp_path, started=started, steps=(4, 8), args=args, parameters=(40, 40))
    assert "it is written afresh" in caplog.text
    sessions = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["sessions"]
    assert [(s["steps"], s["precision"]) for s in sessions] == [([4, 8], "fp32")]
    assert device_name("meta") == "meta" and device_name("cpu").startswith("CPU (")


def test_an_accelerator_is_named_by_its_product_name(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"NVIDIA Test GPU ({device})")
    assert device_name("cuda:1") == "NVIDIA Test GPU (cuda:1)"
