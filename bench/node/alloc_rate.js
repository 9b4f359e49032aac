// Allocation rate of short-lived two-field objects: the Node.js twin of
// bench/alloc_rate.c.
//
// Usage: node bench/node/alloc_rate.js [COUNT]   (default 200000000)
//
// Each object holds a small integer and the previous object of its batch
// (undefined for the first), so a batch of BATCH objects is a chain that
// dies as a whole when the next batch starts, as the C program's handle
// scope does. Ends with one JSON line of figures.
'use strict';

const { performance } = require('node:perf_hooks');
const fig = require('./figures.js');

const BATCH = 1000;

class Pair {
  constructor(value, prev) {
    this.value = value;
    this.prev = prev;
  }
}

function parseCount(arg) {
  if (arg === undefined) return 200000000;
  if (!/^[0-9]+$/.test(arg) || Number(arg) < 1 || Number(arg) > 2 ** 50) {
    process.stderr.write(`alloc_rate: bad count '${arg}'\n`);
    process.exit(2);
  }
  return Number(arg);
}

// Reads each new object's predecessor through the link, so the link and
// the field are both used and the allocation cannot be dropped. The sum
// wraps at 32 bits (as the C program's uint32_t) to stay exact.
function run(count) {
  let checksum = 0;
  for (let base = 0; base < count; base += BATCH) {
    const end = Math.min(count, base + BATCH);
    let prev = new Pair(base, undefined);
    for (let i = base + 1; i < end; i++) {
      const o = new Pair(i, prev);
      checksum = (checksum + o.prev.value) | 0;
      prev = o;
    }
  }
  return checksum >>> 0;
}

// What run() must return: the sum, modulo 2^32, of every value except the
// last of each batch, in closed form.
function expected(count) {
  const c = BigInt(count);
  const b = BigInt(BATCH);
  const all = (c * (c - 1n)) / 2n; // 0 + 1 + ... + (count-1)
  // The last value of each batch: b-1, 2b-1, ..., and count-1 if the last
  // batch is short.
  const full = c / b;
  let lasts = b * ((full * (full + 1n)) / 2n) - full;
  if (c % b !== 0n) lasts += c - 1n;
  return Number((all - lasts) % 2n ** 32n);
}

function main() {
  const count = parseCount(process.argv[2]);
  const gc = fig.startGcProfiler();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const checksum = run(count);
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const gcFigures = fig.stopGcProfiler(gc);

  const want = expected(count);
  if (checksum !== want) {
    process.stderr.write(`alloc_rate: checksum ${checksum}, want ${want}\n`);
    process.exit(1);
  }
  process.stdout.write(`${count} objects, checksum ${checksum}\n`);
  process.stdout.write(JSON.stringify({
    benchmark: 'alloc_rate',
    impl: 'node',
    objects: count,
    wall_s: fig.round(wall, 6),
    cpu_s: fig.round((cpu.user + cpu.system) / 1e6, 3),
    objects_per_s: Math.round(count / wall),
    peak_rss_mb: fig.peakRssMb(),
    ...gcFigures,
  }) + '\n');
}

main();
