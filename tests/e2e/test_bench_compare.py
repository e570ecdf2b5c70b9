"""bench.compare: runs a benchmark from a checkout of the base and from the working tree, and
prints the medians side by side with a verdict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.compare import BENCHMARKS, Benchmark, Runs, figures, higher, judge, lower, report

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VERDICTS = {"within noise", "faster", "slower"}


def _worktrees() -> list[str]:
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in listing.splitlines() if line.startswith("worktree ")]


def test_compare_prints_a_row_per_metric_with_a_numeric_ratio_and_removes_its_checkout() -> None:
    before = _worktrees()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.compare",
            "--base",
            "HEAD",
            "--only",
            "due_query",
            "--size",
            "tiny",
            "--runs",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in proc.stdout.splitlines()
        if line.startswith("| due_query |")
    ]
    due_query = next(b for b in BENCHMARKS if b.name == "due_query")
    assert [row[1] for row in rows] == [metric.label for metric in due_query.metrics]
    for _bench, _metric, base, head, ratio, _spread, verdict in rows:
        assert float(ratio) == pytest.approx(float(head) / float(base), rel=0.1)
        assert verdict in VERDICTS
    assert "skipped" not in proc.stdout
    # Its temporary checkout is gone (other worktrees may come and go meanwhile).
    assert not [w for w in set(_worktrees()) - set(before) if "bench-compare-" in w]


def test_a_ratio_inside_the_ten_percent_band_is_noise_outside_it_a_direction() -> None:
    time = lower("claim ms", "")
    rate = higher("events/s", "")
    assert judge(time, [10.0], [10.9]).word == "within noise"
    assert judge(time, [10.0], [11.5]).word == "slower"
    assert judge(time, [10.0], [8.5]).word == "faster"
    assert judge(rate, [10.0], [11.5]).word == "faster"
    assert judge(rate, [10.0], [8.5]).word == "slower"


def test_a_ratio_inside_the_spread_of_the_base_runs_either_way_is_noise() -> None:
    time = lower("claim ms", "")
    verdict = judge(time, [7.0, 10.0, 14.0], [13.0, 13.0, 13.0])
    assert verdict.ratio == pytest.approx(1.3)
    assert verdict.spread == pytest.approx(0.4)
    assert verdict.word == "within noise"
    # The base runs strayed 40 % above their median: 30 % below is noise too.
    assert judge(time, [10.0, 10.0, 14.0], [7.0, 7.0, 7.0]).word == "within noise"
    assert judge(time, [10.0, 10.0, 14.0], [5.0, 5.0, 5.0]).word == "faster"
    assert judge(time, [9.5, 10.0, 10.5], [13.0, 13.0, 13.0]).word == "slower"


def test_counts_that_stay_at_zero_are_no_change_and_any_above_zero_is_worse() -> None:
    doubles = lower("double shares", "", ("fewer", "more"))
    assert judge(doubles, [0.0, 0.0], [0.0, 0.0]).word == "within noise"
    assert judge(doubles, [0.0, 0.0], [1.0, 1.0]).word == "more"


def test_figures_read_table_cells_and_summary_numbers_the_last_match_winning() -> None:
    memory = next(b for b in BENCHMARKS if b.name == "memory")
    due_query = next(b for b in BENCHMARKS if b.name == "due_query")
    memory_output = """
daemon memory: 2000 chats, 20 due, sqlite
  chats  shared  pass s  RSS at start MB  peak RSS MB
  -----  ------  ------  ---------------  -----------
   2000      20   1.161           95.523       96.281

summary: daemon peak RSS 96 MB with a 2000-chat ledger
"""
    assert figures(memory, memory_output) == {"daemon peak RSS MB": 96.281, "pass s": 1.161}
    due_output = """
      ledger  chats  due  batch  due query ms  claim ms   max ms  floor ms  select ms  x floor
  ----------  -----  ---  -----  ------------  --------  -------  --------  ---------  -------
      sqlite    600  600    500        11.875    15.400   17.385    14.417      1.760    1.068
      sqlite   1200  600    500        17.710    43.045   55.178    20.060      1.592    2.146
  postgresql   1200  600    500        32.749    61.753   69.120    37.504      8.032    1.647

summary: batch cost at largest/smallest ledger: sqlite 1200/600: claim 2.80 (43.0 ms), due \
query 1.49 (17.7 ms)
"""
    assert figures(due_query, due_output) == {
        "sqlite due query ms (largest ledger)": 17.7,
        "sqlite claim ms (largest ledger)": 43.0,
        "sqlite claim / driver floor (largest)": 2.146,
        "postgresql claim / driver floor (largest)": 1.647,
    }


def test_figures_find_a_table_cell_by_its_header_when_columns_come_and_go() -> None:
    due_query = next(b for b in BENCHMARKS if b.name == "due_query")
    fewer_columns = """
  ledger  chats  due query ms  claim ms  x floor  load s
  ------  -----  ------------  --------  -------  ------
  sqlite  10000         8.600    26.000    0.679   1.200
"""
    assert figures(due_query, fewer_columns) == {"sqlite claim / driver floor (largest)": 0.679}


def test_report_marks_a_metric_one_side_lacks_omits_one_neither_printed_lists_skips() -> None:
    bench = Benchmark(
        "example",
        {"tiny": ""},
        (
            lower("old ms", r"old (\d+)"),
            lower("new ms", r"new (\d+)"),
            lower("elsewhere ms", r"elsewhere (\d+)"),
        ),
    )
    text = report(
        [bench],
        {"example": Runs(base=[{"old ms": 5.0}], head=[{"old ms": 5.0, "new ms": 3.0}])},
        ["gone: no bench/gone.py in head"],
        "title",
    )
    assert "| example | new ms | - | 3.00 | - | - | not printed by base |" in text
    assert "| example | old ms | 5.00 | 5.00 | 1.000 | ±0% | within noise |" in text
    assert "elsewhere" not in text
    assert "- skipped gone: no bench/gone.py in head" in text
