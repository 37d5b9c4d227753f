#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting, builds,
# runs every ctest label (unit, integration, slow), then builds again with
# ASan + UBSan and runs the suite under the sanitizers, and runs the tests
# where threads meet (the checkpoint writer beside training ranks, the
# collective watchdog, vigild's logbook writer) under ThreadSanitizer, and
# fuzzes every parser of outside bytes for a bounded time (tests/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== clang-format"
git ls-files '*.cc' '*.h' '*.cu' '*.cuh' | xargs clang-format --dry-run --Werror

echo "== build"
bash scripts/build.sh
echo "== tests"
(cd build && ctest --output-on-failure -j2)

echo "== ASan/UBSan build"
bash scripts/build.sh --sanitize
echo "== tests under ASan/UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Left out under the sanitizers (each ran above): the chaos soak, whose paths
# the detection tests cover, and a whole soak would double its time; the
# multihost tests, the same binaries as the other end-to-end tests across
# network namespaces (what they add is the topology, not code); Prometheus
# scraping a job, which checks the dashboards' and rules' queries; the flood
# of idle connections (load), whose checks are timings.
(cd build-asan && ctest --output-on-failure -j2 -LE "chaos|multihost|prometheus|load")
echo "== fuzz: each target for 20 s from its seeds (clang's libFuzzer, ASan, UBSan)"
bash scripts/build.sh --fuzz
(cd build-fuzz && ctest --output-on-failure -j2 -L fuzz)
echo "== ThreadSanitizer: the asynchronous checkpoint writer and the ranks around it, the"
echo "   collective watchdog beside the training thread, the logbook writer beside its caller"
bash scripts/build.sh --tsan checkpoint_test checkpoint_crash_test collective_watchdog_test logbook_writer_test
export TSAN_OPTIONS=halt_on_error=1
build-tsan/bin/checkpoint_test
build-tsan/bin/checkpoint_crash_test
build-tsan/bin/collective_watchdog_test
build-tsan/bin/logbook_writer_test
echo "== all tests passed"
