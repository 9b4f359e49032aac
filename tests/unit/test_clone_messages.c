/*
 * Structured clone across isolates: message ports carrying cloned
 * values, messages (iso_serialize / iso_deserialize) and their ownership,
 * out-of-line copies of big buffers and the reuse of their stores, and
 * the registered type ids a message carries. Round trips of each kind of
 * value are in test_clone.c.
 */
#include "clone_check.h"
#include "clone_host.h"

static iso_runtime *rt;
static iso_type node_t; /* 2 slots: value, next */

static iso_isolate *new_isolate(void) {
  iso_isolate_params p = unit_params();
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  return iso;
}

/* ---- ports ---- */

static void test_ports(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_port *a, *b, *c, *d;
  CHECK_OK(iso_channel_new(&a, &b));
  CHECK_OK(iso_channel_new(&c, &d));
  iso_handle pa = iso_port_to_value(iso, a);
  CHECK(pa != NULL);
  iso_handle arr = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(pa)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(pa)));
  iso_value tl[1] = {iso_get(pa)};
  iso_message *m;
  CHECK_OK(iso_serialize(iso, iso_get(arr), tl, 1, NULL, &m));
  CHECK(iso_port_from_value(iso_get(pa)) == NULL); /* detached */
  /* Transferring it again fails: it is gone. */
  iso_message *m2 = NULL;
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(pa), tl, 1, NULL, &m2),
                 ISO_ERR_DATA_CLONE, "transfer[0]");
  iso_handle got = iso_deserialize(other, m, NULL);
  CHECK(got != NULL);
  iso_value g0 = iso_get(iso_array_get(other, iso_get(got), 0));
  CHECK_EQ(iso_kind_of(g0), ISO_KIND_PORT);
  CHECK(iso_get(iso_array_get(other, iso_get(got), 1)) == g0);
  CHECK(iso_port_from_value(g0) == a);
  /* The moved port still talks to its peer. */
  CHECK_OK(iso_port_post(a, other, iso_smi(99), NULL, 0));
  iso_handle r = NULL;
  CHECK_OK(iso_port_receive(b, iso, 1000, &r));
  CHECK(iso_get(r) == iso_smi(99));
  /* A receive that fails after the port was rebuilt gives it back to
   * the message: the next receive gets it. */
  host_log log;
  memset(&log, 0, sizeof log);
  iso_clone_delegate dg = {sizeof dg, host_write, host_read, &log};
  iso_handle pv = iso_array_get(other, iso_get(got), 0); /* a's value */
  iso_handle ext = iso_external_new(other, &log, NULL, NULL);
  arr = iso_array_new(other, 0);
  CHECK_OK(iso_array_push(other, iso_get(arr), iso_get(pv)));
  CHECK_OK(iso_array_push(other, iso_get(arr), iso_get(ext)));
  tl[0] = iso_get(pv);
  CHECK_OK(iso_serialize(other, iso_get(arr), tl, 1, &dg, &m));
  CHECK_FAILS(iso_deserialize(iso, m, NULL), == NULL, ISO_ERR_DATA_CLONE,
              "no delegate");
  got = iso_deserialize(iso, m, &dg);
  CHECK(got != NULL);
  iso_value back = iso_get(iso_array_get(iso, iso_get(got), 0));
  CHECK(iso_port_from_value(back) == a);
  CHECK_OK(iso_port_post(a, iso, iso_smi(5), NULL, 0));
  CHECK_OK(iso_port_receive(b, other, 1000, &r));
  CHECK(iso_get(r) == iso_smi(5));
  /* A port travelling over a port, and one never received: closed with
   * its message, so its peer sees the close. */
  iso_handle pc = iso_port_to_value(iso, c);
  tl[0] = iso_get(pc);
  CHECK_OK(iso_serialize(iso, iso_get(pc), tl, 1, NULL, &m));
  iso_message_free(m);
  CHECK_FAILS_ST(iso_port_receive(d, iso, 1000, &r), ISO_ERR_CLOSED, "");
  iso_port_close(d);
  iso_port_close(b);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- messages ---- */

static void test_messages(void) {
  iso_isolate *iso = new_isolate();
  iso_handle s = iso_string_from_cstr(iso, "hello");
  iso_message *m;
  CHECK_OK(iso_serialize(iso, iso_get(s), NULL, 0, NULL, &m));
  const unsigned char *bytes = iso_message_data(m);
  size_t n = iso_message_size(m);
  /* Header: magic, version, flags, object count (docs/clone-format.md). */
  CHECK_UEQ(n, 10 + 1 + 1 + 5);
  CHECK(memcmp(bytes, "ISOC\x01\x00\x00\x00\x00\x00S\x05hello", n) == 0);
  /* The other examples of docs/clone-format.md. */
  iso_handle self = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(self), iso_get(self)));
  CHECK_OK(iso_array_push(iso, iso_get(self), iso_smi(-1)));
  iso_message *m2;
  CHECK_OK(iso_serialize(iso, iso_get(self), NULL, 0, NULL, &m2));
  CHECK_UEQ(iso_message_size(m2), 16);
  CHECK(memcmp(iso_message_data(m2),
               "ISOC\x01\x00\x01\x00\x00\x00"
               "A\x02^\x00I\x01",
               16) == 0);
  iso_message_free(m2);
  iso_handle ab = iso_array_buffer_new(iso, 8);
  iso_handle view =
      iso_typed_array_new(iso, ISO_TYPED_UINT8, iso_get(ab), 2, 4);
  iso_value tl[1] = {iso_get(ab)};
  CHECK_OK(iso_serialize(iso, iso_get(view), tl, 1, NULL, &m2));
  CHECK_UEQ(iso_message_size(m2), 16);
  CHECK(memcmp(iso_message_data(m2),
               "ISOC\x01\x00\x02\x00\x00\x00"
               "V\x02\x02\x04"
               "b\x00",
               16) == 0);
  iso_message_free(m2);
  /* Bytes travel on their own (a file, a socket). */
  iso_message *copy = iso_message_from_bytes(bytes, n);
  CHECK(copy != NULL);
  CHECK_UEQ(iso_message_size(copy), n);
  CHECK(iso_message_data(copy) != (const void *)bytes);
  iso_handle back = iso_deserialize(iso, copy, NULL);
  CHECK_STRING(iso_get(back), "hello");
  iso_message_free(m);
  iso_message_free(NULL);
  CHECK(iso_message_data(NULL) == NULL && iso_message_size(NULL) == 0);
  CHECK_FAILS(iso_message_from_bytes(NULL, 3), == NULL, ISO_ERR_ARGUMENT,
              "NULL");
  CHECK_FAILS(iso_deserialize(iso, NULL, NULL), == NULL, ISO_ERR_ARGUMENT,
              "NULL");
  /* A big message from bytes, beyond the inline storage. */
  size_t big = (size_t)200 << 10;
  char *buf = malloc(big);
  unit_fill(buf, big, 5);
  iso_handle bs = iso_string_new(iso, buf, big);
  CHECK_OK(iso_serialize(iso, iso_get(bs), NULL, 0, NULL, &m));
  copy = iso_message_from_bytes(iso_message_data(m), iso_message_size(m));
  iso_message_free(m);
  back = iso_deserialize(iso, copy, NULL);
  CHECK(unit_str_is(iso_get(back), buf, big));
  free(buf);
  /* Failure leaves the message to the caller, intact: a message that a
   * fresh isolate of another runtime cannot read is read fine here. */
  iso_handle rec = iso_record_new(iso, node_t);
  CHECK_OK(iso_serialize(iso, iso_get(rec), NULL, 0, NULL, &m));
  iso_runtime *rt2 = iso_runtime_new(NULL);
  iso_isolate *far = iso_isolate_new(rt2, NULL);
  CHECK_FAILS(iso_deserialize(far, m, NULL), == NULL, ISO_ERR_DATA_CLONE,
              "not a registered record type");
  back = iso_deserialize(iso, m, NULL);
  CHECK(back != NULL && iso_type_of(iso_get(back)) == node_t);
  CHECK_OK(iso_isolate_free(far));
  CHECK_OK(iso_runtime_free(rt2));
  CHECK_OK(iso_isolate_free(iso));
}

/* Big copied buffers travel out of line (Note [Out-of-line copies] in
 * isolate/clone.c): the value is the same as with inline bytes, the copy
 * is independent of its source, iso_message_data gives self-contained
 * bytes of the size iso_message_size promised, and a failed receive
 * leaves the copies in the message for the next try. */
static void test_out_of_line_copies(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  host_log log;
  iso_clone_delegate d = host_delegate(&log);
  /* Sizes around the threshold (64 KiB) and a big one. */
  const size_t sizes[] = {(size_t)64 << 10, ((size_t)64 << 10) - 1,
                          (size_t)1 << 20, 300000};
  iso_handle bufs[4], arr = iso_array_new(iso, 0);
  for (int i = 0; i < 4; i++) {
    bufs[i] = iso_array_buffer_new(iso, sizes[i]);
    CHECK(bufs[i] != NULL);
    unit_fill(iso_array_buffer_data(iso_get(bufs[i])), sizes[i], 40 + i);
    CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(bufs[i])));
  }
  /* The big one again, and through a view: one buffer, one copy. */
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(bufs[2])));
  iso_handle view =
      iso_typed_array_new(iso, ISO_TYPED_UINT32, iso_get(bufs[3]), 8, 1000);
  CHECK(view != NULL);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(view)));
  int target = 9;
  iso_handle ext = iso_external_new(iso, &target, NULL, NULL);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(ext)));

  /* Kept aside: the sources change after serializing. */
  char *want[4];
  for (int i = 0; i < 4; i++) {
    want[i] = malloc(sizes[i]);
    memcpy(want[i], iso_array_buffer_data(iso_get(bufs[i])), sizes[i]);
  }
  iso_message *m = NULL, *m2 = NULL;
  CHECK_OK(iso_serialize(iso, iso_get(arr), NULL, 0, &d, &m));
  CHECK_OK(iso_serialize(iso, iso_get(arr), NULL, 0, &d, &m2));
  for (int i = 0; i < 4; i++)
    ((char *)iso_array_buffer_data(iso_get(bufs[i])))[7] ^= 0x5a;

  /* Sizes count every byte of every buffer once, however it travels. */
  size_t total = 0;
  for (int i = 0; i < 4; i++) total += sizes[i];
  size_t n = iso_message_size(m);
  CHECK_UGE(n, total + 1);
  CHECK_ULE(n, total + 200);
  CHECK_UEQ(iso_message_size(m2), n);

  /* A failing receive, twice (the failure comes after the buffers):
   * the message keeps its copies and reads fine afterwards. */
  log.fail_read = 1;
  for (int k = 0; k < 2; k++)
    CHECK_FAILS(iso_deserialize(other, m, &d), == NULL, ISO_ERR_DATA_CLONE,
                "read_host failed");
  log.fail_read = 0;
  CHECK_UEQ(iso_message_size(m), n);
  iso_scope sc;
  iso_scope_open(other, &sc);
  iso_handle got = iso_deserialize(other, m, &d);
  CHECK(got != NULL);
  iso_value g = iso_get(got);
  CHECK_UEQ(iso_array_length(g), 7);
  iso_value gb[4];
  for (int i = 0; i < 4; i++) {
    gb[i] = iso_get(iso_array_get(other, g, (size_t)i));
    CHECK_UEQ(iso_array_buffer_byte_length(gb[i]), sizes[i]);
    CHECK(memcmp(iso_array_buffer_data(gb[i]), want[i], sizes[i]) == 0);
  }
  CHECK(iso_get(iso_array_get(other, g, 4)) == gb[2]);
  iso_value gv = iso_get(iso_array_get(other, g, 5));
  CHECK(iso_get(iso_typed_array_buffer(other, gv)) == gb[3]);
  CHECK(iso_external_value(iso_get(iso_array_get(other, g, 6))) == &target);
  CHECK_OK(iso_scope_close(&sc));

  /* The bytes alone: inline 'B' everywhere, the promised size, and a
   * message from them reads back the same value. */
  const uint8_t *bytes = iso_message_data(m2);
  CHECK(bytes != NULL);
  CHECK_UEQ(iso_message_size(m2), n);
  CHECK(bytes[10] == 'A' && bytes[11] == 7 && bytes[12] == 'B');
  iso_message *flat = iso_message_from_bytes(bytes, n);
  CHECK(flat != NULL);
  iso_scope_open(other, &sc);
  iso_handle a = iso_deserialize(other, flat, &d);
  iso_handle b = iso_deserialize(other, m2, &d); /* rewritten, still good */
  CHECK(a != NULL && b != NULL);
  CHECK(clone_same(other, iso_get(a), iso_get(b)));
  for (int i = 0; i < 4; i++) {
    iso_value ab = iso_get(iso_array_get(other, iso_get(a), (size_t)i));
    CHECK(memcmp(iso_array_buffer_data(ab), want[i], sizes[i]) == 0);
  }
  CHECK_OK(iso_scope_close(&sc));

  /* Unreceived messages free their copies (ASan's leak check sees the
   * small ones); so does an in-process clone. */
  CHECK_OK(iso_serialize(iso, iso_get(arr), NULL, 0, &d, &m));
  iso_message_free(m);
  iso_scope_open(iso, &sc);
  iso_handle c = iso_structured_clone(iso, iso_get(bufs[2]), NULL, 0);
  CHECK(c != NULL);
  CHECK(clone_same(iso, iso_get(bufs[2]), iso_get(c)));
  CHECK(iso_array_buffer_data(iso_get(c)) !=
        iso_array_buffer_data(iso_get(bufs[2])));
  CHECK_OK(iso_scope_close(&sc));
  /* A failed serialize frees the copies it made before failing. */
  iso_handle bad = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(bad), iso_get(bufs[2])));
  CHECK_OK(iso_array_push(iso, iso_get(bad), iso_get(ext)));
  m = (iso_message *)1;
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(bad), NULL, 0, NULL, &m),
                 ISO_ERR_DATA_CLONE,
                 "value[1]: an external without a delegate");
  CHECK(m == NULL);
  for (int i = 0; i < 4; i++) free(want[i]);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* Big stores are reused once released (Note [Big store reuse] in
 * isolate/array_buffer.c, Note [Copy store cache] in isolate/clone.c):
 * a new buffer must still read as zeros everywhere, and a copy must hold
 * exactly its source's bytes, whatever the reused memory held before. */
static void test_store_reuse(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  const size_t sizes[] = {(size_t)64 << 10, ((size_t)1 << 20) + 100,
                          (size_t)3 << 20};
  for (int round = 0; round < 6; round++) {
    size_t n = sizes[round % 3];
    iso_scope s;
    iso_scope_open(iso, &s);
    /* Dirty a buffer everywhere, then release its store three ways: a
     * detach, a transfer whose message is never received, and a copy
     * received and detached on the other side. */
    iso_handle a = iso_array_buffer_new(iso, n);
    iso_handle b = iso_array_buffer_new(iso, n);
    CHECK(a != NULL && b != NULL);
    unit_fill(iso_array_buffer_data(iso_get(a)), n, 70 + (uint64_t)round);
    unit_fill(iso_array_buffer_data(iso_get(b)), n, 80 + (uint64_t)round);
    iso_message *m = NULL, *c = NULL;
    CHECK_OK(iso_serialize(iso, iso_get(a), NULL, 0, NULL, &c));
    iso_value tl[1] = {iso_get(b)};
    CHECK_OK(iso_serialize(iso, iso_get(b), tl, 1, NULL, &m));
    iso_message_free(m);
    iso_handle got = iso_deserialize(other, c, NULL);
    CHECK(got != NULL);
    CHECK(memcmp(iso_array_buffer_data(iso_get(got)),
                 iso_array_buffer_data(iso_get(a)), n) == 0);
    CHECK_OK(iso_array_buffer_detach(other, iso_get(got)));
    CHECK_OK(iso_array_buffer_detach(iso, iso_get(a)));
    /* New buffers of the same size: zeros, wherever they came from. */
    for (int k = 0; k < 3; k++) {
      iso_handle z = iso_array_buffer_new(iso, n);
      CHECK(z != NULL);
      const unsigned char *p = iso_array_buffer_data(iso_get(z));
      size_t nonzero = 0;
      for (size_t i = 0; i < n; i++) nonzero += p[i] != 0;
      CHECK_UEQ(nonzero, 0);
    }
    /* A copy into a reused store: exactly the source's bytes. */
    iso_handle src = iso_array_buffer_new(iso, n);
    unit_fill(iso_array_buffer_data(iso_get(src)), n, 90 + (uint64_t)round);
    CHECK_OK(iso_serialize(iso, iso_get(src), NULL, 0, NULL, &c));
    got = iso_deserialize(other, c, NULL);
    CHECK(got != NULL);
    CHECK_UEQ(iso_array_buffer_byte_length(iso_get(got)), n);
    CHECK(memcmp(iso_array_buffer_data(iso_get(got)),
                 iso_array_buffer_data(iso_get(src)), n) == 0);
    CHECK_OK(iso_scope_close(&s));
  }
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* The same type id in another runtime, with another layout. */
static void test_type_ids(void) {
  iso_runtime *rt2 = iso_runtime_new(NULL);
  iso_runtime *rt3 = iso_runtime_new(NULL);
  iso_type a = unit_register(rt2, "t.a", 2, 0);
  iso_type b = unit_register(rt3, "t.b", 3, 0);
  CHECK_EQ(a, b);
  iso_type a2 = unit_register(rt2, "t.a2", 1, 8);
  iso_type b2 = unit_register(rt3, "t.b2", 1, 16);
  CHECK_EQ(a2, b2);
  iso_isolate *x = iso_isolate_new(rt2, NULL);
  iso_isolate *y = iso_isolate_new(rt3, NULL);
  iso_message *m;
  iso_handle r = iso_record_new(x, a);
  CHECK_OK(iso_serialize(x, iso_get(r), NULL, 0, NULL, &m));
  CHECK_FAILS(iso_deserialize(y, m, NULL), == NULL, ISO_ERR_DATA_CLONE,
              "3 slots and 0 raw bytes, the message says 2 and 0");
  iso_message_free(m);
  r = iso_record_new(x, a2);
  CHECK_OK(iso_serialize(x, iso_get(r), NULL, 0, NULL, &m));
  CHECK_FAILS(iso_deserialize(y, m, NULL), == NULL, ISO_ERR_DATA_CLONE,
              "16 raw bytes");
  iso_message_free(m);
  CHECK_OK(iso_isolate_free(x));
  CHECK_OK(iso_isolate_free(y));
  CHECK_OK(iso_runtime_free(rt2));
  CHECK_OK(iso_runtime_free(rt3));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  node_t = unit_register(rt, "clone.node", 2, 0);
  host_t = unit_register(rt, "clone.host", 1, 8);
  RUN(test_ports);
  RUN(test_messages);
  RUN(test_out_of_line_copies);
  RUN(test_store_reuse);
  RUN(test_type_ids);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
