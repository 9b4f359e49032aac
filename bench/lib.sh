# The parts the bench/compare*.sh scripts share. A script sets
# `bench_script` (its name, for messages) and `root` (the project root),
# then sources this; bench_out_dir sets `out_dir`, and bench_build reads
# `build_dir`.

# The script's usage text: its comment from "# Usage" to "# Exit".
usage() {
  sed -n '/^# Usage/,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# need_arg "$@" before reading an option's value.
need_arg() {
  [[ $# -ge 2 && -n $2 ]] ||
    { echo "$bench_script: $1 needs a value" >&2; exit 2; }
}

# out_dir: the --keep directory (created), or a temporary one removed at
# exit.
bench_out_dir() { # keep
  if [[ -n $1 ]]; then
    mkdir -p "$1"
    out_dir=$(cd "$1" && pwd)
    # The figures are medians of the JSON lines in this directory: lines
    # of an earlier run kept here would count again.
    rm -f "$out_dir"/*.json
  else
    out_dir=$(mktemp -d)
    trap 'rm -rf "$out_dir"' EXIT
  fi
}

# Sets up build_dir as a release build if it has no build.ninja yet, then
# builds the given targets; on failure prints the first errors and exits 1.
bench_build() { # target...
  if [[ ! -f $build_dir/build.ninja ]]; then
    # A set-up that failed half-way leaves a directory without build.ninja.
    echo "== setting up $build_dir (release)"
    local wipe=()
    [[ -f $build_dir/meson-private/coredata.dat ]] && wipe=(--wipe)
    if ! meson setup "${wipe[@]}" "$build_dir" "$root" --buildtype=release \
        -Dtests=false -Dexamples=false >"$out_dir/setup.log" 2>&1; then
      tail -n 15 "$out_dir/setup.log" >&2
      echo "$bench_script: meson setup failed" >&2
      exit 1
    fi
  elif ! meson introspect --buildoptions "$build_dir" 2>/dev/null |
      grep -q '"name": "buildtype", "value": "release"'; then
    echo "note: $build_dir is not a release build; figures may be slower"
  fi
  echo "== building"
  if ! ninja -C "$build_dir" "$@" >"$out_dir/build.log" 2>&1; then
    grep -E -m 15 'error|undefined reference' "$out_dir/build.log" >&2 ||
      tail -n 15 "$out_dir/build.log" >&2
    echo "$bench_script: build failed" >&2
    exit 1
  fi
}

# Runs a benchmark: its output goes to the file out, its errors to
# out.err, and its last line, which must be its JSON line, is appended to
# the file json and left in bench_last. Fails (1) with a message naming
# label.
bench_run() { # out json label command...
  local out=$1 json=$2 label=$3
  shift 3
  if ! "$@" >"$out" 2>"$out.err"; then
    echo "$bench_script: $label failed:" >&2
    tail -n 20 "$out.err" >&2
    return 1
  fi
  bench_last=$(tail -n 1 "$out")
  if [[ $bench_last != "{"*"}" ]]; then
    echo "$bench_script: $label: last line is not JSON" >&2
    return 1
  fi
  printf '%s\n' "$bench_last" >>"$json"
}

# The value of a key of a JSON line: "wall_s" at the top level, or
# "pause_ms.p99" inside one of its objects (numbers and plain strings; the
# objects hold no objects).
json_get() { # line key
  awk -v path="$2" '
    {
      line = $0
      key = path
      dot = index(path, ".")
      if (dot) {
        outer = substr(path, 1, dot - 1)
        key = substr(path, dot + 1)
        if (!match(line, "\"" outer "\":\\{[^}]*\\}")) next
        n = length(outer) + 3
        line = substr(line, RSTART + n, RLENGTH - n)
        line = "," substr(line, 2)
      } else {
        # Top-level keys only: blank out the nested objects.
        gsub(/:\{[^}]*\}/, ":{}", line)
      }
      if (match(line, "[{,]\"" key "\":[^,}]*")) {
        v = substr(line, RSTART + length(key) + 4, RLENGTH - length(key) - 4)
        gsub(/"/, "", v)
        print v
      }
    }' <<<"$1"
}

# The median of the numbers on stdin, one a line; "-" if there are none.
median() {
  sort -g | awk '{ v[NR] = $1 }
    END {
      if (NR == 0) { print "-"; exit }
      if (NR % 2) print v[(NR + 1) / 2]
      else printf "%.10g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

load_now() {
  if [[ -r /proc/loadavg ]]; then cut -d' ' -f1 /proc/loadavg; else echo '?'; fi
}
