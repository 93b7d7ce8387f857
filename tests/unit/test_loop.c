/* tests/unit/test_loop.c - the event loop: timers, fd watchers, deferred
 * callbacks, signals, stop.
 *
 * Every run is bounded by a guard timer: a test whose expected events do not
 * happen sees the guard fire (and fails) instead of hanging. The expected
 * last event disarms the guard, so a loop that keeps running when nothing
 * is left is caught too. alarm() is the backstop of last resort.
 * Sleeps are used only to make several timers due at once, never to wait
 * for something to happen.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockit/loop.h"
#include "sockit/net.h"

#define GUARD_MS 3000

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
  sk_timer_t timer;
  int fired;
} guard_t;

static void guard_cb(sk_loop_t *loop, sk_timer_t *t) {
  guard_t *g = t->data;
  g->fired = 1;
  sk_loop_stop(loop);
}

static void guard_start(sk_loop_t *loop, guard_t *g) {
  g->fired = 0;
  sk_timer_init(&g->timer, guard_cb, g);
  assert_int_equal(sk_timer_start(loop, &g->timer, GUARD_MS, 0), 0);
}

static void guard_disarm(sk_loop_t *loop, guard_t *g) { sk_timer_stop(loop, &g->timer); }

static sk_loop_t *new_loop(void) {
  sk_loop_t *loop = NULL;
  assert_int_equal(sk_loop_new(&loop), 0);
  assert_non_null(loop);
  return loop;
}

static void run_loop(sk_loop_t *loop) { assert_int_equal(sk_loop_run(loop), 0); }

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void make_socketpair(int sv[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void close_pair(int sv[2]) {
  close(sv[0]);
  close(sv[1]);
}

/* An event log: callbacks append a character; tests compare strings. */
typedef struct {
  char text[256];
  size_t len;
} evlog_t;

static void log_add(evlog_t *l, char c) {
  if (l->len + 1 < sizeof l->text) {
    l->text[l->len++] = c;
    l->text[l->len] = '\0';
  }
}

/* ---- run with nothing to do --------------------------------------------- */

static void test_run_empty(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  run_loop(loop); /* nothing to wait for: returns at once */
  run_loop(loop);
  sk_loop_free(loop);
}

static void count_timer_cb(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  (*(int *)t->data)++;
}

static void stopper_loop_cb(sk_loop_t *loop, sk_timer_t *t) {
  (*(int *)t->data)++;
  sk_loop_stop(loop);
}

/* A loop with one one-shot timer returns after it fired. The guard is not
 * used here on purpose: the loop must see that nothing is left. */
static void test_run_returns_when_nothing_left(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  sk_timer_t t;
  int count = 0;
  sk_timer_init(&t, count_timer_cb, &count);
  assert_int_equal(sk_timer_start(loop, &t, 1, 0), 0);
  run_loop(loop);
  assert_int_equal(count, 1);
  assert_false(sk_timer_active(&t));
  sk_loop_free(loop);
}

static void test_now(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  sk_loop_update_time(loop);
  uint64_t a = sk_loop_now(loop);
  sleep_ms(50);
  assert_int_equal(sk_loop_now(loop), a); /* cached until refreshed */
  sk_loop_update_time(loop);
  uint64_t b = sk_loop_now(loop);
  assert_true(b >= a + 40); /* milliseconds, not seconds or microseconds */
  assert_true(b <= a + 10000);
  sk_loop_free(loop);
}

/* ---- timers --------------------------------------------------------------- */

typedef struct {
  sk_timer_t timer;
  uint64_t timeout;
  uint64_t start_now;
  uint64_t fired_now;
  int fired;
  uint64_t *order;
  size_t *norder;
  size_t cap;
} order_timer_t;

static void order_cb(sk_loop_t *loop, sk_timer_t *t) {
  order_timer_t *o = t->data;
  o->fired++;
  o->fired_now = sk_loop_now(loop);
  if (*o->norder < o->cap)
    o->order[*o->norder] = o->timeout;
  (*o->norder)++;
}

static void test_timers_fire_in_deadline_order(void **state) {
  (void)state;
  static const uint64_t timeouts[] = {30, 5, 20, 0, 15, 10, 25, 1, 40, 2};
  enum { N = sizeof timeouts / sizeof timeouts[0] };
  order_timer_t timers[N];
  uint64_t order[N];
  size_t norder = 0;
  sk_loop_t *loop = new_loop();
  sk_loop_update_time(loop);
  uint64_t start = sk_loop_now(loop);
  for (size_t i = 0; i < N; i++) {
    memset(&timers[i], 0, sizeof timers[i]);
    timers[i].timeout = timeouts[i];
    timers[i].start_now = start;
    timers[i].cap = N;
    timers[i].order = order;
    timers[i].norder = &norder;
    sk_timer_init(&timers[i].timer, order_cb, &timers[i]);
    assert_false(sk_timer_active(&timers[i].timer));
    assert_int_equal(sk_timer_start(loop, &timers[i].timer, timeouts[i], 0), 0);
    assert_true(sk_timer_active(&timers[i].timer));
  }
  run_loop(loop);
  assert_int_equal(norder, N);
  for (size_t i = 1; i < N; i++)
    if (order[i - 1] > order[i])
      fail_msg("timer %llu fired after timer %llu", (unsigned long long)order[i - 1],
               (unsigned long long)order[i]);
  for (size_t i = 0; i < N; i++) {
    assert_int_equal(timers[i].fired, 1);
    assert_false(sk_timer_active(&timers[i].timer));
    /* never early by the loop's own clock */
    if (timers[i].fired_now < start + timers[i].timeout)
      fail_msg("timer %llu fired at +%llu", (unsigned long long)timers[i].timeout,
               (unsigned long long)(timers[i].fired_now - start));
  }
  sk_loop_free(loop);
}

/* Timers made due at the same time by a pause still fire by deadline. */
static void test_timers_due_together_in_order(void **state) {
  (void)state;
  enum { N = 6 };
  static const uint64_t timeouts[N] = {6, 3, 5, 1, 4, 2};
  order_timer_t timers[N];
  uint64_t order[N];
  size_t norder = 0;
  sk_loop_t *loop = new_loop();
  sk_loop_update_time(loop);
  for (size_t i = 0; i < N; i++) {
    memset(&timers[i], 0, sizeof timers[i]);
    timers[i].timeout = timeouts[i];
    timers[i].cap = N;
    timers[i].order = order;
    timers[i].norder = &norder;
    sk_timer_init(&timers[i].timer, order_cb, &timers[i]);
    assert_int_equal(sk_timer_start(loop, &timers[i].timer, timeouts[i], 0), 0);
  }
  sleep_ms(30);
  run_loop(loop);
  assert_int_equal(norder, N);
  for (size_t i = 0; i < N; i++)
    assert_int_equal(order[i], i + 1);
  sk_loop_free(loop);
}

typedef struct {
  sk_timer_t timer;
  int count;
  int stop_at;
  uint64_t start, first, every;
  int early; /* a fire before its earliest allowed time */
} repeat_t;

static void repeat_cb(sk_loop_t *loop, sk_timer_t *t) {
  repeat_t *r = t->data;
  uint64_t earliest = r->start + r->first + (uint64_t)r->count * r->every;
  if (sk_loop_now(loop) < earliest)
    r->early = 1;
  r->count++;
  if (r->count == r->stop_at)
    sk_timer_stop(loop, t);
}

static void test_timer_repeat(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  repeat_t r[2];
  memset(r, 0, sizeof r);
  sk_loop_update_time(loop);
  r[0].start = r[1].start = sk_loop_now(loop);
  r[0].first = 0, r[0].every = 5, r[0].stop_at = 5;
  r[1].first = 10, r[1].every = 3, r[1].stop_at = 4;
  for (int i = 0; i < 2; i++) {
    sk_timer_init(&r[i].timer, repeat_cb, &r[i]);
    assert_int_equal(sk_timer_start(loop, &r[i].timer, r[i].first, r[i].every), 0);
  }
  run_loop(loop); /* returns once both stopped themselves */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(r[i].count, r[i].stop_at);
    assert_false(r[i].early);
    assert_false(sk_timer_active(&r[i].timer));
  }
  sk_loop_free(loop);
}

typedef struct {
  sk_timer_t timer;
  guard_t *guard;
  int count;
  int rearm_times;
  uint64_t fired_now;
} rearm_t;

static void rearm_cb(sk_loop_t *loop, sk_timer_t *t) {
  rearm_t *r = t->data;
  r->count++;
  r->fired_now = sk_loop_now(loop);
  if (r->count < r->rearm_times)
    assert_int_equal(sk_timer_start(loop, t, 1, 0), 0);
  else if (r->guard)
    guard_disarm(loop, r->guard);
}

static void test_timer_stop_restart(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  rearm_t r;
  memset(&r, 0, sizeof r);
  r.rearm_times = 1;
  r.guard = &guard;
  guard_start(loop, &guard);
  sk_timer_init(&r.timer, rearm_cb, &r);
  assert_false(sk_timer_active(&r.timer));
  assert_int_equal(sk_timer_start(loop, &r.timer, 10, 0), 0);
  assert_true(sk_timer_active(&r.timer));
  sk_timer_stop(loop, &r.timer);
  assert_false(sk_timer_active(&r.timer));
  sk_timer_stop(loop, &r.timer); /* twice is harmless */
  assert_false(sk_timer_active(&r.timer));

  /* re-arming an armed timer moves it: 10 s becomes 20 ms */
  sk_loop_update_time(loop);
  uint64_t start = sk_loop_now(loop);
  assert_int_equal(sk_timer_start(loop, &r.timer, 10000, 0), 0);
  assert_int_equal(sk_timer_start(loop, &r.timer, 20, 0), 0);
  assert_true(sk_timer_active(&r.timer));
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(r.count, 1);
  assert_true(r.fired_now >= start + 20);
  assert_false(sk_timer_active(&r.timer));

  /* a stopped timer never fires */
  int never = 0;
  sk_timer_t stopped;
  sk_timer_init(&stopped, count_timer_cb, &never);
  assert_int_equal(sk_timer_start(loop, &stopped, 1, 0), 0);
  sk_timer_stop(loop, &stopped);
  r.count = 0;
  guard_start(loop, &guard);
  assert_int_equal(sk_timer_start(loop, &r.timer, 20, 0), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(r.count, 1);
  assert_int_equal(never, 0);
  sk_loop_free(loop);
}

/* A one-shot timer that re-arms itself from its own callback. */
static void test_timer_rearm_from_callback(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  rearm_t r;
  memset(&r, 0, sizeof r);
  r.rearm_times = 4;
  r.guard = &guard;
  guard_start(loop, &guard);
  sk_timer_init(&r.timer, rearm_cb, &r);
  assert_int_equal(sk_timer_start(loop, &r.timer, 0, 0), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(r.count, 4);
  assert_false(sk_timer_active(&r.timer));
  sk_loop_free(loop);
}

typedef struct victim_timer victim_timer_t;
struct victim_timer {
  sk_timer_t timer;
  int count;
  victim_timer_t **others; /* stopped by whoever fires first */
  size_t nothers;
  int free_others;
};

static void victim_cb(sk_loop_t *loop, sk_timer_t *t) {
  victim_timer_t *v = t->data;
  v->count++;
  for (size_t i = 0; i < v->nothers; i++) {
    if (v->others[i] && v->others[i] != v) {
      sk_timer_stop(loop, &v->others[i]->timer);
      if (v->free_others) {
        free(v->others[i]);
        v->others[i] = NULL;
      }
    }
  }
}

/* Several timers due in the same round; the first to fire stops (or stops
 * and frees) all the others, which must then not fire. */
static void test_timer_stopped_by_other_never_fires(void **state) {
  (void)state;
  for (int free_others = 0; free_others < 2; free_others++) {
    enum { N = 4 };
    victim_timer_t *v[N];
    sk_loop_t *loop = new_loop();
    int total_before_free = 0;
    for (size_t i = 0; i < N; i++) {
      v[i] = calloc(1, sizeof *v[i]);
      assert_non_null(v[i]);
      v[i]->others = v;
      v[i]->nothers = N;
      v[i]->free_others = free_others;
      sk_timer_init(&v[i]->timer, victim_cb, v[i]);
      assert_int_equal(sk_timer_start(loop, &v[i]->timer, (uint64_t)(i % 2), 0), 0);
    }
    sleep_ms(10); /* every one of them is due */
    run_loop(loop);
    for (size_t i = 0; i < N; i++) {
      if (v[i]) {
        total_before_free += v[i]->count;
        assert_false(sk_timer_active(&v[i]->timer));
      }
    }
    if (free_others) {
      /* exactly one survivor: the one that fired */
      size_t alive = 0;
      for (size_t i = 0; i < N; i++)
        alive += v[i] != NULL;
      assert_int_equal(alive, 1);
    }
    assert_int_equal(total_before_free, 1);
    for (size_t i = 0; i < N; i++)
      free(v[i]);
    sk_loop_free(loop);
  }
}

/* Distinct deadlines, all due: the earliest stops the latest; the middle
 * one still fires. */
static void test_timer_stop_later_from_earlier(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  victim_timer_t a, b, c;
  victim_timer_t *a_targets[1] = {&c};
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&c, 0, sizeof c);
  a.others = a_targets;
  a.nothers = 1;
  sk_timer_init(&a.timer, victim_cb, &a);
  sk_timer_init(&b.timer, victim_cb, &b);
  sk_timer_init(&c.timer, victim_cb, &c);
  assert_int_equal(sk_timer_start(loop, &c.timer, 3, 0), 0);
  assert_int_equal(sk_timer_start(loop, &b.timer, 2, 0), 0);
  assert_int_equal(sk_timer_start(loop, &a.timer, 1, 0), 0);
  sleep_ms(20);
  run_loop(loop);
  assert_int_equal(a.count, 1);
  assert_int_equal(b.count, 1);
  assert_int_equal(c.count, 0);
  sk_loop_free(loop);
}

/* A timer that re-arms itself for 0 ms from its own callback is due again
 * at once; it must fire again on a later round, not in a loop inside this
 * one, or it starves every fd watcher (and sk_loop_stop) for as long as it
 * keeps re-arming. Here its first firing makes a socket readable; the
 * watcher must get its turn within a few firings, not after all of them. */
typedef struct {
  sk_timer_t timer;
  sk_io_t io;
  int wfd;
  int fires;
  int fires_when_io_ran; /* -1 until the watcher ran */
  guard_t *guard;
} spin_t;

enum { SPIN_MAX = 2000 };

static void spin_timer_cb(sk_loop_t *loop, sk_timer_t *t) {
  spin_t *s = t->data;
  if (s->fires++ == 0)
    assert_int_equal(write(s->wfd, "x", 1), 1);
  if (s->fires < SPIN_MAX && s->fires_when_io_ran < 0)
    assert_int_equal(sk_timer_start(loop, t, 0, 0), 0);
}

static void spin_io_cb(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  spin_t *s = io->data;
  (void)events;
  s->fires_when_io_ran = s->fires;
  sk_io_stop(loop, io);
  sk_timer_stop(loop, &s->timer);
  guard_disarm(loop, s->guard);
}

static void test_timer_zero_rearm_does_not_starve_io(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  spin_t s;
  int sv[2];
  make_socketpair(sv);
  memset(&s, 0, sizeof s);
  s.wfd = sv[1];
  s.fires_when_io_ran = -1;
  s.guard = &guard;
  guard_start(loop, &guard);
  sk_timer_init(&s.timer, spin_timer_cb, &s);
  s.io.cb = spin_io_cb;
  s.io.data = &s;
  assert_int_equal(sk_io_start(loop, &s.io, sv[0], SK_READABLE), 0);
  assert_int_equal(sk_timer_start(loop, &s.timer, 0, 0), 0);
  run_loop(loop);
  close_pair(sv);
  sk_loop_free(loop); /* before the checks, so a failure leaks nothing */
  assert_false(guard.fired);
  if (s.fires_when_io_ran < 0 || s.fires_when_io_ran > 10)
    fail_msg("the readable watcher ran only after %d firings of a timer re-armed "
             "for 0 ms (expected within a few rounds)",
             s.fires_when_io_ran);
}

/* ---- defer ------------------------------------------------------------------ */

typedef struct {
  evlog_t log;
  guard_t guard;
  int defers_run;
  int defers_expected;
  int in_callback;
  int ran_inside_callback;
} defer_ctx_t;

static void defer_cb(sk_loop_t *loop, void *data) {
  defer_ctx_t *d = data;
  if (d->in_callback)
    d->ran_inside_callback = 1;
  log_add(&d->log, 'D');
  if (++d->defers_run == d->defers_expected)
    guard_disarm(loop, &d->guard);
}

typedef struct {
  sk_io_t io;
  defer_ctx_t *ctx;
} defer_io_t;

static void defer_io_cb(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  defer_io_t *w = io->data;
  char c;
  assert_true(events & SK_READABLE);
  assert_int_equal(read(io->fd, &c, 1), 1);
  w->ctx->in_callback = 1;
  log_add(&w->ctx->log, 'W');
  assert_int_equal(sk_loop_defer(loop, defer_cb, w->ctx), 0);
  sk_io_stop(loop, io);
  w->ctx->in_callback = 0;
}

/* Two watchers ready in the same round each defer a callback: both
 * deferred callbacks run after both watchers, not inside them. */
static void test_defer_runs_after_dispatch(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  defer_ctx_t ctx;
  defer_io_t w[2];
  int sv[2][2];
  memset(&ctx, 0, sizeof ctx);
  ctx.defers_expected = 2;
  guard_start(loop, &ctx.guard);
  for (int i = 0; i < 2; i++) {
    make_socketpair(sv[i]);
    assert_int_equal(write(sv[i][1], "x", 1), 1);
    memset(&w[i], 0, sizeof w[i]);
    w[i].ctx = &ctx;
    w[i].io.cb = defer_io_cb;
    w[i].io.data = &w[i];
    assert_int_equal(sk_io_start(loop, &w[i].io, sv[i][0], SK_READABLE), 0);
  }
  run_loop(loop);
  assert_false(ctx.guard.fired);
  assert_false(ctx.ran_inside_callback);
  assert_string_equal(ctx.log.text, "WWDD");
  for (int i = 0; i < 2; i++)
    close_pair(sv[i]);
  sk_loop_free(loop);
}

static void defer_chain_cb(sk_loop_t *loop, void *data) {
  defer_ctx_t *d = data;
  log_add(&d->log, 'D');
  if (++d->defers_run == 1) {
    sk_loop_stop(loop); /* the round ends the loop ... */
    assert_int_equal(sk_loop_defer(loop, defer_chain_cb, d), 0); /* ... and defers more */
  }
}

/* Work deferred by a deferred callback that stops the loop (a handshake
 * that ends inside its first step, then frees its state later) still runs
 * before sk_loop_run returns; a watcher keeps the loop from ending alone. */
static void test_defer_runs_when_stopped(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  defer_ctx_t ctx;
  sk_timer_t keep;
  memset(&ctx, 0, sizeof ctx);
  sk_timer_init(&keep, NULL, NULL);
  assert_int_equal(sk_timer_start(loop, &keep, 60000, 0), 0);
  assert_int_equal(sk_loop_defer(loop, defer_chain_cb, &ctx), 0);
  assert_int_equal(sk_loop_run(loop), 0);
  assert_int_equal(ctx.defers_run, 2);
  assert_string_equal(ctx.log.text, "DD");
  sk_timer_stop(loop, &keep);
  sk_loop_free(loop);
}

static void count_cb(sk_loop_t *loop, void *data) {
  (void)loop;
  ++*(int *)data;
}

/* Work deferred after the loop returned (a cancelled handshake's free)
 * runs in sk_loop_free rather than being lost. */
static void test_defer_runs_in_free(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  int ran = 0;
  assert_int_equal(sk_loop_defer(loop, count_cb, &ran), 0);
  assert_int_equal(ran, 0);
  sk_loop_free(loop);
  assert_int_equal(ran, 1);
}

static void defer_timer_cb(sk_loop_t *loop, sk_timer_t *t) {
  defer_ctx_t *d = t->data;
  d->in_callback = 1;
  log_add(&d->log, 'T');
  assert_int_equal(sk_loop_defer(loop, defer_cb, d), 0);
  assert_int_equal(sk_loop_defer(loop, defer_cb, d), 0);
  log_add(&d->log, 't');
  d->in_callback = 0;
}

/* From a timer, and from outside the loop before it runs. */
static void test_defer_from_timer_and_outside(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  defer_ctx_t ctx;
  sk_timer_t t;
  memset(&ctx, 0, sizeof ctx);
  ctx.defers_expected = 2;
  guard_start(loop, &ctx.guard);
  sk_timer_init(&t, defer_timer_cb, &ctx);
  assert_int_equal(sk_timer_start(loop, &t, 0, 0), 0);
  run_loop(loop);
  assert_false(ctx.guard.fired);
  assert_false(ctx.ran_inside_callback);
  assert_string_equal(ctx.log.text, "TtDD");

  memset(&ctx, 0, sizeof ctx);
  ctx.defers_expected = 1;
  guard_start(loop, &ctx.guard);
  assert_int_equal(sk_loop_defer(loop, defer_cb, &ctx), 0);
  assert_int_equal(ctx.defers_run, 0); /* not called from sk_loop_defer */
  run_loop(loop);
  assert_false(ctx.guard.fired);
  assert_int_equal(ctx.defers_run, 1);
  sk_loop_free(loop);
}

static void defer_again_cb(sk_loop_t *loop, void *data) {
  defer_ctx_t *d = data;
  log_add(&d->log, 'A');
  assert_int_equal(sk_loop_defer(loop, defer_cb, d), 0);
}

static void test_defer_from_defer(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  defer_ctx_t ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.defers_expected = 1;
  guard_start(loop, &ctx.guard);
  assert_int_equal(sk_loop_defer(loop, defer_again_cb, &ctx), 0);
  run_loop(loop);
  assert_false(ctx.guard.fired);
  assert_string_equal(ctx.log.text, "AD");
  sk_loop_free(loop);
}

/* The pattern the loop exists for: a connection stops its watcher in its own
 * callback and is freed from a deferred callback. ASan checks the loop
 * touches nothing of it afterwards. */
typedef struct {
  sk_io_t io;
  guard_t *guard;
  int *freed;
} conn_t;

static void conn_free_cb(sk_loop_t *loop, void *data) {
  conn_t *c = data;
  (*c->freed)++;
  guard_disarm(loop, c->guard);
  free(c);
}

static void conn_io_cb(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  conn_t *c = io->data;
  (void)events;
  sk_io_stop(loop, io);
  assert_int_equal(sk_loop_defer(loop, conn_free_cb, c), 0);
}

static void test_defer_free_connection(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  int sv[2], freed = 0;
  make_socketpair(sv);
  assert_int_equal(write(sv[1], "bye", 3), 3);
  guard_start(loop, &guard);
  conn_t *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->guard = &guard;
  c->freed = &freed;
  c->io.cb = conn_io_cb;
  c->io.data = c;
  assert_int_equal(sk_io_start(loop, &c->io, sv[0], SK_READABLE), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(freed, 1);
  close_pair(sv);
  sk_loop_free(loop);
}

/* The last watcher stops itself and defers its own free: nothing else is
 * left, yet the deferred free must still run before sk_loop_run returns
 * (else the last connection of every server leaks). No guard timer here,
 * since one would keep the loop alive; alarm() bounds the run. */
static void test_defer_runs_before_loop_exits(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t unused_guard;
  int sv[2], freed = 0;
  make_socketpair(sv);
  assert_int_equal(write(sv[1], "bye", 3), 3);
  sk_timer_init(&unused_guard.timer, guard_cb, &unused_guard); /* never armed */
  conn_t *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->guard = &unused_guard;
  c->freed = &freed;
  c->io.cb = conn_io_cb;
  c->io.data = c;
  assert_int_equal(sk_io_start(loop, &c->io, sv[0], SK_READABLE), 0);
  unsigned left = alarm(10);
  run_loop(loop);
  alarm(left);
  assert_int_equal(freed, 1);
  close_pair(sv);
  sk_loop_free(loop);
}

/* ---- fd watchers ------------------------------------------------------------ */

typedef struct {
  sk_io_t io;
  guard_t *guard;
  int count;
  unsigned last_events;
  unsigned all_events;
  int read_after; /* read the byte on the n-th call (level-triggered check) */
  int stop_after;
} watch_t;

static void watch_cb(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  watch_t *w = io->data;
  assert_ptr_equal(io, &w->io);
  w->count++;
  w->last_events = events;
  w->all_events |= events;
  if (w->read_after && w->count == w->read_after) {
    char c[16];
    assert_true(read(io->fd, c, sizeof c) > 0);
  }
  if (w->count == w->stop_after) {
    sk_io_stop(loop, io);
    if (w->guard)
      guard_disarm(loop, w->guard);
  }
}

static void watch_init(watch_t *w, guard_t *g, int stop_after) {
  memset(w, 0, sizeof *w);
  w->guard = g;
  w->stop_after = stop_after;
  w->io.cb = watch_cb;
  w->io.data = w;
}

static void test_io_readable(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  watch_t w;
  int sv[2];
  make_socketpair(sv);
  guard_start(loop, &guard);
  /* level-triggered: called again while the byte stays unread */
  watch_init(&w, &guard, 2);
  w.read_after = 2;
  assert_false(sk_io_active(&w.io));
  assert_int_equal(sk_io_start(loop, &w.io, sv[0], SK_READABLE), 0);
  assert_true(sk_io_active(&w.io));
  assert_int_equal(w.io.fd, sv[0]);
  assert_int_equal(write(sv[1], "x", 1), 1);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(w.count, 2);
  assert_true(w.all_events & SK_READABLE);
  assert_false(w.all_events & SK_WRITABLE);
  assert_false(sk_io_active(&w.io));
  close_pair(sv);
  sk_loop_free(loop);
}

static void test_io_writable(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  watch_t w;
  int sv[2];
  make_socketpair(sv);
  guard_start(loop, &guard);
  watch_init(&w, &guard, 1);
  /* both asked, only writable true (nothing to read) */
  assert_int_equal(sk_io_start(loop, &w.io, sv[0], SK_READABLE | SK_WRITABLE), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(w.count, 1);
  assert_int_equal(w.last_events & (SK_READABLE | SK_WRITABLE), SK_WRITABLE);
  close_pair(sv);
  sk_loop_free(loop);
}

typedef struct {
  sk_timer_t timer;
  sk_io_t *io;
  unsigned events;
  int fired;
} set_timer_t;

static void set_timer_cb(sk_loop_t *loop, sk_timer_t *t) {
  set_timer_t *s = t->data;
  s->fired = 1;
  assert_int_equal(sk_io_set(loop, s->io, s->events), 0);
}

/* events == 0 keeps the watcher registered but silent; sk_io_set turns
 * it on later. */
static void test_io_silent_then_set(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  watch_t w;
  set_timer_t s;
  int sv[2];
  make_socketpair(sv);
  assert_int_equal(write(sv[1], "x", 1), 1); /* readable and writable */
  guard_start(loop, &guard);
  watch_init(&w, &guard, 1);
  assert_int_equal(sk_io_start(loop, &w.io, sv[0], 0), 0);
  assert_true(sk_io_active(&w.io));
  memset(&s, 0, sizeof s);
  s.io = &w.io;
  s.events = SK_WRITABLE;
  sk_timer_init(&s.timer, set_timer_cb, &s);
  assert_int_equal(sk_timer_start(loop, &s.timer, 30, 0), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_true(s.fired);
  assert_int_equal(w.count, 1); /* only after the set */
  assert_int_equal(w.last_events & (SK_READABLE | SK_WRITABLE), SK_WRITABLE);
  close_pair(sv);
  sk_loop_free(loop);
}

/* A silent watcher never gets called; the guard ends this run. */
static void test_io_silent_never_called(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  watch_t w;
  sk_timer_t end;
  int end_count = 0;
  int sv[2], hup[2];
  watch_t w_hup;
  make_socketpair(sv);
  assert_int_equal(write(sv[1], "x", 1), 1);
  guard_start(loop, &guard);
  watch_init(&w, NULL, 1);
  assert_int_equal(sk_io_start(loop, &w.io, sv[0], 0), 0);
  /* a silent watcher whose peer hung up: epoll reports hang-ups even when
   * nothing is asked, yet the watcher must stay silent */
  make_socketpair(hup);
  close(hup[1]);
  watch_init(&w_hup, NULL, 1);
  assert_int_equal(sk_io_start(loop, &w_hup.io, hup[0], 0), 0);
  sk_timer_init(&end, count_timer_cb, &end_count);
  assert_int_equal(sk_timer_start(loop, &end, 20, 0), 0);
  /* Here the guard is the expected way out: brought to 60 ms, it ends a
   * run in which the watchers must stay silent. */
  assert_int_equal(sk_timer_start(loop, &guard.timer, 60, 0), 0);
  run_loop(loop);
  assert_int_equal(end_count, 1);
  assert_true(guard.fired);
  assert_int_equal(w.count, 0);
  assert_int_equal(w_hup.count, 0);
  assert_true(sk_io_active(&w.io));
  assert_true(sk_io_active(&w_hup.io));
  sk_io_stop(loop, &w.io);
  sk_io_stop(loop, &w_hup.io);
  assert_false(sk_io_active(&w.io));
  close_pair(sv);
  close(hup[0]);
  sk_loop_free(loop);
}

static void test_io_hangup(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  watch_t w;
  int sv[2];
  make_socketpair(sv);
  guard_start(loop, &guard);
  watch_init(&w, &guard, 1);
  assert_int_equal(sk_io_start(loop, &w.io, sv[0], SK_READABLE), 0);
  close(sv[1]);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(w.count, 1);
  assert_true(w.last_events & SK_READABLE);
  char c;
  assert_int_equal(read(sv[0], &c, 1), 0);
  close(sv[0]);
  sk_loop_free(loop);
}

static void test_io_start_bad_fd(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  watch_t w;
  watch_init(&w, NULL, 1);
  int rc = sk_io_start(loop, &w.io, -1, SK_READABLE);
  assert_true(rc < 0);
  assert_false(sk_io_active(&w.io));
  run_loop(loop); /* nothing registered: returns */
  sk_loop_free(loop);
}

/* Watchers ready in the same round; the first one called stops all the
 * others (and itself). None of the others may be called, even though
 * epoll already reported them. With free_others the stopped watchers are
 * freed at once, which ASan turns into a hard check. */
typedef struct stopper stopper_t;
struct stopper {
  sk_io_t io;
  int *calls;
  stopper_t **all;
  size_t n;
  int free_others;
  guard_t *guard;
};

static void stopper_cb(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  stopper_t *s = io->data;
  (void)events;
  (*s->calls)++;
  for (size_t i = 0; i < s->n; i++) {
    if (s->all[i] && s->all[i] != s) {
      sk_io_stop(loop, &s->all[i]->io);
      if (s->free_others) {
        free(s->all[i]);
        s->all[i] = NULL;
      }
    }
  }
  sk_io_stop(loop, io);
  guard_disarm(loop, s->guard);
}

static void run_stoppers(int free_others, int use_files) {
  enum { N = 6 };
  stopper_t *all[N];
  int fds[N][2];
  int calls = 0;
  guard_t guard;
  sk_loop_t *loop = new_loop();
  guard_start(loop, &guard);
  for (size_t i = 0; i < N; i++) {
    if (use_files && i % 2) {
      fds[i][0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
      fds[i][1] = -1;
      assert_true(fds[i][0] >= 0);
    } else {
      make_socketpair(fds[i]);
      assert_int_equal(write(fds[i][1], "x", 1), 1);
    }
    all[i] = calloc(1, sizeof *all[i]);
    assert_non_null(all[i]);
    all[i]->calls = &calls;
    all[i]->all = all;
    all[i]->n = N;
    all[i]->free_others = free_others;
    all[i]->guard = &guard;
    all[i]->io.cb = stopper_cb;
    all[i]->io.data = all[i];
    assert_int_equal(sk_io_start(loop, &all[i]->io, fds[i][0], SK_READABLE), 0);
  }
  run_loop(loop);
  assert_false(guard.fired);
  if (calls != 1)
    fail_msg("%d watcher callbacks ran (free_others %d, files %d), expected 1", calls,
             free_others, use_files);
  for (size_t i = 0; i < N; i++) {
    if (all[i])
      assert_false(sk_io_active(&all[i]->io));
    free(all[i]);
    close(fds[i][0]);
    if (fds[i][1] >= 0)
      close(fds[i][1]);
  }
  sk_loop_free(loop);
}

static void test_io_stop_other_in_same_round(void **state) {
  (void)state;
  run_stoppers(0, 0);
}

static void test_io_stop_and_free_other_in_same_round(void **state) {
  (void)state;
  run_stoppers(1, 0);
}

static void test_io_stop_other_mixed_always_ready(void **state) {
  (void)state;
  run_stoppers(0, 1);
  run_stoppers(1, 1);
}

/* A regular file cannot be watched by epoll; the loop reports it ready on
 * every round. */
static void test_io_regular_file(void **state) {
  (void)state;
  char path[] = "/tmp/sockit-test-loop-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  assert_int_equal(write(fd, "content", 7), 7);
  assert_int_equal(lseek(fd, 0, SEEK_SET), 0);

  sk_loop_t *loop = new_loop();
  guard_t guard;
  watch_t w;
  guard_start(loop, &guard);
  watch_init(&w, &guard, 3);
  assert_int_equal(sk_io_start(loop, &w.io, fd, SK_READABLE), 0);
  assert_true(sk_io_active(&w.io));
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(w.count, 3);
  assert_true(w.all_events & SK_READABLE);
  assert_false(w.all_events & SK_WRITABLE);

  /* writable, on /dev/null */
  int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  assert_true(null_fd >= 0);
  guard_start(loop, &guard);
  watch_init(&w, &guard, 2);
  assert_int_equal(sk_io_start(loop, &w.io, null_fd, SK_WRITABLE), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(w.count, 2);
  assert_true(w.all_events & SK_WRITABLE);
  assert_false(w.all_events & SK_READABLE);
  close(null_fd);
  close(fd);
  sk_loop_free(loop);
}

typedef struct {
  sk_io_t io;
  int count;
} ready_t;

static void ready_cb(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  (void)loop;
  (void)events;
  ((ready_t *)io->data)->count++;
}

/* Many always-ready watchers, each called once per round; stopped in a
 * scrambled order and freed at once, after which the loop must not touch
 * them (ASan). */
static void test_io_always_ready_many(void **state) {
  (void)state;
  enum { N = 7 };
  static const int stop_order[N] = {3, 0, 6, 1, 5, 2, 4};
  ready_t *r[N];
  int fds[N];
  sk_loop_t *loop = new_loop();
  for (int i = 0; i < N; i++) {
    fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fds[i] >= 0);
    r[i] = calloc(1, sizeof *r[i]);
    assert_non_null(r[i]);
    r[i]->io.cb = ready_cb;
    r[i]->io.data = r[i];
    assert_int_equal(sk_io_start(loop, &r[i]->io, fds[i], SK_READABLE), 0);
  }
  for (int k = 0; k < N; k++) {
    /* one round at least: a 0 ms timer stops the loop (the always-ready
     * watchers never let it run out of work) */
    sk_timer_t stop;
    int stops = 0;
    int before[N];
    for (int i = 0; i < N; i++)
      before[i] = r[i] ? r[i]->count : 0;
    sk_timer_init(&stop, stopper_loop_cb, &stops);
    assert_int_equal(sk_timer_start(loop, &stop, 0, 0), 0);
    run_loop(loop);
    assert_int_equal(stops, 1);
    for (int i = 0; i < N; i++) {
      if (!r[i])
        continue;
      if (r[i]->count <= before[i])
        fail_msg("round %d: always-ready watcher %d was not called", k, i);
    }
    int j = stop_order[k];
    sk_io_stop(loop, &r[j]->io);
    assert_false(sk_io_active(&r[j]->io));
    free(r[j]);
    r[j] = NULL;
  }
  run_loop(loop); /* nothing left */
  for (int i = 0; i < N; i++)
    close(fds[i]);
  sk_loop_free(loop);
}

typedef struct {
  sk_timer_t timer;
  sk_io_t *io;
  guard_t *guard;
  int fired;
} stop_io_timer_t;

static void stop_io_timer_cb(sk_loop_t *loop, sk_timer_t *t) {
  stop_io_timer_t *s = t->data;
  s->fired++;
  sk_io_stop(loop, s->io);
  guard_disarm(loop, s->guard);
}

/* An always-ready watcher must not starve timers or keep the loop from
 * noticing that time passes. */
static void test_io_always_ready_does_not_starve_timers(void **state) {
  (void)state;
  char path[] = "/tmp/sockit-test-loop-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  sk_loop_t *loop = new_loop();
  guard_t guard;
  watch_t w;
  stop_io_timer_t s;
  guard_start(loop, &guard);
  watch_init(&w, NULL, -1); /* never stops itself */
  assert_int_equal(sk_io_start(loop, &w.io, fd, SK_READABLE), 0);
  memset(&s, 0, sizeof s);
  s.io = &w.io;
  s.guard = &guard;
  sk_timer_init(&s.timer, stop_io_timer_cb, &s);
  assert_int_equal(sk_timer_start(loop, &s.timer, 20, 0), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(s.fired, 1);
  assert_true(w.count > 0);
  assert_false(sk_io_active(&w.io));
  close(fd);
  sk_loop_free(loop);
}

/* Stop and restart on the same fd from the watcher's own callback. */
typedef struct {
  sk_io_t io;
  int count;
  guard_t *guard;
} restart_t;

static void restart_cb(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  restart_t *r = io->data;
  int fd = io->fd;
  r->count++;
  sk_io_stop(loop, io);
  if (r->count < 3) {
    assert_int_equal(sk_io_start(loop, io, fd, events & (SK_READABLE | SK_WRITABLE)), 0);
  } else {
    guard_disarm(loop, r->guard);
  }
}

static void test_io_restart_in_own_callback(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  restart_t r;
  int sv[2];
  make_socketpair(sv);
  guard_start(loop, &guard);
  memset(&r, 0, sizeof r);
  r.guard = &guard;
  r.io.cb = restart_cb;
  r.io.data = &r;
  assert_int_equal(sk_io_start(loop, &r.io, sv[0], SK_WRITABLE), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(r.count, 3);
  assert_false(sk_io_active(&r.io));
  close_pair(sv);
  sk_loop_free(loop);
}

/* sk_loop_free forgets what is still registered: afterwards the watcher
 * and the timer are registered with no loop, and can be started on a new
 * loop as if fresh. No guard timer: it would hide a wrong watcher count;
 * the watcher's own data makes it ready, and alarm() bounds the run. */
static void test_reuse_after_loop_free(void **state) {
  (void)state;
  int sv[2];
  watch_t w;
  sk_timer_t t;
  int fired = 0;
  make_socketpair(sv);
  assert_int_equal(write(sv[1], "x", 1), 1);

  sk_loop_t *first = new_loop();
  watch_init(&w, NULL, 1);
  sk_io_stop(first, &w.io); /* never started: harmless */
  assert_int_equal(sk_io_start(first, &w.io, sv[0], SK_READABLE), 0);
  sk_timer_init(&t, count_timer_cb, &fired);
  assert_int_equal(sk_timer_start(first, &t, 1000, 0), 0);
  sk_loop_free(first); /* without running: nothing is called */
  assert_int_equal(w.count, 0);
  assert_false(sk_io_active(&w.io));
  assert_false(sk_timer_active(&t));

  sk_loop_t *second = new_loop();
  watch_init(&w, NULL, 1);
  assert_int_equal(sk_io_start(second, &w.io, sv[0], SK_READABLE), 0);
  assert_int_equal(sk_timer_start(second, &t, 1, 0), 0);
  unsigned left = alarm(10);
  run_loop(second);
  alarm(left);
  assert_int_equal(w.count, 1); /* called once, then stopped itself */
  assert_int_equal(fired, 1);
  assert_false(sk_io_active(&w.io));
  close_pair(sv);
  sk_loop_free(second);
}

/* ---- stop ---------------------------------------------------------------- */

typedef struct {
  sk_timer_t tick, stopper;
  int ticks;
  int stops;
  int stop_at_tick; /* when > 0, the tick timer stops the loop itself */
} stop_ctx_t;

static void tick_cb(sk_loop_t *loop, sk_timer_t *t) {
  stop_ctx_t *s = t->data;
  s->ticks++;
  if (s->stop_at_tick && s->ticks == s->stop_at_tick) {
    s->stops++;
    sk_loop_stop(loop);
  }
}

static void stopper_timer_cb(sk_loop_t *loop, sk_timer_t *t) {
  stop_ctx_t *s = t->data;
  s->stops++;
  sk_loop_stop(loop);
}

static void test_loop_stop_from_timer(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  guard_t guard;
  stop_ctx_t s;
  memset(&s, 0, sizeof s);
  guard_start(loop, &guard);
  sk_timer_init(&s.tick, tick_cb, &s);
  sk_timer_init(&s.stopper, stopper_timer_cb, &s);
  assert_int_equal(sk_timer_start(loop, &s.tick, 1, 1), 0);
  assert_int_equal(sk_timer_start(loop, &s.stopper, 20, 0), 0);
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(s.stops, 1);
  assert_true(s.ticks >= 1);
  assert_true(sk_timer_active(&s.tick)); /* still armed: stop is not a reset */

  /* a stopped loop runs again: the stop does not stick */
  int before = s.ticks;
  s.stop_at_tick = before + 3;
  run_loop(loop);
  assert_false(guard.fired);
  assert_int_equal(s.stops, 2);
  assert_true(s.ticks >= before + 3);
  sk_timer_stop(loop, &s.tick);
  guard_disarm(loop, &guard);
  run_loop(loop); /* nothing left */
  sk_loop_free(loop);
}

/* ---- signals --------------------------------------------------------------- */

typedef struct {
  int count;
  int signo;
  void *data;
  guard_t guard;
} sig_ctx_t;

static void sig_cb(sk_loop_t *loop, int signo, void *data) {
  sig_ctx_t *s = data;
  s->count++;
  s->signo = signo;
  s->data = data;
  guard_disarm(loop, &s->guard);
  sk_loop_stop(loop);
}

static void raise_cb(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  int times = *(int *)t->data;
  for (int i = 0; i < times; i++)
    assert_int_equal(raise(SIGUSR1), 0);
}

static int handler_is_default(int signo) {
  struct sigaction sa;
  assert_int_equal(sigaction(signo, NULL, &sa), 0);
  return !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL;
}

static void test_signal_delivered(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  sig_ctx_t s;
  sk_timer_t t;
  int times = 1;
  memset(&s, 0, sizeof s);
  guard_start(loop, &s.guard);
  assert_int_equal(sk_loop_signal(loop, SIGUSR1, sig_cb, &s), 0);
  assert_false(handler_is_default(SIGUSR1));
  sk_timer_init(&t, raise_cb, &times);
  assert_int_equal(sk_timer_start(loop, &t, 0, 0), 0);
  run_loop(loop);
  assert_false(s.guard.fired);
  assert_int_equal(s.count, 1);
  assert_int_equal(s.signo, SIGUSR1);
  assert_ptr_equal(s.data, &s);

  /* raised twice in one go: at least once, at most twice */
  s.count = 0;
  times = 2;
  guard_start(loop, &s.guard);
  assert_int_equal(sk_timer_start(loop, &t, 0, 0), 0);
  run_loop(loop);
  assert_false(s.guard.fired);
  assert_true(s.count >= 1 && s.count <= 2);

  /* raised while the loop is not running: delivered on the next run */
  s.count = 0;
  assert_int_equal(raise(SIGUSR1), 0);
  assert_int_equal(s.count, 0); /* from the loop, not the handler */
  guard_start(loop, &s.guard);
  run_loop(loop);
  assert_false(s.guard.fired);
  assert_int_equal(s.count, 1);

  /* cb == NULL restores the default */
  assert_int_equal(sk_loop_signal(loop, SIGUSR1, NULL, NULL), 0);
  assert_true(handler_is_default(SIGUSR1));
  run_loop(loop); /* and no longer counts as something to wait for */
  sk_loop_free(loop);
}

/* One loop per process may handle a given signal. */
static void test_signal_one_loop_per_signal(void **state) {
  (void)state;
  sk_loop_t *a = new_loop();
  sk_loop_t *b = new_loop();
  sig_ctx_t s;
  memset(&s, 0, sizeof s);
  assert_int_equal(sk_loop_signal(a, SIGUSR2, sig_cb, &s), 0);
  assert_true(sk_loop_signal(b, SIGUSR2, sig_cb, &s) < 0);
  /* b gave nothing up that it did not have: a still handles it */
  assert_int_equal(sk_loop_signal(b, SIGUSR2, NULL, NULL), 0);
  assert_false(handler_is_default(SIGUSR2));
  guard_start(a, &s.guard);
  assert_int_equal(raise(SIGUSR2), 0);
  run_loop(a);
  assert_false(s.guard.fired);
  assert_int_equal(s.count, 1);
  assert_int_equal(s.signo, SIGUSR2);
  sk_loop_free(b);
  sk_loop_free(a);
  assert_true(handler_is_default(SIGUSR2));
}

static void test_signal_restored_on_free(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  sig_ctx_t s;
  memset(&s, 0, sizeof s);
  assert_int_equal(sk_loop_signal(loop, SIGUSR2, sig_cb, &s), 0);
  assert_false(handler_is_default(SIGUSR2));
  sk_loop_free(loop);
  assert_true(handler_is_default(SIGUSR2));
}

/* ---- name lookups off the loop ---------------------------------------------------------- */

typedef struct {
  int calls, n;
  sk_sockaddr_t first;
  char err[SK_ERRLEN];
} lookup_t;

static void lookup_done(void *data, int n, const sk_sockaddr_t *addrs, const char *err) {
  lookup_t *l = data;
  l->calls++;
  l->n = n;
  if (n > 0)
    l->first = addrs[0];
  snprintf(l->err, sizeof l->err, "%s", err);
}

static sk_resolve_t *cancel_me;

static void sleep_ms_loop(long ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* Cancels its own lookup from inside done: allowed, and a no-op. */
static void lookup_done_cancel(void *data, int n, const sk_sockaddr_t *addrs, const char *err) {
  lookup_done(data, n, addrs, err);
  sk_net_addresses_cancel(cancel_me);
}

static sk_resolve_t *lookup(sk_loop_t *loop, const char *text, lookup_t *l) {
  sk_endpoint_t ep;
  char err[SK_ERRLEN];
  memset(l, 0, sizeof *l);
  assert_int_equal(sk_endpoint_parse(&ep, text, SK_EP_CONNECT, err, sizeof err), 0);
  sk_resolve_t *r = sk_net_addresses_async(loop, &ep, lookup_done, l);
  assert_non_null(r);
  return r;
}

/* A name (through a helper thread; localhost is in /etc/hosts, so no DNS
 * server is asked), a numeric host and a unix path: each answered on the
 * loop, never inside the call; a cancelled lookup never calls back (and,
 * under ASan, leaks nothing whichever side finishes last). */
static void test_addresses_async(void **state) {
  (void)state;
  sk_loop_t *loop = new_loop();
  lookup_t name, num, path, gone;
  char out[SK_ENDPOINT_STRLEN];
  lookup(loop, "tcp://localhost:7", &name);
  lookup(loop, "tcp://127.0.0.1:9", &num);
  lookup(loop, "unix:@sockit-test", &path);
  sk_net_addresses_cancel(lookup(loop, "tcp://localhost:8", &gone));
  assert_int_equal(num.calls, 0); /* not inside the call */
  run_loop(loop); /* ends once every lookup has been delivered */
  assert_int_equal(name.calls, 1);
  assert_true(name.n >= 1);
  assert_int_equal(sk_sockaddr_port(&name.first), 7);
  assert_int_equal(num.calls, 1);
  assert_int_equal(num.n, 1);
  sk_sockaddr_format(&num.first, out, sizeof out);
  assert_string_equal(out, "127.0.0.1:9");
  assert_int_equal(path.n, 1);
  assert_int_equal(path.first.ss.ss_family, AF_UNIX);
  assert_int_equal(gone.calls, 0);
  sk_net_addresses_cancel(lookup(loop, "tcp://127.0.0.1:10", &gone)); /* finished, not delivered */
  sk_endpoint_t ep;
  char err[SK_ERRLEN];
  lookup_t self;
  memset(&self, 0, sizeof self);
  assert_int_equal(sk_endpoint_parse(&ep, "tcp://localhost:11", SK_EP_CONNECT, err, sizeof err), 0);
  cancel_me = sk_net_addresses_async(loop, &ep, lookup_done_cancel, &self);
  assert_non_null(cancel_me);
  run_loop(loop);
  assert_int_equal(gone.calls, 0);
  assert_int_equal(self.calls, 1); /* and, under ASan, no double free */
  /* Many cancelled while their threads run or have just ended: whichever
   * side lets go last frees (ASan and LSan check both orders). */
  for (int i = 0; i < 200; i++) {
    sk_net_addresses_cancel(lookup(loop, "tcp://localhost:12", &gone));
    if (i % 20 == 0)
      sleep_ms_loop(i % 3);
  }
  assert_int_equal(gone.calls, 0);
  sk_loop_free(loop);
}

/* ---- the timer heap under churn ------------------------------------------------ */

#define CHURN_TIMERS 1500

typedef struct {
  sk_timer_t t;
  uint64_t deadline; /* as armed, relative to the start */
  unsigned order;    /* the arming order of its last start */
  int armed;
} churn_t;

static churn_t churn[CHURN_TIMERS];
static int churn_fired[CHURN_TIMERS], churn_nfired;

static void churn_cb(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  churn_t *c = t->data;
  assert_int_equal(c->armed, 1);
  c->armed = 0;
  churn_fired[churn_nfired++] = (int)(c - churn);
}

/* Thousands of timers armed, moved and stopped in a random order (the
 * tree's last node fills every kind of hole: a leaf, an inner node, the
 * root, its own parent's place): exactly the armed ones fire, each once,
 * in (deadline, arming order). Arming never fails: no allocation. */
static void test_timer_heap_churn(void **state) {
  (void)state;
  sk_loop_t *loop;
  assert_int_equal(sk_loop_new(&loop), 0);
  srandom(12345);
  unsigned order = 0;
  for (int i = 0; i < CHURN_TIMERS; i++)
    sk_timer_init(&churn[i].t, churn_cb, &churn[i]);
  for (int round = 0; round < 20000; round++) {
    churn_t *c = &churn[random() % CHURN_TIMERS];
    if (random() % 3 == 0) {
      sk_timer_stop(loop, &c->t);
      c->armed = 0;
    } else {
      c->deadline = (uint64_t)(random() % 40); /* many ties: the arming order decides */
      c->order = order++;
      assert_int_equal(sk_timer_start(loop, &c->t, c->deadline, 0), 0);
      c->armed = 1;
    }
    assert_int_equal(sk_timer_active(&c->t), c->armed);
  }
  int armed = 0;
  for (int i = 0; i < CHURN_TIMERS; i++)
    armed += churn[i].armed;
  churn_nfired = 0;
  alarm(5);
  assert_int_equal(sk_loop_run(loop), 0);
  alarm(0);
  assert_int_equal(churn_nfired, armed);
  for (int k = 1; k < churn_nfired; k++) {
    churn_t *a = &churn[churn_fired[k - 1]], *b = &churn[churn_fired[k]];
    assert_true(a->deadline < b->deadline ||
                (a->deadline == b->deadline && a->order < b->order));
  }
  /* Timers still armed when the loop is freed are left unarmed. */
  sk_timer_start(loop, &churn[0].t, 60000, 0);
  sk_timer_start(loop, &churn[1].t, 60000, 0);
  sk_loop_free(loop);
  assert_false(sk_timer_active(&churn[0].t));
  assert_false(sk_timer_active(&churn[1].t));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_timer_heap_churn),
    cmocka_unit_test(test_run_empty),
    cmocka_unit_test(test_run_returns_when_nothing_left),
    cmocka_unit_test(test_now),
    cmocka_unit_test(test_timers_fire_in_deadline_order),
    cmocka_unit_test(test_timers_due_together_in_order),
    cmocka_unit_test(test_timer_repeat),
    cmocka_unit_test(test_timer_stop_restart),
    cmocka_unit_test(test_timer_rearm_from_callback),
    cmocka_unit_test(test_timer_stopped_by_other_never_fires),
    cmocka_unit_test(test_timer_stop_later_from_earlier),
    cmocka_unit_test(test_timer_zero_rearm_does_not_starve_io),
    cmocka_unit_test(test_defer_runs_after_dispatch),
    cmocka_unit_test(test_defer_runs_when_stopped),
    cmocka_unit_test(test_defer_runs_in_free),
    cmocka_unit_test(test_addresses_async),
    cmocka_unit_test(test_defer_from_timer_and_outside),
    cmocka_unit_test(test_defer_from_defer),
    cmocka_unit_test(test_defer_free_connection),
    cmocka_unit_test(test_defer_runs_before_loop_exits),
    cmocka_unit_test(test_io_readable),
    cmocka_unit_test(test_io_writable),
    cmocka_unit_test(test_io_silent_then_set),
    cmocka_unit_test(test_io_silent_never_called),
    cmocka_unit_test(test_io_hangup),
    cmocka_unit_test(test_io_start_bad_fd),
    cmocka_unit_test(test_io_stop_other_in_same_round),
    cmocka_unit_test(test_io_stop_and_free_other_in_same_round),
    cmocka_unit_test(test_io_stop_other_mixed_always_ready),
    cmocka_unit_test(test_io_regular_file),
    cmocka_unit_test(test_io_always_ready_does_not_starve_timers),
    cmocka_unit_test(test_io_always_ready_many),
    cmocka_unit_test(test_io_restart_in_own_callback),
    cmocka_unit_test(test_reuse_after_loop_free),
    cmocka_unit_test(test_loop_stop_from_timer),
    cmocka_unit_test(test_signal_delivered),
    cmocka_unit_test(test_signal_one_loop_per_signal),
    cmocka_unit_test(test_signal_restored_on_free),
  };
  /* Backstop only: every run is bounded by its own guard timer. */
  alarm(60);
  return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
