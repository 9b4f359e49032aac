// Message throughput, one way, main thread to one worker: the Node.js twin
// of bench/message_throughput.c.
//
// Usage: node bench/node/message_throughput.js [--payload a|b|c|d|e]
//          [--seconds S] [--window N] [--ack-every N] [--buffer-kb K]
//   defaults: payload a, 5 seconds, window 64, ack every 16, 1024 KiB
//
// The worker receives every message, checks the first one's whole content
// and every buffer's sequence number, and posts the number received so far
// after every ack-every messages; the main thread never has more than
// window messages unacknowledged. When the time is up (the clock is read
// every 16 posts) it posts null and the worker answers [count, ok]. The
// clock runs from the first post to that answer. mb_per_s counts V8's
// serialized bytes per message (see payloads.js). Ends with one JSON line
// of figures.
'use strict';

const { Worker, isMainThread, parentPort, workerData } =
  require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const fig = require('./figures.js');
const P = require('./payloads.js');

const PROG = 'message_throughput';
// The clock is read once per CLOCK_EVERY posts, as in the C program.
const CLOCK_EVERY = 16;

function workerMain() {
  const { kind, bufferSize, ackEvery } = workerData;
  let count = 0;
  let ok = true;
  parentPort.on('message', (m) => {
    if (m === null) {
      parentPort.postMessage([count, ok]);
      parentPort.close();
      return;
    }
    const good = count === 0 ? P.check(kind, m, bufferSize, 0)
      : P.checkCheap(kind, m, bufferSize, count);
    if (!good && ok) {
      process.stderr.write(`${PROG}: worker: message ${count} has the ` +
        'wrong content\n');
      ok = false;
    }
    count++;
    if (count % ackEvery === 0) parentPort.postMessage(count);
  });
  parentPort.postMessage(0);
}

function usage() {
  process.stderr.write(`usage: ${PROG} [--payload a|b|c|d|e] ` +
    '[--seconds S] [--window N]\n       [--ack-every N] [--buffer-kb K]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { kind: 'a', seconds: 5, window: 64, ackEvery: 16,
    bufferSize: P.BUFFER_DEFAULT };
  for (let i = 0; i < argv.length; i += 2) {
    const val = argv[i + 1];
    if (val === undefined) usage();
    switch (argv[i]) {
      case '--payload':
        if (!/^[a-e]$/.test(val)) usage();
        o.kind = val;
        break;
      case '--seconds': o.seconds = P.parseSeconds(PROG, val); break;
      case '--window': o.window = P.parseCount(PROG, 'window', val, 1, 2 ** 20);
        break;
      case '--ack-every':
        o.ackEvery = P.parseCount(PROG, 'ack-every', val, 1, 2 ** 20);
        break;
      case '--buffer-kb':
        o.bufferSize = P.parseCount(PROG, 'buffer-kb', val, 1, 2 ** 20) * 1024;
        break;
      default: usage();
    }
  }
  if (o.ackEvery > o.window) {
    process.stderr.write(`${PROG}: --ack-every must not exceed --window\n`);
    process.exit(2);
  }
  return o;
}

function fail(msg) {
  process.stderr.write(`${PROG}: ${msg}\n`);
  process.exit(1);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const worker = new Worker(__filename, {
    workerData: { kind: o.kind, bufferSize: o.bufferSize,
      ackEvery: o.ackEvery },
  });
  worker.on('error', (e) => fail(`worker error: ${e.stack || e}`));
  // Listening from the start: node delivers the worker's last messages and
  // then 'exit' in one go, before a later listener could be added.
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  await new Promise((resolve) => worker.once('message', (m) => {
    if (m !== 0) fail('the worker did not start cleanly');
    resolve();
  }));

  const perMessage = o.kind === 'c' || o.kind === 'd';
  const payload = perMessage ? null : P.build(o.kind);
  if (!perMessage && !P.check(o.kind, payload)) {
    fail('the payload fails its own check');
  }
  const bytes = P.serializedSize(o.kind, payload, o.bufferSize);

  let sent = 0;
  let acked = 0;
  let ended = false;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const deadline = t0 + o.seconds * 1000;

  const last = await new Promise((resolve) => {
    function pump() {
      while (sent - acked < o.window) {
        if (sent % CLOCK_EVERY === 0 && performance.now() >= deadline) {
          if (!ended) {
            ended = true;
            worker.postMessage(null);
          }
          return;
        }
        if (perMessage) {
          const ab = P.build(o.kind, o.bufferSize, sent);
          if (o.kind === 'd') worker.postMessage(ab, [ab]);
          else worker.postMessage(ab);
        } else {
          worker.postMessage(payload);
        }
        sent++;
      }
    }
    worker.on('message', (m) => {
      if (typeof m === 'number') {
        if (m > acked) acked = m;
        if (!ended) pump();
      } else {
        resolve(m);
      }
    });
    pump();
  });
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const code = await exited;

  const [count, ok] = last;
  if (!ok || code !== 0) {
    fail(`the worker found a wrong message (exit ${code})`);
  }
  if (count !== sent) fail(`sent ${sent} messages, the worker got ${count}`);

  const mps = sent / wall;
  process.stdout.write(`payload ${o.kind}: ${sent} messages of ${bytes} ` +
    `bytes in ${wall.toFixed(3)} s\n`);
  const out = {
    benchmark: PROG,
    impl: 'node',
    payload: o.kind,
    window: o.window,
    ack_every: o.ackEvery,
  };
  if (perMessage) out.buffer_kb = o.bufferSize / 1024;
  Object.assign(out, {
    messages: sent,
    message_bytes: bytes,
    wall_s: fig.round(wall, 6),
    cpu_s: fig.round((cpu.user + cpu.system) / 1e6, 3),
    messages_per_s: Math.round(mps),
    mb_per_s: fig.round(mps * bytes / 1e6, 2),
    cpu_us_per_message: fig.round((cpu.user + cpu.system) / sent, 3),
    peak_rss_mb: fig.peakRssMb(),
  });
  process.stdout.write(JSON.stringify(out) + '\n');
}

if (isMainThread) main();
else workerMain();
