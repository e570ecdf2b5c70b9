"""Every benchmark of ``bench/`` at two revisions, side by side, in one markdown table.

    python -m bench.compare --base REV [--head REV|worktree] [--size tiny|small|full] [--runs N]
                            [--only a,b]

The base (and the head, when it is a revision) is checked out in a temporary directory
(``git worktree add --detach``, removed at the end); the head defaults to this working tree,
uncommitted changes included. Both run in the current virtualenv: each benchmark is
``python -m bench.NAME`` with that checkout as its working directory and its ``PYTHONPATH``, so
that ``scheduler`` and ``bench`` are the checkout's own.

Runs alternate base, head, base, head (ABAB): whatever the rest of the machine does meanwhile
falls on both alike. Each benchmark's figures are read from what it prints (one parser entry
per benchmark in ``BENCHMARKS``: its arguments at each size, a pattern per metric, which way is
better), and the medians are compared: "within noise" when head/base differs from 1 by no more
than the base runs differ from their own median (either way), or by 10 % at most.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

SIZES = ("tiny", "small", "full")
# Head/base within this of 1 is noise whatever the base runs' own spread.
NOISE_FLOOR = 0.10
# The longest one run may take before it counts as failed (full has none: hours are normal).
RUN_TIMEOUT: Mapping[str, float | None] = {"tiny": 300, "small": 900, "full": None}
# Seconds a stopped benchmark gets to clean up after itself.
STOP_GRACE = 20
# Modules of bench/ that are not benchmarks.
NOT_BENCHMARKS = frozenset({"__init__", "common", "compare", "peer_app"})

# A figure as the benchmarks print it: a whole table cell or a number in the summary.
NUM = r"(-?\d+(?:\.\d+)?)(?![\d.])"

TIME = ("faster", "slower")
MEMORY = ("smaller", "larger")
COUNT = ("fewer", "more")


@dataclass(frozen=True)
class Metric:
    """One figure of a benchmark's output, at its last match: ``pattern``'s first group; or,
    with ``column``, the cell under that header in the table row ``pattern`` matches the
    start of."""

    label: str
    pattern: str
    higher_is_better: bool
    # What a change that is beyond the noise is called: better, worse.
    words: tuple[str, str] = TIME
    column: str | None = None


@dataclass(frozen=True)
class Cell:
    """A cell of a table printed by ``bench.common.table``: the row whose leading cells
    ``row`` matches, the column headed ``header``."""

    row: str
    header: str


@dataclass(frozen=True)
class Benchmark:
    name: str
    # Its command-line arguments at each size (split on spaces).
    args: Mapping[str, str]
    metrics: tuple[Metric, ...]


def cell(row: str, header: str) -> Cell:
    return Cell(row, header)


def lower(label: str, source: str | Cell, words: tuple[str, str] = TIME) -> Metric:
    return _metric(label, source, higher_is_better=False, words=words)


def higher(label: str, source: str | Cell, words: tuple[str, str] = TIME) -> Metric:
    return _metric(label, source, higher_is_better=True, words=words)


def _metric(
    label: str, source: str | Cell, higher_is_better: bool, words: tuple[str, str]
) -> Metric:
    if isinstance(source, Cell):
        return Metric(label, source.row, higher_is_better, words, source.header)
    return Metric(label, source, higher_is_better, words)


def per_database(*metrics: Metric) -> tuple[Metric, ...]:
    """The same metrics for each ledger kind; ``{db}`` in a label or pattern is its name."""
    return tuple(
        Metric(
            metric.label.replace("{db}", db),
            metric.pattern.replace("{db}", db),
            metric.higher_is_better,
            metric.words,
            metric.column,
        )
        for db in ("sqlite", "postgresql")
        for metric in metrics
    )


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "share_pass",
        {
            "tiny": "--chats 60 --runs 1",
            "small": "--chats 1000 --runs 3",
            "full": "--chats 2000 --runs 7",
        },
        per_database(
            higher("{db} efficiency (bare loop = 1)", cell(r"share pass +{db}", "efficiency")),
            higher("{db} calls/s", cell(r"share pass +{db}", "calls/s")),
        ),
    ),
    Benchmark(
        "latency_pass",
        {
            "tiny": "--chats 64 --latency-ms 20",
            "small": "--chats 4000",
            "full": "--chats 20000",
        },
        (lower("pass / ideal (N x latency / C)", rf"latency-bound pass at {NUM} x the ideal"),),
    ),
    Benchmark(
        "due_query",
        {
            "tiny": "--sizes 600,1200 --repeats 2",
            "small": "--sizes 10000,100000 --repeats 10",
            "full": "--sizes 10000,100000,1000000 --repeats 15",
        },
        per_database(
            lower(
                "{db} due query ms (largest ledger)",
                rf"{{db}} \d+/\d+: claim [\d.]+ \([\d.]+ ms\), due query [\d.]+ \({NUM} ms",
            ),
            lower("{db} claim ms (largest ledger)", rf"{{db}} \d+/\d+: claim [\d.]+ \({NUM} ms"),
            # Against the bare driver running the same statements in the same run.
            lower("{db} claim / driver floor (largest)", cell(r"{db} +\d+", "x floor")),
        ),
    ),
    Benchmark(
        "webhook_ingest",
        {
            "tiny": "--events 100 --connections 4",
            "small": "--events 2000 --schemes standard",
            "full": "--events 5000",
        },
        per_database(
            *(
                metric
                for scheme in ("standard", "legacy")
                for metric in (
                    higher(
                        f"{{db}} {scheme} events/s", rf"{{db}} {scheme} outbound {NUM} events/s"
                    ),
                    lower(
                        f"{{db}} {scheme} p99 ms",
                        rf"{{db}} {scheme} outbound [\d.]+ events/s, p99 {NUM} ms",
                    ),
                )
            )
        ),
    ),
    Benchmark(
        "memory",
        {
            "tiny": "--chats 2000",
            "small": "--chats 100000",
            "full": "--chats 1000000",
        },
        (
            lower("daemon peak RSS MB", cell(r"\d+", "peak RSS MB"), MEMORY),
            lower("pass s", cell(r"\d+", "pass s")),
        ),
    ),
    Benchmark(
        "naive",
        {
            "tiny": "--sizes 600 --timed-adds 50",
            "small": "--sizes 50000 --timed-adds 500",
            "full": "--sizes 10000,100000 --timed-adds 3000",
        },
        (
            lower(
                "share-scheduler pass s (largest)",
                cell(r"share-scheduler pass \(\d+\)", "wake-up / pass s"),
            ),
            lower(
                "share-scheduler due-query batch s (largest)",
                cell(r"share-scheduler due-query batch \(\d+\)", "wake-up / pass s"),
            ),
        ),
    ),
    Benchmark(
        "export_rss",
        {
            "tiny": "--chats 2000",
            "small": "--chats 200000",
            "full": "--chats 1000000",
        },
        (
            lower("peak RSS MiB (largest)", cell(r"\d+", "peak RSS MiB"), MEMORY),
            lower("seconds (largest)", cell(r"\d+", "seconds")),
        ),
    ),
    Benchmark(
        "import_rss",
        {
            "tiny": "--rows 2000",
            "small": "--rows 100000",
            "full": "--rows 1000000",
        },
        (
            lower("peak RSS MiB (largest)", cell(r"\d+", "peak RSS MiB"), MEMORY),
            lower("seconds (largest)", cell(r"\d+", "seconds")),
        ),
    ),
    Benchmark(
        "crash",
        {
            "tiny": "--kills 2 --chats 400 --replicas 2 --max-gap 0.3 --seed 11",
            "small": "--kills 2 --chats 800 --replicas 2 --max-gap 0.5 --seed 11",
            "full": "--kills 20 --seed 11",
        },
        per_database(
            lower("{db} double shares", rf"{{db}} x\d+: [^;]*double shares {NUM}", COUNT),
            lower("{db} stranded", rf"{{db}} x\d+: [^;]*stranded {NUM}", COUNT),
            lower("{db} ambiguous / kill", rf"{{db}} x\d+: [^;]*ambiguous/kill {NUM}", COUNT),
            lower("{db} missed / kill", rf"{{db}} x\d+: [^;]*missed/kill {NUM}", COUNT),
        ),
    ),
    Benchmark(
        "peer_procrastinate",
        {
            "tiny": "--chats 50 --runs 1 --latencies 0",
            "small": "--chats 3000 --runs 1 --latencies 0",
            "full": "--chats 20000 --runs 3",
        },
        (
            higher("shares/s at 0 ms", cell(r"share-scheduler +0", "shares/s")),
            # The peer runs in the same process tree and moment: the ratio carries less noise.
            higher("ours / peer shares/s at 0 ms", rf"at 0 ms ours/peer shares/s {NUM}"),
            lower("rows / share at 0 ms", cell(r"share-scheduler +0", "rows/share"), COUNT),
            lower("commits / share at 0 ms", cell(r"share-scheduler +0", "commits/share"), COUNT),
            lower("CPU ms / share at 0 ms", cell(r"share-scheduler +0", "CPU ms/share")),
            lower("start-up s", cell(r"share-scheduler +0", "start-up s")),
            lower("peak RSS MB at 0 ms", cell(r"share-scheduler +0", "peak RSS MB"), MEMORY),
        ),
    ),
    Benchmark(
        "card_gone",
        {
            "tiny": "--chats 600 --delete-after 100",
            "small": "--chats 4000 --delete-after 500",
            "full": "",
        },
        per_database(
            lower("{db} rows written / chat", cell(r"{db} +\d+", "rows per chat"), COUNT),
            lower("{db} pass s", cell(r"{db} +\d+", "pass s")),
        ),
    ),
    Benchmark(
        "replicas",
        {
            "tiny": "--chats 60 --runs 1 --replicas 1,2 --latency-ms 20",
            "small": "--chats 2400 --runs 1 --replicas 1,2",
            "full": "",
        },
        (
            higher("shares/s, 1 replica", cell("1", "shares/s")),
            higher("shares/s, 2 replicas", cell("2", "shares/s")),
            higher("shares/s, 2 replicas / 1", rf"(?<![\d.])2 x{NUM} \("),
            lower("time / ideal, 2 replicas", cell("2", "time/ideal")),
            lower("daemons CPU ms / share, 2 replicas", cell("2", "daemons CPU ms/share")),
        ),
    ),
    Benchmark(
        "scale",
        {
            "tiny": "--chats 1000,2000 --pass-chats 20 --runs 1 --repeats 2",
            "small": "--chats 10000,100000 --pass-chats 500 --runs 1 --repeats 5",
            "full": "",
        },
        # The largest ledger (the last row of sizes), and its ratio to the smallest.
        tuple(
            metric
            for header, words in (
                ("due query ms", TIME),
                ("claim ms", TIME),
                ("pass ms/due chat", TIME),
                ("start-up s", TIME),
                ("peak RSS MB", MEMORY),
            )
            for metric in (
                lower(f"{header} (largest ledger)", cell(r"\d+ +\d+", header), words),
                lower(f"{header}, largest / smallest ledger", cell(r"\d+ / \d+", header), words),
            )
        ),
    ),
)


def figures(benchmark: Benchmark, output: str) -> dict[str, float]:
    """The benchmark's metrics found in its output (the last match of each)."""
    found: dict[str, float] = {}
    for metric in benchmark.metrics:
        if metric.column is None:
            matches = re.findall(metric.pattern, output, flags=re.MULTILINE)
        else:
            matches = column_cells(output, metric.pattern, metric.column)
        numbers = [value for value in matches if re.fullmatch(NUM, value)]
        if numbers:
            found[metric.label] = float(numbers[-1])
    return found


def column_cells(output: str, row: str, header: str) -> list[str]:
    """The cells under ``header`` of the rows starting with ``row``, in every table of the
    output that has such a column. Found by the header's name, not its position: a column
    added to a table leaves the others readable."""
    header_at = re.compile(rf"(?:^ *|(?<=  )){re.escape(header)}(?=  |$)")
    starts = re.compile(rf" *{row}(?= |$)")
    cells = []
    end: int | None = None
    for line in output.splitlines():
        if not line.strip():
            end = None
            continue
        heading = header_at.search(line)
        if heading:
            # Cells are right-justified under their header: they end where it ends.
            end = heading.end()
        elif end is not None and starts.match(line):
            cells.append(line[:end].rsplit(" ", 1)[-1])
    return cells


@dataclass(frozen=True)
class Verdict:
    base: float
    head: float
    ratio: float
    # The largest relative distance of a base run from the base median.
    spread: float
    word: str


def judge(metric: Metric, base: Sequence[float], head: Sequence[float]) -> Verdict:
    """Compare the medians. Head/base is noise when it is no further from 1 than the base
    runs are from their median, or than 10 %: either way, since with a few runs which side the
    farthest one fell on is chance."""
    base_median = statistics.median(base)
    head_median = statistics.median(head)
    if base_median == 0:
        # Counts such as double shares are 0 when all is well: equal is no change.
        ratio = 1.0 if head_median == 0 else math.inf
        spread = 0.0
    else:
        ratio = head_median / base_median
        spread = max(abs(run / base_median - 1) for run in base)
    if abs(ratio - 1) <= max(spread, NOISE_FLOOR):
        word = "within noise"
    else:
        better = ratio > 1 if metric.higher_is_better else ratio < 1
        word = metric.words[0] if better else metric.words[1]
    return Verdict(base_median, head_median, ratio, spread, word)


def number(value: float) -> str:
    if math.isinf(value):
        return "inf"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


@dataclass
class Runs:
    """The figures of every run of one benchmark, per side, and why it stopped if it did."""

    base: list[dict[str, float]] = field(default_factory=list)
    head: list[dict[str, float]] = field(default_factory=list)
    failure: str | None = None


def table_rows(benchmark: Benchmark, runs: Runs) -> list[list[str]]:
    rows = []
    for metric in benchmark.metrics:
        base = [run[metric.label] for run in runs.base if metric.label in run]
        head = [run[metric.label] for run in runs.head if metric.label in run]
        if not base and not head:
            # Not measured at this size (e.g. a scheme or latency left out of ``small``).
            continue
        if not base or not head:
            missing = "base" if not base else "head"
            rows.append(
                [
                    benchmark.name,
                    metric.label,
                    number(statistics.median(base)) if base else "-",
                    number(statistics.median(head)) if head else "-",
                    "-",
                    "-",
                    f"not printed by {missing}",
                ]
            )
            continue
        verdict = judge(metric, base, head)
        rows.append(
            [
                benchmark.name,
                metric.label,
                number(verdict.base),
                number(verdict.head),
                f"{verdict.ratio:.3f}" if math.isfinite(verdict.ratio) else "inf",
                f"±{verdict.spread:.0%}",
                verdict.word,
            ]
        )
    return rows


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


@contextmanager
def checkout(repo: Path, commit: str) -> Iterator[Path]:
    """A detached checkout of ``commit`` in a temporary directory, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    path = parent / commit[:12]
    git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(parent, ignore_errors=True)


def benchmarks_in(tree: Path) -> set[str]:
    """The benchmark modules of a checkout: those of ``bench/`` that run as a command."""
    return {
        path.stem
        for path in (tree / "bench").glob("*.py")
        if path.stem not in NOT_BENCHMARKS and '__name__ == "__main__"' in path.read_text()
    }


@dataclass(frozen=True)
class RunResult:
    seconds: float
    output: str
    error: str | None


def run_once(name: str, args: Sequence[str], tree: Path, timeout: float | None) -> RunResult:
    """``python -m bench.NAME ARGS`` importing ``scheduler`` and ``bench`` from ``tree``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    # Its own process group: a benchmark that is stopped takes its simulator and daemons along.
    proc = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        return RunResult(time.perf_counter() - started, "", f"no result after {timeout:.0f} s")
    except BaseException:
        _stop_group(proc)
        raise
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        # The last lines (a traceback's exception) on one line: the report is a markdown list.
        tail = " / ".join(line.strip() for line in (stderr or stdout).strip().splitlines()[-3:])
        return RunResult(seconds, stdout, f"exit status {proc.returncode}: {tail}")
    return RunResult(seconds, stdout, None)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGINT first, so that the benchmark unwinds (stops its processes, drops its databases);
    SIGKILL to whatever is left of the group after a while."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=STOP_GRACE)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def compare(
    selected: Sequence[Benchmark],
    size: str,
    runs: int,
    trees: Mapping[str, Path],
) -> dict[str, Runs]:
    """Run each benchmark ``runs`` times on each side, base then head, in turn."""
    results: dict[str, Runs] = {}
    for benchmark in selected:
        per_side = results[benchmark.name] = Runs()
        for run in range(runs):
            for side in ("base", "head"):
                result = run_once(
                    benchmark.name, benchmark.args[size].split(), trees[side], RUN_TIMEOUT[size]
                )
                progress(
                    f"{benchmark.name}: {side} run {run + 1}/{runs}, {result.seconds:.1f} s"
                    + (f" - failed, {result.error}" if result.error else "")
                )
                if result.error:
                    per_side.failure = f"{side} run {run + 1} failed, {result.error}"
                    break
                (per_side.base if side == "base" else per_side.head).append(
                    figures(benchmark, result.output)
                )
            if per_side.failure:
                break
    return results


def report(
    selected: Sequence[Benchmark],
    results: Mapping[str, Runs],
    skipped: Sequence[str],
    title: str,
) -> str:
    rows: list[list[str]] = []
    notes = list(skipped)
    for benchmark in selected:
        outcome = results[benchmark.name]
        if outcome.failure:
            notes.append(f"{benchmark.name}: {outcome.failure}")
            continue
        rows += table_rows(benchmark, outcome)
    headers = ["bench", "metric", "base median", "head median", "head/base"]
    headers += ["base spread", "verdict"]
    text = f"{title}\n\n{markdown(headers, rows)}\n"
    if notes:
        text += "\n" + "\n".join(f"- skipped {note}" for note in notes) + "\n"
    return text


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds through the checkouts' clean-up, as Ctrl-C does.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="revision to compare against")
    parser.add_argument(
        "--head", default="worktree", help="revision, or 'worktree' (default): this working tree"
    )
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--only", default="", help="comma-separated benchmarks (default all)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    known = {benchmark.name: benchmark for benchmark in BENCHMARKS}
    wanted = [name for name in args.only.split(",") if name]
    here = Path(__file__).resolve().parents[1]
    unknown = set(wanted) - set(known) - benchmarks_in(here)
    if unknown:
        parser.error(f"--only: no benchmark {', '.join(sorted(unknown))}")

    repo = Path(git(here, "rev-parse", "--show-toplevel"))
    base_commit = git(repo, "rev-parse", "--verify", f"{args.base}^{{commit}}")
    head_commit = (
        None
        if args.head == "worktree"
        else git(repo, "rev-parse", "--verify", f"{args.head}^{{commit}}")
    )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with checkout(repo, base_commit) as base_tree, _head_tree(repo, head_commit) as head_tree:
        trees = {"base": base_tree, "head": head_tree}
        on_base, on_head = benchmarks_in(base_tree), benchmarks_in(head_tree)
        names = [b.name for b in BENCHMARKS] + sorted((on_base | on_head) - set(known))
        skipped = []
        selected = []
        for name in names:
            if wanted and name not in wanted:
                continue
            if name not in on_base or name not in on_head:
                sides = [
                    side for side, on in (("base", on_base), ("head", on_head)) if name not in on
                ]
                skipped.append(f"{name}: no bench/{name}.py in {' or '.join(sides)}")
            elif name not in known:
                skipped.append(f"{name}: no entry in bench/compare.py (its arguments and metrics)")
            else:
                selected.append(known[name])
        for note in skipped:
            progress(f"skipped {note}")
        results = compare(selected, args.size, args.runs, trees)
    if head_commit is None:
        changed = " plus uncommitted changes" if git(repo, "status", "--porcelain") else ""
        head_name = f"the working tree ({git(repo, 'rev-parse', '--short=10', 'HEAD')}{changed})"
    else:
        head_name = f"{args.head} ({head_commit[:10]})"
    title = (
        f"base {args.base} ({base_commit[:10]}) vs head {head_name}: size {args.size}, "
        f"median of {args.runs} run{'s' if args.runs > 1 else ''} each, alternating"
    )
    print(report(selected, results, skipped, title), end="")


@contextmanager
def _head_tree(repo: Path, commit: str | None) -> Iterator[Path]:
    if commit is None:
        yield repo
        return
    with checkout(repo, commit) as tree:
        yield tree


if __name__ == "__main__":
    main()
