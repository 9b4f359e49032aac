// The payloads of message_throughput.js and clone_bench.js, the twins of
// bench/payloads.h, and the checks a receiver runs on them.
//
//   a  one user {id: 1234, name: 'user-1234', tags: ['a', 'b', 'c'],
//      score: 1.5, active: true} (a plain object; the C programs use a
//      record of a registered five-slot type)
//   b  an array of 1,000 users, each a new object with its own tags array
//   c  a new ArrayBuffer (1 MiB by default) per message, copied
//   d  the same, moved through the transfer list
//   e  a ring of 1,000 objects {next, value}: value i, next the (i+1)th,
//      the last one pointing back at the first; the payload is object 0
//
// A buffer's first four bytes hold the message's sequence number (little
// endian); the first message's other bytes hold a pattern checked in full.
'use strict';

const v8 = require('node:v8');

const USERS = 1000;
const RING = 1000;
const BUFFER_DEFAULT = 1 << 20;

function user() {
  return { id: 1234, name: 'user-1234', tags: ['a', 'b', 'c'], score: 1.5,
    active: true };
}

function users() {
  const a = [];
  for (let i = 0; i < USERS; i++) a.push(user());
  return a;
}

function ring() {
  const head = { next: null, value: 0 };
  let prev = head;
  for (let i = 1; i < RING; i++) {
    const n = { next: null, value: i };
    prev.next = n;
    prev = n;
  }
  prev.next = head;
  return head;
}

function pattern(i) {
  return (i * 31 + 7) & 0xff;
}

function buffer(size, seq, full) {
  const ab = new ArrayBuffer(size);
  const u8 = new Uint8Array(ab);
  if (full) for (let i = 4; i < size; i++) u8[i] = pattern(i);
  u8[0] = seq & 0xff;
  u8[1] = (seq >>> 8) & 0xff;
  u8[2] = (seq >>> 16) & 0xff;
  u8[3] = (seq >>> 24) & 0xff;
  return ab;
}

function build(kind, bufferSize = BUFFER_DEFAULT, seq = 0) {
  switch (kind) {
    case 'a': return user();
    case 'b': return users();
    case 'c': case 'd': return buffer(bufferSize, seq, seq === 0);
    case 'e': return ring();
    default: throw new Error(`unknown payload ${kind}`);
  }
}

function checkUser(u) {
  if (u === null || typeof u !== 'object') return false;
  const keys = Object.keys(u);
  if (keys.length !== 5) return false;
  return u.id === 1234 && u.name === 'user-1234' && Array.isArray(u.tags) &&
    u.tags.length === 3 && u.tags[0] === 'a' && u.tags[1] === 'b' &&
    u.tags[2] === 'c' && u.score === 1.5 && u.active === true;
}

function checkUsers(a) {
  if (!Array.isArray(a) || a.length !== USERS) return false;
  for (let i = 0; i < USERS; i++) if (!checkUser(a[i])) return false;
  return true;
}

function checkRing(head) {
  let v = head;
  for (let i = 0; i < RING; i++) {
    if (v === null || typeof v !== 'object' || v.value !== i) return false;
    v = v.next;
  }
  return v === head;
}

function checkBuffer(ab, size, seq, full) {
  if (!(ab instanceof ArrayBuffer) || ab.byteLength !== size) return false;
  const u8 = new Uint8Array(ab);
  const got = (u8[0] | (u8[1] << 8) | (u8[2] << 16) | (u8[3] << 24)) >>> 0;
  if (got !== seq >>> 0) return false;
  if (full) {
    for (let i = 4; i < size; i++) if (u8[i] !== pattern(i)) return false;
  }
  return true;
}

function check(kind, v, bufferSize = BUFFER_DEFAULT, seq = 0) {
  switch (kind) {
    case 'a': return checkUser(v);
    case 'b': return checkUsers(v);
    case 'c': case 'd': return checkBuffer(v, bufferSize, seq, seq === 0);
    case 'e': return checkRing(v);
    default: return false;
  }
}

// What a receiver checks on every message but the first.
function checkCheap(kind, v, bufferSize, seq) {
  switch (kind) {
    case 'a': case 'e': return v !== null && typeof v === 'object';
    case 'b': return Array.isArray(v);
    case 'c': case 'd': return checkBuffer(v, bufferSize, seq, false);
    default: return false;
  }
}

// Bytes of V8's serialized form of one message, the format postMessage
// and structuredClone use; for d the buffer is marked transferred, so its
// contents are not written, as postMessage with a transfer list does.
function serializedSize(kind, payload, bufferSize = BUFFER_DEFAULT) {
  if (kind === 'd') {
    const ab = buffer(bufferSize, 0, false);
    const s = new v8.Serializer();
    s.writeHeader();
    s.transferArrayBuffer(0, ab);
    s.writeValue(ab);
    return s.releaseBuffer().length;
  }
  if (kind === 'c') return v8.serialize(buffer(bufferSize, 0, false)).length;
  return v8.serialize(payload).length;
}

// --seconds: a positive number of seconds, at most an hour.
function parseSeconds(prog, arg) {
  const s = Number(arg);
  if (arg === undefined || !/^[0-9.]+$/.test(arg) || !(s > 0 && s <= 3600)) {
    process.stderr.write(`${prog}: bad seconds '${arg}' (0..3600)\n`);
    process.exit(2);
  }
  return s;
}

function parseCount(prog, what, arg, lo, hi) {
  if (arg === undefined || !/^[0-9]+$/.test(arg) || Number(arg) < lo ||
      Number(arg) > hi) {
    process.stderr.write(`${prog}: bad ${what} '${arg}' (${lo}..${hi})\n`);
    process.exit(2);
  }
  return Number(arg);
}

module.exports = {
  BUFFER_DEFAULT, build, check, checkCheap, serializedSize, parseSeconds,
  parseCount,
};
