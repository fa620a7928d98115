"""The Hugging Face Trainer with the MDLM loss and atomic, rotated checkpoints.

Everything else (DDP / FSDP / DeepSpeed through `accelerate launch` or `torchrun`, mixed
precision, gradient accumulation, resuming data order, optimizer, scheduler and RNG state) is
the stock Trainer's. The objective's noise has its own per-process generator, saved in every
checkpoint next to the Trainer's RNG state and restored with it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from diffutron.training import checkpoints
from diffutron.training.objective import MDLMObjective, noise_generator
from diffutron.training.output_loss import MaskedOutputLoss

logger = logging.getLogger(__name__)

NOISE_STATE = "mdlm_noise_state"  # checkpoint file: NOISE_STATE.pth, or NOISE_STATE_{rank}.pth under DDP


class MDLMTrainer(Trainer):
    """`compute_loss` masks each batch with a random time t and scores the masked positions.

    The output layer is evaluated at the masked positions only, inside the model's forward
    (`MaskedOutputLoss`), so the full (batch x length x vocabulary) logits never exist.
    """

    # the loss is a per-micro-batch mean: let the Trainer divide it by the accumulation steps
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, objective: MDLMObjective, mask_token_id: int, keep_last: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.mask_token_id = mask_token_id
        self.keep_last = keep_last
        self.noise = noise_generator(self.args.seed, self.args.process_index, self.args.device)
        self.output_loss = MaskedOutputLoss(self.model)
        self._staging: Path | None = None

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        labels = inputs["labels"]
        t = self.objective.sample_times(labels.shape[0], labels.device, self.noise)
        noisy, masked = self.objective.corrupt(inputs["input_ids"], labels, t, self.mask_token_id, self.noise)
        coefficients = self.objective.coefficients(labels, masked, t)
        with self.output_loss.scoring(masked, labels, coefficients):
            outputs = model(input_ids=noisy, attention_mask=inputs.get("attention_mask"))
        loss = outputs.logits  # the output layer returned the loss itself (see output_loss)
        return (loss, outputs) if return_outputs else loss

    def _noise_state_file(self, checkpoint: str) -> Path:
        """Named like the Trainer's rng_state files: one per process under DDP."""
        suffix = f"_{self.args.process_index}" if self.args.world_size > 1 else ""
        return Path(checkpoint) / f"{NOISE_STATE}{suffix}.pth"

    def _save_rng_state(self, output_dir: str) -> None:
        # inside the staging directory, so published atomically with the rest of the checkpoint
        super()._save_rng_state(output_dir)
        torch.save(self.noise.get_state(), self._noise_state_file(output_dir))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        path = self._noise_state_file(checkpoint)
        if not path.is_file():
            logger.warning(
                "%s holds no %s: the masking noise restarts from the seed (a different process count, "
                "or an older checkpoint), so the resumed run is not bit-reproducible",
                checkpoint,
                path.name,
            )
            return
        state = torch.load(path, weights_only=True, map_location="cpu")
        try:
            self.noise.set_state(state)
        except RuntimeError:  # a CPU generator's state has 5056 bytes, a CUDA one's 16
            self.noise = noise_generator(
                self.args.seed, self.args.process_index, self.args.device, step=self.state.global_step
            )
            logger.warning(
                "%s was saved by a masking-noise generator on another kind of device than this run's %s "
                "(a CPU checkpoint resumed on a GPU, or back); the noise is re-seeded from the seed, the "
                "process index and step %d, so the resumed run is not bit-reproducible",
                path,
                self.noise.device,
                self.state.global_step,
            )

    def _run_epoch(self, *args: Any, **kwargs: Any) -> None:
        # Resumed from a checkpoint taken at the last step (the final save then failed): the stock loop
        # would take one step past max_steps before checking it; there is nothing left to train.
        if self.state.global_step >= self.state.max_steps > 0:
            self.control.should_training_stop = True
            return
        super()._run_epoch(*args, **kwargs)

    def _get_output_dir(self, trial: Any) -> str:
        # while a checkpoint is being saved, the Trainer writes it under the staging directory
        return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        run_dir = Path(self._get_output_dir(trial))
        name = f"{checkpoints.PREFIX}{self.state.global_step}"
        staging = checkpoints.staging_dir(run_dir)
        if self.args.should_save:
            shutil.rmtree(staging / name, ignore_errors=True)  # debris of a run killed while saving
        self.accelerator.wait_for_everyone()
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            checkpoints.record_files(staging / name)
            checkpoints.publish(staging / name, run_dir / name, run_dir)
            checkpoints.keep_last(run_dir, self.keep_last)
        self.accelerator.wait_for_everyone()
