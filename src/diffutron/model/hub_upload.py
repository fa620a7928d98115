"""`diffutron push`: a model directory to the Hugging Face Hub, with its card; safetensors only.

What goes up is an explicit list of the folder's top-level files: the safetensors weights (and their
index), config.json, the tokenizer files, the model card (README.md) and its loss plot (loss.png).
Everything else stays here and is listed as left out, pickles above all: a final model folder holds
the Trainer's `training_args.bin`, which is never uploaded. A training checkpoint (optimizer,
scheduler and RNG state beside the weights) is refused as a whole: it is a point to resume from,
not a model to share; push `RUN_DIR/final`, or merge an adapter checkpoint with `merge-lora` first.
Every check runs before anything is sent.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its connection errors are no OSErrors
from huggingface_hub import HfApi, constants, get_token

from diffutron.errors import DiffutronError
from diffutron.model.loading import _check_directory

CARD_NAME = "README.md"
PLOT_NAME = "loss.png"
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
)
SHARED_FILES = frozenset((*MODEL_FILES, *TOKENIZER_FILES, CARD_NAME, PLOT_NAME))
# a Trainer checkpoint's state beside the weights (rng_state_RANK.pth and mdlm_noise_state*.pth too)
CHECKPOINT_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state*.pth", "mdlm_noise_state*.pth")
PICKLES = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")


@dataclass(frozen=True)
class UploadPlan:
    """The files of `directory` that go up, and those that stay (sorted names)."""

    directory: Path
    files: tuple[str, ...]
    left_out: tuple[str, ...]

    @property
    def size(self) -> int:
        return sum((self.directory / name).stat().st_size for name in self.files)


@dataclass(frozen=True)
class PushResult:
    plan: UploadPlan
    repo_url: str
    revision: str
    commit_url: str | None


def check_repo_id(repo_id: str, key: str = "REPO_ID") -> str:
    """A Hub model repo id (`owner/name`, or `name` in the token owner's namespace), by the Hub's own rules."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise DiffutronError(f"{key}: {repo_id!r} is not a valid Hub repo id ({error}); use OWNER/NAME") from None
    return repo_id


def upload_plan(directory: str | Path) -> UploadPlan:
    """What `push` would upload from `directory`; a folder that is not a shareable model is refused."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DiffutronError(f"{directory} is not a directory; give the model folder to push (e.g. RUN_DIR/final)")
    state = sorted({path.name for pattern in CHECKPOINT_STATE for path in directory.glob(pattern)})
    if state:
        raise DiffutronError(
            f"{directory} is a training checkpoint ({', '.join(state)}): its optimizer and trainer state are not "
            "shared; push the run's final/ model, or merge an adapter checkpoint with `diffutron merge-lora` first"
        )
    if (directory / "adapter_config.json").is_file() and not (directory / "config.json").is_file():
        raise DiffutronError(
            f"{directory} holds a LoRA adapter, not a model; merge it with `diffutron merge-lora {directory} OUT_DIR` "
            "and push OUT_DIR"
        )
    _check_directory(directory)  # config.json, safetensors weights matching it, a tokenizer
    if not (directory / CARD_NAME).is_file():
        raise DiffutronError(f"{directory} has no model card ({CARD_NAME}); write it with `diffutron card {directory}`")
    names = sorted(path.name for path in directory.iterdir() if not path.name.startswith("."))
    files = tuple(name for name in names if _is_shared(directory / name))
    left_out = tuple(name + ("/" if (directory / name).is_dir() else "") for name in names if name not in files)
    return UploadPlan(directory, files, left_out)


def _is_shared(path: Path) -> bool:
    return path.is_file() and (path.name in SHARED_FILES or path.suffix == ".safetensors")


def hub_access_problem() -> str | None:
    """Why nothing can be uploaded from here (offline mode, no token), or None; no network is used."""
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it"
    if get_token() is None:
        return "no Hugging Face token is set; log in with `hf auth login` or set HF_TOKEN"
    return None


def push_model(
    directory: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> PushResult:
    """Create the repo (and branch) if needed and upload the plan's files in one commit."""
    check_repo_id(repo_id)
    plan = upload_plan(directory)
    problem = hub_access_problem()
    if problem is not None:
        raise DiffutronError(f"cannot push to {repo_id}: {problem}")
    api = HfApi()
    try:
        repo_url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        if revision is not None:
            api.create_branch(repo_url.repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_url.repo_id,
            folder_path=plan.directory,
            revision=revision,
            commit_message=commit_message or f"Upload {plan.directory.name} with diffutron push",
            allow_patterns=[glob.escape(name) for name in plan.files],
            ignore_patterns=list(PICKLES),
        )
    except (OSError, ValueError, httpx2.HTTPError) as error:  # HTTP status, validation, connection
        raise DiffutronError(
            f"the upload to {repo_id} failed ({' '.join(str(error).split())}); the model is still in "
            f"{plan.directory}: retry with `diffutron push {plan.directory} {repo_id}`"
        ) from None
    return PushResult(plan, str(repo_url), revision or "main", getattr(commit, "commit_url", None))
