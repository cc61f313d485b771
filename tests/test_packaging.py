"""The Dockerfile's install path, without a container engine.

The wheel is built from exactly the files the Dockerfile's builder stage copies, installed
with both database extras into a fresh virtual environment (from the package registry,
as in the image), and the installed command is run the way the image runs it: bytecode
never written, HOME and TMPDIR in a scratch directory, a run that may write beside its
database and nowhere else (the image's root filesystem is read-only).

This needs the package registry and takes about half a minute; it is marked ``slow``
so that ``pytest -m 'not slow'`` leaves it out locally. CI runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import HASH_KEY, ROOT

pytestmark = pytest.mark.slow

EXTRAS = "[postgres,mysql]"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The distribution's name: not ``retention``, which the package index gives to an
# unrelated project. Wheels and dist-info directories spell it with an underscore.
DIST = PROJECT["name"]
WHEEL_STEM = DIST.replace("-", "_")


def _builder_sources() -> list[str]:
    """The paths the Dockerfile's first stage copies into its build context."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    sources: list[str] = []
    stages = 0
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "FROM":
            stages += 1
        elif words[0].upper() == "COPY" and stages == 1:
            paths = [w for w in words[1:] if not w.startswith("--")]
            sources += paths[:-1]
    return sources


def _run(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built like the image's builder stage: from its COPY sources only."""
    context = tmp_path_factory.mktemp("context")
    sources = _builder_sources()
    assert sources, "the Dockerfile's builder stage copies nothing"
    for source in sources:
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(origin, context / source)
    dist = tmp_path_factory.mktemp("dist")
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "-w",
            str(dist),
            str(context),
        ]
    )
    assert built.returncode == 0, built.stderr
    (found,) = dist.glob(f"{WHEEL_STEM}-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the wheel with both database extras.

    The environment is made without pip, and this interpreter's pip installs into it
    (``--python``): the same resolution, without upgrading a bundled pip first. It installs
    by the distribution's name and version, as the install instructions do, with the
    wheel's directory offered beside the index.
    """
    home = tmp_path_factory.mktemp("venv") / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(home)])
    assert made.returncode == 0, made.stderr
    installed = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(home / "bin" / "python"),
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-compile",
            "--find-links",
            str(wheel.parent),
            f"{DIST}{EXTRAS}=={PROJECT['version']}",
        ]
    )
    assert installed.returncode == 0, installed.stderr
    return home


def _env(scratch: Path, venv: Path) -> dict[str, str]:
    """The image's environment: only what it sets, no RETENTION_* leaking from outside."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(scratch / "home"),
        "TMPDIR": str(scratch / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "RETENTION_LOG_FORMAT": "json",
        "RETENTION_HASH_KEY": HASH_KEY,
    }


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path under the roots, with its size and modification time."""
    seen: dict[str, tuple[int, int]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            stat = path.lstat()
            seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return seen


@dataclass(frozen=True)
class DemoRun:
    scratch: Path
    data: Path
    database: str
    policy: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess[str]
    before: dict[str, tuple[int, int]]
    after: dict[str, tuple[int, int]]


@pytest.fixture(scope="module")
def demo_run(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """`retention demo`, then one `retention run`, with the filesystem listed around the run."""
    scratch = tmp_path_factory.mktemp("image")
    for name in ("work", "home", "tmp", "data", "etc"):
        (scratch / name).mkdir()
    policy = scratch / "etc" / "policies.yaml"
    shutil.copy2(ROOT / "policies.yaml", policy)
    data = scratch / "data"
    database = f"sqlite:///{data / 'retention.db'}"
    env = _env(scratch, venv)
    common = ["--policy", str(policy), "--database", database]
    made = _run(["retention", "demo", *common], cwd=scratch / "work", env=env)
    assert made.returncode == 0, made.stderr
    before = _snapshot(scratch, venv)
    result = _run(["retention", "run", "--output", "json", *common], cwd=scratch / "work", env=env)
    after = _snapshot(scratch, venv)
    return DemoRun(scratch, data, database, policy, env, result, before, after)


def test_the_source_tree_and_the_wheel_both_hold_py_typed(wheel: Path) -> None:
    assert (ROOT / "retention" / "py.typed").is_file()
    assert "retention/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_the_wheel_holds_the_package_and_its_metadata_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    allowed = ("retention/", f"{WHEEL_STEM}-{version}.dist-info/")
    assert [name for name in names if not name.startswith(allowed)] == []


def test_the_wheel_declares_the_postgres_and_mysql_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert "Provides-Extra: postgres" in text
    assert "Provides-Extra: mysql" in text


def test_the_installed_environment_has_both_database_drivers(venv: Path) -> None:
    imported = _run([str(venv / "bin" / "python"), "-c", "import psycopg, pymysql"])
    assert imported.returncode == 0, imported.stderr


def test_the_installed_command_prints_the_projects_version(venv: Path, tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    shown = _run(["retention", "--version"], cwd=tmp_path, env=_env(tmp_path, venv))
    assert shown.returncode == 0, shown.stderr
    assert version in shown.stdout


def test_the_installed_schema_command_prints_a_json_schema(venv: Path, tmp_path: Path) -> None:
    shown = _run(["retention", "schema"], cwd=tmp_path, env=_env(tmp_path, venv))
    assert shown.returncode == 0, shown.stderr
    schema = json.loads(shown.stdout)
    assert schema["type"] == "object"
    assert "rules" in schema["properties"]


def test_the_installed_command_validates_the_shipped_policy_offline(
    venv: Path, tmp_path: Path
) -> None:
    checked = _run(
        ["retention", "validate", "--offline", "--policy", str(ROOT / "policies.yaml")],
        cwd=tmp_path,
        env=_env(tmp_path, venv),
    )
    assert checked.returncode == 0, checked.stderr
    assert "rules valid" in checked.stdout


def test_the_installed_run_removes_the_demos_expired_rows(demo_run: DemoRun) -> None:
    assert demo_run.result.returncode == 0, demo_run.result.stderr
    summary = json.loads(demo_run.result.stdout)
    assert summary["exit_code"] == 0
    removed = sum(rule.get("deleted", 0) + rule.get("anonymised", 0) for rule in summary["rules"])
    assert removed > 0
    assert {rule["status"] for rule in summary["rules"]} == {"done"}


def test_the_installed_run_logs_json_lines_on_stderr_only(demo_run: DemoRun) -> None:
    lines = [json.loads(line) for line in demo_run.result.stderr.splitlines() if line.strip()]
    assert lines
    assert all("event" in line for line in lines)
    assert HASH_KEY not in demo_run.result.stderr + demo_run.result.stdout


def test_a_run_writes_nothing_outside_its_databases_directory(demo_run: DemoRun) -> None:
    """On a read-only root with /tmp writable, the run needs no more than its database's folder.

    Its HOME, TMPDIR and working directory, the policy and the installed package are all
    left exactly as they were.
    """
    inside = str(demo_run.data) + os.sep

    def outside(snapshot: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        return {p: s for p, s in snapshot.items() if not p.startswith(inside)}

    before, after = outside(demo_run.before), outside(demo_run.after)
    assert sorted(set(after) - set(before)) == [], "created outside the database's directory"
    changed = {p for p in before if after.get(p) != before[p]}
    assert changed <= {str(demo_run.data)}, sorted(changed)


def test_a_second_installed_run_changes_nothing(demo_run: DemoRun) -> None:
    again = _run(
        [
            "retention",
            "run",
            "--output",
            "json",
            "--policy",
            str(demo_run.policy),
            "--database",
            demo_run.database,
        ],
        cwd=demo_run.scratch / "work",
        env=demo_run.env,
    )
    assert again.returncode == 0, again.stderr
    rules = json.loads(again.stdout)["rules"]
    assert sum(rule.get("deleted", 0) + rule.get("anonymised", 0) for rule in rules) == 0


def test_the_installed_audit_verify_accepts_the_runs_log(demo_run: DemoRun) -> None:
    verified = _run(
        [
            "retention",
            "audit",
            "verify",
            "--policy",
            str(demo_run.policy),
            "--database",
            demo_run.database,
        ],
        cwd=demo_run.scratch / "work",
        env=demo_run.env,
    )
    assert verified.returncode == 0, verified.stderr
    assert "audit log verified" in verified.stdout


def test_the_environment_holds_the_distribution_by_its_name_and_not_the_other(
    venv: Path,
) -> None:
    probe = (
        "import importlib.metadata as m, json, retention\n"
        f"d = m.distribution({DIST!r})\n"
        "try:\n    m.distribution('retention'); other = True\n"
        "except m.PackageNotFoundError:\n    other = False\n"
        "print(json.dumps([d.metadata['Name'], d.version, retention.__version__, other]))\n"
    )
    shown = _run([str(venv / "bin" / "python"), "-c", probe])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [DIST, PROJECT["version"], PROJECT["version"], False]
