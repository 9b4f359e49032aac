// binary-trees on one thread: the Node.js twin of bench/binary_trees.c.
//
// Usage: node bench/node/binary_trees.js [DEPTH]   (default 21)
//
// Prints the classic binary-trees report, then one JSON line of figures
// whose keys name their units. The report must match the C program's byte
// for byte; bench/compare.sh checks that.
'use strict';

const { performance } = require('node:perf_hooks');
const fig = require('./figures.js');

class TreeNode {
  constructor(left, right) {
    this.left = left;
    this.right = right;
  }
}

// Leaves have null children, so a node is a leaf when its left is null.
function bottomUpTree(depth) {
  if (depth === 0) return new TreeNode(null, null);
  const left = bottomUpTree(depth - 1);
  const right = bottomUpTree(depth - 1);
  return new TreeNode(left, right);
}

function itemCheck(node) {
  if (node.left === null) return 1;
  return 1 + itemCheck(node.left) + itemCheck(node.right);
}

// Nodes in a complete tree of this depth.
function treeSize(depth) {
  return 2 ** (depth + 1) - 1;
}

function parseDepth(arg) {
  if (arg === undefined) return 21;
  if (!/^[0-9]+$/.test(arg) || Number(arg) > 30) {
    process.stderr.write(`binary_trees: bad depth '${arg}' (0..30)\n`);
    process.exit(2);
  }
  return Number(arg);
}

function main() {
  const maxDepth = Math.max(6, parseDepth(process.argv[2]));
  const minDepth = 4;
  const stretchDepth = maxDepth + 1;
  const out = [];
  let nodes = 0;

  const gc = fig.startGcProfiler();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();

  // The stretch tree must die at once, so no variable holds it.
  out.push(`stretch tree of depth ${stretchDepth}\t check: ` +
    `${itemCheck(bottomUpTree(stretchDepth))}`);
  nodes += treeSize(stretchDepth);

  const longLived = bottomUpTree(maxDepth);
  nodes += treeSize(maxDepth);

  for (let depth = minDepth; depth <= maxDepth; depth += 2) {
    const iterations = 2 ** (maxDepth - depth + minDepth);
    let check = 0;
    for (let i = 0; i < iterations; i++) {
      check += itemCheck(bottomUpTree(depth));
    }
    nodes += iterations * treeSize(depth);
    out.push(`${iterations}\t trees of depth ${depth}\t check: ${check}`);
  }
  out.push(`long lived tree of depth ${maxDepth}\t check: ` +
    `${itemCheck(longLived)}`);

  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const gcFigures = fig.stopGcProfiler(gc);

  process.stdout.write(out.join('\n') + '\n');
  process.stdout.write(JSON.stringify({
    benchmark: 'binary_trees',
    impl: 'node',
    depth: maxDepth,
    wall_s: fig.round(wall, 6),
    cpu_s: fig.round((cpu.user + cpu.system) / 1e6, 3),
    objects: nodes,
    objects_per_s: Math.round(nodes / wall),
    peak_rss_mb: fig.peakRssMb(),
    ...gcFigures,
  }) + '\n');
}

main();
