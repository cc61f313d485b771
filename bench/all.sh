#!/usr/bin/env bash
# Every figure of bench/RESULTS.md, on one command: each scenario at least 3 times, the
# bare statements and the tool side by side in each repetition (see bench/README.md).
#
#   bench/all.sh              # about 90 minutes on 2 cores; results appended to bench/results.json
#   REPEAT=5 bench/all.sh     # more repetitions
#
# Needs PostgreSQL and MariaDB on 127.0.0.1 as in bench/README.md, and pt-archiver
# (percona-toolkit) for the MariaDB comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REPEAT=${REPEAT:-3}
SINCE=$(date -u +%Y-%m-%dT%H:%M:%S)

# The headline: delete + cascade and anonymise against the bare statements.
$PY bench/run.py --rows 3000000 --db postgresql --repeat "$REPEAT" \
    --scenarios bare-delete,delete,nothing,snapshot,bare-anonymise,anonymise
$PY bench/run.py --rows 1000000 --db sqlite --repeat "$REPEAT" --scenarios bare-delete,delete
$PY bench/run.py --rows 1000000 --db mariadb --repeat "$REPEAT" \
    --scenarios bare-delete,delete,pt-archiver
$PY bench/run.py --rows 3000000 --db mariadb --repeat "$REPEAT" --scenarios bare-delete,delete
# The steady state: 3M rows, ids growing with time, ~1% due.
$PY bench/run.py --shape steady --rows 3000000 --db postgresql,mariadb,sqlite \
    --repeat "$REPEAT" --scenarios bare-delete,delete
# Partitions dropped whole against the rows path over the same rows.
$PY bench/partitions.py --rows 1000000 --repeat "$REPEAT"
# Start-up: whole processes on the SQLite demo.
$PY bench/startup.py --runs 7

$PY bench/run.py --report --since "$SINCE"
