"""Start-up time of the command line: wall clock of whole processes, medians of N runs.

Times `retention --help`, `validate --offline`, `plan` and `run` with nothing due (the
second run after a first one cleared what was due), each a fresh `python -m retention`
process, and `python -X importtime -c "import retention.cli"` (cumulative microseconds).
With `--baseline DIR` (another checkout, e.g. a worktree at an older commit) the same
commands run from that checkout's source too, alternating with this one's, side by side.

    python bench/startup.py --runs 7 --baseline /tmp/wt-base
    python bench/startup.py --database postgresql+psycopg://host/db --policy policies.yaml

Without `--database` it creates the demo database (`retention demo`) in a temporary
directory and uses the shipped policies.yaml. Not a test; prints a table of medians.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
COMMANDS = {
    "--help": ["--help"],
    "validate --offline": ["validate", "--offline"],
    "plan": ["plan"],
    "run (nothing due)": ["run"],
}


def env_for(checkout: Path, database: str, policy: Path, hash_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env.update(
        PYTHONPATH=str(checkout),
        RETENTION_DATABASE_URL=database,
        RETENTION_POLICY_FILE=str(policy),
        RETENTION_HASH_KEY=hash_key,
        RETENTION_LOG_FORMAT="json",
    )
    return env


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "retention", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{args} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return seconds


def import_time(env: dict[str, str], cwd: Path) -> float:
    """Cumulative seconds of `import retention.cli`, as -X importtime reports it."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import retention.cli"],
        env=env,
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
    )
    match = re.search(r"\|\s*(\d+) \| retention\.cli$", done.stderr, re.M)
    assert match, done.stderr[-500:]
    return int(match.group(1)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (median)")
    parser.add_argument("--database", help="database URL (default: a demo SQLite file)")
    parser.add_argument("--policy", type=Path, default=HERE / "policies.yaml")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="retention-startup-"))
    hash_key = "bench-startup-hash-key-0123456789abcdef"
    database = opts.database or f"sqlite:///{work / 'demo.db'}"
    checkouts = {"this": HERE}
    if opts.baseline:
        checkouts = {"baseline": opts.baseline.resolve(), "this": HERE}
    envs = {
        name: env_for(path, database, opts.policy.resolve(), hash_key)
        for name, path in checkouts.items()
    }
    first = envs["this"]
    if not opts.database:
        timed(["demo"], first, work)
    timed(["run"], first, work)  # what is due goes now: the timed runs find nothing due

    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(opts.runs):
        for command, args in COMMANDS.items():
            for name, env in envs.items():  # alternating, so drift hits both alike
                times.setdefault((command, name), []).append(timed(args, env, work))
        for name, env in envs.items():
            times.setdefault(("import retention.cli", name), []).append(import_time(env, work))

    names = list(envs)
    print(f"medians of {opts.runs} runs, seconds ({database.split(':')[0]})")
    print(f"{'command':<24}" + "".join(f"{n:>10}" for n in names))
    for command in [*COMMANDS, "import retention.cli"]:
        cells = "".join(f"{statistics.median(times[command, n]):>10.3f}" for n in names)
        print(f"{command:<24}{cells}")


if __name__ == "__main__":
    main()
