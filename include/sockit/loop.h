/* sockit/loop.h - the event loop: fd watchers, timers, signals, deferred work.
 *
 * One loop per thread. epoll, level-triggered. The loop knows nothing of any
 * protocol: it tells a watcher its fd is ready, fires timers in deadline
 * order, turns signals into ordinary callbacks, and runs deferred callbacks
 * once the current round of events is dispatched - the place to free a
 * connection that asked to close from inside its own callback.
 *
 * Watchers and timers are structs the caller embeds in its own objects; the
 * loop keeps pointers to them, never copies, never frees them.
 *
 * A descriptor epoll cannot watch (a regular file, /dev/null) is accepted
 * too: the loop reports it ready for what was asked on every round, which
 * is the truth for such files.
 */
#ifndef SOCKIT_LOOP_H
#define SOCKIT_LOOP_H

#include <stdint.h>

#include "sockit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_loop sk_loop_t;
typedef struct sk_io sk_io_t;
typedef struct sk_timer sk_timer_t;

#define SK_READABLE 0x1u
#define SK_WRITABLE 0x2u
#define SK_HANGUP 0x4u /* reported only, with READABLE: error or hang-up */

typedef void (*sk_io_cb)(sk_loop_t *loop, sk_io_t *io, unsigned events);
typedef void (*sk_timer_cb)(sk_loop_t *loop, sk_timer_t *t);
typedef void (*sk_signal_cb)(sk_loop_t *loop, int signo, void *data);
typedef void (*sk_defer_cb)(sk_loop_t *loop, void *data);

/* An fd watcher. Fill cb and data; the rest is the loop's. */
struct sk_io {
  int fd;
  unsigned events; /* what is being watched; 0 = not watched */
  sk_io_cb cb;
  void *data;
  /* private */
  int active;       /* registered with a loop */
  int in_epoll;     /* currently in the epoll set (events != 0) */
  int always_ready; /* epoll refused the fd (regular file) */
  sk_io_t *ready_next, *ready_prev;
  sk_io_t *all_next, *all_prev; /* every active watcher of the loop */
};

/* A one-shot or repeating timer. Fill cb and data; the rest is the loop's. */
struct sk_timer {
  sk_timer_cb cb;
  void *data;
  /* private: the loop's timer heap lives in its timers */
  uint64_t deadline_ms, repeat_ms, seq;
  sk_timer_t *left, *right, *up;
  int armed;
};

/* Creates a loop. Returns 0 or a negative errno. */
SK_API int sk_loop_new(sk_loop_t **out);
/* Frees the loop. Callbacks still deferred run first (work deferred after
 * sk_loop_run returned, such as a cancelled handshake's free), as in
 * sk_loop_stop; watchers and timers still registered are forgotten, not
 * called. Signals it handled get their default disposition back. */
SK_API void sk_loop_free(sk_loop_t *loop);

/* Runs until sk_loop_stop is called or nothing at all is left to wait for
 * (no watcher, timer or signal). Returns 0, or a negative errno if epoll
 * itself failed. */
SK_API int sk_loop_run(sk_loop_t *loop);
/* Makes sk_loop_run return after the current round. Safe from a signal
 * handler and from another thread (wakes the loop through an eventfd).
 * Callbacks still deferred then run before sk_loop_run returns, and those
 * they defer too (up to 16 rounds), so deferred frees are not lost. */
SK_API void sk_loop_stop(sk_loop_t *loop);
/* Wakes a sleeping loop without stopping it (signal- and thread-safe). */
SK_API void sk_loop_wake(sk_loop_t *loop);

/* The loop's cached monotonic clock in milliseconds, refreshed each round. */
SK_API uint64_t sk_loop_now(const sk_loop_t *loop);
/* Refreshes the cached clock now. */
SK_API void sk_loop_update_time(sk_loop_t *loop);

/* Starts or changes watching fd for events (SK_READABLE|SK_WRITABLE) with
 * io->cb. events == 0 keeps the watcher registered but silent. Returns 0 or
 * a negative errno. io is borrowed until sk_io_stop. */
SK_API int sk_io_start(sk_loop_t *loop, sk_io_t *io, int fd, unsigned events);
SK_API int sk_io_set(sk_loop_t *loop, sk_io_t *io, unsigned events);
/* Stops watching (does not close the fd). Safe from any callback, including
 * io's own; a pending event for io in the current round is dropped. */
SK_API void sk_io_stop(sk_loop_t *loop, sk_io_t *io);
/* 1 if io is registered with a loop. */
SK_API int sk_io_active(const sk_io_t *io);

/* Initialises a timer (not armed). */
SK_API void sk_timer_init(sk_timer_t *t, sk_timer_cb cb, void *data);
/* Arms t to fire after timeout_ms, then every repeat_ms if repeat_ms > 0.
 * Re-arming an armed timer moves it. Returns 0: it cannot fail (the heap
 * is linked through the timers, nothing is allocated), so callers may
 * ignore the result. */
SK_API int sk_timer_start(sk_loop_t *loop, sk_timer_t *t, uint64_t timeout_ms,
                          uint64_t repeat_ms);
SK_API void sk_timer_stop(sk_loop_t *loop, sk_timer_t *t);
SK_API int sk_timer_active(const sk_timer_t *t);

/* Calls cb(loop, signo, data) from the loop when signo arrives (through a
 * self-pipe written by an async-signal-safe handler). One loop per process
 * may handle a given signal. cb == NULL restores the default. Returns 0 or
 * a negative errno. */
SK_API int sk_loop_signal(sk_loop_t *loop, int signo, sk_signal_cb cb, void *data);

/* Runs cb(loop, data) once, after the events of the current round are
 * dispatched (or on the next round if called outside dispatch). Returns 0 or
 * -ENOMEM. */
SK_API int sk_loop_defer(sk_loop_t *loop, sk_defer_cb cb, void *data);

#ifdef __cplusplus
}
#endif
#endif
