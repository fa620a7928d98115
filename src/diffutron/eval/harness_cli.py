"""lm-eval's own command line, with the `diffutron` model registered and the packaged tasks on
its include path; its bad-input errors become the project's."""

from __future__ import annotations

import sys

from diffutron.errors import DiffutronError

# lm-eval's message for task names it does not know (a ValueError, shown as a traceback)
_TASKS_NOT_FOUND = "Tasks not found: "


def run_lm_eval_cli(arguments: list[str]) -> None:
    """Register the model, then run lm-eval's CLI with the packaged tasks on its include path."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import diffutron.eval.harness_model  # noqa: F401  (registers "diffutron")
    from diffutron.eval.cetvel import TAG, TASKS, tasks_dir

    setup_logging()
    cli = HarnessCLI()
    saved = sys.argv
    sys.argv = ["lm-eval", *arguments]
    try:
        parsed = cli.parse_args()
    finally:
        sys.argv = saved
    if hasattr(parsed, "include_path"):
        extra = [parsed.include_path] if parsed.include_path else []
        parsed.include_path = [str(tasks_dir()), *extra]
    try:
        cli.execute(parsed)
    except ValueError as error:
        if isinstance(error, DiffutronError) or not str(error).startswith(_TASKS_NOT_FOUND):
            raise
        unknown = str(error).removeprefix(_TASKS_NOT_FOUND)
        packaged = ", ".join([TAG, *(task.harness_name for task in TASKS)])
        raise DiffutronError(
            f"unknown lm-eval task(s): {unknown}. The packaged tasks are {packaged}; "
            "`diffutron eval lm-eval ls tasks` lists lm-eval's own"
        ) from None
