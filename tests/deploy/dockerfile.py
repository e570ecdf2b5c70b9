"""The Dockerfile read as Docker reads it (dockerfile-parse), stage by stage."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str | None
    workdir: PurePosixPath = field(default_factory=lambda: PurePosixPath("/"))
    env: dict[str, str] = field(default_factory=dict)
    # (flags, sources, destination) of each COPY/ADD, as written.
    copies: list[tuple[dict[str, str], list[str], str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    instructions: dict[str, list[str]] = field(default_factory=dict)


def parse_stages(path: Path = ROOT / "Dockerfile") -> list[Stage]:
    parser = DockerfileParser(path=str(path))
    stages: list[Stage] = []
    for item in parser.structure:
        kind, value = item["instruction"], item["value"]
        if kind == "FROM":
            words = value.split()
            stages.append(Stage(words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
            continue
        if not stages:
            continue
        stage = stages[-1]
        stage.instructions.setdefault(kind, []).append(value)
        if kind == "WORKDIR":
            stage.workdir = stage.workdir / value
        elif kind == "ENV":
            for word in shlex.split(value):
                key, _, val = word.partition("=")
                stage.env[key] = val
        elif kind in ("COPY", "ADD"):
            words = shlex.split(value)
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            stage.copies.append((flags, paths[:-1], paths[-1]))
        elif kind == "RUN":
            stage.runs.append(value)
    return stages
