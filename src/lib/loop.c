/* loop.c - the event loop: epoll (level-triggered), a timer heap, signals
 * through a self-pipe, deferred callbacks, and an eventfd for wake-ups.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/error.h"
#include "sockit/loop.h"

#define MAX_EVENTS 256
#define STOP_DEFER_ROUNDS 16 /* rounds of deferred work run once the loop is stopped */

typedef struct {
  sk_defer_cb cb;
  void *data;
} deferred_t;

struct sk_loop {
  int epfd;
  int wake_fd; /* eventfd: sk_loop_wake / sk_loop_stop */
  sk_io_t wake_io;
  int sig_pipe[2]; /* self-pipe the signal handler writes signal numbers to */
  sk_io_t sig_io;
  atomic_int stop;
  uint64_t now;
  int nactive; /* registered user watchers */
  int nsignals;

  /* The round being dispatched: sk_io_stop clears entries for its watcher. */
  struct epoll_event *events;
  int events_cap, nevents, dispatch_i;

  sk_io_t *ready_head; /* watchers epoll refused: always ready */
  sk_io_t *all_head;   /* every active user watcher, so sk_loop_free can forget them */
  int nready;

  sk_timer_t *timer_root; /* the earliest armed timer: the heap's root */
  unsigned ntimers;
  uint64_t timer_seq;

  deferred_t *deferred, *running;
  int ndeferred, deferred_cap, running_cap;
};

uint64_t sk__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- signals ------------------------------------------------------------- */

/* Write ends of the self-pipe, per signal; read by the handler only. */
static volatile sig_atomic_t sig_write_fd[NSIG];
static struct {
  sk_loop_t *loop;
  sk_signal_cb cb;
  void *data;
} sig_table[NSIG];

static void on_signal(int signo) {
  int saved = errno;
  unsigned char b = (unsigned char)signo;
  int fd = sig_write_fd[signo];
  if (fd > 0) {
    ssize_t r = write(fd, &b, 1); /* a full pipe already holds a wake-up */
    (void)r;
  }
  errno = saved;
}

static void sig_readable(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  unsigned char buf[64];
  ssize_t n;
  while ((n = read(io->fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; i++) {
      int s = buf[i];
      if (s > 0 && s < NSIG && sig_table[s].loop == loop && sig_table[s].cb)
        sig_table[s].cb(loop, s, sig_table[s].data);
    }
  }
}

static void wake_readable(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  uint64_t v;
  ssize_t r = read(io->fd, &v, sizeof v);
  (void)r;
  (void)loop;
}

/* ---- loop life --------------------------------------------------------------- */

static int internal_watch(sk_loop_t *loop, sk_io_t *io, int fd, sk_io_cb cb) {
  memset(io, 0, sizeof *io);
  io->fd = fd;
  io->cb = cb;
  io->events = SK_READABLE;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = io};
  return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? sk__neg_errno() : 0;
}

int sk_loop_new(sk_loop_t **out) {
  sk_loop_t *loop = calloc(1, sizeof *loop);
  int r = -ENOMEM;
  if (!loop)
    return r;
  loop->wake_fd = loop->sig_pipe[0] = loop->sig_pipe[1] = -1;
  loop->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (loop->epfd < 0)
    goto fail_errno;
  loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (loop->wake_fd < 0)
    goto fail_errno;
  if ((r = internal_watch(loop, &loop->wake_io, loop->wake_fd, wake_readable)) < 0)
    goto fail;
  loop->events_cap = MAX_EVENTS;
  loop->events = calloc((size_t)loop->events_cap, sizeof *loop->events);
  if (!loop->events) {
    r = -ENOMEM;
    goto fail;
  }
  loop->now = sk__now_ms();
  *out = loop;
  return 0;
fail_errno:
  r = sk__neg_errno();
fail:
  sk_loop_free(loop);
  return r;
}

static void drain_deferred(sk_loop_t *loop);

void sk_loop_free(sk_loop_t *loop) {
  if (!loop)
    return;
  drain_deferred(loop);
  for (int s = 1; s < NSIG; s++)
    if (sig_table[s].loop == loop)
      sk_loop_signal(loop, s, NULL, NULL);
  if (loop->epfd >= 0)
    close(loop->epfd);
  if (loop->wake_fd >= 0)
    close(loop->wake_fd);
  if (loop->sig_pipe[0] >= 0)
    close(loop->sig_pipe[0]);
  if (loop->sig_pipe[1] >= 0)
    close(loop->sig_pipe[1]);
  while (loop->timer_root) /* armed timers outlive the loop: leave them unarmed */
    sk_timer_stop(loop, loop->timer_root);
  for (sk_io_t *io = loop->all_head, *next; io; io = next) {
    next = io->all_next;
    io->active = io->in_epoll = io->always_ready = 0;
    io->events = 0;
    io->ready_next = io->ready_prev = io->all_next = io->all_prev = NULL;
  }
  free(loop->events);
  free(loop->deferred);
  free(loop->running);
  free(loop);
}

uint64_t sk_loop_now(const sk_loop_t *loop) { return loop->now; }
void sk_loop_update_time(sk_loop_t *loop) { loop->now = sk__now_ms(); }

void sk_loop_wake(sk_loop_t *loop) {
  uint64_t one = 1;
  ssize_t r = write(loop->wake_fd, &one, sizeof one);
  (void)r;
}

void sk_loop_stop(sk_loop_t *loop) {
  atomic_store(&loop->stop, 1);
  sk_loop_wake(loop);
}

/* ---- fd watchers --------------------------------------------------------------- */

static uint32_t to_epoll(unsigned events) {
  return (events & SK_READABLE ? EPOLLIN : 0u) | (events & SK_WRITABLE ? EPOLLOUT : 0u);
}

int sk_io_active(const sk_io_t *io) { return io->active; }

/* Brings the epoll set in line with io->events. A silent watcher (events 0)
 * is taken out of the set: epoll reports hang-ups even when nothing is
 * asked, and a level-triggered hang-up nobody reads would spin the loop. */
static int epoll_sync(sk_loop_t *loop, sk_io_t *io) {
  if (io->always_ready)
    return 0;
  struct epoll_event ev = {.events = to_epoll(io->events), .data.ptr = io};
  if (io->events == 0) {
    if (io->in_epoll && epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0)
      return sk__neg_errno();
    io->in_epoll = 0;
    return 0;
  }
  if (epoll_ctl(loop->epfd, io->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd, &ev) == 0) {
    io->in_epoll = 1;
    return 0;
  }
  if (errno != EPERM)
    return sk__neg_errno();
  /* Regular files and the like: always ready for whatever is asked. */
  io->always_ready = 1;
  io->ready_prev = NULL;
  io->ready_next = loop->ready_head;
  if (loop->ready_head)
    loop->ready_head->ready_prev = io;
  loop->ready_head = io;
  loop->nready++;
  return 0;
}

int sk_io_start(sk_loop_t *loop, sk_io_t *io, int fd, unsigned events) {
  if (io->active)
    sk_io_stop(loop, io);
  io->fd = fd;
  io->events = events & (SK_READABLE | SK_WRITABLE);
  io->in_epoll = io->always_ready = 0;
  io->ready_next = io->ready_prev = NULL;
  int r = epoll_sync(loop, io);
  if (r < 0)
    return r;
  io->active = 1;
  io->all_prev = NULL;
  io->all_next = loop->all_head;
  if (loop->all_head)
    loop->all_head->all_prev = io;
  loop->all_head = io;
  loop->nactive++;
  return 0;
}

int sk_io_set(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  events &= SK_READABLE | SK_WRITABLE;
  if (!io->active)
    return -EINVAL;
  if (io->events == events)
    return 0;
  io->events = events;
  return epoll_sync(loop, io);
}

void sk_io_stop(sk_loop_t *loop, sk_io_t *io) {
  if (!io->active)
    return;
  if (io->always_ready) {
    if (io->ready_prev)
      io->ready_prev->ready_next = io->ready_next;
    else
      loop->ready_head = io->ready_next;
    if (io->ready_next)
      io->ready_next->ready_prev = io->ready_prev;
    loop->nready--;
  } else if (io->in_epoll) {
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
  }
  /* Forget any event for io still waiting in this round. */
  for (int i = loop->dispatch_i + 1; i < loop->nevents; i++)
    if (loop->events[i].data.ptr == io)
      loop->events[i].data.ptr = NULL;
  if (io->all_prev)
    io->all_prev->all_next = io->all_next;
  else
    loop->all_head = io->all_next;
  if (io->all_next)
    io->all_next->all_prev = io->all_prev;
  io->active = io->in_epoll = io->always_ready = 0;
  io->events = 0;
  io->ready_next = io->ready_prev = io->all_next = io->all_prev = NULL;
  loop->nactive--;
}

/* ---- timers: a binary min-heap on (deadline, seq), kept in the timers ------------------
 *
 * The heap is a complete binary tree whose links live in the timers
 * themselves (left, right, up), so arming a timer never allocates and
 * sk_timer_start cannot fail. Position k (1-based, in level order) is
 * reached from the root by the bits of k below its top bit, 0 = left,
 * 1 = right: that is how the last slot is found for an insert and for the
 * node that fills a removed one. Invariants (checked by test_loop.c):
 * every node is not later than its children; ntimers nodes; a node's
 * children point back to it. */

static int timer_less(const sk_timer_t *a, const sk_timer_t *b) {
  return a->deadline_ms < b->deadline_ms ||
         (a->deadline_ms == b->deadline_ms && a->seq < b->seq);
}

/* The link that holds position k (k >= 1) of a tree of root *root. For k
 * one past the last node it is the empty link a new node goes into; *up
 * gets the node that link belongs to (NULL for the root). */
static sk_timer_t **slot_of(sk_timer_t **root, unsigned k, sk_timer_t **up) {
  int depth = 0;
  while ((k >> depth) > 1)
    depth++;
  sk_timer_t **link = root;
  *up = NULL;
  for (int d = depth - 1; d >= 0; d--) {
    *up = *link;
    link = (k >> d) & 1 ? &(*link)->right : &(*link)->left;
  }
  return link;
}

/* The link in c's parent (or the root) that points at c. */
static sk_timer_t **link_to(sk_loop_t *loop, sk_timer_t *c) {
  if (!c->up)
    return &loop->timer_root;
  return c->up->left == c ? &c->up->left : &c->up->right;
}

/* Swaps child c with its parent p in the tree (c takes p's place). */
static void swap_with_parent(sk_loop_t *loop, sk_timer_t *p, sk_timer_t *c) {
  sk_timer_t **into_p = link_to(loop, p);
  sk_timer_t *pl = p->left, *pr = p->right, *cl = c->left, *cr = c->right;
  *into_p = c;
  c->up = p->up;
  p->up = c;
  if (pl == c) {
    c->left = p;
    c->right = pr;
    if (pr)
      pr->up = c;
  } else {
    c->right = p;
    c->left = pl;
    if (pl)
      pl->up = c;
  }
  p->left = cl;
  p->right = cr;
  if (cl)
    cl->up = p;
  if (cr)
    cr->up = p;
}

static void sift_up(sk_loop_t *loop, sk_timer_t *t) {
  while (t->up && timer_less(t, t->up))
    swap_with_parent(loop, t->up, t);
}

static void sift_down(sk_loop_t *loop, sk_timer_t *t) {
  for (;;) {
    sk_timer_t *least = t;
    if (t->left && timer_less(t->left, least))
      least = t->left;
    if (t->right && timer_less(t->right, least))
      least = t->right;
    if (least == t)
      return;
    swap_with_parent(loop, t, least);
  }
}

void sk_timer_init(sk_timer_t *t, sk_timer_cb cb, void *data) {
  memset(t, 0, sizeof *t);
  t->cb = cb;
  t->data = data;
}

int sk_timer_active(const sk_timer_t *t) { return t->armed; }

void sk_timer_stop(sk_loop_t *loop, sk_timer_t *t) {
  if (!t->armed)
    return;
  t->armed = 0;
  sk_timer_t *up;
  sk_timer_t **last_link = slot_of(&loop->timer_root, loop->ntimers, &up);
  sk_timer_t *last = *last_link;
  *last_link = NULL; /* the last node leaves its place ... */
  loop->ntimers--;
  if (last != t) { /* ... and takes t's */
    sk_timer_t **into_t = link_to(loop, t);
    *into_t = last;
    last->up = t->up;
    last->left = t->left;
    last->right = t->right;
    if (last->left)
      last->left->up = last;
    if (last->right)
      last->right->up = last;
    sift_down(loop, last);
    sift_up(loop, last);
  }
  t->left = t->right = t->up = NULL;
}

int sk_timer_start(sk_loop_t *loop, sk_timer_t *t, uint64_t timeout_ms, uint64_t repeat_ms) {
  sk_timer_stop(loop, t);
  t->deadline_ms = loop->now + timeout_ms;
  t->repeat_ms = repeat_ms;
  t->seq = loop->timer_seq++;
  t->left = t->right = NULL;
  sk_timer_t **link = slot_of(&loop->timer_root, loop->ntimers + 1, &t->up);
  *link = t;
  loop->ntimers++;
  t->armed = 1;
  sift_up(loop, t);
  return 0;
}

/* Fires the timers due now. Only those armed before this round: a timer
 * re-armed for 0 ms from its own callback waits for the next round, so it
 * cannot starve I/O or hold off sk_loop_stop. Due timers armed earlier
 * always sort before re-armed ones (deadline, then seq). */
static void run_timers(sk_loop_t *loop) {
  uint64_t seq_limit = loop->timer_seq;
  while (loop->timer_root && loop->timer_root->deadline_ms <= loop->now &&
         loop->timer_root->seq < seq_limit) {
    sk_timer_t *t = loop->timer_root;
    sk_timer_stop(loop, t);
    if (t->repeat_ms)
      (void)sk_timer_start(loop, t, t->repeat_ms, t->repeat_ms); /* cannot fail */
    t->cb(loop, t);
  }
}

/* ---- signals --------------------------------------------------------------------- */

int sk_loop_signal(sk_loop_t *loop, int signo, sk_signal_cb cb, void *data) {
  if (signo <= 0 || signo >= NSIG)
    return -EINVAL;
  if (!cb) {
    if (sig_table[signo].loop != loop)
      return 0;
    signal(signo, SIG_DFL);
    sig_write_fd[signo] = 0;
    sig_table[signo].loop = NULL;
    sig_table[signo].cb = NULL;
    loop->nsignals--;
    return 0;
  }
  if (sig_table[signo].loop && sig_table[signo].loop != loop)
    return -EBUSY;
  if (loop->sig_pipe[0] < 0) {
    if (pipe2(loop->sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
      return sk__neg_errno();
    int r = internal_watch(loop, &loop->sig_io, loop->sig_pipe[0], sig_readable);
    if (r < 0)
      return r;
  }
  if (!sig_table[signo].loop)
    loop->nsignals++;
  sig_table[signo].loop = loop;
  sig_table[signo].cb = cb;
  sig_table[signo].data = data;
  sig_write_fd[signo] = loop->sig_pipe[1];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(signo, &sa, NULL) < 0)
    return sk__neg_errno();
  return 0;
}

/* ---- deferred callbacks ------------------------------------------------------------ */

int sk_loop_defer(sk_loop_t *loop, sk_defer_cb cb, void *data) {
  if (loop->ndeferred == loop->deferred_cap) {
    int cap = loop->deferred_cap ? loop->deferred_cap * 2 : 16;
    deferred_t *d = realloc(loop->deferred, (size_t)cap * sizeof *d);
    if (!d)
      return -ENOMEM;
    loop->deferred = d;
    loop->deferred_cap = cap;
  }
  loop->deferred[loop->ndeferred].cb = cb;
  loop->deferred[loop->ndeferred].data = data;
  loop->ndeferred++;
  return 0;
}

/* Runs the callbacks deferred so far; ones they defer wait for the next round. */
static void run_deferred(sk_loop_t *loop) {
  if (loop->ndeferred > 0) {
    deferred_t *batch = loop->deferred;
    int n = loop->ndeferred, cap = loop->deferred_cap;
    loop->deferred = loop->running;
    loop->deferred_cap = loop->running_cap;
    loop->ndeferred = 0;
    loop->running = batch;
    loop->running_cap = cap;
    for (int i = 0; i < n; i++)
      batch[i].cb(loop, batch[i].data);
  }
}

/* Work still deferred when the loop stops or is freed (often a free) is
 * not dropped: it runs, with what it defers in turn, for a bounded number
 * of rounds. */
static void drain_deferred(sk_loop_t *loop) {
  for (int i = 0; i < STOP_DEFER_ROUNDS && loop->ndeferred > 0; i++)
    run_deferred(loop);
}

/* ---- the loop ----------------------------------------------------------------------- */

static int compute_timeout(sk_loop_t *loop) {
  if (loop->ndeferred > 0 || atomic_load(&loop->stop))
    return 0;
  for (sk_io_t *io = loop->ready_head; io; io = io->ready_next)
    if (io->events)
      return 0;
  if (!loop->timer_root)
    return -1;
  uint64_t d = loop->timer_root->deadline_ms;
  if (d <= loop->now)
    return 0;
  uint64_t wait = d - loop->now;
  return wait > 60000 ? 60000 : (int)wait;
}

static unsigned from_epoll(uint32_t ev, unsigned want) {
  unsigned out = 0;
  if (ev & EPOLLIN)
    out |= SK_READABLE;
  if (ev & EPOLLOUT)
    out |= SK_WRITABLE;
  if (ev & (EPOLLERR | EPOLLHUP))
    out |= SK_HANGUP | (want & (SK_READABLE | SK_WRITABLE));
  return out;
}

int sk_loop_run(sk_loop_t *loop) {
  int rc = 0;
  while (!atomic_load(&loop->stop)) {
    if (loop->nactive == 0 && !loop->timer_root && loop->nsignals == 0 && loop->ndeferred == 0)
      break;
    int timeout = compute_timeout(loop);
    if (loop->events_cap < MAX_EVENTS + loop->nready) {
      int cap = MAX_EVENTS + loop->nready;
      struct epoll_event *e = realloc(loop->events, (size_t)cap * sizeof *e);
      if (!e) {
        rc = -ENOMEM;
        break;
      }
      loop->events = e;
      loop->events_cap = cap;
    }
    int n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, timeout);
    if (n < 0) {
      if (errno != EINTR) {
        rc = sk__neg_errno();
        break;
      }
      n = 0;
    }
    loop->now = sk__now_ms();
    for (sk_io_t *io = loop->ready_head; io; io = io->ready_next) {
      if (!io->events)
        continue;
      loop->events[n].events = to_epoll(io->events);
      loop->events[n].data.ptr = io;
      n++;
    }
    loop->nevents = n;
    for (loop->dispatch_i = 0; loop->dispatch_i < loop->nevents; loop->dispatch_i++) {
      struct epoll_event *e = &loop->events[loop->dispatch_i];
      sk_io_t *io = e->data.ptr;
      if (!io)
        continue;
      unsigned ev = from_epoll(e->events, io->events) & (io->events | SK_HANGUP);
      if (ev)
        io->cb(loop, io, ev);
    }
    loop->nevents = 0;
    loop->dispatch_i = 0;
    run_timers(loop);
    run_deferred(loop);
  }
  drain_deferred(loop);
  atomic_store(&loop->stop, 0);
  return rc;
}

/* ---- rate-limited reports (internal.h) ------------------------------------------- */

void sk__report_limited(uint64_t *last, uint64_t now, void (*cb)(void *ctx, const char *msg),
                        void *ctx, const char *fmt, va_list ap) {
  if (!cb || (*last && now - *last < 1000))
    return;
  *last = now;
  char msg[SK_ERRLEN];
  vsnprintf(msg, sizeof msg, fmt, ap);
  cb(ctx, msg);
}
