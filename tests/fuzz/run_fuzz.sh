#!/usr/bin/env bash
# Fuzzes one target for a bounded time: its regression cases first (each
# must pass), then libFuzzer from a copy of its seed corpus (the repository's
# corpus is never written). A crash fails, printing the input's path and
# bytes (base64) so it can be kept in regressions/NAME/.
# Usage: run_fuzz.sh TARGET CORPUS_DIR REGRESSIONS_DIR SECONDS
set -euo pipefail
target=$1 corpus=$2 regressions=$3 seconds=$4
work=$(mktemp -d /tmp/vigil-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if compgen -G "$regressions/*" >/dev/null; then
  find "$regressions" -type f ! -name README.md -print0 | xargs -0 -r "$target" -runs=1
fi
mkdir "$work/corpus" "$work/found"
cp -r "$corpus"/. "$work/corpus/"
if ! "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$work/found/" "$work/corpus" 2>"$work/log"; then
  tail -n 60 "$work/log"
  for f in "$work/found"/*; do
    [ -f "$f" ] || continue
    echo "== input that failed: $(basename "$f") (base64):"
    base64 "$f"
  done
  exit 1
fi
grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$work/log" || true
