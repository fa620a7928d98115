"""Loss curves of training runs as a PNG, in the style of the paper's figures 2-4.

The output is checked before any log is read (a file path that can be written, never one of the logs,
never an existing file that is not a PNG) and written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diffutron.errors import DiffutronError
from diffutron.files import atomic_file, check_destination
from diffutron.training.callbacks import LOG_NAME, read_log

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to `window` values (the first points average what exists)."""
    averaged, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        averaged.append(total / min(index + 1, window))
    return averaged


def plot_loss(run_dirs: Sequence[str | Path], output: str | Path, *, smoothing: int = 1) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if smoothing < 1:
        raise DiffutronError(f"--smoothing must be >= 1, got {smoothing}")
    check_plot_output(Path(output), [Path(run_dir) for run_dir in run_dirs])
    curves = []
    for run_dir in map(Path, run_dirs):
        records = [record for record in read_log(run_dir / LOG_NAME) if record.get("loss") is not None]
        if not records:
            raise DiffutronError(f"{run_dir / LOG_NAME} holds no training loss records (is it a run directory?)")
        curves.append((run_dir.name, [r["step"] for r in records], [r["loss"] for r in records]))
    figure, axes = plt.subplots(figsize=(7, 4), dpi=150)
    for name, steps, losses in curves:
        axes.plot(steps, moving_average(losses, smoothing), label=name, linewidth=1.2)
    axes.set_xlabel("Step")
    axes.set_ylabel("Training loss")
    axes.set_title("Training loss")
    axes.grid(alpha=0.3)
    if len(curves) > 1:
        axes.legend()
    figure.tight_layout()
    with atomic_file(output, "wb") as handle:
        figure.savefig(handle, format="png")
    plt.close(figure)


def check_plot_output(output: Path, run_dirs: Sequence[Path]) -> None:
    """A plot replaces an earlier plot, never another file (a log, a document given by mistake)."""
    check_destination(output, overwrite=True, kind="file", inputs=[run_dir / LOG_NAME for run_dir in run_dirs])
    if output.is_file() and output.stat().st_size > 0:
        with output.open("rb") as handle:
            if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise DiffutronError(
                    f"{output} exists and is not a PNG image; it is not replaced: choose another output"
                )
