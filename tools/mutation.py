"""Mutation testing of the generation code: plant one small bug at a time, see whether a test fails.

    python tools/mutation.py                     # named mutations, then the automatic set
    python tools/mutation.py --only named        # the named ones only (a few minutes)
    python tools/mutation.py --named infill gauge   # named ones by words of their names: only their own tests
    python tools/mutation.py --tests /tmp/old/tests --output before.json   # another test suite
    python tools/mutation.py --rerun after.json  # only the survivors of an earlier run (same source)

The package and the tests are copied to a temporary directory; each mutant rewrites one file of
the copy. A first run of the test pool under coverage records which tests execute each line; a
mutant then runs only the tests that execute its lines (fastest first, stopping at the first
failure) and survives if they all pass. A mutant no test executes survives without a run.

Mutants come from two sources:
- NAMED: bugs that once went unnoticed (each must still match the source exactly once), each run
  against the tests that execute it or, where it names them, against its own tests (tests outside
  the pool, or code that runs in a server process, where coverage does not see it);
- the automatic set over AUTO_MODULES: operators, comparisons, constants, boolean logic, calls
  such as `.strip()` or `.clone()` dropped, in-place statements removed. Error messages,
  docstrings, annotations, assertions and `raise` statements are left alone.

Tests run in forked children of this process, which imports torch and transformers once; each
child has a time limit (a mutant that loops is killed by it, and counts as caught). Hypothesis runs
derandomized, without shrinking and without its example database. The pool must pass unmutated.
docs/testing.md has the command, the figures and the survivors judged harmless.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "diffutron"
POOL = (
    "tests/sampling",
    "tests/model",
    "tests/test_bad_inputs.py",
    "tests/test_lm_api.py",
    "tests/cli/test_cli_generation.py",
    "tests/eval/test_eval_likelihood.py",
    "tests/eval/test_eval_harness.py",
)
AUTO_MODULES = (
    "sampling/cache.py",
    "sampling/config.py",
    "sampling/predictions.py",
    "sampling/processors.py",
    "sampling/rules/__init__.py",
    "sampling/rules/_parallel.py",
    "sampling/rules/count.py",
    "sampling/rules/factor.py",
    "sampling/rules/threshold.py",
    "sampling/infill.py",
    "sampling/presets.py",
    "sampling/sampler.py",
    "sampling/schedule.py",
    "sampling/stopping.py",
    "model/chat.py",
    "eval/likelihood.py",
)
MEMORY_LIMIT = 8 * 2**30  # bytes of address space per child: a mutant that allocates without end fails
UNTIMED_TEST_S = 120.0  # the time budget of a named mutant's own test that the pool's run did not time


@dataclass(frozen=True)
class Named:
    name: str
    path: str  # inside the package
    old: str
    new: str
    tests: tuple[str, ...] = ()  # pytest ids that must catch it; () for those that execute its lines


NAMED = (
    Named("output layer padded from 1 row", "model/parts.py", "MIN_GEMM_ROWS = 16", "MIN_GEMM_ROWS = 1"),
    Named("output layer padding off", "model/parts.py", "if not pad or hidden.dim() != 2:", "if True:"),
    Named(
        "penalty_scope='generated' ignored",
        "sampling/processors.py",
        'source = due.canvas if self.scope == "canvas" else torch.where(due.given, ids.mask, due.canvas)',
        "source = due.canvas",
    ),
    Named(
        "system message not stripped",
        "model/chat.py",
        "{SYSTEM_TAGS[0]}\\n{content.strip()}",
        "{SYSTEM_TAGS[0]}\\n{content}",
    ),
    Named(
        "early stop on a stop token anywhere in the answer",
        "sampling/stopping.py",
        "if any(token in stops.stop_ids for token in tokens[start:end]):",
        "if any(token in stops.stop_ids for token in tokens):",
    ),
    Named(
        "early stop counts decided positions, not the decided prefix",
        "sampling/stopping.py",
        "end = _first(tokens, self.mask_id, start)",
        "end = sum(token != self.mask_id for token in tokens)",
    ),
    Named("temperature without effect", "sampling/processors.py", "** self.temperature", "* self.temperature"),
    Named("truncate='left' keeps the start", "model/tokens.py", "list(ids[len(ids) - room :])", "list(ids[:room])"),
    Named("remasking='random' ignored", "sampling/sampler.py", 'if config.remasking == "low_confidence":', "if True:"),
    Named(
        "stochastic_transfer ignored",
        "sampling/rules/count.py",
        "CountSchedule(steps_per_block, config.stochastic_transfer)",
        "CountSchedule(steps_per_block, False)",
    ),
    Named(
        "CFG: the unconditional rows attend to padding",
        "sampling/sampler.py",
        "torch.cat([attention_mask, attention_mask])",
        "torch.cat([attention_mask, torch.ones_like(attention_mask)])",
    ),
    Named(
        "CFG: the wrong unconditional row",
        "sampling/sampler.py",
        "[row_index, row_index + rows]",
        "[row_index, (row_index + 1) % (2 * rows)]",
    ),
    Named(
        "loss not divided by the gradient-accumulation steps",
        "training/trainer.py",
        "loss_is_scaled_for_ga = False",
        "loss_is_scaled_for_ga = True",
        ("tests/training/test_training_runs.py::test_gradient_accumulation_2_trains_as_one_step_at_double_the_batch",),
    ),
    Named(
        "usage.completion_tokens counts characters",
        "serve/serving/decoding.py",
        "tokens = len(self.lm.encode(tracker.text)) if tracker.text else 0",
        "tokens = len(tracker.text)",
        ("tests/serve/test_serve_counts.py::test_completion_tokens_count_the_tokens_of_each_answer",),
    ),
    Named(
        "generate --raw --animation ignores --raw",
        "cli/generate.py",
        "animation, output, config, chat=not raw, overwrite=overwrite)",
        "animation, output, config, chat=True, overwrite=overwrite)",
        (
            "tests/cli/test_cli_generation.py::test_generate_raw_animation_draws_the_raw_continuation",
            "tests/cli/test_cli_generation.py::test_generate_with_output_and_animation_writes_both",
        ),
    ),
    Named(
        "a client that left keeps its row decoding",
        "serve/serving/decoding.py",
        "entry.gone = True\n                self.decoder.drop([index])",
        "entry.gone = True",
        (
            "tests/serve/test_serve_counts.py::test_a_streaming_client_that_leaves_stops_its_row",
            "tests/serve/test_serve_counts.py::test_a_waiting_client_that_leaves_stops_its_row",
        ),
    ),
    Named(
        "/v1/infill served without the API key",
        "serve/security.py",
        'OPEN_PATHS = frozenset({"/", "/health", "/metrics"})',
        'OPEN_PATHS = frozenset({"/", "/health", "/metrics", "/v1/infill"})',
        ("tests/serve/test_serve_guards.py::test_every_route_needs_the_key_except_the_open_ones",),
    ),
    Named(
        "n equal to --max-batch-size refused",
        "serve/limits.py",
        "if not 1 <= n <= most:",
        "if not 1 <= n < most:",
        ("tests/serve/test_serve_counts.py::test_n_up_to_the_batch_size_is_accepted_and_one_more_refused",),
    ),
    Named(
        "the queue gauge left at 1 after a join",
        "serve/scheduler.py",
        "if taken:\n                self.metrics.queue_depth.set(len(self.pending))",
        "if taken:\n                pass",
        ("tests/serve/test_serve_counts.py::test_the_queue_gauge_is_back_at_zero_after_a_join_and_a_withdrawal",),
    ),
    Named(
        "frames of a joined request numbered from the batch's start",
        "serve/serving/decoding.py",
        "call=event.calls - entry.joined",
        "call=event.calls",
        (
            "tests/serve/test_serve_batching.py::"
            "test_the_frames_of_a_request_that_joined_a_running_batch_count_its_own_calls",
        ),
    ),
    Named(
        "a position left masked listed as committed",
        "sampling/sampler.py",
        "filled_now = committed & (self.canvas != self.ids.mask)",
        "filled_now = committed",
        ("tests/sampling/test_sampling_frames.py::test_a_position_left_masked_is_never_listed_as_committed",),
    ),
    Named(
        "a partial multi-token stop string streamed",
        "sampling/stopping.py",
        "for size in range(min(len(stop) - 1, len(text)), 0, -1):",
        "for size in range(min(1, len(text)), 0, -1):",
        (
            "tests/sampling/test_sampling_streamer.py::test_a_partial_multi_token_stop_string_is_held_back",
            "tests/serve/test_serve_api.py::test_a_stop_string_of_several_tokens_never_leaks_into_the_stream",
        ),
    ),
    Named(
        "the animation draws the end tag and what follows",
        "viz/layout.py",
        "for unit in _units(visible_positions(frame)):",
        'for unit in _units(frame["tokens"]):',
        ("tests/viz/test_viz_animation.py::test_the_end_tag_and_what_follows_it_are_not_drawn",),
    ),
)


@dataclass
class Mutant:
    path: str  # inside the package
    line: int
    column: int
    end_line: int
    description: str
    source: str = field(repr=False)  # the whole mutated file
    named: str | None = None
    tests: tuple[str, ...] = ()  # a named mutant's own tests (else those that execute its lines)
    status: str = ""  # killed | survived | uncovered | timeout | error
    detail: str = ""
    seconds: float = 0.0


# --- automatic mutants ---------------------------------------------------------------------

BINARY_SWAPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
}
COMPARE_SWAPS = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


class _Spans:
    """Byte offsets of AST positions (ast columns count UTF-8 bytes)."""

    def __init__(self, source: str) -> None:
        self.data = source.encode()
        self.starts = [0]
        for line in self.data.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def replace(self, node: ast.AST, text: str) -> str:
        start = self.starts[node.lineno - 1] + node.col_offset
        end = self.starts[node.end_lineno - 1] + node.end_col_offset
        return (self.data[:start] + text.encode() + self.data[end:]).decode()


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: messages, docstrings, annotations, assertions, decorators."""
    skipped: set[int] = set()

    def skip(node: ast.AST | None) -> None:
        if node is not None:
            skipped.update(id(child) for child in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Raise, ast.Assert, ast.JoinedStr)):
            skip(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip(node.returns)
            for decorator in node.decorator_list:
                skip(decorator)
            for argument in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                skip(argument.annotation)
        elif isinstance(node, ast.ClassDef):
            for decorator in node.decorator_list:
                skip(decorator)
        elif isinstance(node, ast.AnnAssign):
            skip(node.annotation)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip(body[0])
    return skipped


def _expression_mutations(node: ast.AST, parent: ast.AST | None) -> Iterator[tuple[ast.AST, str]]:
    """(replacement node, description) for one expression node."""
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_SWAPS:
        new = copy.copy(node)
        new.op = BINARY_SWAPS[type(node.op)]()
        yield new, f"{_symbol(node.op)} -> {_symbol(new.op)}"
    elif isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            if type(op) in COMPARE_SWAPS:
                new = copy.copy(node)
                new.ops = list(node.ops)
                new.ops[index] = COMPARE_SWAPS[type(op)]()
                yield new, f"{_symbol(op)} -> {_symbol(new.ops[index])}"
    elif isinstance(node, ast.BoolOp):
        new = copy.copy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield new, f"{_symbol(node.op)} -> {_symbol(new.op)}"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.Invert)):
        yield node.operand, f"{_symbol(node.op)} dropped"
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield ast.Constant(not value), f"{value} -> {not value}"
        elif isinstance(value, (int, float)):
            yield ast.Constant(value + 1), f"{value!r} -> {value + 1!r}"
        elif isinstance(value, str) and isinstance(parent, ast.Compare):
            yield ast.Constant(f"XX{value}XX"), f"{value!r} -> 'XX{value}XX'"
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and not node.args
        and not node.keywords
        and not isinstance(parent, ast.Expr)
    ):  # a call statement: removed as one
        yield node.func.value, f".{node.func.attr}() dropped"


def _statement_mutations(node: ast.stmt) -> Iterator[tuple[str, str]]:
    """(replacement source, description) for one statement."""
    if isinstance(node, ast.AugAssign) and type(node.op) in BINARY_SWAPS:
        new = copy.copy(node)
        new.op = BINARY_SWAPS[type(node.op)]()
        yield ast.unparse(new), f"{_symbol(node.op)}= -> {_symbol(new.op)}="
    in_place = isinstance(node, ast.Assign) and any(isinstance(t, (ast.Subscript, ast.Attribute)) for t in node.targets)
    call = isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    if in_place or call or isinstance(node, (ast.AugAssign, ast.Break, ast.Continue)):
        yield "pass", "statement removed"


def _symbol(op: ast.AST) -> str:
    symbols = {
        ast.Add: "+",
        ast.Sub: "-",
        ast.Mult: "*",
        ast.Div: "/",
        ast.FloorDiv: "//",
        ast.Mod: "%",
        ast.Pow: "**",
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.Eq: "==",
        ast.NotEq: "!=",
        ast.Lt: "<",
        ast.LtE: "<=",
        ast.Gt: ">",
        ast.GtE: ">=",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.In: "in",
        ast.NotIn: "not in",
        ast.And: "and",
        ast.Or: "or",
        ast.Not: "not",
        ast.USub: "unary -",
        ast.Invert: "~",
    }
    return symbols[type(op)]


def automatic_mutants(path: str, source: str) -> list[Mutant]:
    tree = ast.parse(source)
    skipped = _skipped_nodes(tree)
    spans = _Spans(source)
    lines = source.splitlines()
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    mutants = []
    for node in ast.walk(tree):
        if id(node) in skipped or not hasattr(node, "lineno") or "no mutate" in lines[node.lineno - 1]:
            continue
        if isinstance(node, ast.stmt):
            replacements = list(_statement_mutations(node))
        elif isinstance(node, ast.expr):
            replacements = [
                (f"({ast.unparse(new)})", text) for new, text in _expression_mutations(node, parents.get(id(node)))
            ]
        else:
            continue
        for text, description in replacements:
            mutated = spans.replace(node, text)
            try:
                ast.parse(mutated)
            except SyntaxError:
                continue
            original = ast.get_source_segment(source, node) or ""
            shown = " ".join(original.split())
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            mutants.append(
                Mutant(path, node.lineno, node.col_offset + 1, node.end_lineno, f"{description} in `{shown}`", mutated)
            )
    return sorted(mutants, key=lambda m: (m.path, m.line, m.column, m.description))


def named_mutants(package: Path, words: list[str] | None = None) -> list[Mutant]:
    """The NAMED mutations (with `words`, those whose name contains one of them)."""
    chosen = [named for named in NAMED if not words or any(word in named.name for word in words)]
    if words and not chosen:
        raise SystemExit(f"no named mutation's name contains any of {words}")
    mutants = []
    for named in chosen:
        source = (package / named.path).read_text(encoding="utf-8")
        count = source.count(named.old)
        if count != 1:
            raise SystemExit(
                f"named mutation {named.name!r}: {named.old!r} occurs {count} times in {named.path}; "
                "update NAMED in tools/mutation.py"
            )
        start = source.index(named.old)
        line = source[:start].count("\n") + 1
        column = start - (source.rfind("\n", 0, start) + 1) + 1
        mutants.append(
            Mutant(
                named.path,
                line,
                column,
                line + named.old.count("\n"),
                f"{named.old} -> {named.new}",
                source.replace(named.old, named.new),
                named=named.name,
                tests=named.tests,
            )
        )
    return mutants


# --- running tests in forked children ------------------------------------------------------


def _in_child(function: Callable[[], int], log: Path, timeout: float) -> tuple[str, float]:
    """Run `function` in a forked child; ('exit:N' | 'timeout', seconds)."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            os.setpgid(0, 0)
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
            descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(descriptor, 1)
            os.dup2(descriptor, 2)
            code = function()
        except BaseException:  # noqa: BLE001 - report whatever happened, then leave
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return f"exit:{os.waitstatus_to_exitcode(status)}", time.monotonic() - started
            if time.monotonic() - started > timeout:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "timeout", time.monotonic() - started
            time.sleep(0.05)
    except BaseException:  # interrupted: take the child (and anything it started) down too
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise


def _pytest(work: Path, arguments: list[str], plugins: list[object] = (), threads: int | None = 1) -> int:
    """pytest in the copy, with the copied package first on the path and quiet, deterministic Hypothesis.

    `threads` pins torch's thread count (tests that ask for another get this one): on a busy
    two-core machine, tests run on two threads take up to fifty times longer.
    """
    import pytest
    import torch
    from hypothesis import Phase, settings

    if threads is not None:
        torch.set_num_threads(threads)
        torch.set_num_threads = lambda _count: None
    os.chdir(work)
    sys.path.insert(0, str(work / "src"))
    settings.register_profile(
        "mutation", database=None, derandomize=True, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate)
    )
    settings.load_profile("mutation")
    return int(pytest.main(["-q", "-p", "no:cacheprovider", *arguments], plugins=list(plugins)))


class _Recorder:
    """Switches the coverage context to each test and adds up test durations."""

    def __init__(self, coverage, durations: dict[str, float]) -> None:
        self.coverage = coverage
        self.durations = durations

    def pytest_runtest_setup(self, item):
        self.coverage.switch_context(item.nodeid)

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration


def coverage_map(
    work: Path, pool: list[str], threads: int | None, timeout: float
) -> tuple[dict[str, dict[int, list[str]]], dict[str, float]]:
    """{package path: {line: [test ids]}} and {test id: seconds}, from one run of the pool."""
    import coverage

    data_file = work / "coverage.data"
    durations_file = work / "durations.json"

    def run() -> int:
        cov = coverage.Coverage(data_file=str(data_file), source=[str(work / "src" / PACKAGE)])
        durations: dict[str, float] = {}
        cov.start()
        code = _pytest(work, pool, [_Recorder(cov, durations)], threads)
        cov.stop()
        cov.save()
        durations_file.write_text(json.dumps(durations))
        import diffutron

        if not diffutron.__file__.startswith(str(work)):
            print(f"the tests imported {diffutron.__file__}, not the copy")
            return 71
        return code

    outcome, seconds = _in_child(run, work / "baseline.log", timeout)
    if outcome != "exit:0":
        tail = (work / "baseline.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"the unmutated test pool did not pass ({outcome}):\n{tail}")
    durations = json.loads(durations_file.read_text())
    slowest = sorted(durations.items(), key=lambda item: -item[1])[:5]
    print(
        f"baseline: the pool passes in {seconds:.0f} s (with coverage); slowest: "
        + ", ".join(f"{test} {duration:.1f} s" for test, duration in slowest),
        flush=True,
    )
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    lines: dict[str, dict[int, list[str]]] = {}
    prefix = str(work / "src" / PACKAGE) + os.sep
    for measured in data.measured_files():
        by_line = data.contexts_by_lineno(measured)
        lines[measured.removeprefix(prefix)] = by_line  # context "": run at import, before any test
    return lines, durations


def run_mutant(
    mutant: Mutant, work: Path, tests: list[str], durations: dict[str, float], threads: int | None, timeout_floor: float
) -> None:
    if not tests:
        mutant.status, mutant.detail = "uncovered", "no test executes these lines"
        return
    target = work / "src" / PACKAGE / mutant.path
    original = target.read_text(encoding="utf-8")
    target.write_text(mutant.source, encoding="utf-8")
    try:
        budget = max(timeout_floor, 3 * sum(durations.get(t, UNTIMED_TEST_S) for t in tests) + 30)
        log = work / "mutant.log"
        outcome, mutant.seconds = _in_child(lambda: _pytest(work, ["-x", *tests], threads=threads), log, budget)
    finally:
        target.write_text(original, encoding="utf-8")
    text = log.read_text(errors="replace")
    failed = next((line for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))), "")
    if outcome == "timeout":
        mutant.status, mutant.detail = "timeout", f"over {budget:.0f} s"
    elif outcome == "exit:0":
        mutant.status, mutant.detail = "survived", f"{len(tests)} tests pass"
    elif outcome == "exit:1":
        mutant.status, mutant.detail = "killed", failed[:200]
    else:
        mutant.status, mutant.detail = "error", f"{outcome} {failed[:200] or text.strip().splitlines()[-1:]}"


def tests_for(mutant: Mutant, lines: dict[str, dict[int, list[str]]], durations: dict[str, float]) -> list[str]:
    """The tests that execute the mutant's lines, fastest first.

    Lines run when the module is imported (constants, definitions) belong to no test: every test
    that uses the module is taken for them.
    """
    covering = lines.get(mutant.path, {})
    span = range(mutant.line, mutant.end_line + 1)
    tests = {test for line in span for test in covering.get(line, []) if test}
    if not tests and any("" in covering.get(line, []) for line in span):
        tests = {test for contexts in covering.values() for test in contexts if test}
    return sorted(tests, key=lambda test: (durations.get(test, 0.0), test))


def own_tests(mutants: list[Mutant]) -> list[str]:
    """When every mutant names its own tests: those, the only ones to run (and to pass unmutated); else []."""
    if not mutants or not all(mutant.tests for mutant in mutants):
        return []
    return sorted({test for mutant in mutants for test in mutant.tests})


def survivors_of(results: Path, mutants: list[Mutant]) -> list[Mutant]:
    """The mutants that survived or went unexecuted in an earlier run's results, matched by place and change.

    The source must be the one of that run: a mutant whose place moved is not found, and said so.
    """

    def key(mutant: dict[str, object]) -> tuple[object, ...]:
        return tuple(mutant[name] for name in ("path", "line", "column", "description", "named"))

    earlier = json.loads(results.read_text(encoding="utf-8"))
    wanted = {key(mutant) for mutant in earlier if mutant["status"] in ("survived", "uncovered")}
    chosen = [mutant for mutant in mutants if key(asdict(mutant)) in wanted]
    if len(chosen) != len(wanted):
        print(f"{len(wanted) - len(chosen)} survivors of {results} no longer match the source", flush=True)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=Path, default=ROOT / "tests", help="the test suite to measure")
    parser.add_argument("--only", choices=("named", "auto"), help="only the named or the automatic mutants")
    parser.add_argument(
        "--named",
        nargs="+",
        metavar="WORDS",
        help="only the named mutations whose name contains one of these (implies --only named)",
    )
    parser.add_argument("--modules", nargs="*", default=list(AUTO_MODULES), help="package files of the automatic set")
    parser.add_argument(
        "--pool", nargs="*", default=list(POOL), help="test files and folders whose coverage picks a mutant's tests"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="least seconds a mutant's tests may take")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every test (0: as each test sets them; slow on a busy machine)",
    )
    parser.add_argument("--output", type=Path, help="write every mutant's result to this JSON file")
    parser.add_argument(
        "--rerun", type=Path, help="only the mutants that survived (or no test executed) in this earlier --output"
    )
    args = parser.parse_args()

    # no bytecode caches: a mutant of the same size written within the same second would load a stale one
    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    threads = args.threads or None
    # as tests/conftest.py does, but before transformers reads them (it is imported here, not in the tests)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill PID`: the child and the copy go too
    import torch  # noqa: F401 - imported once here, shared by every forked child
    import transformers  # noqa: F401
    from transformers import ModernBertForMaskedLM  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="diffutron-mutation-") as directory:
        work = Path(directory)
        shutil.copytree(ROOT / "src" / PACKAGE, work / "src" / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(args.tests, work / "tests", ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
        shutil.copy(ROOT / "README.md", work / "README.md")  # read by the tests, as are the next two
        for folder in ("configs", "benchmarks", "tools"):
            shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(work / "src"), os.environ.get("PYTHONPATH", "")])
        package = work / "src" / PACKAGE
        mutants = [] if args.only == "auto" else named_mutants(package, args.named)
        if args.only != "named" and not args.named:
            for module in args.modules:
                mutants += automatic_mutants(module, (package / module).read_text(encoding="utf-8"))
        if args.rerun:
            mutants = survivors_of(args.rerun, mutants)
        print(f"{len(mutants)} mutants ({sum(m.named is not None for m in mutants)} named)", flush=True)
        pool = own_tests(mutants) or args.pool
        missing = [path for path in pool if not (work / path.split("::")[0]).exists()]
        if missing:
            print(f"not in {args.tests}, left out of the pool: {', '.join(missing)}", flush=True)
        pool = [path for path in pool if path not in missing]
        lines, durations = coverage_map(work, pool, threads, timeout=3600)
        started = time.monotonic()
        for index, mutant in enumerate(mutants, start=1):
            tests = list(mutant.tests) or tests_for(mutant, lines, durations)
            run_mutant(mutant, work, tests, durations, threads, args.timeout)
            label = mutant.named or mutant.description
            print(
                f"[{index}/{len(mutants)}] {mutant.status:9} {mutant.path}:{mutant.line}:{mutant.column} {label}  "
                f"({mutant.seconds:.0f} s) {mutant.detail if mutant.status != 'killed' else ''}",
                flush=True,
            )
        elapsed = time.monotonic() - started
    report(mutants, elapsed)
    if args.output:
        args.output.write_text(
            json.dumps(
                [{k: v for k, v in asdict(m).items() if k != "source"} for m in mutants], indent=1, ensure_ascii=False
            )
            + "\n",
            encoding="utf-8",
        )


def report(mutants: list[Mutant], elapsed: float) -> None:
    def count(group: list[Mutant], *statuses: str) -> int:
        return sum(m.status in statuses for m in group)

    print(f"\n{len(mutants)} mutants in {elapsed / 60:.1f} min")
    for title, group in (
        ("named", [m for m in mutants if m.named]),
        ("automatic", [m for m in mutants if not m.named]),
    ):
        if group:
            print(
                f"{title:9}: {len(group)} mutants, {count(group, 'killed', 'timeout', 'error')} caught "
                f"({count(group, 'timeout')} by the time limit, {count(group, 'error')} by errors), "
                f"{count(group, 'survived')} survived, {count(group, 'uncovered')} not executed by any test"
            )
    survivors = [m for m in mutants if m.status in ("survived", "uncovered")]
    if survivors:
        print("\nsurvivors:")
        for mutant in survivors:
            label = f"[{mutant.named}] " if mutant.named else ""
            print(f"  {mutant.path}:{mutant.line}:{mutant.column} {label}{mutant.description} ({mutant.status})")


if __name__ == "__main__":
    main()
