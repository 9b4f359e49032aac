#!/usr/bin/env bash
# Builds libisolate three ways and runs every test suite but the benchmarks
# in each:
#
#   plain  build-test       default buildtype (debugoptimized)
#   asan   build-test-asan  clang, AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan   build-test-tsan  clang, ThreadSanitizer
#
# Installs missing Debian packages first. Goes on through failures, then
# prints one line per build and a last line "N passed, N failed" that counts
# single tests over all builds (a build that does not build counts as one
# failure). Exits non-zero if anything failed.
#
# Usage: bash tests/run_all.sh [--quick]
#   --quick           the plain build only
#   ISO_TEST_SCALE=N  stress tests run N times bigger or longer (default 1);
#                     time-outs grow with N
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
# shellcheck source=tests/setup_deps.sh
. tests/setup_deps.sh

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help)
      sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "run_all.sh: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

scale=${ISO_TEST_SCALE:-1}
case "$scale" in
  '' | *[!0-9]* | 0*)
    echo "run_all.sh: ISO_TEST_SCALE must be a positive integer" >&2
    exit 2
    ;;
esac
export ISO_TEST_SCALE="$scale"

if [ "$quick" = 1 ]; then
  iso_setup_deps base || exit 1
else
  iso_setup_deps sanitizers || exit 1
fi

# Sanitizers stop at the first report, with a stack; settings already in
# the environment come last and so win.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:${TSAN_OPTIONS:-}"

# clang 14's TSan runtime cannot map its shadow memory when the kernel
# randomizes mmap with more bits than it expects (vm.mmap_rnd_bits > 28);
# running the tests without address randomization avoids that.
tsan_wrapper=()
tsan_probe() {
  local dir ok=1
  dir=$(mktemp -d) || return 0
  printf 'int main(void) { return 0; }\n' >"$dir/probe.c"
  if clang -fsanitize=thread "$dir/probe.c" -o "$dir/probe" 2>/dev/null &&
    ! "$dir/probe" >/dev/null 2>&1; then
    if setarch "$(uname -m)" -R "$dir/probe" >/dev/null 2>&1; then
      tsan_wrapper=(--wrapper "setarch $(uname -m) -R")
      echo "run_all.sh: TSan needs address randomization off here;" \
        "running its tests under setarch -R"
    else
      ok=0
    fi
  fi
  rm -rf "$dir"
  [ "$ok" = 1 ]
}

# Prints "passed failed skipped", then the failed tests one a line.
count_results() {
  python3 - "$1" <<'PY'
import json, sys
passed = failed = skipped = 0
bad = []
with open(sys.argv[1], encoding="utf-8", errors="replace") as log:
    for line in log:
        line = line.strip()
        if not line:
            continue
        try:
            test = json.loads(line)
        except ValueError:
            continue
        result = test.get("result")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
            bad.append("%s (%s)" % (test.get("name", "?"), result))
print(passed, failed, skipped)
for name in bad:
    print(name)
PY
}

# Creates a build directory, or reconfigures one that exists; starts over
# when reconfiguring fails (a newer meson, a moved tree).
configure() {
  local dir=$1
  shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$@" && return 0
    echo "run_all.sh: reconfiguring $dir failed; configuring it afresh"
  fi
  rm -rf "$dir"
  meson setup "$dir" "$@"
}

total_passed=0
total_failed=0
summary=()
failed_tests=()

# run_build NAME DIR COMPILER TIMEOUT_FACTOR [meson options...]
run_build() {
  local name=$1 dir=$2 compiler=$3 factor=$4
  shift 4
  local start=$SECONDS status=ok passed=0 failed=0 skipped=0
  local extra=()
  echo
  echo "==== $name: $dir ===="
  if [ "$name" = tsan ]; then
    extra=("${tsan_wrapper[@]}")
  fi

  if ! (if [ -n "$compiler" ]; then export CC="$compiler"; fi
    configure "$dir" "$@"); then
    status="SETUP FAILED"
    failed=1
  elif ! ninja -C "$dir"; then
    status="BUILD FAILED"
    failed=1
  else
    local log="$dir/meson-logs/testlog.json" rc counts
    rm -f "$log"
    meson test -C "$dir" --print-errorlogs --no-suite benchmark \
      --timeout-multiplier "$((factor * scale))" "${extra[@]}"
    rc=$?
    if [ -f "$log" ]; then
      mapfile -t counts < <(count_results "$log")
      read -r passed failed skipped <<<"${counts[0]:-0 0 0}"
      local t
      for t in "${counts[@]:1}"; do failed_tests+=("$name: $t"); done
    fi
    if [ "$failed" -gt 0 ]; then
      status="TESTS FAILED"
    elif [ "$rc" -eq 125 ]; then
      # meson test rebuilds first (targets not built by default), and
      # says 125 when that fails.
      status="BUILD FAILED"
      failed=1
    elif [ "$rc" -ne 0 ]; then
      status="MESON TEST FAILED (exit $rc)"
      failed=1
    elif [ "$((passed + skipped))" -eq 0 ]; then
      status="NO TESTS RAN"
      failed=1
    fi
  fi

  case "$status" in
    ok | "TESTS FAILED") ;;
    *) failed_tests+=("$name: $status") ;;
  esac
  local secs=$((SECONDS - start))
  summary+=("$(printf '  %-5s %-16s %-14s %4d ok %4d failed %4d skipped' \
    "$name" "$dir" "$status" "$passed" "$failed" "$skipped")$(printf \
    '  %dm%02ds' $((secs / 60)) $((secs % 60)))")
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
}

run_build plain build-test "" 1
if [ "$quick" = 0 ]; then
  tsan_probe ||
    echo "run_all.sh: warning: even an empty program fails under TSan here"
  run_build asan build-test-asan clang 2 \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false
  run_build tsan build-test-tsan clang 3 \
    -Db_sanitize=thread -Db_lundef=false -Dbenchmarks=false
fi

echo
echo "==== summary (ISO_TEST_SCALE=$scale) ===="
printf '%s\n' "${summary[@]}"
if [ "${#failed_tests[@]}" -gt 0 ]; then
  echo "failed tests:"
  printf '  %s\n' "${failed_tests[@]}"
fi
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
