"""`diffutron train`: turn a recipe into a Trainer run, and write the final model.

Run directory (recipe.output_dir):
    recipe.yaml           the resolved recipe of the run
    log.jsonl             per-step loss, learning rate, grad norm, tokens/s
    checkpoint-N/         complete checkpoints (atomic; the last `keep_last` are kept)
    adapter/              LoRA runs: the trained adapter (input of `diffutron merge-lora`)
    final/                a plain masked-LM checkpoint: `Diffutron.from_pretrained(RUN_DIR / "final")`,
                          with its model card (README.md) and loss plot (loss.png)
    run.json              the machine of each `train` command and the parameter counts (for the card)

With `push_to_hub: REPO_ID` the final model is uploaded at the end (a token is checked for first).

A run is only ever written into a new or empty directory or into a run of its own (recipe.yaml plus a
log, checkpoint or final model). `--resume` keeps the recorded recipe: a changed recipe is refused
(only logging.* and checkpoints.keep_last may change, with a warning), a finished run is left as it is.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import PreTrainedTokenizerBase, TrainingArguments

from diffutron.errors import DiffutronError
from diffutron.files import atomic_file, check_destination
from diffutron.model.loading import load_tokenizer
from diffutron.model.tokens import SpecialIds
from diffutron.training import checkpoints
from diffutron.training.callbacks import LOG_NAME, JsonlLogger, StopOnNonFiniteLoss
from diffutron.training.collators import PretrainCollator, SFTCollator
from diffutron.training.config import Recipe, load_training_recipe
from diffutron.training.merge import merge_lora
from diffutron.training.models import (
    apply_lora,
    build_meta_model,
    build_model,
    count_parameters,
    describe_parameters,
)
from diffutron.training.run_dir import RECIPE_NAME, is_run_directory
from diffutron.training.trainer import MDLMTrainer

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = {"pretrain": ("input_ids",), "sft": ("input_ids", "labels")}
BUILDERS = {"pretrain": "diffutron data pretrain", "sft": "diffutron data sft"}
MERGE_TOLERANCE = 1e-4
# recipe keys that may change on --resume: they change neither the weights nor the random streams
RESUMABLE_CHANGES = ("logging.", "checkpoints.keep_last", "push_to_hub")


def dry_run(recipe: Recipe) -> str:
    """The parameter count line, from config.json alone (meta device: no weights, no data)."""
    model = build_meta_model(recipe)
    if recipe.lora is not None:
        model = apply_lora(model, recipe.lora)
    return describe_parameters(model)


EIGHT_BIT_OPTIMIZERS = ("paged_adamw_8bit",)


def sharded_launch() -> str | None:
    """ "FSDP" or "DeepSpeed" when `accelerate launch` was given such a config, else None."""
    for variable, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(variable, "false").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def resolve_optimizer(name: str) -> str:
    """The Trainer's `optim` for a recipe's optimizer name.

    paged_adamw_8bit runs only where bitsandbytes really works: CUDA present, the package importable
    and one optimizer step on the device succeeding (an install without a working CUDA build falls
    back, with a warning, to adamw_torch). Under FSDP or DeepSpeed it is refused: their sharded,
    flattened parameters and own optimizer handling are not what bitsandbytes' paged 8-bit state
    expects.
    """
    if name not in EIGHT_BIT_OPTIMIZERS:
        return name
    sharding = sharded_launch()
    if sharding is not None:
        raise DiffutronError(
            f"optimizer {name} cannot be used under {sharding} (sharded parameters); set "
            "optimizer.name=adamw_torch_fused (--set optimizer.name=adamw_torch_fused) or launch without "
            f"{sharding} (plain DDP keeps {name})"
        )
    if not torch.cuda.is_available():
        logger.warning("optimizer %s needs CUDA; falling back to adamw_torch", name)
        return "adamw_torch"
    problem = bitsandbytes_problem()
    if problem is not None:
        logger.warning("optimizer %s: bitsandbytes does not work here (%s); falling back to adamw_torch", name, problem)
        return "adamw_torch"
    return name


def bitsandbytes_problem(device: str = "cuda") -> str | None:
    """Why bitsandbytes' paged 8-bit AdamW cannot run on `device`, or None when one step works."""
    try:
        import bitsandbytes
    except Exception as error:  # noqa: BLE001 (ImportError, or a native library failing to load)
        return f"import failed: {error}. Install it with pip install 'diffutron[gpu]'"
    try:
        parameter = torch.nn.Parameter(torch.ones(4096, device=device))  # 4096: the 8-bit state's minimum size
        parameter.grad = torch.full_like(parameter, 0.5)
        optimizer = bitsandbytes.optim.PagedAdamW8bit([parameter], lr=1e-3)
        optimizer.step()
        if not bool(torch.isfinite(parameter).all()) or bool((parameter == 1).all()):
            return "a test step left the parameter unchanged or not finite"
    except Exception as error:  # noqa: BLE001 (a CPU-only build, a CUDA mismatch, a missing library)
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return None


def resolve_precision(precision: str) -> dict[str, bool]:
    """auto: bf16 on CUDA devices that support it, float32 elsewhere."""
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def launched_processes() -> int:
    """The process count set by torchrun / accelerate launch (1 for a plain run)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch, or a plain run (readable before the Trainer exists)."""
    return os.environ.get("RANK", "0") == "0"


def trainer_device_settings(bf16: bool) -> dict[str, bool | str]:
    """The Trainer settings that keep a run on the CPU where it would otherwise go wrong there.

    bf16 without CUDA: transformers refuses it unless told to use the CPU (then CPU autocast).
    Several processes without any accelerator: unless told to use the CPU, accelerate finds no
    distributed backend and every process trains alone as if it were the only one (each writing
    the same run directory); with use_cpu it runs DDP over gloo (named, so that a torch built
    with MPI does not pick the mpi backend, which torchrun cannot start).
    """
    if launched_processes() > 1 and not torch.accelerator.is_available():
        return {"use_cpu": True, "ddp_backend": "gloo"}
    if bf16 and not torch.cuda.is_available():
        return {"use_cpu": True}
    return {}


def load_training_data(
    path: str, task: str, tokenizer: PreTrainedTokenizerBase | None = None, key: str = "data.train"
) -> Any:
    """A directory written by the data builders (datasets.save_to_disk + manifest.json).

    With `tokenizer`, data whose manifest records another tokenizer is refused (its ids mean other tokens).
    """
    import datasets

    from diffutron.data.prepared import check_tokenizer
    from diffutron.data.prepared import load_prepared as load_directory

    directory = Path(path)
    if not path or not directory.is_dir():
        raise DiffutronError(
            f"{key}: the data directory {path!r} does not exist; build it with `{BUILDERS[task]}` "
            f"and set {key} to the directory"
        )
    if tokenizer is not None:
        check_tokenizer(directory, tokenizer, key)
    dataset = load_directory(directory)
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise DiffutronError(f"{directory} holds splits {', '.join(dataset)} but no 'train' split")
        dataset = dataset["train"]
    missing = [column for column in REQUIRED_COLUMNS[task] if column not in dataset.column_names]
    if missing:
        raise DiffutronError(
            f"{directory} lacks column(s) {', '.join(missing)} needed for task {task!r}; "
            f"columns found: {', '.join(dataset.column_names)}"
        )
    if len(dataset) == 0:
        raise DiffutronError(f"{directory} holds no rows")
    return dataset.select_columns(list(REQUIRED_COLUMNS[task]))


def training_arguments(recipe: Recipe, has_eval: bool) -> TrainingArguments:
    settings, optimizer = recipe.training, recipe.optimizer
    precision = resolve_precision(settings.precision)
    tensorboard = recipe.logging.tensorboard and importlib.util.find_spec("tensorboard") is not None
    return TrainingArguments(
        output_dir=recipe.output_dir,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps if settings.max_steps is not None else -1,
        learning_rate=optimizer.lr,
        weight_decay=optimizer.weight_decay,
        lr_scheduler_type=optimizer.schedule,
        warmup_steps=optimizer.warmup,
        max_grad_norm=optimizer.max_grad_norm,
        optim=resolve_optimizer(optimizer.name),
        **precision,
        **trainer_device_settings(precision["bf16"]),
        **_checkpointing(settings.gradient_checkpointing),
        **_length_grouping(settings.group_by_length),
        ddp_find_unused_parameters=False,  # every trainable parameter takes part in each MDLM forward pass
        logging_strategy="steps",
        logging_steps=recipe.logging.steps,
        logging_nan_inf_filter=False,  # a NaN loss must reach the log (and StopOnNonFiniteLoss), not be averaged away
        save_strategy="steps",
        save_steps=recipe.checkpoints.save_steps,
        save_total_limit=None,  # MDLMTrainer keeps the last N itself, after each atomic publish
        eval_strategy="steps" if has_eval else "no",
        eval_steps=recipe.checkpoints.save_steps if has_eval else None,
        prediction_loss_only=True,
        seed=recipe.seed,
        report_to=["tensorboard"] if tensorboard else [],
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_num_workers=settings.dataloader_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def _checkpointing(enabled: bool) -> dict:
    """Gradient checkpointing arguments (transformers 5 renamed them activation_checkpointing)."""
    if not enabled:
        return {}
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def _length_grouping(enabled: bool) -> dict:
    """Length-grouped batches (transformers 5 made group_by_length a train_sampling_strategy)."""
    if not enabled:
        return {}
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def train(recipe: Recipe, *, resume: bool = False) -> Path:
    """Train as the recipe says; returns the directory of the final model."""
    started = datetime.now(timezone.utc)
    run_dir = Path(recipe.output_dir)
    if is_main_process():  # the other processes would race with its first writes; a failure here stops them all
        check_run_directory(recipe)
        check_push_access(recipe)
    resume_from = None
    if resume:
        check_recipe_unchanged(recipe, run_dir)
        if (run_dir / "final").is_dir():
            logger.warning("--resume: %s is a finished run (final/ exists); nothing to do", run_dir)
            return run_dir / "final"
        resume_from = checkpoints.newest_checkpoint(run_dir)
    elif checkpoints.complete_checkpoints(run_dir) or (run_dir / "final").exists():
        raise DiffutronError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose another output_dir "
            "(--set output_dir=...)"
        )
    trainer = build_trainer(recipe)
    parameters = count_parameters(trainer.model)
    if trainer.args.should_save:
        with atomic_file(run_dir / RECIPE_NAME) as handle:
            yaml.safe_dump(recipe.to_dict(), handle, sort_keys=False, allow_unicode=True)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final = save_final(trainer, recipe)
    if trainer.args.should_save:
        from diffutron.training.card_facts import record_session  # card_facts reads the run layout of this module

        first_step = int(resume_from.name.removeprefix(checkpoints.PREFIX)) if resume_from else 0
        record_session(
            run_dir,
            started=started,
            steps=(first_step, trainer.state.global_step),
            args=trainer.args,
            parameters=parameters,
        )
        publish_final(recipe, final)
    return final


def check_push_access(recipe: Recipe) -> None:
    """push_to_hub: a run that could not upload at its end is refused before it starts."""
    from diffutron.model.hub_upload import hub_access_problem

    problem = hub_access_problem() if recipe.push_to_hub else None
    if problem is not None:
        raise DiffutronError(f"push_to_hub {recipe.push_to_hub}: {problem} (or remove push_to_hub from the recipe)")


def publish_final(recipe: Recipe, final: Path) -> None:
    """The end of a run: the model card in final/, then the upload when the recipe asks for one."""
    from diffutron.model.hub_upload import push_model
    from diffutron.training.card import write_card

    try:
        write_card(recipe.output_dir, repo_id=recipe.push_to_hub)
    except DiffutronError as error:  # the model is saved; its card can be written again afterwards
        logger.warning("the model card was not written (%s); write it with `diffutron card %s`", error, final)
    if recipe.push_to_hub:
        pushed = push_model(final, recipe.push_to_hub, commit_message=f"diffutron train {Path(recipe.output_dir).name}")
        logger.info("pushed %d files of %s to %s", len(pushed.plan.files), final, pushed.repo_url)


def check_run_directory(recipe: Recipe) -> Path:
    """Before any work: output_dir is a writable directory that is new, empty or a run (never a data folder)."""
    run_dir = check_destination(
        recipe.output_dir,
        overwrite=True,
        inputs=[recipe.data.train, recipe.data.eval, recipe.model.name_or_path, recipe.tokenizer],
    )
    if run_dir.is_dir() and any(run_dir.iterdir()) and not is_run_directory(run_dir):
        raise DiffutronError(
            f"output_dir {run_dir} holds files but is not a training run (no {RECIPE_NAME} with a log, checkpoint "
            "or final model); choose a new or empty directory (--set output_dir=...)"
        )
    return run_dir


def check_recipe_unchanged(recipe: Recipe, run_dir: Path) -> None:
    """--resume continues the recorded recipe: other values would silently mix two schedules."""
    recorded_path = run_dir / RECIPE_NAME
    if not recorded_path.is_file():
        return  # no run here: newest_checkpoint says so
    try:
        recorded = load_training_recipe(recorded_path)
    except DiffutronError as error:
        raise DiffutronError(f"--resume: the run's recipe cannot be read: {error}") from None
    changes = recipe_changes(recorded.to_dict(), recipe.to_dict())
    blocking = {key: change for key, change in changes.items() if not key.startswith(RESUMABLE_CHANGES)}
    if blocking:
        listed = ", ".join(f"{key} ({old!r} -> {new!r})" for key, (old, new) in blocking.items())
        raise DiffutronError(
            f"--resume: the recipe differs from the run's {recorded_path} in {listed}; a resumed run keeps its "
            f"recipe. Resume with `diffutron train {recorded_path} --resume`, or start a new run in another output_dir"
        )
    if changes:
        logger.warning(
            "--resume: %s changed; the new values apply from here on and are recorded in %s",
            ", ".join(changes),
            recorded_path,
        )


def recipe_changes(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """{dotted key: (old, new)} for every value that differs between two recipe mappings (output_dir aside)."""
    changes: dict[str, tuple] = {}
    for key in sorted(set(old) | set(new), key=str):
        name = f"{prefix}{key}"
        before, after = old.get(key), new.get(key)
        if name == "output_dir":  # the run was found there, whichever spelling of the path led to it
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            changes.update(recipe_changes(before, after, f"{name}."))
        elif before != after:
            changes[name] = (before, after)
    return changes


def build_trainer(recipe: Recipe) -> MDLMTrainer:
    """Tokenizer, data, model (with LoRA if asked) and the Trainer of a recipe, ready to train."""
    tokenizer = load_tokenizer(str(recipe.tokenizer))
    special = SpecialIds.from_tokenizer(tokenizer)
    train_data = load_training_data(recipe.data.train, recipe.task, tokenizer)
    eval_data = load_training_data(recipe.data.eval, recipe.task, tokenizer, "data.eval") if recipe.data.eval else None
    args = training_arguments(recipe, eval_data is not None)

    model = build_model(recipe, tokenizer)
    positions = model.config.max_position_embeddings
    if recipe.training.max_length > positions:
        raise DiffutronError(
            f"training.max_length {recipe.training.max_length} exceeds the model's {positions} positions"
        )
    if recipe.lora is not None:
        model = apply_lora(model, recipe.lora)
    logger.info(describe_parameters(model))
    collator_type = PretrainCollator if recipe.task == "pretrain" else SFTCollator
    return MDLMTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        data_collator=collator_type(
            pad_token_id=special.pad,
            max_length=recipe.training.max_length,
            pad_to_multiple_of=recipe.training.pad_to_multiple_of,
        ),
        processing_class=tokenizer,
        callbacks=[JsonlLogger(Path(recipe.output_dir) / LOG_NAME), StopOnNonFiniteLoss()],
        objective=recipe.objective,
        mask_token_id=special.mask,
        keep_last=recipe.checkpoints.keep_last,
    )


def save_final(trainer: MDLMTrainer, recipe: Recipe) -> Path:
    """RUN_DIR/final as a plain masked LM; LoRA runs also keep RUN_DIR/adapter and merge it into final.

    The merge does not touch the training module (sharded under FSDP / DeepSpeed, possibly cast to
    bf16): once every process has written its part of the adapter, rank 0 merges the saved adapter
    into a freshly loaded float32 base, exactly as `diffutron merge-lora` does (logits checked
    before anything is written), while the other processes wait.
    """
    run_dir = Path(recipe.output_dir)
    _check_finite_weights(trainer.accelerator.unwrap_model(trainer.model))
    if recipe.lora is None:
        _save_through_trainer(trainer, run_dir, "final")
        return run_dir / "final"
    _save_through_trainer(trainer, run_dir, "adapter")
    if trainer.args.should_save:
        merge_lora(
            run_dir / "adapter",
            run_dir / "final",
            base=recipe.model.name_or_path,
            tolerance=MERGE_TOLERANCE,
            overwrite=True,
        )  # merge_lora writes a card; publish_final writes it again once the run is recorded
    trainer.accelerator.wait_for_everyone()
    return run_dir / "final"


def _check_finite_weights(model: torch.nn.Module) -> None:
    """A last step can leave NaN weights behind a finite logged loss: never publish such a model."""
    damaged = [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]
    if damaged:
        raise DiffutronError(
            f"training ended with NaN or infinite weights in {len(damaged)} tensor(s) (e.g. {damaged[0]}); "
            "final/ was not written. Lower optimizer.lr, or resume from an earlier checkpoint"
        )


def _save_through_trainer(trainer: MDLMTrainer, run_dir: Path, name: str) -> None:
    """trainer.save_model (which every process must call under FSDP / DeepSpeed), then publish."""
    staged = checkpoints.staging_dir(run_dir) / name
    if trainer.args.should_save:
        shutil.rmtree(staged, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staged))
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        checkpoints.publish(staged, run_dir / name, run_dir)
