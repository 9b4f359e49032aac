// What a worker costs: the Node.js twin of bench/worker_spawn.c.
//
// Usage: node bench/node/worker_spawn.js [--spawns N] [--idle N]
//   defaults: 50 and 50
//
// First the resident set size (process.memoryUsage.rss(), not the peak)
// before and after starting --idle workers that each post one message and
// then wait for messages; the growth divided by their number is the cost
// of one idle worker. Then --spawns workers in a row: the clock runs from
// new Worker() to the worker's first message in the main thread; the
// worker is then terminated, off the clock. Ends with one JSON line.
'use strict';

const { Worker } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const fig = require('./figures.js');
const P = require('./payloads.js');

const PROG = 'worker_spawn';

// Posts 1, then stays alive: a 'message' listener keeps its port open.
const WORKER_CODE = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', () => {});
parentPort.postMessage(1);
`;

function fail(msg) {
  process.stderr.write(`${PROG}: ${msg}\n`);
  process.exit(1);
}

function spawn() {
  const w = new Worker(WORKER_CODE, { eval: true });
  w.on('error', (e) => fail(`worker error: ${e.stack || e}`));
  const first = new Promise((resolve) => w.once('message', (m) => {
    if (m !== 1) fail('unexpected first message');
    resolve();
  }));
  return { w, first };
}

async function main() {
  let spawns = 50;
  let idle = 50;
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--spawns') {
      spawns = P.parseCount(PROG, 'spawns', argv[i + 1], 1, 100000);
    } else if (argv[i] === '--idle') {
      idle = P.parseCount(PROG, 'idle', argv[i + 1], 1, 10000);
    } else {
      process.stderr.write(`usage: ${PROG} [--spawns N] [--idle N]\n`);
      process.exit(2);
    }
  }
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();

  const rss0 = process.memoryUsage.rss();
  const started = [];
  for (let i = 0; i < idle; i++) started.push(spawn());
  await Promise.all(started.map((s) => s.first));
  const rss1 = process.memoryUsage.rss();
  await Promise.all(started.map((s) => s.w.terminate()));
  const perWorkerKb = (rss1 - rss0) / 1024 / idle;

  const us = [];
  for (let i = 0; i < spawns; i++) {
    const s0 = performance.now();
    const s = spawn();
    await s.first;
    us.push((performance.now() - s0) * 1000);
    await s.w.terminate();
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);

  us.sort((a, b) => a - b);
  const n = us.length;
  const p50 = n % 2 ? us[(n - 1) / 2] : (us[n / 2 - 1] + us[n / 2]) / 2;
  const p90 = us[Math.floor((n - 1) * 0.9)];
  process.stdout.write(`${idle} idle workers: +${Math.round((rss1 - rss0) /
    1024)} KiB resident, ${perWorkerKb.toFixed(1)} KiB each\n`);
  process.stdout.write(`${spawns} spawns: first message after ` +
    `${p50.toFixed(1)} us (median), ${us[0].toFixed(1)} us (min), ` +
    `${us[n - 1].toFixed(1)} us (max)\n`);
  process.stdout.write(JSON.stringify({
    benchmark: PROG,
    impl: 'node',
    spawns,
    spawn_to_first_message_us_p50: fig.round(p50, 1),
    spawn_to_first_message_us_min: fig.round(us[0], 1),
    spawn_to_first_message_us_p90: fig.round(p90, 1),
    spawn_to_first_message_us_max: fig.round(us[n - 1], 1),
    idle_workers: idle,
    rss_idle_growth_mb: fig.round((rss1 - rss0) / 1048576, 2),
    rss_per_idle_worker_kb: fig.round(perWorkerKb, 1),
    wall_s: fig.round(wall, 3),
    cpu_s: fig.round((cpu.user + cpu.system) / 1e6, 3),
    peak_rss_mb: fig.peakRssMb(),
  }) + '\n');
}

main();
