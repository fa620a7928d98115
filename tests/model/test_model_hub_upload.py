"""`diffutron push`: exactly the model's shareable files go up (HfApi replaced, nothing is sent);
bad input is refused before any call."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffutron.cli import app
from diffutron.errors import DiffutronError
from diffutron.model import hub_upload
from diffutron.model.hub_upload import push_model, upload_plan
from diffutron.training.card import write_card
from helpers.hub import FakeHubApi

RUNNER = CliRunner()
SHARED = ["README.md", "config.json", "loss.png", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def invoke(*arguments) -> tuple[int, str]:
    result = RUNNER.invoke(app, [str(argument) for argument in arguments])
    return result.exit_code, result.output


@pytest.fixture
def hub(monkeypatch):
    """HfApi replaced by the recording fake; online, with a token."""
    FakeHubApi.instances.clear()
    monkeypatch.setattr(hub_upload, "HfApi", FakeHubApi)
    monkeypatch.setattr(hub_upload.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_upload, "get_token", lambda: "hf_test")
    return FakeHubApi.instances


@pytest.fixture
def model_dir(tiny_checkpoint, tmp_path) -> Path:
    """A final model folder as `train` leaves it: weights, config, tokenizer, card, plot, training_args.bin."""
    folder = tmp_path / "final"
    shutil.copytree(tiny_checkpoint, folder)
    write_card(folder, license="mit")
    (folder / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "training_args.bin").write_bytes(b"PK pickle")
    (folder / "eval-ppl.json").write_text("{}", encoding="utf-8")
    (folder / "runs").mkdir()
    (folder / "runs" / "events").write_text("x", encoding="utf-8")
    return folder


def test_push_uploads_exactly_the_shareable_files(model_dir, hub):
    code, output = invoke(
        "push", model_dir, "someone/tiny-tr", "--private", "--revision", "v1", "--commit-message", "first"
    )
    assert code == 0, output
    (api,) = hub
    assert api.uploaded == SHARED  # what huggingface_hub's own filter lets through the patterns given
    assert [call[:2] for call in api.calls] == [
        ("create_repo", "someone/tiny-tr"),
        ("create_branch", "someone/tiny-tr"),
        ("upload_folder", "someone/tiny-tr"),
    ]
    assert api.calls[0][2] == {"private": True, "repo_type": "model", "exist_ok": True}
    assert api.calls[1][2] == {"branch": "v1", "exist_ok": True}
    upload = api.calls[2][2]
    assert upload["folder_path"] == model_dir and upload["revision"] == "v1" and upload["commit_message"] == "first"
    assert upload["allow_patterns"] == SHARED and upload["ignore_patterns"] == list(hub_upload.PICKLES)
    size = sum((model_dir / name).stat().st_size for name in SHARED)
    assert " ".join(output.split()) == (
        f"uploaded 6 files ({size:,} bytes) to https://huggingface.co/someone/tiny-tr (revision v1): "
        "https://huggingface.co/someone/tiny-tr/commit/0123abc"
    )


def test_the_command_without_options_makes_a_public_repo(model_dir, hub):
    code, output = invoke("push", model_dir, "someone/tiny-tr")
    assert code == 0, output
    assert hub[0].calls[0][2]["private"] is False and "(revision main)" in output


def test_push_without_options_commits_to_main_as_a_public_repo(model_dir, hub):
    result = push_model(model_dir, "tiny-tr")
    (api,) = hub
    assert [call[0] for call in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][2]["private"] is False and api.calls[1][2]["revision"] is None
    assert api.calls[1][2]["commit_message"] == "Upload final with diffutron push"
    assert (result.revision, result.repo_url, result.plan.files) == (
        "main",
        "https://huggingface.co/someone/tiny-tr",
        tuple(SHARED),
    )


def test_dry_run_lists_what_would_go_up_and_sends_nothing(model_dir, hub):
    code, output = invoke("push", model_dir, "someone/tiny-tr", "--dry-run")
    assert code == 0 and hub == []
    lines = output.splitlines()
    assert lines[:-1] == [f"{name}  {(model_dir / name).stat().st_size:,} bytes" for name in SHARED]
    size = sum((model_dir / name).stat().st_size for name in SHARED)
    assert " ".join(lines[-1].split()) == (
        f"would upload 6 files ({size:,} bytes) to someone/tiny-tr; left out: eval-ppl.json, runs/, training_args.bin"
    )


def checkpoint_folder(model_dir: Path) -> Path:
    for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth"):
        (model_dir / name).write_bytes(b"state")
    return model_dir


def without(name: str):
    def change(model_dir: Path) -> Path:
        (model_dir / name).unlink()
        return model_dir

    return change


def adapter_folder(model_dir: Path) -> Path:
    adapter = model_dir.parent / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    return adapter


BAD = [
    (
        "checkpoint",
        checkpoint_folder,
        "someone/tiny-tr",
        "is a training checkpoint (optimizer.pt, rng_state.pth, scheduler.pt, trainer_state.json): its optimizer and "
        "trainer state are not shared",
    ),
    (
        "no tokenizer",
        lambda d: without("tokenizer_config.json")(without("tokenizer.json")(d)),
        "a/b",
        "missing a tokenizer",
    ),
    ("no weights", without("model.safetensors"), "a/b", "missing safetensors weights"),
    ("no config", without("config.json"), "a/b", "missing config.json"),
    ("no card", without("README.md"), "a/b", "has no model card (README.md); write it with `diffutron card"),
    ("adapter", adapter_folder, "a/b", "holds a LoRA adapter, not a model; merge it with `diffutron merge-lora"),
    ("not a folder", lambda d: d / "config.json", "a/b", "is not a directory"),
    ("repo id", lambda d: d, "someone/tiny/tr", "REPO_ID: 'someone/tiny/tr' is not a valid Hub repo id"),
    ("repo id chars", lambda d: d, "someone/tiny tr", "REPO_ID: 'someone/tiny tr' is not a valid Hub repo id"),
]


@pytest.mark.parametrize(("change", "repo_id", "fragment"), [row[1:] for row in BAD], ids=[row[0] for row in BAD])
@pytest.mark.parametrize("dry_run", [False, True], ids=["push", "dry-run"])
def test_bad_input_is_refused_before_anything_is_sent(model_dir, hub, change, repo_id, fragment, dry_run):
    folder = change(model_dir)
    code, output = invoke("push", folder, repo_id, *(["--dry-run"] if dry_run else []))
    assert code == 2 and output.startswith("error: ") and "Traceback" not in output
    assert fragment in " ".join(output.split()) and len(output.strip().splitlines()) == 1
    assert hub == []  # HfApi was never even created


@pytest.mark.parametrize(
    ("offline", "token", "fragment"),
    [
        (True, "hf_test", "HF_HUB_OFFLINE is set, so nothing can be uploaded"),
        (False, None, "no Hugging Face token is set; log in with `hf auth login` or set HF_TOKEN"),
    ],
)
def test_no_hub_access_is_said_before_anything_is_sent(model_dir, hub, monkeypatch, offline, token, fragment):
    monkeypatch.setattr(hub_upload.constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(hub_upload, "get_token", lambda: token)
    with pytest.raises(DiffutronError, match=f"cannot push to a/b: {fragment}"):
        push_model(model_dir, "a/b")
    assert hub == []


def http_error(message: str) -> Exception:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("POST", "https://huggingface.co/api/models/someone/tiny-tr/commit/main")
    return HfHubHTTPError(message, response=httpx2.Response(403, request=request))


def connection_error(message: str) -> Exception:
    import httpx2

    return httpx2.ConnectError(message)


@pytest.mark.parametrize("error_type", [http_error, connection_error], ids=["http-403", "no-connection"])
def test_a_failed_upload_says_how_to_retry(model_dir, hub, monkeypatch, error_type):
    def refuse(self, **_):
        raise error_type("you cannot\nwrite to someone")

    monkeypatch.setattr(FakeHubApi, "upload_folder", refuse)
    with pytest.raises(DiffutronError) as error:
        push_model(model_dir, "someone/tiny-tr")
    assert str(error.value) == (
        "the upload to someone/tiny-tr failed (you cannot write to someone); the model is still in "
        f"{model_dir}: retry with `diffutron push {model_dir} someone/tiny-tr`"
    )


def test_the_embedded_model_folder_is_shareable_as_it_is():
    from huggingface_hub import ModelCard

    from diffutron.model.loading import default_model_path
    from diffutron.training.card_facts import model_facts

    plan = upload_plan(default_model_path())
    shared = ("README.md", "config.json", "loss.png", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    assert plan.files == shared  # the card `diffutron card` wrote and its loss plot go up with the weights
    assert plan.left_out == ()
    metadata = ModelCard.load(default_model_path() / "README.md", ignore_metadata_errors=False).data.to_dict()
    assert {key: metadata[key] for key in ("language", "license", "library_name", "pipeline_tag")} == {
        "language": "tr",
        "license": "gpl-3.0",  # most of its training text is KeNet's
        "library_name": "transformers",
        "pipeline_tag": "fill-mask",
    }
    assert "masked-diffusion" in metadata["tags"]
    assert model_facts(default_model_path())["parameters"] == 3_795_392  # the count its card states
    card = (default_model_path() / "README.md").read_text(encoding="utf-8")
    assert "\n# diffutron-tiny-tr\n" in card and "3,795,392 parameters" in card and "diffutron chat\n" in card
