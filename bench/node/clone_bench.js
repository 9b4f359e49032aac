// In-process structured clone: the Node.js twin of bench/clone_bench.c,
// structuredClone() of one payload, again and again, for a fixed time.
//
// Usage: node bench/node/clone_bench.js [--payload a|b|e] [--seconds S]
//   defaults: payload a, 5 seconds
//
// The first clone is checked in full, and every clone must be a new
// object of the payload's kind. The clock is read once per batch of
// clones (64 for a, 1 otherwise), as in the C program. Ends with one JSON
// line of figures.
'use strict';

const { performance } = require('node:perf_hooks');
const fig = require('./figures.js');
const P = require('./payloads.js');

const PROG = 'clone_bench';

function fail(msg) {
  process.stderr.write(`${PROG}: ${msg}\n`);
  process.exit(1);
}

function usage() {
  process.stderr.write(`usage: ${PROG} [--payload a|b|e] [--seconds S]\n`);
  process.exit(2);
}

function main() {
  let kind = 'a';
  let seconds = 5;
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const val = argv[i + 1];
    if (val === undefined) usage();
    if (argv[i] === '--payload') {
      if (!/^[abe]$/.test(val)) usage();
      kind = val;
    } else if (argv[i] === '--seconds') {
      seconds = P.parseSeconds(PROG, val);
    } else {
      usage();
    }
  }

  const payload = P.build(kind);
  const bytes = P.serializedSize(kind, payload);
  const isArray = Array.isArray(payload);
  const batch = kind === 'a' ? 64 : 1;
  const gc = fig.startGcProfiler();
  let clones = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const deadline = t0 + seconds * 1000;
  do {
    for (let k = 0; k < batch; k++) {
      const c = structuredClone(payload);
      if (c === payload || Array.isArray(c) !== isArray ||
          typeof c !== 'object') {
        fail(`clone ${clones} is not a new object of the payload's kind`);
      }
      if (clones === 0 && !P.check(kind, c)) {
        fail('the clone differs from the payload');
      }
      clones++;
    }
  } while (performance.now() < deadline);
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const gcFigures = fig.stopGcProfiler(gc);

  const cps = clones / wall;
  process.stdout.write(`payload ${kind}: ${clones} clones in ` +
    `${wall.toFixed(3)} s\n`);
  process.stdout.write(JSON.stringify({
    benchmark: PROG,
    impl: 'node',
    payload: kind,
    clones,
    clone_bytes: bytes,
    wall_s: fig.round(wall, 6),
    cpu_s: fig.round((cpu.user + cpu.system) / 1e6, 3),
    clones_per_s: Math.round(cps),
    mb_per_s: fig.round(cps * bytes / 1e6, 2),
    cpu_us_per_clone: fig.round((cpu.user + cpu.system) / clones, 3),
    peak_rss_mb: fig.peakRssMb(),
    ...gcFigures,
  }) + '\n');
}

main();
