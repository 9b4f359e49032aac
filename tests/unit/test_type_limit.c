/*
 * The type registry's limit: registering types until the runtime refuses
 * must end in ISO_ERR_LIMIT near 65,000 types, and every type registered
 * before keeps working.
 *
 * A program of its own because it registers 65,000 types: its run time
 * shows how registration scales with the number of types.
 */
#include "helpers.h"

static void test_type_limit(void) {
  iso_runtime *rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  unsigned ok = 0;
  iso_type last = 0;
  iso_clear_error();
  for (unsigned i = 0; i < 70000; i++) {
    char name[32];
    snprintf(name, sizeof name, "T%u", i);
    iso_type_desc d = unit_desc(name, 1, 0);
    iso_type t = iso_type_register(rt, &d);
    if (t == 0) break;
    last = t;
    ok++;
  }
  CHECK_ERROR(ISO_ERR_LIMIT, "type|limit|many");
  /* "when 65,000 types exist", built-ins included or not. */
  CHECK_LE(ok, 65000);
  CHECK_GE(ok, 64000);
  /* Registered types still work after the limit. */
  char name[32];
  snprintf(name, sizeof name, "T%u", ok - 1);
  CHECK_EQ(iso_type_find(rt, name), last);
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_handle r = iso_record_new(iso, last);
  CHECK(r != NULL);
  CHECK_EQ(iso_type_of(iso_get(r)), last);
  CHECK_OK(iso_isolate_free(iso));
  CHECK_OK(iso_runtime_free(rt));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  RUN(test_type_limit);
  return unit_done();
}
