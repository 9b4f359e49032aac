// Old-space churn: the Node.js twin of bench/old_churn.c, on one thread.
//
// Usage: node --max-old-space-size=4096 --trace-gc bench/node/old_churn.js
//          [--isolates 1] [--records R] [--seconds S] [--seed X]
//   defaults: 4000000 records, 10 seconds, seed 1
//
// Builds a live set of R plain objects {a, b, arr} (a a serial number, b
// the object's index, arr a new array [a, a+1, a+2, a+3]) in one array,
// then for S seconds replaces the object at a random index (xorshift32,
// the same stream as the C program's first isolate) with a new object and
// a new array, in blocks of 1,024 replacements timed with
// process.hrtime.bigint(). At the end it checks the whole live set.
//
// Prints the same JSON keys as the C program: replacements_per_s,
// peak_rss_mb (VmHWM from /proc/self/status), batch_ms (block wall times)
// and pause_ms (the durations of the 'gc' entries a PerformanceObserver
// saw: every pause V8 reports, scavenges and mark-compacts alike). Only
// one isolate: the C program's --isolates has no twin here.
'use strict';

const fs = require('node:fs');
const { PerformanceObserver } = require('node:perf_hooks');

const BLOCK = 1024;
const MAX_RATE = 64e6; // block log capacity, as in the C program

function fail(msg) {
  process.stderr.write(`old_churn: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { isolates: 1, records: 4000000, seconds: 10, seed: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const opt = argv[i];
    const val = argv[i + 1];
    if (val === undefined) fail(`${opt} needs a value`);
    if (opt === '--seconds') {
      const s = Number(val);
      if (!(s > 0 && s <= 3600)) fail(`bad seconds '${val}' (0..3600)`);
      opts.seconds = s;
      continue;
    }
    if (!/^[0-9]+$/.test(val)) fail(`bad ${opt.slice(2)} '${val}'`);
    const n = Number(val);
    if (opt === '--isolates') {
      if (n !== 1) fail('the node twin runs one isolate only');
      opts.isolates = n;
    } else if (opt === '--records') {
      if (n < 1 || n > 2 ** 28) fail(`bad records '${val}' (1..2^28)`);
      opts.records = n;
    } else if (opt === '--seed') {
      if (n > 0xffffffff) fail(`bad seed '${val}'`);
      opts.seed = n;
    } else {
      fail(`unknown option ${opt}`);
    }
  }
  return opts;
}

// The C program's derivation for isolate `index`, in 32-bit arithmetic.
function isolateSeed(seed, index) {
  const s = Math.imul((seed + index) >>> 0, 2654435761) >>> 0;
  return s === 0 ? 1 : s;
}

function peakRssMb() {
  const m = /VmHWM:\s*(\d+) kB/.exec(fs.readFileSync('/proc/self/status',
    'utf8'));
  return m ? Math.round(Number(m[1]) / 1024 * 10) / 10 : -1;
}

// The element at floor(q * n) of the sorted values, as in the C program.
function dist(values) {
  const v = Float64Array.from(values).sort();
  const at = (q) => (v.length ? v[Math.min(v.length - 1,
    Math.floor(q * v.length))] : 0);
  const r3 = (x) => Math.round(x * 1000) / 1000;
  return {
    count: v.length,
    p50: r3(at(0.5)),
    p99: r3(at(0.99)),
    max: r3(v.length ? v[v.length - 1] : 0),
  };
}

function newRecord(a, b) {
  return { a, b, arr: [a, a + 1, a + 2, a + 3] };
}

function churn(opts, live, serialStart) {
  const records = opts.records;
  const cap = Math.floor(opts.seconds * MAX_RATE / BLOCK) + 16;
  const blockMs = new Float64Array(cap);
  let blocks = 0;
  let serial = serialStart;
  let x = isolateSeed(opts.seed, 0);
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(opts.seconds * 1e9));
  let prev = start;
  let now = start;
  while (blocks < cap) {
    for (let k = 0; k < BLOCK; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      const index = x % records;
      live[index] = newRecord(serial++, index);
    }
    now = process.hrtime.bigint();
    blockMs[blocks++] = Number(now - prev) / 1e6;
    prev = now;
    if (now >= deadline) break;
  }
  return {
    blockMs: blockMs.subarray(0, blocks),
    truncated: now < deadline,
    seconds: Number(now - start) / 1e9,
    replacements: blocks * BLOCK,
  };
}

function checkLiveSet(live, records) {
  let bad = 0;
  for (let i = 0; i < records; i++) {
    const r = live[i];
    const ok = r !== undefined && r.b === i && Array.isArray(r.arr) &&
      r.arr.length === 4 && r.arr[0] === r.a && r.arr[1] === r.a + 1 &&
      r.arr[2] === r.a + 2 && r.arr[3] === r.a + 3;
    if (!ok) bad++;
  }
  return bad;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  process.stdout.write(`old_churn: 1 isolate, ${opts.records} records ` +
    `each, ${opts.seconds} s, seed ${opts.seed}\n`);

  // Entries are delivered on later turns of the event loop, after the
  // synchronous churn; the observer keeps them until then.
  const pauses = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) pauses.push(e.duration);
  });
  obs.observe({ entryTypes: ['gc'] });

  const t0 = process.hrtime.bigint();
  const live = [];
  for (let i = 0; i < opts.records; i++) live.push(newRecord(i, i));
  const buildS = Number(process.hrtime.bigint() - t0) / 1e9;

  const cpu0 = process.cpuUsage();
  const run = churn(opts, live, opts.records);
  const cpu = process.cpuUsage(cpu0);
  if (run.truncated) process.stderr.write('old_churn: block log full\n');

  const bad = checkLiveSet(live, opts.records);
  if (bad !== 0) {
    process.stderr.write(`old_churn: ${bad} of ${opts.records} records ` +
      'are wrong\n');
    process.exit(1);
  }

  // Let the queued gc entries arrive, then stop observing.
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  for (const e of obs.takeRecords()) pauses.push(e.duration);
  obs.disconnect();

  const pause = dist(pauses);
  const total = pauses.reduce((a, b) => a + b, 0);
  process.stdout.write(`${run.replacements} replacements in ` +
    `${run.seconds.toFixed(2)} s, live sets checked\n`);
  process.stdout.write(JSON.stringify({
    benchmark: 'old_churn',
    impl: 'node',
    isolates: 1,
    records: opts.records,
    seed: opts.seed,
    build_s: Math.round(buildS * 1000) / 1000,
    wall_s: Math.round(run.seconds * 1000) / 1000,
    cpu_s: Math.round((cpu.user + cpu.system) / 1e3) / 1e3,
    replacements: run.replacements,
    replacements_per_s: Math.round(run.replacements / run.seconds),
    peak_rss_mb: peakRssMb(),
    batch_ms: dist(run.blockMs),
    pause_ms: pause,
    pause_total_ms: Math.round(total * 10) / 10,
  }) + '\n');
}

main();
