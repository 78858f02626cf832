/*
 * wake-cost: what one wake-up of a sleeping thread costs the CPU that sends it, on this machine.
 *
 *   wake-cost [--waker-cpu 0] [--sleeper-cpu 1] [--seconds 2] [--json]
 *
 * An interrupt-mode vfio-user server pays two wake-ups per round with its client: it writes the MSI-X eventfd that
 * wakes the client sleeping in poll(), and it is woken from epoll by the client's next doorbell message. This tool
 * plays exactly that round, with nothing else in it: the waker (pinned to --waker-cpu, like the server) writes an
 * eventfd that wakes the sleeper (pinned to --sleeper-cpu, sleeping in poll() like nvme-bench), then sleeps in
 * epoll_wait until the sleeper writes back. Each thread's CPU time comes from its own CLOCK_THREAD_CPUTIME_ID, so
 * the waker's figure per round is the floor of an interrupt-mode server's CPU per client wake-up, before any work.
 *
 * On bare metal a round costs the waker a microsecond or two; in a VM, waking a halted vCPU can cost far more (an
 * IPI the hypervisor must deliver). The figure is for this machine only, which is why the benchmarks measure it in
 * the same run as the server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct options {
  int waker_cpu;
  int sleeper_cpu;
  double seconds;
  int json;
};

struct shared {
  int to_sleeper; /* eventfd the waker writes */
  int to_waker;   /* eventfd the sleeper writes */
  atomic_int stop;
  uint64_t sleeper_rounds;
  double sleeper_cpu_s;
  /* The first failure of either thread (the waker reads it while the sleeper may set it). */
  _Atomic(const char *) error;
};

/* Records `why` unless a failure was recorded already (the first one is the cause). */
static void fail(struct shared *s, const char *why) {
  const char *none = NULL;
  atomic_compare_exchange_strong(&s->error, &none, why);
}

static double clock_s(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static int signal_fd(int fd) {
  uint64_t one = 1;
  return write(fd, &one, sizeof one) == (ssize_t)sizeof one ? 0 : -1;
}

static int drain_fd(int fd) {
  uint64_t value;
  return read(fd, &value, sizeof value) == (ssize_t)sizeof value ? 0 : -1;
}

struct sleeper_args {
  struct shared *shared;
  int cpu;
};

/* The client's side: sleep in poll() until woken, answer at once. */
static void *sleeper(void *arg) {
  struct sleeper_args *a = arg;
  struct shared *s = a->shared;
  if (pin(a->cpu) != 0) {
    fail(s, "cannot pin the sleeper thread to its CPU");
    (void)signal_fd(s->to_waker); /* so the waker stops waiting for an answer */
    return NULL;
  }
  double cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
  struct pollfd p = {.fd = s->to_sleeper, .events = POLLIN};
  while (!atomic_load(&s->stop)) {
    int r = poll(&p, 1, 200);
    if (r == 0 || (r < 0 && errno == EINTR)) continue;
    if (r < 0 || drain_fd(s->to_sleeper) != 0 || signal_fd(s->to_waker) != 0) {
      fail(s, "sleeper: eventfd poll/read/write failed");
      break;
    }
    s->sleeper_rounds++;
  }
  s->sleeper_cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
  /* Wake the waker in case it waits for a round that will not come. */
  (void)signal_fd(s->to_waker);
  return NULL;
}

static int parse_options(int argc, char **argv, struct options *o) {
  static const struct option long_options[] = {
      {"waker-cpu", required_argument, 0, 'w'}, {"sleeper-cpu", required_argument, 0, 's'},
      {"seconds", required_argument, 0, 't'},   {"json", no_argument, 0, 'j'},
      {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
  };
  *o = (struct options){.waker_cpu = 0, .sleeper_cpu = 1, .seconds = 2.0, .json = 0};
  for (;;) {
    int c = getopt_long(argc, argv, "", long_options, NULL);
    if (c == -1) break;
    char *end = NULL;
    switch (c) {
      case 'w': o->waker_cpu = (int)strtol(optarg, &end, 10); break;
      case 's': o->sleeper_cpu = (int)strtol(optarg, &end, 10); break;
      case 't': o->seconds = strtod(optarg, &end); break;
      case 'j': o->json = 1; break;
      default:
        fprintf(stderr, "usage: wake-cost [--waker-cpu N] [--sleeper-cpu N] [--seconds S] [--json]\n");
        return c == 'h' ? 1 : 2;
    }
    if (end != NULL && *end != '\0') {
      fprintf(stderr, "wake-cost: not a number: %s\n", optarg);
      return 2;
    }
  }
  if (o->waker_cpu < 0 || o->sleeper_cpu < 0 || o->waker_cpu == o->sleeper_cpu || !(o->seconds > 0 && o->seconds <= 600)) {
    fprintf(stderr, "wake-cost: two different CPUs and 0 < seconds <= 600 are needed\n");
    return 2;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct options o;
  int bad = parse_options(argc, argv, &o);
  if (bad != 0) return bad == 1 ? 0 : 2;

  struct shared s = {.to_sleeper = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .to_waker = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event want = {.events = EPOLLIN};
  if (s.to_sleeper < 0 || s.to_waker < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s.to_waker, &want) != 0) {
    perror("wake-cost: eventfd/epoll");
    return 1;
  }
  if (pin(o.waker_cpu) != 0) {
    fprintf(stderr, "wake-cost: cannot pin to CPU %d\n", o.waker_cpu);
    return 1;
  }
  pthread_t thread;
  struct sleeper_args args = {.shared = &s, .cpu = o.sleeper_cpu};
  if (pthread_create(&thread, NULL, sleeper, &args) != 0) {
    perror("wake-cost: pthread_create");
    return 1;
  }

  /* A short warm-up, so both threads are running and pinned before anything is counted. The clock is read every
   * CLOCK_EVERY rounds only: where it is not in the vDSO, a read is a system call the round would be charged. */
  enum { CLOCK_EVERY = 64 };
  uint64_t rounds = 0, turns = 0;
  double wall0 = 0, cpu0 = 0, warm_until = clock_s(CLOCK_MONOTONIC) + 0.2, end = warm_until + o.seconds;
  int counting = 0;
  for (;; turns++) {
    if (turns % CLOCK_EVERY == 0) {
      double now = clock_s(CLOCK_MONOTONIC);
      if (!counting && now >= warm_until) {
        counting = 1;
        wall0 = now;
        cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
      }
      if (now >= end) break;
    }
    if (atomic_load(&s.error)) break;
    if (signal_fd(s.to_sleeper) != 0) {
      fail(&s, "waker: eventfd write failed");
      break;
    }
    struct epoll_event got;
    int r;
    do r = epoll_wait(ep, &got, 1, 1000);
    while (r < 0 && errno == EINTR);
    if (r <= 0 || drain_fd(s.to_waker) != 0) {
      fail(&s, r == 0 ? "waker: no answer from the sleeper within 1 s" : "waker: epoll_wait/read failed");
      break;
    }
    if (counting) rounds++;
  }
  double wall_s = clock_s(CLOCK_MONOTONIC) - wall0;
  double waker_cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
  atomic_store(&s.stop, 1);
  pthread_join(thread, NULL);
  const char *error = atomic_load(&s.error);
  if (error || rounds == 0) {
    fprintf(stderr, "wake-cost: %s\n", error ? error : "no round finished");
    return 1;
  }

  double waker_us = waker_cpu_s * 1e6 / (double)rounds;
  double round_us = wall_s * 1e6 / (double)rounds;
  /* The sleeper's clock ran through the warm-up too: its figure is per round it answered. */
  double sleeper_us = s.sleeper_cpu_s * 1e6 / (double)s.sleeper_rounds;
  if (o.json) {
    printf("{\"tool\":\"wake-cost\",\"ok\":true,\"waker_cpu\":%d,\"sleeper_cpu\":%d,\"seconds\":%.3f,\"rounds\":%" PRIu64
           ",\"round_us\":%.3f,\"waker_cpu_us_per_round\":%.3f,\"sleeper_cpu_us_per_round\":%.3f}\n",
           o.waker_cpu, o.sleeper_cpu, wall_s, rounds, round_us, waker_us, sleeper_us);
  } else {
    printf("%" PRIu64 " rounds in %.2f s: one round %.2f µs; the waker's CPU per round %.2f µs (wakes the sleeper once, "
           "is woken once), the sleeper's %.2f µs\n",
           rounds, wall_s, round_us, waker_us, sleeper_us);
  }
  return 0;
}
