"""Schedule files nobody here wrote: duplicate keys, alias bombs, huge and non-UTF-8 files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.config import load_schedule
from scheduler.config_yaml import MAX_CONFIG_BYTES
from scheduler.errors import ConfigError

ENV = {"LINQ_API_KEY": "tok", "LINQ_WEBHOOK_SECRET": "whsec"}


def _load(tmp_path: Path, text: str | bytes) -> ConfigError:
    path = tmp_path / "schedule.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_schedule(path, env=ENV)
    return info.value


def test_a_duplicate_key_is_refused_with_both_line_numbers(tmp_path: Path) -> None:
    error = _load(
        tmp_path,
        "sharing:\n  timezone: UTC\n  min_interval: 12h\n  timezone: Europe/Paris\n",
    )
    assert "line 4: key 'timezone' repeats line 2" in str(error)


def test_a_duplicate_top_level_section_is_refused(tmp_path: Path) -> None:
    error = _load(
        tmp_path, "lines: []\nlogging: {level: info}\nlines:\n  - number: '+14155550100'\n"
    )
    assert "line 3: key 'lines' repeats line 1" in str(error)


def test_a_merge_key_is_not_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        "x-card: &card {first_name: Acme}\n"
        "lines:\n"
        "  - {number: '+14155550100', card: {<<: *card, last_name: Inc}}\n"
    )
    with pytest.raises(ConfigError, match="x-card: unknown key"):
        load_schedule(path, env=ENV)


BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *[f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)],
        "sharing:\n  timezone: *i",
    ]
)


def test_an_alias_bomb_is_refused_without_building_it(tmp_path: Path) -> None:
    assert len(BILLION_LAUGHS) < 5000
    error = _load(tmp_path, BILLION_LAUGHS)
    text = str(error)
    assert "aliases" in text
    # The message names the problem; it does not format the expanded document.
    assert len(text) < 300


def test_a_wide_alias_expansion_under_the_alias_count_is_refused_too(tmp_path: Path) -> None:
    # 4 levels of 9 aliases each (36 aliases): 9**4 * ... nodes, past the expansion limit.
    rows = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(5):
        prev, cur = chr(97 + i), chr(98 + i)
        rows.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 12)}]")
    error = _load(tmp_path, "\n".join(rows))
    assert "expands to more than" in str(error)


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    error = _load(tmp_path, "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    assert f"larger than {MAX_CONFIG_BYTES} bytes" in str(error)


def test_not_utf8_is_one_line_and_exit_2_from_the_cli(tmp_path: Path) -> None:
    error = _load(tmp_path, b"sharing:\n  timezone: \xff\xfeUTC\n")
    assert "line 2: not UTF-8" in str(error)
    path = tmp_path / "schedule.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "scheduler", "config", "check", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **ENV},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "not UTF-8" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_http_limits_have_defaults_bounds_and_need_a_restart() -> None:
    from scheduler.config import Secret, Secrets, parse_schedule
    from scheduler.daemon import restart_required, server_limits

    schedule = parse_schedule({}, "x.yaml")
    limits = server_limits(schedule)
    assert (limits.max_header_bytes, limits.header_timeout, limits.max_connections) == (
        16_384,
        10.0,
        1000,
    )
    with pytest.raises(ConfigError) as info:
        parse_schedule({"http": {"header_timeout": "0s", "max_headers": 1, "bogus": 1}}, "x")
    text = str(info.value)
    assert "http.header_timeout: must be at least 1s" in text
    assert "http.max_headers" in text and "http.bogus: unknown key" in text
    tighter = parse_schedule({"http": {"body_timeout": "5s"}}, "x.yaml")
    secrets = Secrets(Secret("t", "t"), [])
    assert restart_required(schedule, tighter, secrets, secrets) == ["http"]
