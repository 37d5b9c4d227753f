#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs the tiny job on this
# machine's CPUs with two trainer ranks SIGKILLed, a checkpoint damaged and a
# rank hung (SIGSTOP) mid-run. vigil detects each, follows its default
# playbook (restart from the newest good checkpoint), finishes the job with
# the same parameters an uninterrupted run would have, prints the logbook, and
# draws the run as one HTML page (vigil report).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh
workdir=vigil-runs/demo
rm -rf "$workdir"
build/bin/vigil run examples/tiny.yaml --workdir "$workdir" \
  --chaos kill-rank:1@60 --chaos corrupt-checkpoint:flip@160 --chaos kill-rank:2@170 \
  --chaos hang-rank:3@240
# The same run on one page: loss curve with every detection and intervention marked.
build/bin/vigil report --workdir "$workdir" -o "$workdir/report.html"
