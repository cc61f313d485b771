"""A command imports what it uses and nothing heavy besides (issue 13, item 4).

Each test runs the command line in a fresh interpreter (the imports of this test process
would hide the command's own) and reads which modules that process had loaded when the
command ended. These are statements about imports, not timings: the timings are in
``bench/startup.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from builders import child_env, feedback_schema, rules_policy, write_policy
from sqlalchemy import Engine

from retention.backends.registry import MODULES, SPELLINGS, backend_for
from retention.settings import Settings

# The command runs in the child as `retention ARGS` would, then the child prints its exit
# code and the names of its loaded modules as the last line of its stdout.
CHILD = """
import json, sys
from retention.cli import cli
code = 0
try:
    cli.main(args=sys.argv[1:], prog_name="retention", standalone_mode=False)
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps([code, sorted(sys.modules)]))
"""

DRIVERS = {"sqlite": "sqlite3", "postgresql": "psycopg", "mysql": "pymysql"}
BACKEND_MODULES = {
    "sqlite": "retention.backends.sqlite",
    "postgresql": "retention.backends.postgresql",
    "mysql": "retention.backends.mysql",
}
# Never needed by validate, plan or run: the scheduler, metrics, the HTML certificate,
# the chain's verifier, the auditors' command line.
NEVER = (
    "apscheduler.schedulers",
    "prometheus_client",
    "jinja2",
    "retention.audit.report_html",
    "retention.audit.verify",
    "retention.cli.audit",
    "retention.worker",
    "retention.metrics",
)
# Nor, without a database, anything of SQLAlchemy or a driver.
DATABASE = ("sqlalchemy", "psycopg", "pymysql", "retention.api_db", "retention.backends")

POLICY = rules_policy(
    """
    - name: old-feedback
      table: feedback
      clock: submitted_at
      after: P30D
      action: delete
      schedule: "30 2 * * *"
    """
)


def loaded(*args: str, cwd: Path, **env: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=cwd,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    code, modules = json.loads(done.stdout.splitlines()[-1])
    assert code == 0, done.stdout + done.stderr
    return set(modules)


def present(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """The ``packages`` of which ``modules`` holds the package or any module under it."""
    return [p for p in packages if any(m == p or m.startswith(p + ".") for m in modules)]


def test_help_imports_no_database_scheduler_metrics_or_policy_model(tmp_path: Path) -> None:
    modules = loaded("--help", cwd=tmp_path)
    assert present(modules, (*NEVER, *DATABASE, "apscheduler", "pydantic", "ruamel")) == []


def test_schema_imports_no_database_and_no_apscheduler(tmp_path: Path) -> None:
    modules = loaded("schema", cwd=tmp_path)
    assert "retention.policy.model" in modules
    assert present(modules, (*NEVER, *DATABASE, "apscheduler")) == []


def test_validate_offline_imports_no_database_and_only_the_cron_parser(tmp_path: Path) -> None:
    """A schedule is checked by APScheduler's cron trigger; its scheduler stays unloaded."""
    write_policy(tmp_path / "policies.yaml", POLICY)
    modules = loaded("validate", "--offline", cwd=tmp_path)
    assert "retention.policy.loader" in modules
    assert "apscheduler.triggers.cron" in modules
    assert present(modules, (*NEVER, *DATABASE)) == []


def test_validate_offline_of_a_policy_without_schedules_imports_no_apscheduler(
    tmp_path: Path,
) -> None:
    write_policy(tmp_path / "policies.yaml", POLICY.replace('schedule: "30 2 * * *"', ""))
    modules = loaded("validate", "--offline", cwd=tmp_path)
    assert present(modules, ("apscheduler", *DATABASE)) == []


def _dialect(engine: Engine) -> str:
    return backend_for(engine).dialect


def _other_databases(engine: Engine) -> tuple[str, ...]:
    mine = _dialect(engine)
    return tuple(
        name
        for dialect in DRIVERS
        if dialect != mine
        for name in (DRIVERS[dialect], BACKEND_MODULES[dialect])
    )


def _feedback(engine: Engine, settings: Settings) -> None:
    feedback_schema(contacts=None).create_all(engine)
    write_policy(settings.policy_file, POLICY)


def test_plan_imports_its_own_database_driver_and_backend_only(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    _feedback(engine, settings)
    url = settings.database_url.get_secret_value()
    modules = loaded("plan", "--database", url, "--policy", str(settings.policy_file), cwd=tmp_path)
    mine = _dialect(engine)
    assert {DRIVERS[mine], BACKEND_MODULES[mine], "retention.planner"} <= modules
    assert present(modules, (*NEVER, *_other_databases(engine))) == []


def test_a_run_with_nothing_due_loads_metrics_only_when_it_exports_them(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    _feedback(engine, settings)
    url = settings.database_url.get_secret_value()
    args = ("run", "--database", url, "--policy", str(settings.policy_file))
    modules = loaded(*args, cwd=tmp_path)
    assert {"retention.runner", BACKEND_MODULES[_dialect(engine)]} <= modules
    assert present(modules, (*NEVER, *_other_databases(engine))) == []
    metrics_file = str(tmp_path / "retention.prom")
    exporting = loaded(*args, cwd=tmp_path, RETENTION_METRICS_FILE=metrics_file)
    assert {"prometheus_client", "retention.metrics"} <= exporting
    assert Path(metrics_file).exists()


@pytest.mark.parametrize("name", [*MODULES, *SPELLINGS])
def test_the_registry_loads_the_backend_of_each_name_it_lists(name: str) -> None:
    backend = backend_for(name)
    served = {backend.dialect, *getattr(backend, "aliases", ()), *getattr(backend, "spellings", ())}
    assert name in served
    assert MODULES[SPELLINGS.get(name, name)] == type(backend).__module__
