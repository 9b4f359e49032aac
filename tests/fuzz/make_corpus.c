/*
 * Writes the deserializer fuzz target's seed corpus: one file per value,
 * the serialized bytes of a value of every kind and of combinations
 * (sharing, cycles, views, transfers, shared buffers, ports, host
 * objects, depth, out-of-line copies). Usage: make_corpus DIR. Values
 * that carry tables use them in the carrier's order (fuzz_common.h), so
 * the fuzz target can read them back.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "fuzz_common.h"

static iso_runtime *rt;
static iso_isolate *iso;
static fuzz_types types;
static fuzz_host host = {&types};
static iso_clone_delegate delegate = {sizeof(iso_clone_delegate),
                                      fuzz_write_host, fuzz_read_host, &host};
static const char *dir;
static int written;

static void die(const char *what) {
  fprintf(stderr, "make_corpus: %s: %s\n", what, iso_last_error());
  exit(1);
}

static iso_handle need(iso_handle h) {
  if (!h) die("building a value");
  return h;
}

static void emit_t(const char *name, iso_value v, const iso_value *tl,
                   size_t n) {
  iso_message *m = NULL;
  if (iso_serialize(iso, v, tl, n, &delegate, &m) != ISO_OK) die(name);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f ||
      fwrite(iso_message_data(m), 1, iso_message_size(m), f) !=
          iso_message_size(m) ||
      fclose(f) != 0)
    die(path);
  iso_message_free(m);
  written++;
}

static void emit(const char *name, iso_value v) { emit_t(name, v, NULL, 0); }

/* A message written by hand: the header with an object count, then the
 * body. For what iso_message_data never returns: references to the copy
 * table. */
static void emit_raw(const char *name, uint32_t objects, const char *body,
                     size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  unsigned char hdr[10] = {'I', 'S', 'O', 'C', 1, 0};
  for (int i = 0; i < 4; i++) hdr[6 + i] = (unsigned char)(objects >> (8 * i));
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(hdr, 1, sizeof hdr, f) != sizeof hdr ||
      fwrite(body, 1, len, f) != len || fclose(f) != 0)
    die(path);
  written++;
}
#define EMIT_RAW(name, objects, body) \
  emit_raw((name), (objects), (body), sizeof(body) - 1)

static iso_handle str(const char *s) {
  return need(iso_string_from_cstr(iso, s));
}

static void push(iso_handle arr, iso_handle h) {
  if (iso_array_push(iso, iso_get(arr), iso_get(h)) != ISO_OK) die("push");
}
static void pushv(iso_handle arr, iso_value v) {
  if (iso_array_push(iso, iso_get(arr), v) != ISO_OK) die("push");
}

static void primitives(void) {
  emit("undefined", ISO_UNDEFINED);
  emit("null", ISO_NULL);
  emit("true", ISO_TRUE);
  emit("false", ISO_FALSE);
  emit("int-0", iso_smi(0));
  emit("int-neg", iso_smi(-300));
  emit("int-max", iso_smi(ISO_SMI_MAX));
  emit("int-min", iso_smi(ISO_SMI_MIN));
  const double ds[] = {
      1.5, NAN, -0.0, INFINITY, -INFINITY, 5e-324, 4611686018427387904.0};
  for (int i = 0; i < 7; i++) {
    char name[32];
    snprintf(name, sizeof name, "double-%d", i);
    emit(name, iso_get(need(iso_number_new(iso, ds[i]))));
  }
}

static void strings(void) {
  emit("string-empty", iso_get(str("")));
  emit("string-ascii", iso_get(str("user-1234")));
  emit("string-utf8", iso_get(str("caf\xc3\xa9 \xe2\x82\xac "
                                  "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf")));
  emit("string-nul", iso_get(need(iso_string_new(iso, "a\0b", 3))));
  char longs[100];
  for (int i = 0; i < 100; i++) longs[i] = (char)('a' + i % 26);
  iso_handle ls = need(iso_string_new(iso, longs, sizeof longs));
  iso_handle arr = need(iso_array_new(iso, 0));
  push(arr, ls);
  push(arr, ls);
  push(arr, str("short"));
  emit("string-long-shared", iso_get(arr));
}

static void containers(void) {
  emit("array-empty", iso_get(need(iso_array_new(iso, 0))));
  emit("array-holes", iso_get(need(iso_array_new(iso, 3))));
  iso_handle inner = need(iso_array_new(iso, 0));
  pushv(inner, iso_smi(1));
  iso_handle outer = need(iso_array_new(iso, 0));
  push(outer, inner);
  push(outer, inner);
  push(outer, outer);
  emit("array-shared-cycle", iso_get(outer));
  iso_handle map = need(iso_map_new(iso));
  iso_handle objkey = need(iso_array_new(iso, 1));
  iso_handle k = str("name");
  iso_handle d = need(iso_number_new(iso, 2.5));
  iso_map_set(iso, iso_get(map), iso_get(k), iso_get(str("v")));
  iso_map_set(iso, iso_get(map), iso_smi(7), ISO_NULL);
  iso_map_set(iso, iso_get(map), iso_get(d), ISO_TRUE);
  iso_map_set(iso, iso_get(map), iso_get(objkey), iso_get(objkey));
  iso_map_set(iso, iso_get(map), iso_get(map), iso_get(map));
  iso_map_set(iso, iso_get(map), ISO_UNDEFINED, ISO_FALSE);
  emit("map-keys", iso_get(map));
  emit("map-empty", iso_get(need(iso_map_new(iso))));
}

static void records(void) {
  iso_handle p = need(iso_record_new(iso, types.pair));
  iso_record_set(iso, iso_get(p), 0, iso_smi(1));
  iso_record_set(iso, iso_get(p), 1, iso_get(str("x")));
  emit("record-pair", iso_get(p));
  iso_handle b = need(iso_record_new(iso, types.blob));
  memcpy(iso_record_raw(iso_get(b)), "0123456789abcdef", 16);
  emit("record-blob", iso_get(b));
  iso_handle hb = need(iso_record_new(iso, types.blob));
  memcpy(iso_record_raw(iso_get(hb)), "host-marked-blob", 16);
  iso_record_set(iso, iso_get(hb), 0, ISO_TRUE); /* the delegate's */
  emit("record-host", iso_get(hb));
  emit("record-leaf", iso_get(need(iso_record_new(iso, types.leaf))));
  iso_handle w = need(iso_record_new(iso, types.wide));
  memcpy(iso_record_raw(iso_get(w)), "raw", 3);
  iso_record_set(iso, iso_get(w), 4, iso_get(w));
  emit("record-wide-self", iso_get(w));
  /* The benchmark's small record, as a wide record. */
  iso_handle tags = need(iso_array_new(iso, 0));
  push(tags, str("a"));
  push(tags, str("b"));
  push(tags, str("c"));
  iso_handle u = need(iso_record_new(iso, types.wide));
  iso_record_set(iso, iso_get(u), 0, iso_smi(1234));
  iso_record_set(iso, iso_get(u), 1, iso_get(str("user-1234")));
  iso_record_set(iso, iso_get(u), 2, iso_get(tags));
  iso_record_set(iso, iso_get(u), 3, iso_get(need(iso_number_new(iso, 1.5))));
  iso_record_set(iso, iso_get(u), 4, ISO_TRUE);
  emit("record-user", iso_get(u));
  /* A ring of pairs. */
  iso_handle first = need(iso_record_new(iso, types.pair));
  iso_handle cur = iso_handle_new(iso, iso_get(first));
  for (int i = 0; i < 20; i++) {
    iso_handle n = need(iso_record_new(iso, types.pair));
    iso_record_set(iso, iso_get(n), 0, iso_smi(i));
    iso_record_set(iso, iso_get(cur), 1, iso_get(n));
    iso_handle_set(cur, iso_get(n));
  }
  iso_record_set(iso, iso_get(cur), 1, iso_get(first));
  emit("record-ring", iso_get(first));
}

static void buffers(void) {
  iso_handle ab = need(iso_array_buffer_new(iso, 24));
  memcpy(iso_array_buffer_data(iso_get(ab)), "abcdefghijklmnopqrstuvwx", 24);
  emit("buffer", iso_get(ab));
  emit("buffer-empty", iso_get(need(iso_array_buffer_new(iso, 0))));
  iso_handle views = need(iso_array_new(iso, 0));
  for (int t = ISO_TYPED_INT8; t <= ISO_TYPED_DATA_VIEW; t++) {
    size_t es = t <= ISO_TYPED_UINT8_CLAMPED || t == ISO_TYPED_DATA_VIEW ? 1
                : t <= ISO_TYPED_UINT16                                  ? 2
                : t <= ISO_TYPED_FLOAT32                                 ? 4
                                                                         : 8;
    push(views, need(iso_typed_array_new(iso, (iso_typed_array_type)t,
                                         iso_get(ab), es, 16 / es)));
  }
  push(views, ab);
  emit("views-shared-buffer", iso_get(views));
  /* Transfers and shared buffers in the carrier's table order. */
  iso_handle m0 = need(iso_array_buffer_new(iso, FUZZ_MOVED0));
  iso_handle m1 = need(iso_array_buffer_new(iso, FUZZ_MOVED1));
  iso_handle s0 = need(iso_shared_array_buffer_new(iso, FUZZ_SHARED0));
  iso_handle s1 = need(iso_shared_array_buffer_new(iso, FUZZ_SHARED1));
  iso_port *p1, *p2;
  if (iso_channel_new(&p1, &p2) != ISO_OK) die("channel");
  iso_handle pv = need(iso_port_to_value(iso, p1));
  iso_handle all = need(iso_array_new(iso, 0));
  push(all,
       need(iso_typed_array_new(iso, ISO_TYPED_UINT8, iso_get(m1), 4, 10)));
  push(all, m0);
  push(all, s0);
  push(all, need(iso_typed_array_new(iso, ISO_TYPED_INT32, iso_get(s1), 0, 2)));
  push(all, pv);
  push(all, m1);
  iso_value tl[3] = {iso_get(m0), iso_get(m1), iso_get(pv)};
  emit_t("transfer-shared-port", iso_get(all), tl, 3);
  iso_port_close(p2);
}

/* Out-of-line copies, in the carrier's copy table order (copy0 of
 * FUZZ_COPY0 bytes, copy1 of FUZZ_COPY1). */
static void copies(void) {
  EMIT_RAW("copy-one", 1, "C\x00");
  /* [UINT8 view of 10 bytes at 4 of copy1, copy0, copy1 again] */
  EMIT_RAW("copy-views", 4,
           "A\x03V\x02\x04\x0a"
           "C\x01"
           "C\x00^\x01");
  /* Every table at once: [moved0, copy1, shared0, copy0, moved1] */
  EMIT_RAW("copy-tables", 6,
           "A\x05"
           "b\x00"
           "C\x01"
           "H\x00"
           "C\x00"
           "b\x01");
}

static void hosts(void) {
  /* A fixed pointer (never dereferenced), so the corpus is the same on
   * every run. */
  iso_handle e =
      need(iso_external_new(iso, (void *)(uintptr_t)0x5eed0000, NULL, NULL));
  iso_handle arr = need(iso_array_new(iso, 0));
  push(arr, e);
  push(arr, e);
  emit("host-external", iso_get(arr));
}

static void deep(void) {
  iso_handle head = iso_handle_new(iso, ISO_NULL);
  for (int i = 0; i < 300; i++) {
    iso_handle n = need(iso_record_new(iso, types.pair));
    iso_record_set(iso, iso_get(n), 0, iso_smi(i));
    iso_record_set(iso, iso_get(n), 1, iso_get(head));
    iso_handle_set(head, iso_get(n));
  }
  emit("deep-list", iso_get(head));
  iso_handle nest = need(iso_array_new(iso, 0));
  for (int i = 0; i < 300; i++) {
    iso_handle up = need(iso_array_new(iso, 0));
    push(up, nest);
    iso_handle_set(nest, iso_get(up));
  }
  emit("deep-arrays", iso_get(nest));
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  dir = argv[1];
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) die(dir);
  rt = iso_runtime_new(NULL);
  if (!rt || fuzz_register(rt, &types) != 0) die("setup");
  iso = iso_isolate_new(rt, NULL);
  if (!iso) die("setup");
  primitives();
  strings();
  containers();
  records();
  buffers();
  copies();
  hosts();
  deep();
  iso_isolate_free(iso);
  iso_runtime_free(rt);
  printf("make_corpus: %d files in %s\n", written, dir);
  return 0;
}
