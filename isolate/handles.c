/*
 * Handles, scopes and globals: the isolate's precise roots.
 *
 * Handles live in a stack of blocks (isolate_handle_block). Every block
 * before the current one is full, so the live handles are exactly
 * hfirst..hcur up to handle_top: the scavenger and the marker visit those
 * and nothing else. A scope remembers the handle top at its open (and one
 * reserved slot below it for iso_scope_escape); closing restores it. The
 * inline paths in isolate.h handle the common case of a scope that opened
 * and closed in the same block; the functions here handle block changes.
 *
 * Globals are a doubly linked list of malloc'd nodes, each one a root.
 */
#include <stdlib.h>
#include <string.h>

#include "isolate_internal.h"

iso_handle iso_inl_handle_slow(iso_isolate *iso, iso_value v) {
  isolate_handle_block *b = iso->hcur->next;
  if (!b) {
    b = iso->hspare;
    if (b) {
      iso->hspare = NULL;
    } else {
      b = malloc(sizeof *b);
      if (!b) {
        isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                     "out of memory for a handle block");
        return NULL;
      }
    }
    b->next = NULL;
    b->prev = iso->hcur;
    iso->hcur->next = b;
  }
  iso->hcur = b;
  iso->inl.handle_top = b->slots + 1;
  iso->inl.handle_limit = b->slots + ISOLATE_HANDLE_BLOCK_SLOTS;
  b->slots[0] = v;
  return &b->slots[0];
}

static void release_blocks_after(iso_isolate *iso, isolate_handle_block *b) {
  isolate_handle_block *n = b->next;
  b->next = NULL;
  while (n) {
    isolate_handle_block *next = n->next;
    if (!iso->hspare) {
      iso->hspare = n;
    } else {
      free(n);
    }
    n = next;
  }
}

void iso_inl_scope_close_slow(iso_scope *s) {
  iso_isolate *iso = s->isolate;
  isolate_handle_block *b = iso->hcur;
  while (b->slots + ISOLATE_HANDLE_BLOCK_SLOTS != s->saved_limit) b = b->prev;
  release_blocks_after(iso, b);
  iso->hcur = b;
  iso->inl.handle_top = s->escape_slot;
  iso->inl.handle_limit = s->saved_limit;
}

iso_status iso_inl_scope_error(iso_scope *s) {
  if (!s || !s->isolate)
    return isolate_fail(ISO_ERR_SCOPE, "scope is NULL or was never opened");
  if (s->escape_slot == NULL)
    return isolate_fail(ISO_ERR_SCOPE,
                        "scope failed to open (out of memory)");
  return isolate_fail(ISO_ERR_SCOPE,
                      "scope is not the innermost open scope (closed or "
                      "escaped already, or an inner scope is still open)");
}

void isolate_visit_roots(iso_isolate *iso, isolate_root_visitor fn,
                         void *ctx) {
  for (isolate_handle_block *b = iso->hfirst; b; b = b->next) {
    iso_value *end = b == iso->hcur ? iso->inl.handle_top
                                    : b->slots + ISOLATE_HANDLE_BLOCK_SLOTS;
    for (iso_value *p = b->slots; p < end; p++) fn(iso, p, ctx);
    if (b == iso->hcur) break;
  }
  for (iso_global *g = iso->globals; g; g = g->next) fn(iso, &g->value, ctx);
}

size_t isolate_handle_count(iso_isolate *iso) {
  size_t n = 0;
  for (isolate_handle_block *b = iso->hfirst; b; b = b->next) {
    if (b == iso->hcur) return n + (size_t)(iso->inl.handle_top - b->slots);
    n += ISOLATE_HANDLE_BLOCK_SLOTS;
  }
  return n;
}

void isolate_handles_free(iso_isolate *iso) {
  isolate_handle_block *b = iso->hfirst;
  while (b) {
    isolate_handle_block *n = b->next;
    free(b);
    b = n;
  }
  free(iso->hspare);
  iso->hfirst = iso->hcur = iso->hspare = NULL;
  iso_global *g = iso->globals;
  while (g) {
    iso_global *n = g->next;
    free(g);
    g = n;
  }
  iso->globals = NULL;
}

iso_global *iso_global_new(iso_isolate *iso, iso_value v) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  iso_global *g = malloc(sizeof *g);
  if (!g) {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY, "iso_global_new: out of memory");
    return NULL;
  }
  g->value = v;
  g->prev = NULL;
  g->next = iso->globals;
  if (iso->globals) iso->globals->prev = g;
  iso->globals = g;
  iso->global_count++;
  return g;
}

void iso_global_free(iso_isolate *iso, iso_global *g) {
  if (ISOLATE_CHECK(iso) != ISO_OK || !g) return;
  if (g->prev) {
    g->prev->next = g->next;
  } else {
    iso->globals = g->next;
  }
  if (g->next) g->next->prev = g->prev;
  iso->global_count--;
  free(g);
}

iso_handle iso_global_get(iso_isolate *iso, iso_global *g) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (!g) return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT, "iso_global_get: NULL");
  return iso_handle_new(iso, g->value);
}

iso_value iso_global_value(iso_global *g) {
  return g ? g->value : ISO_UNDEFINED;
}

void iso_global_set(iso_isolate *iso, iso_global *g, iso_value v) {
  if (ISOLATE_CHECK(iso) != ISO_OK || !g) return;
  g->value = v;
}

iso_value iso_inl_record_alloc_slow(iso_isolate *iso, iso_type type, size_t n,
                                    const iso_value *init) {
  /* The handle the slow path makes lives only in this scope, so a caller
   * that never closes its own scope does not accumulate handles. */
  if (ISOLATE_CHECK(iso) != ISO_OK) return 0;
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle h = iso_inl_record_new_slow(iso, type, n, init);
  iso_value v = h ? *h : 0;
  iso_scope_close(&s);
  return v;
}
