#!/usr/bin/env bash
# Runs each C benchmark and its Node.js twin side by side on this machine,
# several times each (alternating, so drift hits both alike), checks that
# binary_trees prints the same report as node, and prints the median of
# every figure with the ratio C vs node.
#
# Usage: bench/compare.sh [options]
#   --runs N        runs of each program (default 3; env RUNS)
#   --depth D       binary_trees depth (default 21; env DEPTH)
#   --count N       alloc_rate objects (default 200000000; env COUNT)
#   --quick         smoke run: 1 run, depth 16, 10000000 objects
#   --only NAME     run one benchmark (binary_trees or alloc_rate)
#   --build-dir DIR optimised build directory (default build-bench, relative
#                   to the project root; env BUILD_DIR); set up with
#                   --buildtype=release if it does not exist
#   --node-only     skip the build and the C programs
#   --keep DIR      keep every run's output in DIR
#   --wait-idle S   before each run, wait up to S seconds until other work
#                   (not counting niced processes) uses less than half a
#                   core (for shared machines)
# Env NODE names the node binary (default: node on PATH).
#
# Exit status: 0 when every run succeeded and the outputs matched, 1 when a
# program failed or binary_trees' report differs, 2 on a usage error.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-3}
depth=${DEPTH:-21}
count=${COUNT:-200000000}
build_dir=${BUILD_DIR:-build-bench}
node=${NODE:-node}
only=""
node_only=0
keep=""
wait_idle=0

bench_script=compare.sh
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) need_arg "$@"; runs=$2; shift 2 ;;
    --depth) need_arg "$@"; depth=$2; shift 2 ;;
    --count) need_arg "$@"; count=$2; shift 2 ;;
    --quick) runs=1; depth=16; count=10000000; shift ;;
    --only) need_arg "$@"; only=$2; shift 2 ;;
    --build-dir) need_arg "$@"; build_dir=$2; shift 2 ;;
    --node-only) node_only=1; shift ;;
    --keep) need_arg "$@"; keep=$2; shift 2 ;;
    --wait-idle) need_arg "$@"; wait_idle=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "compare.sh: unknown option $1" >&2; usage ;;
  esac
done

for v in runs depth count wait_idle; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare.sh: bad $v '${!v}'" >&2; exit 2; }
done
((runs >= 1)) || { echo "compare.sh: --runs must be at least 1" >&2; exit 2; }
case $only in
  ""|binary_trees|alloc_rate) ;;
  *) echo "compare.sh: unknown benchmark '$only'" >&2; exit 2 ;;
esac
command -v "$node" >/dev/null ||
  { echo "compare.sh: $node not found" >&2; exit 1; }

[[ $build_dir = /* ]] || build_dir=$root/$build_dir

bench_out_dir "$keep"

if ((node_only == 0)); then
  bench_build bench/binary_trees bench/alloc_rate
fi

impls=(c node)
((node_only)) && impls=(node)

# Hundredths of a core that other processes used over the last second,
# from /proc/stat (nothing of ours runs meanwhile).
busy_centicores() {
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 1
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local total=0 idle i
  # user nice system idle iowait irq softirq steal; guest time is in user.
  for ((i = 1; i <= 8 && i < ${#b[@]}; i++)); do
    ((total += b[i] - a[i])) || true
  done
  # Niced work (a fuzzer, a background build) yields to ours, so it counts
  # as idle.
  idle=$((b[2] - a[2] + b[4] - a[4] + b[5] - a[5]))
  ((total > 0)) || { echo 0; return; }
  echo $(((total - idle) * 100 * $(nproc) / total))
}

wait_for_idle() {
  ((wait_idle > 0)) && [[ -r /proc/stat ]] || return 0
  local waited=0 busy
  while :; do
    busy=$(busy_centicores)
    ((busy < 50)) && return 0
    if ((waited >= wait_idle)); then
      echo "   (machine still busy: $busy% of a core used by others)"
      return 0
    fi
    ((waited += 1))
  done
}

# Runs one program, keeps its output as $out_dir/<bench>.<impl>.<run>.
run_one() {
  local bench=$1 impl=$2 r=$3 arg=$4 out
  wait_for_idle
  out=$out_dir/$bench.$impl.$r
  local cmd
  if [[ $impl = c ]]; then
    cmd=("$build_dir/bench/$bench" "$arg")
  else
    cmd=("$node" "$root/bench/node/$bench.js" "$arg")
  fi
  bench_run "$out" "$out_dir/$bench.$impl.json" "$bench ($impl) run $r" \
    "${cmd[@]}" || return 1
  local last=$bench_last
  printf '   %-4s run %d: wall_s %s cpu_s %s\n' "$impl" "$r" \
    "$(json_get "$last" wall_s)" "$(json_get "$last" cpu_s)"
}

status=0

# Every report (all lines but the JSON one) must equal the first node run's.
check_same_report() {
  local bench=$1 ref=$out_dir/$1.node.1 f
  for f in "$out_dir/$bench".*.[0-9]*; do
    [[ $f = *.err ]] && continue
    if ! cmp -s <(sed '$d' "$ref") <(sed '$d' "$f"); then
      echo "compare.sh: $bench report of ${f##*/} differs from node's:" >&2
      diff <(sed '$d' "$ref") <(sed '$d' "$f") | head -20 >&2 || true
      status=1
    fi
  done
}

# Figures where a smaller number is better; every other figure with a
# ratio is bigger-is-better. Counts get no ratio.
lower_is_better='^(wall_s|cpu_s|peak_rss_mb|.*_ms)$'
no_ratio='^(.*_count|objects|depth)$'

millions() {
  awk -v v="$1" 'BEGIN { if (v == "-") print v; else printf "%.1f", v / 1e6 }'
}

table() {
  local bench=$1
  shift
  printf '\n%s\n' "$bench ($*; medians of $runs runs)"
  printf '  %-20s %16s %16s %10s\n' figure C node "C vs node"
  for key in wall_s cpu_s objects_per_s peak_rss_mb scavenge_count \
      scavenge_total_ms scavenge_p50_ms scavenge_p99_ms scavenge_max_ms \
      full_gc_count full_gc_total_ms full_gc_max_ms promoted_mb; do
    local c=- n=- ratio=-
    if [[ -f $out_dir/$bench.c.json ]]; then
      c=$(while read -r l; do json_get "$l" "$key"; done \
        <"$out_dir/$bench.c.json" | median)
    fi
    n=$(while read -r l; do json_get "$l" "$key"; done \
      <"$out_dir/$bench.node.json" | median)
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
    if [[ $key = objects_per_s ]]; then
      # Millions read at a glance; the JSON lines keep every digit.
      key=mobjects_per_s
      c=$(millions "$c")
      n=$(millions "$n")
    fi
    printf '  %-20s %16s %16s %10s\n' "$key" "$c" "$n" "$ratio"
  done
}

# The issue's targets, checked against the medians.
target() {
  local what=$1 ok=$2
  printf '  %-58s %s\n' "$what" "$([[ $ok = 1 ]] && echo met || echo MISSED)"
}

med() {
  while read -r l; do json_get "$l" "$3"; done \
    <"$out_dir/$1.$2.json" | median
}

# Other work on the machine stretches wall times (cpu_s much less), so the
# load average is printed with the figures.
echo "== machine: $(nproc) cores, node $("$node" --version)," \
  "load average $(load_now)"

if [[ -z $only || $only = binary_trees ]]; then
  echo "== binary_trees $depth"
  for ((r = 1; r <= runs; r++)); do
    for impl in "${impls[@]}"; do
      run_one binary_trees "$impl" "$r" "$depth" || status=1
    done
  done
  check_same_report binary_trees
fi

if [[ -z $only || $only = alloc_rate ]]; then
  echo "== alloc_rate $count"
  for ((r = 1; r <= runs; r++)); do
    for impl in "${impls[@]}"; do
      run_one alloc_rate "$impl" "$r" "$count" || status=1
    done
  done
fi

((status == 0)) ||
  { echo "compare.sh: some runs failed; no table" >&2; exit 1; }
echo "== done; load average $(load_now) (above $(nproc) means other work" \
  "competed for the cores)"

if [[ -z $only || $only = binary_trees ]]; then
  table binary_trees "depth $depth"
  echo "  (binary_trees reports identical to node's: yes)"
fi
if [[ -z $only || $only = alloc_rate ]]; then
  table alloc_rate "$count objects"
fi

if ((node_only == 0)); then
  echo
  if [[ $depth = 21 && $count = 200000000 ]]; then
    echo "targets:"
  else
    echo "targets (set for depth 21 and 200000000 objects; these sizes differ):"
  fi
  if [[ -z $only || $only = binary_trees ]]; then
    cw=$(med binary_trees c wall_s)
    nw=$(med binary_trees node wall_s)
    cr=$(med binary_trees c peak_rss_mb)
    target "binary_trees at least 4x faster than node" \
      "$(awk -v c="$cw" -v n="$nw" 'BEGIN { print (c > 0 && n / c >= 4) }')"
    target "binary_trees peak RSS under 300 MB" \
      "$(awk -v r="$cr" 'BEGIN { print (r < 300) }')"
  fi
  if [[ -z $only || $only = alloc_rate ]]; then
    co=$(med alloc_rate c objects_per_s)
    target "alloc_rate at least 250 million objects/s" \
      "$(awk -v o="$co" 'BEGIN { print (o >= 250e6) }')"
  fi
fi
exit "$status"
