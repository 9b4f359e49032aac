#!/usr/bin/env bash
# Runs the worker, port and structured clone benchmarks (message_throughput,
# clone_bench, worker_spawn) and their Node.js twins side by side, several
# times each, alternating C and node so that drift hits both alike; prints
# the median of every figure with the ratio C vs node, then the targets,
# met or missed.
#
# Usage: bench/compare4.sh [options]
#   --runs N        runs of each program (default 3; env RUNS)
#   --seconds S     length of each timed run (default 3; env RUN_SECONDS)
#   --quick         smoke run: 1 run of 0.5 s each
#   --only NAME     one benchmark: message_throughput, clone_bench or
#                   worker_spawn
#   --build-dir DIR optimised build directory (default build-bench, relative
#                   to the project root; env BUILD_DIR); set up with
#                   --buildtype=release if it does not exist
#   --node-only     skip the build and the C programs
#   --keep DIR      keep every run's output in DIR
# Env NODE names the node binary (default: node on PATH).
#
# Cases: message_throughput with payloads a, b, c, d, e and d16 (payload d
# with 16 MiB buffers, to show whether a transfer depends on the buffer's
# size); clone_bench with payloads a, b, e; worker_spawn.
#
# Exit status: 0 when every run succeeded, 1 when a program failed, 2 on a
# usage error. Missed targets are reported, not an error.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-3}
seconds=${RUN_SECONDS:-3}
build_dir=${BUILD_DIR:-build-bench}
node=${NODE:-node}
only=""
node_only=0
keep=""

bench_script=compare4.sh
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) need_arg "$@"; runs=$2; shift 2 ;;
    --seconds) need_arg "$@"; seconds=$2; shift 2 ;;
    --quick) runs=1; seconds=0.5; shift ;;
    --only) need_arg "$@"; only=$2; shift 2 ;;
    --build-dir) need_arg "$@"; build_dir=$2; shift 2 ;;
    --node-only) node_only=1; shift ;;
    --keep) need_arg "$@"; keep=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "compare4.sh: unknown option $1" >&2; usage ;;
  esac
done

[[ $runs =~ ^[0-9]+$ ]] && ((runs >= 1)) ||
  { echo "compare4.sh: bad --runs '$runs'" >&2; exit 2; }
[[ $seconds =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
  { echo "compare4.sh: bad --seconds '$seconds'" >&2; exit 2; }
case $only in
  ""|message_throughput|clone_bench|worker_spawn) ;;
  *) echo "compare4.sh: unknown benchmark '$only'" >&2; exit 2 ;;
esac
command -v "$node" >/dev/null ||
  { echo "compare4.sh: $node not found" >&2; exit 1; }

[[ $build_dir = /* ]] || build_dir=$root/$build_dir

bench_out_dir "$keep"

programs=(message_throughput clone_bench worker_spawn)
[[ -n $only ]] && programs=("$only")

if ((node_only == 0)); then
  targets=()
  for p in "${programs[@]}"; do targets+=("bench/$p"); done
  bench_build "${targets[@]}"
fi

impls=(c node)
((node_only)) && impls=(node)

# The arguments of a case: "<program> <case>" -> the program's options.
case_args() {
  case $1:$2 in
    message_throughput:d16)
      echo "--payload d --buffer-kb 16384 --seconds $seconds" ;;
    message_throughput:*|clone_bench:*)
      echo "--payload $2 --seconds $seconds" ;;
    worker_spawn:*) echo "" ;;
  esac
}

cases_of() {
  case $1 in
    message_throughput) echo "a b c d e d16" ;;
    clone_bench) echo "a b e" ;;
    worker_spawn) echo "all" ;;
  esac
}

# Runs one program once; keeps its output and appends its JSON line to
# $out_dir/<program>.<case>.<impl>.json.
status=0
run_one() {
  local prog=$1 cs=$2 impl=$3 r=$4 out args
  out=$out_dir/$prog.$cs.$impl.$r
  read -r -a args <<<"$(case_args "$prog" "$cs")"
  local cmd
  if [[ $impl = c ]]; then
    cmd=("$build_dir/bench/$prog" "${args[@]}")
  else
    cmd=("$node" "$root/bench/node/$prog.js" "${args[@]}")
  fi
  bench_run "$out" "$out_dir/$prog.$cs.$impl.json" \
    "$prog $cs ($impl) run $r" "${cmd[@]}" || { status=1; return 0; }
  [[ -s $out.err ]] && sed "s/^/   $impl: /" "$out.err"
  printf '   %-4s run %d: %s\n' "$impl" "$r" "$(sed -n '1p' "$out")"
}

med() { # program case impl key
  local f=$out_dir/$1.$2.$3.json
  [[ -f $f ]] || { echo -; return; }
  while read -r l; do json_get "$l" "$4"; done <"$f" | median
}

# Figures where a smaller number is better; counts and sizes get no ratio.
lower_is_better='^(cpu_s|peak_rss_mb|.*_us_.*|.*_kb|rss_idle_growth_mb)$'
no_ratio='^(messages|clones|.*_bytes|spawns|idle_workers|rss_cap_hit)$'

table() {
  local prog=$1 cs=$2
  shift 2
  printf '\n%s %s (medians of %s runs)\n' "$prog" "$cs" "$runs"
  printf '  %-32s %14s %14s %10s\n' figure C node "C vs node"
  for key in "$@"; do
    local c n ratio=-
    c=$(med "$prog" "$cs" c "$key")
    n=$(med "$prog" "$cs" node "$key")
    [[ $c = - && $n = - ]] && continue
    if [[ $c != - && $n != - && ! $key =~ $no_ratio ]]; then
      if [[ $key =~ $lower_is_better ]]; then
        ratio=$(awk -v a="$n" -v b="$c" \
          'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
      else
        ratio=$(awk -v a="$c" -v b="$n" \
          'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
      fi
    fi
    printf '  %-32s %14s %14s %10s\n' "$key" "$c" "$n" "$ratio"
  done
}

target() { # description ok(0/1) detail
  local verdict=MISSED
  [[ $2 = 1 ]] && verdict=met
  printf '  %-52s %-7s %s\n' "$1" "$verdict" "$3"
}

# a >= f * b, for decimal figures; 0 when either is missing.
at_least() {
  awk -v a="$1" -v b="$2" -v f="$3" \
    'BEGIN { print (a != "-" && b != "-" && a + 0 >= f * b) ? 1 : 0 }'
}

ratio_of() {
  awk -v a="$1" -v b="$2" \
    'BEGIN {
      if (a == "-" || b == "-" || b + 0 <= 0) print "-"
      else printf "%.2fx", a / b
    }'
}

echo "== machine: $(nproc) cores, node $("$node" --version)," \
  "load average $(load_now); $runs runs of ${seconds} s"

for prog in "${programs[@]}"; do
  for cs in $(cases_of "$prog"); do
    echo "== $prog $cs"
    for ((r = 1; r <= runs; r++)); do
      for impl in "${impls[@]}"; do
        run_one "$prog" "$cs" "$impl" "$r"
      done
    done
  done
done

((status == 0)) ||
  { echo "compare4.sh: some runs failed; no table" >&2; exit 1; }
echo "== done; load average $(load_now) (above $(nproc) means other work" \
  "competed for the cores)"

for prog in "${programs[@]}"; do
  for cs in $(cases_of "$prog"); do
    case $prog in
      message_throughput)
        table "$prog" "$cs" messages_per_s mb_per_s message_bytes \
          cpu_us_per_message peak_rss_mb rss_cap_hit ;;
      clone_bench)
        table "$prog" "$cs" clones_per_s mb_per_s clone_bytes \
          cpu_us_per_clone peak_rss_mb ;;
      worker_spawn)
        table "$prog" "$cs" spawn_to_first_message_us_p50 \
          spawn_to_first_message_us_p90 spawn_to_first_message_us_max \
          rss_per_idle_worker_kb ;;
    esac
  done
done

((node_only)) && exit "$status"

echo
echo "targets (node figures measured in this run):"
for prog in "${programs[@]}"; do
  case $prog in
    message_throughput)
      c=$(med "$prog" a c messages_per_s)
      target "(a) at least 750,000 messages/s" \
        "$(at_least "$c" 750000 1)" "($c)"
      for cs in b e; do
        c=$(med "$prog" $cs c mb_per_s)
        n=$(med "$prog" $cs node mb_per_s)
        cm=$(med "$prog" $cs c messages_per_s)
        nm=$(med "$prog" $cs node messages_per_s)
        target "($cs) MB/s at least 3x node's" "$(at_least "$c" "$n" 3)" \
          "($(ratio_of "$c" "$n"); messages/s $(ratio_of "$cm" "$nm"))"
      done
      c=$(med "$prog" c c messages_per_s)
      n=$(med "$prog" c node messages_per_s)
      target "(c) messages/s at least 1.5x node's" "$(at_least "$c" "$n" 1.5)" \
        "($(ratio_of "$c" "$n"))"
      c=$(med "$prog" d c messages_per_s)
      n=$(med "$prog" d node messages_per_s)
      target "(d) messages/s at least 10x node's" "$(at_least "$c" "$n" 10)" \
        "($(ratio_of "$c" "$n"))"
      c16=$(med "$prog" d16 c messages_per_s)
      target "(d) 16 MiB buffers at least 75% of 1 MiB's rate" \
        "$(at_least "$c16" "$c" 0.75)" "($(ratio_of "$c16" "$c"))"
      ;;
    clone_bench)
      for cs in a b e; do
        c=$(med "$prog" $cs c clones_per_s)
        n=$(med "$prog" $cs node clones_per_s)
        target "clone ($cs) at least 3x structuredClone" \
          "$(at_least "$c" "$n" 3)" "($(ratio_of "$c" "$n"))"
      done
      ;;
    worker_spawn)
      c=$(med "$prog" all c spawn_to_first_message_us_p50)
      target "spawn to first message under 300 us" \
        "$(awk -v c="$c" 'BEGIN { print (c != "-" && c < 300) }')" "($c us)"
      c=$(med "$prog" all c rss_per_idle_worker_kb)
      target "under 256 KiB RSS per idle worker" \
        "$(awk -v c="$c" 'BEGIN { print (c != "-" && c < 256) }')" "($c KiB)"
      ;;
  esac
done
exit "$status"
