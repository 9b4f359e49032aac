/*
 * Structured clone of graphs of any depth: a 1,000,000-long linked list
 * of records (with the link in the first slot and in the last), arrays
 * nested a million deep, a long chain of maps, and deep lists cloned
 * through a small young generation (many collections while the copy is
 * half built) and under GC stress. Neither the serializer nor the
 * deserializer may recurse on the C stack: the test also runs the clones
 * on a thread with a 256 KiB stack, where recursion of that depth would
 * crash at once.
 */
#include <pthread.h>

#include "clone_check.h"

/* A million; in builds where every isolate collects every few
 * allocations (-Dgc_stress), building that much would take hours, so
 * those use a shorter list (depth is what matters, and the small-stack
 * thread still catches any recursion). */
#ifndef UNIT_GC_STRESS
#define UNIT_GC_STRESS 0
#endif
#define LIST_LEN (UNIT_GC_STRESS ? 20000 : 1000000)
#define MAP_CHAIN_LEN (UNIT_GC_STRESS ? 5000 : 100000)

static iso_runtime *rt;
static iso_type node_t; /* slots: link, value */
static iso_type tail_t; /* slots: value, link (the link last) */

/* A list of n records, value i at position i; link_slot says where. */
static iso_handle make_list(iso_isolate *iso, iso_type t, uint32_t link,
                            size_t n) {
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle head = iso_handle_new(iso, ISO_NULL);
  for (size_t k = n; k-- > 0;) {
    iso_value init[2];
    init[link] = iso_get(head);
    init[1 - link] = iso_smi((int64_t)k);
    iso_handle r = iso_record_new_v(iso, t, 2, init);
    CHECK(r != NULL);
    iso_handle_set(head, iso_get(r));
  }
  return iso_scope_escape(&s, head);
}

/* Walks a cloned list: n records of type t, values 0..n-1, distinct from
 * the original's records, ending in null. */
static void check_list(iso_value copy, iso_value orig, iso_type t,
                       uint32_t link, size_t n) {
  iso_value c = copy, o = orig;
  size_t k = 0, bad = 0;
  while (c != ISO_NULL && k <= n) {
    if (iso_type_of(c) != t || c == o ||
        iso_record_slot(c, 1 - link) != iso_smi((int64_t)k))
      bad++;
    c = iso_record_slot(c, link);
    o = iso_record_slot(o, link);
    k++;
  }
  CHECK_UEQ(k, n);
  CHECK_UEQ(bad, 0);
}

typedef struct job {
  int which; /* 0: link first, 1: link last */
  int ok;
} job;

static void *list_job(void *arg) {
  job *j = arg;
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_isolate *other = iso_isolate_new(rt, NULL);
  CHECK(iso && other);
  iso_type t = j->which ? tail_t : node_t;
  uint32_t link = j->which ? 1 : 0;
  iso_handle list = make_list(iso, t, link, LIST_LEN);
  iso_handle c = iso_structured_clone(iso, iso_get(list), NULL, 0);
  CHECK(c != NULL);
  check_list(iso_get(c), iso_get(list), t, link, LIST_LEN);
  iso_handle_set(c, ISO_NULL);
  /* Through a message into another isolate (pretenured: it is big). */
  iso_message *m = NULL;
  CHECK_OK(iso_serialize(iso, iso_get(list), NULL, 0, NULL, &m));
  CHECK_UGE(iso_message_size(m), (size_t)LIST_LEN * 4);
  iso_handle d = iso_deserialize(other, m, NULL);
  CHECK(d != NULL);
  check_list(iso_get(d), iso_get(list), t, link, LIST_LEN);
  CHECK_OK(iso_gc(other, ISO_GC_FULL));
  check_list(iso_get(d), iso_get(list), t, link, LIST_LEN);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
  j->ok = 1;
  return NULL;
}

/* Runs fn on a thread with a small stack: recursion as deep as the
 * graphs here would overflow it. */
static void on_small_stack(void *(*fn)(void *), void *arg) {
  pthread_attr_t a;
  pthread_t th;
  CHECK_EQ(pthread_attr_init(&a), 0);
  CHECK_EQ(pthread_attr_setstacksize(&a, 256 * 1024), 0);
  CHECK_EQ(pthread_create(&th, &a, fn, arg), 0);
  CHECK_EQ(pthread_join(th, NULL), 0);
  pthread_attr_destroy(&a);
}

static void test_million_list_link_first(void) {
  job j = {0, 0};
  on_small_stack(list_job, &j);
  CHECK(j.ok);
}

static void test_million_list_link_last(void) {
  job j = {1, 0};
  on_small_stack(list_job, &j);
  CHECK(j.ok);
}

/* Arrays nested a million deep, built with scopes so the handles do not
 * pile up. */
static void *nested_arrays(void *arg) {
  int *ok = arg;
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_handle nest = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(nest), iso_smi(42)));
  for (int i = 0; i < LIST_LEN; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle up = iso_array_new(iso, 1);
    CHECK(up != NULL);
    CHECK_OK(iso_array_set(iso, iso_get(up), 0, iso_get(nest)));
    iso_handle_set(nest, iso_get(up));
    CHECK_OK(iso_scope_close(&s));
  }
  iso_handle c = iso_structured_clone(iso, iso_get(nest), NULL, 0);
  CHECK(c != NULL);
  iso_value x = iso_get(c), o = iso_get(nest);
  size_t depth = 0, bad = 0;
  while (iso_kind_of(x) == ISO_KIND_ARRAY) {
    if (x == o || iso_array_length(x) != 1) bad++;
    iso_scope s;
    iso_scope_open(iso, &s);
    x = iso_get(iso_array_get(iso, x, 0));
    o = iso_get(iso_array_get(iso, o, 0));
    CHECK_OK(iso_scope_close(&s));
    depth++;
  }
  CHECK_UEQ(depth, LIST_LEN + 1);
  CHECK_UEQ(bad, 0);
  CHECK(x == iso_smi(42));
  CHECK_OK(iso_isolate_free(iso));
  *ok = 1;
  return NULL;
}

static void test_million_nested_arrays(void) {
  int ok = 0;
  on_small_stack(nested_arrays, &ok);
  CHECK(ok);
}

/* A chain of maps, each the value of the next one's only entry. */
static void test_map_chain(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_handle chain = iso_handle_new(iso, ISO_NULL);
  iso_handle key = iso_string_from_cstr(iso, "next");
  for (int i = 0; i < MAP_CHAIN_LEN; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle m = iso_map_new(iso);
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(key), iso_get(chain)));
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(i), iso_get(m)));
    iso_handle_set(chain, iso_get(m));
    CHECK_OK(iso_scope_close(&s));
  }
  iso_handle c = iso_structured_clone(iso, iso_get(chain), NULL, 0);
  CHECK(c != NULL);
  size_t objects = 0;
  CHECK(clone_same_n(iso, iso_get(chain), iso_get(c), &objects));
  /* The maps; the short key has no identity. */
  CHECK_UEQ(objects, MAP_CHAIN_LEN);
  CHECK_OK(iso_isolate_free(iso));
}

/* Deep lists through a small young generation and under GC stress: the
 * deserializer's roots must hold while the collector moves its work. */
static void test_deep_list_collecting(void) {
  iso_isolate_params p = unit_params();
  p.max_young_generation_size = 512 * 1024;
  /* The list survives whole: without this flag the isolate would soon
   * allocate it, and the clone, in the old space, where nothing moves. */
  p.flags |= ISO_ISOLATE_NO_PRETENURING;
  iso_isolate *small = iso_isolate_new(rt, &p);
  /* Short enough (under 256 KiB of message) to be built young. */
  iso_handle list = make_list(small, tail_t, 1, 30000);
  iso_gc_statistics_t before = unit_gc_stats(small);
  iso_handle c = iso_structured_clone(small, iso_get(list), NULL, 0);
  CHECK(c != NULL);
  iso_gc_statistics_t after = unit_gc_stats(small);
  CHECK_GT(after.scavenge.count, before.scavenge.count);
  check_list(iso_get(c), iso_get(list), tail_t, 1, 30000);
  CHECK_OK(iso_heap_verify(small));
  CHECK_OK(iso_isolate_free(small));

  p = unit_params();
  p.stress_scavenge_every = 11;
  p.stress_full_every = 503;
  iso_isolate *st = iso_isolate_new(rt, &p);
  list = make_list(st, node_t, 0, 20000);
  for (int r = 0; r < 3; r++) {
    iso_scope s;
    iso_scope_open(st, &s);
    c = iso_structured_clone(st, iso_get(list), NULL, 0);
    CHECK(c != NULL);
    check_list(iso_get(c), iso_get(list), node_t, 0, 20000);
    CHECK_OK(iso_scope_close(&s));
  }
  CHECK_OK(iso_heap_verify(st));
  CHECK_OK(iso_isolate_free(st));
}

/* The ring of the benchmark's payload (e): 1,000 {next, value} objects,
 * last linked to the first. */
static void test_ring(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_handle first = iso_record_new(iso, node_t);
  iso_handle cur = iso_handle_new(iso, iso_get(first));
  for (int i = 1; i < 1000; i++) {
    iso_value init[2] = {ISO_NULL, iso_smi(i)};
    iso_handle n = iso_record_new_v(iso, node_t, 2, init);
    CHECK_OK(iso_record_set(iso, iso_get(cur), 0, iso_get(n)));
    iso_handle_set(cur, iso_get(n));
  }
  CHECK_OK(iso_record_set(iso, iso_get(cur), 0, iso_get(first)));
  iso_handle c = iso_structured_clone(iso, iso_get(first), NULL, 0);
  size_t objects = 0;
  CHECK(clone_same_n(iso, iso_get(first), iso_get(c), &objects));
  CHECK_UEQ(objects, 1000);
  iso_value x = iso_get(c);
  for (int i = 0; i < 1000; i++) x = iso_record_slot(x, 0);
  CHECK(x == iso_get(c));
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  node_t = unit_register(rt, "deep.node", 2, 0);
  tail_t = unit_register(rt, "deep.tail", 2, 0);
  RUN(test_ring);
  RUN(test_million_list_link_first);
  RUN(test_million_list_link_last);
  RUN(test_million_nested_arrays);
  RUN(test_map_chain);
  RUN(test_deep_list_collecting);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
