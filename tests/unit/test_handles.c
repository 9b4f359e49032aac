/*
 * Handles, scopes and globals: what they keep alive, what closing a scope
 * releases, and the scope discipline errors.
 *
 * Whether an object is alive is observed from the outside through
 * iso_heap_object_statistics(): after a full GC, the count of a record
 * type is the number of its instances still reachable.
 */
#include "helpers.h"

static iso_runtime *rt;
static iso_type probe; /* slot 0: a payload; raw: the record's number */

static iso_isolate *new_isolate(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  return iso;
}

static iso_handle new_probe(iso_isolate *iso, uint64_t n) {
  iso_handle r = iso_record_new(iso, probe);
  CHECK(r != NULL);
  uint64_t *raw = iso_record_raw(iso_get(r));
  CHECK(raw != NULL);
  *raw = n;
  return r;
}

static uint64_t probe_number(iso_value r) {
  CHECK_EQ(iso_type_of(r), probe);
  return *(uint64_t *)iso_record_raw(r);
}

static void test_handle_basics(void) {
  iso_isolate *iso = new_isolate();
  iso_handle h = iso_handle_new(iso, iso_smi(42));
  CHECK(h != NULL);
  CHECK_EQ(iso_smi_value(iso_get(h)), 42);
  iso_handle_set(h, ISO_TRUE);
  CHECK(iso_get(h) == ISO_TRUE);
  /* A handle to a heap object follows it when the collector moves it. */
  iso_handle s = iso_string_from_cstr(iso, "tracked");
  iso_handle s2 = iso_handle_new(iso, iso_get(s));
  CHECK(s2 != NULL && s2 != s);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK(iso_get(s) == iso_get(s2));
  CHECK_STRING(iso_get(s2), "tracked");
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK(iso_get(s) == iso_get(s2));
  CHECK_STRING(iso_get(s), "tracked");
  CHECK_OK(iso_isolate_free(iso));
}

static void test_close_releases(void) {
  iso_isolate *iso = new_isolate();
  CHECK_UEQ(unit_type_count(iso, probe), 0);
  iso_scope s;
  iso_scope_open(iso, &s);
  for (int i = 0; i < 10; i++) new_probe(iso, (uint64_t)i);
  CHECK_UEQ(unit_type_count(iso, probe), 10);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 10); /* still held by the scope */
  CHECK_OK(iso_scope_close(&s));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 0);

  /* The same through minor GCs only: young garbage dies in a scavenge. */
  iso_scope_open(iso, &s);
  for (int i = 0; i < 10; i++) new_probe(iso, (uint64_t)i);
  CHECK_OK(iso_scope_close(&s));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_UEQ(unit_type_count(iso, probe), 0);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_escape(void) {
  iso_isolate *iso = new_isolate();
  iso_scope outer;
  iso_scope_open(iso, &outer);
  iso_handle kept_outer = new_probe(iso, 1000);

  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle keep = NULL;
  for (int i = 0; i < 20; i++) {
    iso_handle r = new_probe(iso, (uint64_t)i);
    iso_handle str = iso_string_from_cstr(iso, "escaped payload");
    CHECK_OK(iso_record_set(iso, iso_get(r), 0, iso_get(str)));
    if (i == 7) keep = r;
  }
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR)); /* move them while the scope is open */
  iso_handle esc = iso_scope_escape(&s, keep);
  CHECK(esc != NULL);
  CHECK_EQ(probe_number(iso_get(esc)), 7);

  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 2); /* the escaped one + outer */
  CHECK_EQ(probe_number(iso_get(esc)), 7);
  CHECK_STRING(iso_record_slot(iso_get(esc), 0), "escaped payload");
  CHECK_EQ(probe_number(iso_get(kept_outer)), 1000);

  /* Escaping an immediate and escaping NULL. */
  iso_scope s2;
  iso_scope_open(iso, &s2);
  iso_handle i5 = iso_handle_new(iso, iso_smi(5));
  iso_handle e5 = iso_scope_escape(&s2, i5);
  CHECK(e5 != NULL);
  CHECK_EQ(iso_smi_value(iso_get(e5)), 5);
  iso_scope_open(iso, &s2);
  iso_handle en = iso_scope_escape(&s2, NULL);
  CHECK(en != NULL && iso_get(en) == ISO_UNDEFINED);

  /* Closing the outer scope releases the escaped value too. */
  CHECK_OK(iso_scope_close(&outer));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 0);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_scope_errors(void) {
  iso_isolate *iso = new_isolate();
  iso_scope a, b;
  iso_scope_open(iso, &a);
  iso_handle ha = iso_string_from_cstr(iso, "in a");
  iso_scope_open(iso, &b);
  iso_handle hb = iso_string_from_cstr(iso, "in b");

  /* a is not innermost: closing or escaping it is refused... */
  CHECK_FAILS_ST(iso_scope_close(&a), ISO_ERR_SCOPE, "scope");
  CHECK_FAILS(iso_scope_escape(&a, ha), == NULL, ISO_ERR_SCOPE, "scope");
  /* ...and changes nothing: both scopes and their handles still work. */
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_STRING(iso_get(ha), "in a");
  CHECK_STRING(iso_get(hb), "in b");
  iso_handle e = iso_scope_escape(&b, hb);
  CHECK(e != NULL);
  CHECK_STRING(iso_get(e), "in b");

  /* b is gone: escaping or closing it again is an error. */
  CHECK_FAILS(iso_scope_escape(&b, hb), == NULL, ISO_ERR_SCOPE, "scope");
  CHECK_FAILS_ST(iso_scope_close(&b), ISO_ERR_SCOPE, "scope");
  CHECK_OK(iso_scope_close(&a));
  CHECK_FAILS_ST(iso_scope_close(&a), ISO_ERR_SCOPE, "scope");

  /* Escape twice from one scope. */
  iso_scope c;
  iso_scope_open(iso, &c);
  iso_handle hc = iso_string_from_cstr(iso, "in c");
  CHECK(iso_scope_escape(&c, hc) != NULL);
  CHECK_FAILS(iso_scope_escape(&c, hc), == NULL, ISO_ERR_SCOPE, "scope");

  /* The isolate still allocates and collects normally afterwards. */
  iso_handle after = iso_string_from_cstr(iso, "after");
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_STRING(iso_get(after), "after");
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_many_handles(void) {
  iso_isolate *iso = new_isolate();
  enum { N = 5000 }; /* several handle blocks */
  static iso_handle hs[N];
  iso_scope s;
  iso_scope_open(iso, &s);
  for (int i = 0; i < N; i++) {
    char text[32];
    snprintf(text, sizeof text, "handle %d", i);
    hs[i] = iso_string_from_cstr(iso, text);
    CHECK(hs[i] != NULL);
  }
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  for (int i = 0; i < N; i++) {
    char text[32];
    snprintf(text, sizeof text, "handle %d", i);
    CHECK_STRING(iso_get(hs[i]), text);
  }
  iso_handle last = iso_scope_escape(&s, hs[N - 1]);
  CHECK(last != NULL);
  CHECK_STRING(iso_get(last), "handle 4999");

  /* Many rounds of filling and closing reuse the handle space. */
  for (int round = 0; round < 20; round++) {
    iso_scope_open(iso, &s);
    for (int i = 0; i < 3000; i++)
      CHECK(iso_handle_new(iso, iso_smi(i)) != NULL);
    CHECK_OK(iso_scope_close(&s));
  }
  CHECK_STRING(iso_get(last), "handle 4999");

  /* Deep nesting, closed innermost first. */
  enum { DEPTH = 2000 };
  static iso_scope nest[DEPTH];
  static iso_handle nh[DEPTH];
  for (int i = 0; i < DEPTH; i++) {
    iso_scope_open(iso, &nest[i]);
    nh[i] = new_probe(iso, (uint64_t)i);
  }
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  for (int i = 0; i < DEPTH; i++) CHECK_EQ(probe_number(iso_get(nh[i])), i);
  for (int i = DEPTH - 1; i >= DEPTH / 2; i--)
    CHECK_OK(iso_scope_close(&nest[i]));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), DEPTH / 2);
  for (int i = 0; i < DEPTH / 2; i++) CHECK_EQ(probe_number(iso_get(nh[i])), i);
  for (int i = DEPTH / 2 - 1; i >= 0; i--) CHECK_OK(iso_scope_close(&nest[i]));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 0);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_globals(void) {
  iso_isolate *iso = new_isolate();
  iso_global *g, *g2, *gi;
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle r = new_probe(iso, 77);
  iso_handle str = iso_string_from_cstr(iso, "held by a global");
  CHECK_OK(iso_record_set(iso, iso_get(r), 0, iso_get(str)));
  g = iso_global_new(iso, iso_get(r));
  CHECK(g != NULL);
  g2 = iso_global_new(iso, iso_get(r)); /* two globals, one object */
  CHECK(g2 != NULL && g2 != g);
  gi = iso_global_new(iso, iso_smi(-3));
  CHECK(gi != NULL);
  new_probe(iso, 1); /* garbage once the scope closes */
  CHECK_OK(iso_scope_close(&s));

  /* The globals alone keep the record alive, through moves. */
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 1);
  CHECK(iso_global_value(g) == iso_global_value(g2));
  CHECK_EQ(probe_number(iso_global_value(g)), 77);
  CHECK_STRING(iso_record_slot(iso_global_value(g), 0), "held by a global");
  CHECK_EQ(iso_smi_value(iso_global_value(gi)), -3);

  /* iso_global_get: a handle in the current scope with the same value. */
  iso_scope_open(iso, &s);
  iso_handle h = iso_global_get(iso, g);
  CHECK(h != NULL);
  CHECK(iso_get(h) == iso_global_value(g));
  CHECK_OK(iso_scope_close(&s));

  /* Freeing one of two globals keeps the object; freeing both releases. */
  iso_global_free(iso, g2);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 1);
  CHECK_EQ(probe_number(iso_global_value(g)), 77);

  /* iso_global_set: the new target is kept, the old one released. */
  iso_scope_open(iso, &s);
  iso_handle r2 = new_probe(iso, 78);
  iso_global_set(iso, g, iso_get(r2));
  CHECK_OK(iso_scope_close(&s));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 1);
  CHECK_EQ(probe_number(iso_global_value(g)), 78);

  iso_global_free(iso, g);
  iso_global_free(iso, gi);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 0);

  /* Many globals, freed in a scattered order. */
  enum { N = 3000 };
  static iso_global *gs[N];
  for (int i = 0; i < N; i++) {
    iso_scope_open(iso, &s);
    gs[i] = iso_global_new(iso, iso_get(new_probe(iso, (uint64_t)i)));
    CHECK(gs[i] != NULL);
    CHECK_OK(iso_scope_close(&s));
  }
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  for (int i = 0; i < N; i += 2) iso_global_free(iso, gs[i]);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), N / 2);
  for (int i = 1; i < N; i += 2)
    CHECK_EQ(probe_number(iso_global_value(gs[i])), i);
  for (int i = 1; i < N; i += 2) iso_global_free(iso, gs[i]);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, probe), 0);

  /* Bad arguments. */
  CHECK_FAILS(iso_global_new(NULL, ISO_NULL), == NULL, ISO_ERR_ARGUMENT, "");
  CHECK_FAILS(iso_global_get(iso, NULL), == NULL, ISO_ERR_ARGUMENT, "");
  iso_global_free(iso, NULL); /* as free(NULL): nothing happens */
  CHECK_OK(iso_heap_verify(iso));

  /* Globals still alive when the isolate goes are released with it (the
   * sanitizer builds see a leak otherwise). */
  iso_scope_open(iso, &s);
  CHECK(iso_global_new(iso, iso_get(new_probe(iso, 5))) != NULL);
  CHECK_OK(iso_scope_close(&s));
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  probe = unit_register(rt, "Probe", 1, 8);
  RUN(test_handle_basics);
  RUN(test_close_releases);
  RUN(test_escape);
  RUN(test_scope_errors);
  RUN(test_many_handles);
  RUN(test_globals);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
