/*
 * The page pool (gc/page.c), white-box: which free page it hands out.
 *
 * Past its retain size, a page given back to the pool is given back to
 * the OS as well and has to fault in again when it is next taken. The
 * pool must hand out the pages it kept committed first (Note [Committed
 * pages first]); a pool that took the page it had just decommitted,
 * while committed ones waited, made every young generation that grows
 * and shrinks pay its page faults again and again.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "page.h"

enum { RETAIN = 4, TAKEN = 12 };

/* Is the first OS page of p's area in memory? Computed, not read from
 * the header: a page given back to the OS has a zeroed header. */
static bool area_resident(gc_page *p) {
  unsigned char v = 0;
  CHECK_EQ(mincore((char *)p + GC_PAGE_HEADER_SIZE,
                   (size_t)sysconf(_SC_PAGESIZE), &v),
           0);
  return (v & 1) != 0;
}

static bool in(gc_page *p, gc_page *const *set, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (set[i] == p) return true;
  return false;
}

static void test_committed_pages_first(void) {
  gc_pool *pool = gc_pool_new((size_t)RETAIN * GC_PAGE_SIZE, false);
  CHECK(pool != NULL);
  gc_page *pages[TAKEN];
  for (size_t i = 0; i < TAKEN; i++) {
    pages[i] = gc_pool_take(pool, NULL, GC_PAGE_OLD, false);
    CHECK(pages[i] != NULL);
    memset(pages[i]->area_start, 0x5a, GC_PAGE_AREA);
    CHECK(area_resident(pages[i]));
  }
  /* The first RETAIN given back stay committed, the rest go to the OS. */
  for (size_t i = 0; i < TAKEN; i++) gc_pool_give(pool, pages[i]);
  for (size_t i = 0; i < TAKEN; i++)
    CHECK_EQ(area_resident(pages[i]), i < RETAIN);
  size_t mapped = 0, free_bytes = 0;
  gc_pool_usage(pool, &mapped, &free_bytes);
  CHECK_UEQ(free_bytes, (size_t)TAKEN * GC_PAGE_SIZE);

  /* Taken again: the committed ones first, though given back earliest. */
  gc_page *again[RETAIN + 1];
  for (size_t i = 0; i < RETAIN; i++) {
    again[i] = gc_pool_take(pool, NULL, GC_PAGE_OLD, false);
    CHECK(again[i] != NULL);
    CHECK(in(again[i], pages, RETAIN));
    CHECK(area_resident(again[i]));
    CHECK_EQ(again[i]->flags, GC_PAGE_OLD);
  }
  /* Then a decommitted one, whose header the pool set up again. */
  again[RETAIN] = gc_pool_take(pool, NULL, GC_PAGE_YOUNG, false);
  CHECK(again[RETAIN] != NULL);
  CHECK(in(again[RETAIN], pages + RETAIN, TAKEN - RETAIN));
  CHECK(!area_resident(again[RETAIN]));
  CHECK_EQ(again[RETAIN]->flags, GC_PAGE_YOUNG);
  CHECK(again[RETAIN]->area_start ==
        (char *)again[RETAIN] + GC_PAGE_HEADER_SIZE);
  gc_pool_usage(pool, &mapped, &free_bytes);
  CHECK_UEQ(free_bytes, (size_t)(TAKEN - RETAIN - 1) * GC_PAGE_SIZE);

  /* None committed waits now: of the five given back (all written), the
   * first RETAIN stay committed and the last goes to the OS. */
  memset(again[RETAIN]->area_start, 0x5a, GC_PAGE_AREA);
  CHECK(area_resident(again[RETAIN]));
  for (size_t i = 0; i <= RETAIN; i++) gc_pool_give(pool, again[i]);
  for (size_t i = 0; i < RETAIN; i++) CHECK(area_resident(again[i]));
  CHECK(!area_resident(again[RETAIN]));
  gc_pool_free(pool);
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  RUN(test_committed_pages_first);
  return unit_done();
}
