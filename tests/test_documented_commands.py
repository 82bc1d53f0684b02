"""Every ``neuroprobe run …`` and ``neuroprobe deploy …`` line in the code blocks of README.md and
docs/deploy.md runs as written, with a small budget appended: ``--steps 200`` for deploy, ``--set
task.<budget key>=<tiny>`` for run (nothing for ``run --resume``). Each command runs in its own
working directory (``experiments/`` and ``models/`` linked there); a run directory an example
names (``runs/<name>-<seed>``) is taken from an earlier example that wrote it, else produced first by
running the experiment called ``<name>`` with ``--seed <seed>`` and the tiny budget. Commands that
parse to the same arguments run once. Deploy examples need Lava (``lava`` marker).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/deploy.md")
DEPLOY_BUDGET = ["--steps", "200"]
TINY = {"episodes": "2", "duration": "0.2", "steps": "20"}  # task.<budget_key> for a few seconds' run
LINKED = ("experiments", "models")
_LINE = re.compile(r"^\s*(?:\.venv/bin/)?neuroprobe\s+(run|deploy)\s+(.*)$")


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after ``neuroprobe``) of every run/deploy line in the docs' code blocks."""
    found = []
    for doc in DOCS:
        in_block = False
        for i, line in enumerate((ROOT / doc).read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            m = _LINE.match(line) if in_block else None
            if m:
                found.append((f"{doc}:{i}", [m.group(1), *shlex.split(m.group(2), comments=True)]))
    return found


def _experiment_named(name: str) -> Path:
    for path in sorted((ROOT / "experiments").glob("*.toml")):
        if tomllib.loads(path.read_text()).get("name") == name:
            return path
    raise AssertionError(f"no experiments/*.toml has name = {name!r}")


def _run_budget(config: str) -> list[str]:
    from neuroprobe.config import load_experiment

    key = load_experiment(ROOT / config).task.budget_key
    return ["--set", f"task.{key}={TINY[key]}"]


def with_budget(argv: list[str]) -> list[str]:
    if argv[0] == "deploy":
        return [*argv, *DEPLOY_BUDGET]
    if "--resume" in argv:
        return list(argv)
    return [*argv, *_run_budget(next(a for a in argv[1:] if a.endswith(".toml")))]


def _run_dir_named(argv: list[str]) -> str | None:
    """The run directory ``runs/…`` the command reads (deploy's source, run's --resume), if any."""
    if argv[0] == "deploy":
        src = next(a for a in argv[1:] if not a.startswith("-"))
    elif "--resume" in argv:
        src = argv[argv.index("--resume") + 1]
    else:
        return None
    return src if re.fullmatch(r"runs/[^/]+", src.rstrip("/")) else None


def _key(argv: list[str]) -> tuple:
    from neuroprobe.cli import build_parser

    ns = vars(build_parser().parse_args(argv))
    ns.pop("func", None)
    return tuple(sorted((k, repr(v)) for k, v in ns.items()))


def _cases():
    seen, cases = set(), []
    for where, argv in documented_commands():
        full = with_budget(argv)
        key = _key(full)
        if key in seen:
            continue
        seen.add(key)
        marks = [pytest.mark.lava] if argv[0] == "deploy" else []
        cases.append(pytest.param(full, id=f"{where} {' '.join(argv)}", marks=marks))
    return cases


_produced: dict[str, Path] = {}  # run directory name -> a finished copy written by an earlier command


def _cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neuroprobe.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def _workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (path / name).symlink_to(ROOT / name, target_is_directory=True)
    return path


def _provide(run_dir: str, cwd: Path, tmp_path: Path) -> None:
    name = Path(run_dir).name
    if name not in _produced:
        m = re.fullmatch(r"(.+)-(\d+)", name)
        assert m, f"{run_dir}: not runs/<experiment name>-<seed>"
        config = _experiment_named(m.group(1)).relative_to(ROOT).as_posix()
        src = _workdir(tmp_path / "produce")
        argv = ["run", config, "--seed", m.group(2), *_run_budget(config)]
        r = _cli(argv, src)
        assert r.returncode == 0, f"producing {run_dir} ({' '.join(argv)}): {r.stderr[-2000:]}"
        _produced[name] = src / "runs" / name
    shutil.copytree(_produced[name], cwd / "runs" / name)


def test_docs_hold_run_and_deploy_examples():
    cmds = [argv for _, argv in documented_commands()]
    assert sum(a[0] == "deploy" for a in cmds) >= 4 and any("--precision" in a and "float" in a for a in cmds)


@pytest.mark.parametrize("argv", _cases())
def test_documented_command_runs(argv, tmp_path):
    cwd = _workdir(tmp_path / "work")
    run_dir = _run_dir_named(argv)
    if run_dir is not None:
        _provide(run_dir, cwd, tmp_path)
    r = _cli(argv, cwd)
    assert r.returncode == 0, f"neuroprobe {' '.join(argv)} exited {r.returncode}: {r.stderr[-3000:]}"
    if argv[0] == "deploy":
        assert "deployed to Lava" in r.stdout
    for d in (cwd / "runs").glob("*") if (cwd / "runs").is_dir() else []:
        if d.is_dir() and not d.name.endswith(("-lava-fixed", "-lava-float")):
            _produced.setdefault(d.name, d)
