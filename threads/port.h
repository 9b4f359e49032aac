/*
 * Message ports: the internal interface that structured clone, the event
 * loop and workers build on. Never installed.
 *
 * Ownership of a port (Note [Port ownership] in threads/port.c). Each side
 * of a channel has exactly one owner at a time:
 *   - the C program, through the raw iso_port* that iso_channel_new or
 *     iso_worker_spawn handed out;
 *   - a port value in one isolate (iso_port_to_value), which closes the
 *     port when it dies;
 *   - a message in flight (thr_port_take_from_value), which either hands
 *     it to a value in the receiving isolate (iso_port_to_value) or closes
 *     it when the message is freed unreceived (iso_port_close).
 * Closing is idempotent and releases the owner's reference; the channel's
 * memory goes when both sides are closed and no holder (a blocked receive,
 * an event loop, a worker, a port value) still references it.
 */
#ifndef THR_PORT_H
#define THR_PORT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "isolate.h"

/* ---- transfer, for structured clone ---- */

/* Would thr_port_take_from_value(v) succeed? (v is a port value that is
 * neither detached nor closed.) Never allocates; sets no error. */
bool thr_port_can_transfer(iso_value v);

/* Detaches the port value v of iso and returns its port, now owned by the
 * caller (a message): it must end in iso_port_to_value in the receiving
 * isolate or in iso_port_close. Any handler the isolate's event loop had
 * for the port is dropped. NULL, with the thread's error set, when v is
 * not a port value or its port was already transferred or closed; then
 * nothing changed. Owning thread of iso; never allocates. */
iso_port *thr_port_take_from_value(iso_isolate *iso, iso_value v);

/* ---- references, for holders that are not the owner ---- */

/* The caller must already hold a reference (or own the port). */
void thr_port_ref(iso_port *port);
/* May free the channel. Any thread. */
void thr_port_unref(iso_port *port);

/* Closes the port only if the C program still owns it (it was never made
 * a value or transferred): what a worker does with its parent port when
 * its entry returns. */
void thr_port_close_if_unowned(iso_port *port);

/* ---- receiving without blocking, for the event loop ---- */

/* ISO_OK and the next message, ISO_ERR_TIMEOUT when the queue is empty,
 * ISO_ERR_CLOSED when this side is closed or the peer closed and the
 * queue is drained. Sets no error. One receiver at a time. */
iso_status thr_port_try_receive(iso_port *port, iso_message **out);
/* Has this side been closed (by its owner, or by its value dying)? */
bool thr_port_closed(iso_port *port);

/* ---- blocking ---- */

/* The one place where the library blocks an isolate's thread on file
 * descriptors: poll() on fds[0..n-1] for up to timeout_ms (negative:
 * forever). A later park/unpark protocol wraps this function. Returns
 * poll()'s result (EINTR is retried with the remaining time). */
int thr_block_poll(iso_isolate *iso, struct pollfd *fds, unsigned n,
                   int64_t timeout_ms);

/* ---- the event loop (threads/loop.c) ---- */

/* Forgets a port's message handler (a transfer took the port away). */
void thr_loop_forget_port(iso_isolate *iso, iso_port *port);
/* Frees iso's loop state (timers, handlers and their port references).
 * Owning thread, when the isolate is freed. */
void thr_loop_destroy(iso_isolate *iso);

#endif /* THR_PORT_H */
