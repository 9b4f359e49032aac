// Helpers shared by the Node.js twins: GC pause figures and the JSON line.
'use strict';

const v8 = require('node:v8');

// v8.GCProfiler hands back every collection synchronously when stopped,
// unlike PerformanceObserver, whose 'gc' entries arrive on a later turn of
// the event loop. It costs a few heap-statistics reads per collection.
function startGcProfiler() {
  const profiler = new v8.GCProfiler();
  profiler.start();
  return profiler;
}

function pauseStats(costsUs) {
  const ms = costsUs.map((c) => c / 1000).sort((a, b) => a - b);
  const at = (q) => (ms.length ? ms[Math.min(ms.length - 1,
    Math.floor(q * ms.length))] : 0);
  return {
    count: ms.length,
    total: ms.reduce((a, b) => a + b, 0),
    p50: at(0.5),
    p99: at(0.99),
    max: ms.length ? ms[ms.length - 1] : 0,
  };
}

function round(x, digits) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// The GC part of the JSON line, with the same keys as the C programs:
// young-generation pauses as scavenges, every other kind as full GCs.
function stopGcProfiler(profiler) {
  const data = profiler.stop();
  const young = [];
  const full = [];
  for (const s of data.statistics) {
    const minor = s.gcType === 'Scavenge' || s.gcType === 'MinorMarkCompact';
    (minor ? young : full).push(s.cost);
  }
  const y = pauseStats(young);
  const f = pauseStats(full);
  return {
    scavenge_count: y.count,
    scavenge_total_ms: round(y.total, 1),
    scavenge_p50_ms: round(y.p50, 3),
    scavenge_p99_ms: round(y.p99, 3),
    scavenge_max_ms: round(y.max, 3),
    full_gc_count: f.count,
    full_gc_total_ms: round(f.total, 1),
    full_gc_max_ms: round(f.max, 3),
  };
}

// process.resourceUsage().maxRSS is getrusage's ru_maxrss, in KiB.
function peakRssMb() {
  return round(process.resourceUsage().maxRSS / 1024, 1);
}

module.exports = { startGcProfiler, stopGcProfiler, peakRssMb, round };
