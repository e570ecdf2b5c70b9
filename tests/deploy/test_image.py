"""The image builds: its build stage reproduced without a container engine.

No Docker engine runs here, so the test does what the Dockerfile does, read from the
Dockerfile itself (never a list kept by hand): it copies exactly the paths the build stage's
COPY instructions name into an empty directory, installs the package from there into a fresh
virtual environment as ``pip install .`` does in the image, and runs the installed command the
way the final stage runs it: ``--version``, ``db upgrade`` on SQLite with the migrations where
the image puts them, and ``config check`` of the shipped schedules.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path, PurePosixPath

import pytest

from scheduler import __version__
from scheduler.healthcheck import LIVEZ_PATH
from scheduler.ledger import schema
from tests.deploy.dockerfile import ROOT, parse_stages

# The test installs every runtime dependency into a new venv (from pip's cache: about a minute).
pytestmark = pytest.mark.timeout(900)


def _place(sources: list[str], dest: str, workdir: PurePosixPath, root: Path) -> None:
    """COPY ``sources`` from the repository into the directory tree at ``root``."""
    target = workdir / dest
    for source in sources:
        origin = ROOT / source
        assert origin.exists(), f"COPY {source}: no such path in the build context"
        to = root / target.relative_to("/")
        if origin.is_dir():
            # Docker copies a directory's contents into the destination directory.
            shutil.copytree(origin, to, dirs_exist_ok=True, ignore=_ignored())
        else:
            if dest.endswith("/") or len(sources) > 1:
                to = to / origin.name
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, to)


def _ignored() -> object:
    patterns = [
        line.strip().rstrip("/").split("/")[-1]
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    return shutil.ignore_patterns(*patterns)


def test_the_build_stage_installs_and_the_installed_command_runs(tmp_path: Path) -> None:
    stages = parse_stages()
    build, final = stages[0], stages[-1]
    assert build.name is not None, "the build stage is named so the final stage copies from it"

    # 1. The build context as the build stage sees it: only what its COPY lines bring.
    fs = tmp_path / "build-fs"
    for flags, sources, dest in build.copies:
        assert "from" not in flags
        _place(sources, dest, build.workdir, fs)
    (install_run,) = [r for r in build.runs if "pip install" in r]
    words = shlex.split(install_run)
    prefix = next(w.split("=", 1)[1] for w in words if w.startswith("--prefix="))
    assert words[-1] == ".", "the build installs the package in its working directory"

    # 2. `pip install .` from there, into a fresh environment (the image's prefix).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(fs / build.workdir.relative_to("/"))],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]

    # 3. The final stage copies the build prefix into its own; map that onto the venv.
    (image_prefix,) = [
        dest for flags, _src, dest in final.copies if flags.get("from") == build.name
    ]
    assert [src for flags, src, _ in final.copies if flags.get("from") == build.name] == [[prefix]]

    def on_disk(image_path: str) -> Path:
        relative = PurePosixPath(image_path).relative_to(image_prefix)
        return env_dir / relative

    for flags, sources, dest in final.copies:
        if "from" not in flags:
            _place(sources, dest, final.workdir, tmp_path / "final-fs")
    migrations = on_disk(final.env["SHARE_SCHEDULER_MIGRATIONS"])
    assert (migrations / "env.py").is_file(), "the image points at migrations it installed"
    assert sorted(p.name for p in (migrations / "versions").glob("*.py")) == sorted(
        p.name for p in (ROOT / "migrations" / "versions").glob("*.py")
    )

    # 4. The installed command, run as the image runs it (outside the source tree).
    command = env_dir / "bin" / "share-scheduler"
    run_env = {
        "PATH": f"{env_dir / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        **{k: v for k, v in final.env.items() if not k.startswith("SHARE_SCHEDULER_")},
        "SHARE_SCHEDULER_MIGRATIONS": str(migrations),
    }

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(command), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**run_env, **extra},
        )

    version = run("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"share-scheduler {__version__}")
    ledger = tmp_path / "ledger.db"
    upgrade = run("db", "upgrade", "--database-url", f"sqlite:///{ledger}")
    assert upgrade.returncode == 0, upgrade.stderr
    head = schema.head_revision()
    assert head is not None and f"to {head}" in upgrade.stdout
    current = run("db", "current", "--database-url", f"sqlite:///{ledger}")
    assert (current.returncode, current.stdout.startswith(head)) == (0, True), current.stdout
    for schedule in ("schedule.example.yaml", "compose.schedule.yaml"):
        check = run(
            "config",
            "check",
            str(ROOT / "deploy" / schedule),
            LINQ_API_KEY="k-123456",
            LINQ_WEBHOOK_SECRET="w-123456",
        )
        assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stderr
    # The entrypoint as the image runs it: migrate first when asked, then the command.
    (entrypoint,) = json.loads(final.instructions["ENTRYPOINT"][-1])
    script = tmp_path / "final-fs" / entrypoint.lstrip("/")
    fresh = tmp_path / "fresh.db"
    entry = subprocess.run(
        ["/bin/sh", str(script), "db", "current"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            **run_env,
            "SHARE_SCHEDULER_MIGRATE": "1",
            "SHARE_SCHEDULER_DATABASE_URL": f"sqlite:///{fresh}",
        },
    )
    assert entry.returncode == 0, entry.stderr
    assert entry.stdout.splitlines() == [
        f"ledger upgraded from empty to {head}",
        f"{head} (up to date)",
    ]
    # The HEALTHCHECK's command, with the installed Python: nothing listens, so unhealthy (1),
    # naming the URL it asked (a missing module would exit 1 too, but say nothing of /livez).
    health_cmd = json.loads(final.instructions["HEALTHCHECK"][-1].split(" CMD ", 1)[1])
    assert health_cmd[0] == "python"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        probe_schedule = tmp_path / "probe.yaml"
        probe_schedule.write_text(f"webhooks: {{listen: '0.0.0.0:{port}'}}\n")
        probe = subprocess.run(
            [str(python), *health_cmd[1:]],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**run_env, "SHARE_SCHEDULER_CONFIG": str(probe_schedule)},
        )
    assert probe.returncode == 1
    assert f"http://127.0.0.1:{port}/livez" in probe.stderr, probe.stderr
    # Nothing was imported from the source tree: the installed package answered.
    where = subprocess.run(
        [str(python), "-c", "import scheduler; print(scheduler.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert str(env_dir) in where.stdout
    assert sys.prefix != str(env_dir)


def test_the_dockerfile_keeps_the_basics_a_linter_checks() -> None:
    """hadolint's basics, read through the parser: pinned bases, a numeric non-root user,
    a health check that asks the daemon, exec-form entry point, nothing cached by pip."""
    stages = parse_stages()
    assert [s.name for s in stages] == ["build", None], "a build stage, then a slim runtime"
    final = stages[-1]
    (user,) = final.instructions["USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) >= 10000 and int(gid) >= 10000, user
    assert user == "10001:10001"
    # The user exists in the image with that uid, so files it creates have an owner.
    (adduser,) = [r for r in final.runs if "useradd" in r]
    assert f"--uid {uid}" in adduser and f"--gid {gid}" in adduser
    (health,) = final.instructions["HEALTHCHECK"]
    assert '["python", "-m", "scheduler.healthcheck"]' in health
    assert "--interval=" in health and "--timeout=" in health
    (entry,) = final.instructions["ENTRYPOINT"]
    assert entry.startswith("["), "exec form: the daemon is PID 1's child that gets SIGTERM"
    for stage in stages:
        for run in stage.runs:
            if "pip install" in run:
                assert "--no-cache-dir" in run
        for _flags, sources, _dest in stage.copies:
            assert ".env" not in sources and "." not in sources, "copy named paths, not all"
    # Logs are JSON lines on stdout in the container, and the check asks /livez.
    assert final.env["SHARE_SCHEDULER_LOG_STREAM"] == "stdout"
    assert LIVEZ_PATH == "/livez"
    entry_script = ROOT / "deploy" / "docker-entrypoint.sh"
    body = entry_script.read_text()
    assert 'exec share-scheduler "$@"' in body, "signals reach the daemon"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "*.db"} <= set(ignored)
