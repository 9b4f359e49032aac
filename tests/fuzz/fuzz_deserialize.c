/*
 * libFuzzer target: iso_deserialize over hostile bytes.
 *
 * Each input becomes the bytes of a message whose tables are real (see
 * fuzz_common.h), so forged indexes into them are exercised too. The
 * isolate collects every few allocations, so a reference the
 * deserializer forgot to root corrupts the result or the heap at once.
 *
 * Oracles beside the sanitizers:
 * - a rejected input must be ISO_ERR_DATA_CLONE (or out of memory) with
 *   a message that names a byte offset, must leave no handle behind, and
 *   must leave the message's tables as they were (every moved or copied
 *   store and the port owned by the message again; the carrier is then
 *   freed, which frees or closes what it holds, so a double-owned entry
 *   would be a double free under ASan);
 * - an accepted input is serialized again and deserialized again, and the
 *   two graphs must be the same (kinds, contents, sharing, cycles);
 * - the heap verifies after a full collection every few hundred inputs.
 */
#include <stdio.h>

#include "clone.h"
#include "fuzz_common.h"
#include "../unit/clone_check.h"

_Static_assert(CLONE_COPY_MIN == FUZZ_COPY_MIN,
               "the carrier's buffers must travel in the copy table");

static iso_runtime *rt;
static iso_isolate *iso;
static fuzz_types types;
static fuzz_host host = {&types};
static iso_clone_delegate delegate = {sizeof(iso_clone_delegate),
                                      fuzz_write_host, fuzz_read_host, &host};
static unsigned long runs;

static void die(const char *what) {
  fprintf(stderr, "fuzz_deserialize: %s (last error %s: %s)\n", what,
          iso_status_name(iso_last_status()), iso_last_error());
  abort();
}

static void setup(void) {
  rt = iso_runtime_new(NULL);
  if (!rt || fuzz_register(rt, &types) != 0) die("setup");
  iso_isolate_params p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.stress_scavenge_every = 7;
  p.stress_full_every = 997;
  p.max_old_generation_size = (size_t)512 << 20;
  iso = iso_isolate_new(rt, &p);
  if (!iso) die("setup");
}

/* Round trip of an accepted graph: must come back the same. */
static void check_again(iso_value v) {
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle hv = iso_handle_new(iso, v);
  iso_message *m = NULL;
  iso_status st = iso_serialize(iso, iso_get(hv), NULL, 0, &delegate, &m);
  if (st != ISO_OK) {
    /* Ports only travel in a transfer list; anything else must clone. */
    if (st != ISO_ERR_DATA_CLONE || !strstr(iso_last_error(), "port"))
      die("an accepted graph does not serialize again");
  } else {
    iso_handle again = iso_deserialize(iso, m, &delegate);
    if (!again) die("a serialized graph does not deserialize");
    if (!clone_same(iso, iso_get(hv), iso_get(again)))
      die("a graph changed through a round trip");
  }
  iso_scope_close(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!iso) setup();
  iso_port *peer = NULL;
  iso_message *m = fuzz_carrier(iso, &peer);
  if (!m) die("carrier");
  /* The fuzzed bytes replace the carrier's; malloc'd, so the message
   * frees them as it frees bytes that outgrew its inline storage. */
  uint8_t *bytes = malloc(size ? size : 1);
  if (!bytes) die("malloc");
  if (size) memcpy(bytes, data, size);
  if (m->data != m->inline_data) free(m->data);
  m->data = bytes;
  m->size = size;

  /* What the tables hold, to check that a rejection gives it all back. */
  void *moved_data[2] = {NULL, NULL}, *copy_data[2] = {NULL, NULL};
  iso_port *port = m->nports ? m->ports[0].port : NULL;
  if (m->nmoved != 2 || m->nshared != 2 || m->nports != 1 || m->ncopies != 2)
    die("carrier");
  for (int i = 0; i < 2; i++) {
    moved_data[i] = m->moved[i].store.data;
    copy_data[i] = m->copies[i].store.data;
  }
  /* The copy entries' offsets are the carrier's, not the input's: the
   * message must only be deserialized or freed now, never flattened
   * (iso_message_data). */

  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle before = iso_handle_new(iso, ISO_NULL);
  iso_handle h = iso_deserialize(iso, m, &delegate);
  if (h) {
    check_again(iso_get(h));
  } else {
    iso_status st = iso_last_status();
    const char *e = iso_last_error();
    if (st != ISO_ERR_DATA_CLONE && st != ISO_ERR_OUT_OF_MEMORY)
      die("a rejected input gave an unexpected status");
    if (st == ISO_ERR_DATA_CLONE && !strstr(e, "at byte"))
      die("a rejection does not name its offset");
    if (iso_handle_new(iso, ISO_NULL) != before + 1)
      die("a rejected input left handles behind");
    for (int i = 0; i < 2; i++) {
      if (m->moved[i].state != CLONE_ENTRY_OWNED ||
          m->moved[i].store.data != moved_data[i] || m->moved[i].store.detached)
        die("a rejected input kept a transferred buffer");
      if (m->copies[i].state != CLONE_ENTRY_OWNED ||
          m->copies[i].store.data != copy_data[i] ||
          m->copies[i].store.length != (i ? FUZZ_COPY1 : FUZZ_COPY0))
        die("a rejected input kept a copied buffer");
    }
    if (m->ports[0].state != CLONE_ENTRY_OWNED || m->ports[0].port != port)
      die("a rejected input kept the port");
    iso_message_free(m);
  }
  iso_scope_close(&s);
  if (peer) iso_port_close(peer);
  /* A full collection per input frees everything the input made, so
   * libFuzzer's per-input leak check sees its mallocs balanced by frees
   * (a store or table entry the deserializer lost shows up as a leak). */
  if (iso_gc(iso, ISO_GC_FULL) != ISO_OK) die("collection");
  if (++runs % 64 == 0 && iso_heap_verify(iso) != ISO_OK)
    die("heap verification");
  return 0;
}
