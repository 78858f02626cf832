/*
 * nvme-bench: closed-loop NVMe benchmark client for `vfiod serve` (vfio-user) and for an in-process loopback device.
 *
 *   nvme-bench --socket <path> [--workload randread|randwrite] [--bs 4096] [--qd 1] [--seconds 5] [--queues 1]
 *              [--completion irq|poll] [--doorbell auto|mmap|posted|sync] [--verify] [--span BYTES] [--json]
 *   nvme-bench --loopback [--loopback-size BYTES] ...        (client ceiling: no server, no transport)
 *   nvme-bench --socket <path> --rtt N [--json]              (N synchronous 4-byte REGION_READs of CSTS: the cost of
 *                                                             one vfio-user round trip, no I/O)
 *
 * One I/O queue pair with qd+1 entries; every completion immediately resubmits (closed loop). Latency is measured per
 * I/O with CLOCK_MONOTONIC (one clock read per reaped batch, shared by the batch's completions and resubmissions)
 * into a log-linear histogram (256 sub-buckets per octave: < 0.4 % relative error).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "loopback_dev.h"
#include "nvme_queue.h"
#include "vfio_user_client.h"

#define PAGE 4096u
#define RAM_IOVA 0x0ull
#define RAM_RESERVED 0x10000u /* keep IOVA 0..64K unused so no PRP is ever 0 */

/* ---------------- options ---------------- */

struct opts {
  const char *socket;
  int loopback;
  uint64_t loopback_size;
  int write; /* randwrite */
  uint32_t bs, qd, queues;
  double seconds, ramp;
  int irq;              /* completion mode */
  const char *doorbell; /* auto|mmap|posted|sync */
  int verify;
  uint64_t span;
  int json;
  uint32_t nsid;
  uint64_t seed;
  uint32_t qsize; /* I/O queue entries; 0 = qd + 1 */
  int quiet;
  uint32_t rtt; /* --rtt N: only time N register reads */
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: nvme-bench (--socket PATH | --loopback) [options]\n"
          "  --workload randread|randwrite   (default randread)\n"
          "  --bs BYTES          block size, multiple of the LBA size (default 4096)\n"
          "  --qd N              queue depth (default 1)\n"
          "  --seconds S         measured time (default 5)\n"
          "  --ramp S            unmeasured warm-up before it (default 0.5)\n"
          "  --queues N          I/O queue pairs (only 1 supported)\n"
          "  --completion irq|poll  wait on the MSI-X eventfd, or spin on CQ memory (default irq; loopback: poll)\n"
          "  --doorbell auto|mmap|posted|sync  auto: mmap when BAR0 offers the doorbell page, else posted writes\n"
          "  --verify            write a pattern over the span first, then check every block read\n"
          "  --span BYTES        part of the namespace to use (default: all; with --verify: min(all, 64M))\n"
          "  --nsid N            namespace (default 1)\n"
          "  --seed N            RNG seed\n"
          "  --qsize N           I/O queue entries (default qd+1)\n"
          "  --loopback-size BYTES  loopback namespace size (default 1G)\n"
          "  --rtt N             only time N synchronous REGION_READs of CSTS (one vfio-user round trip each)\n"
          "  --json              one JSON object on stdout\n");
}

static uint64_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  uint64_t m = 1;
  switch (*end) {
  case 'k': case 'K': m = 1ull << 10; break;
  case 'm': case 'M': m = 1ull << 20; break;
  case 'g': case 'G': m = 1ull << 30; break;
  case 't': case 'T': m = 1ull << 40; break;
  case 0: break;
  default: fprintf(stderr, "bad size '%s'\n", s); exit(2);
  }
  return (uint64_t)(v * (double)m);
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("nvme-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* ---------------- time, RNG, histogram ---------------- */

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t xorshift64s(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

#define H_SUB 256u
#define H_BUCKETS (2u * H_SUB + 56u * H_SUB)
struct hist {
  uint64_t b[H_BUCKETS];
  uint64_t count, sum, min, max;
};

static inline unsigned h_index(uint64_t v) {
  if (v < 2u * H_SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - 8u; /* v >> shift in [256, 511] */
  return 2u * H_SUB + (shift - 1u) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

static uint64_t h_value(unsigned idx) {
  if (idx < 2u * H_SUB) return idx;
  unsigned shift = (idx - 2u * H_SUB) / H_SUB + 1u;
  uint64_t mant = (idx - 2u * H_SUB) % H_SUB + H_SUB;
  return (mant << shift) + (1ull << (shift - 1u)); /* bucket midpoint */
}

static inline void h_record(struct hist *h, uint64_t v) {
  h->b[h_index(v)]++;
  h->count++;
  h->sum += v;
  if (v < h->min) h->min = v;
  if (v > h->max) h->max = v;
}

static uint64_t h_percentile(const struct hist *h, double p) {
  if (!h->count) return 0;
  uint64_t rank = (uint64_t)(p / 100.0 * (double)h->count + 0.999999);
  if (rank < 1) rank = 1;
  uint64_t cum = 0;
  for (unsigned i = 0; i < H_BUCKETS; i++) {
    cum += h->b[i];
    if (cum >= rank) {
      uint64_t v = h_value(i);
      if (v < h->min) v = h->min;
      if (v > h->max) v = h->max;
      return v;
    }
  }
  return h->max;
}

/* ---------------- vfio-user transport for nvme_regs_ops ---------------- */

enum db_mode { DB_MMAP, DB_POSTED, DB_SYNC };
static const char *db_name[] = {"mmap", "posted", "sync"};

struct vfu_xport {
  struct vfu_client *c;
  enum db_mode mode;
  volatile uint32_t *db; /* BAR0 + 0x1000 when mmap-ed */
  uint32_t stride;       /* bytes between doorbells */
  int err;               /* first doorbell error */
};

static int x_read32(void *ctx, uint32_t off, uint32_t *v) {
  struct vfu_xport *x = ctx;
  return vfu_region_read(x->c, VFU_PCI_BAR0_REGION, off, v, 4);
}
static int x_write32(void *ctx, uint32_t off, uint32_t v) {
  struct vfu_xport *x = ctx;
  return vfu_region_write(x->c, VFU_PCI_BAR0_REGION, off, &v, 4);
}
static int x_doorbell(void *ctx, uint32_t index, uint32_t value) {
  struct vfu_xport *x = ctx;
  uint32_t off = index * x->stride;
  int r = 0;
  switch (x->mode) {
  case DB_MMAP:
    x->db[off / 4u] = value; /* nvme_qpair_ring_* fenced the queue memory */
    break;
  case DB_POSTED:
    r = vfu_region_write_posted(x->c, VFU_PCI_BAR0_REGION, NVME_REG_DOORBELLS + off, &value, 4);
    break;
  case DB_SYNC:
    r = vfu_region_write(x->c, VFU_PCI_BAR0_REGION, NVME_REG_DOORBELLS + off, &value, 4);
    break;
  }
  if (r && !x->err) x->err = r;
  return r;
}

/* Memory space + bus master on; MSI-X enabled and unmasked (what a guest driver does before using vectors). */
static int pci_enable(struct vfu_client *c, int want_msix) {
  int r = vfu_pci_enable_bus_master(c);
  if (r || !want_msix) return r;
  r = vfu_pci_enable_msix(c);
  return r == -ENOENT ? 0 : r; /* no MSI-X: --completion irq fails later with "no MSI-X vectors" */
}

static double proc_cpu_s(int pid) {
  if (pid <= 0) return -1;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long ut = 0, st = 0;
  /* After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double rusage_s(struct rusage *ru, int sys) {
  struct timeval *t = sys ? &ru->ru_stime : &ru->ru_utime;
  return (double)t->tv_sec + (double)t->tv_usec / 1e6;
}

/* ---------------- data pattern ---------------- */

static inline uint64_t pattern_word(uint64_t block, uint64_t i, uint64_t seed) {
  return (block * 0x9E3779B97F4A7C15ull) ^ (i * 0xC2B2AE3D27D4EB4Full) ^ seed;
}
static void pattern_fill(uint64_t *buf, uint32_t words, uint64_t block, uint64_t seed) {
  for (uint32_t i = 0; i < words; i++) buf[i] = pattern_word(block, i, seed);
}
static int pattern_check(const uint64_t *buf, uint32_t words, uint64_t block, uint64_t seed) {
  for (uint32_t i = 0; i < words; i++)
    if (buf[i] != pattern_word(block, i, seed)) return (int)i + 1;
  return 0;
}

/* ---------------- benchmark ---------------- */

struct slot {
  uint64_t start;
  uint64_t block; /* index in units of bs */
  uint8_t *buf;
  uint64_t buf_iova;
  uint64_t *prp_list;
  uint64_t prp_iova;
};

struct bench {
  struct opts o;
  struct nvme_ctrl ctrl;
  struct nvme_qpair qp;
  struct nvme_ns_info ns;
  struct slot *slots;
  uint64_t span_blocks;
  uint32_t lbas_per_io;
  uint64_t rng;
  int efd; /* eventfd of the I/O queue's vector, or -1 */
  struct vfu_xport *x;
  uint64_t irq_waits, empty_wakeups;
  uint64_t io_errors, verify_errors, verified;
  uint16_t first_bad_status;
};

static volatile sig_atomic_t g_tick;
static void on_alarm(int sig) {
  (void)sig;
  g_tick++;
}

static void submit_slot(struct bench *b, uint16_t cid, uint8_t opc, uint64_t block, uint64_t t) {
  struct slot *s = &b->slots[cid];
  s->block = block;
  s->start = t;
  if (opc == NVME_IO_WRITE) pattern_fill((uint64_t *)s->buf, b->o.bs / 8u, block, b->o.seed);
  uint64_t prp1, prp2;
  if (nvme_build_prps(s->buf_iova, b->o.bs, s->prp_list, s->prp_iova, &prp1, &prp2))
    die("internal: %u bytes do not fit one PRP list", b->o.bs); /* --bs <= 2M and page-aligned buffers */
  struct nvme_sqe sqe;
  nvme_build_rw(&sqe, opc, cid, b->ns.nsid, block * b->lbas_per_io, b->lbas_per_io, prp1, prp2);
  if (nvme_qpair_submit(&b->qp, &sqe)) die("internal: SQ full");
}

/* No progress for 10 s: say exactly what the queues look like, then exit. */
static void hang_report(struct bench *b, uint32_t outstanding) {
  struct nvme_qpair *qp = &b->qp;
  const volatile struct nvme_cqe *e = &qp->cq[qp->cq_head];
  uint64_t ev = 0;
  int ev_ready = 0;
  if (b->efd >= 0) {
    int fl = fcntl(b->efd, F_GETFL);
    fcntl(b->efd, F_SETFL, fl | O_NONBLOCK);
    ev_ready = read(b->efd, &ev, sizeof ev) == (ssize_t)sizeof ev;
  }
  if (b->x && b->x->mode == DB_MMAP)
    fprintf(stderr, "nvme-bench: shared doorbell page now holds SQ%u tail %u, CQ%u head %u\n", qp->qid,
            b->x->db[(2u * qp->qid) * b->x->stride / 4u], qp->qid, b->x->db[(2u * qp->qid + 1u) * b->x->stride / 4u]);
  die("no completion for 10 s; server hung? %u outstanding; SQ tail %u (rung %u), SQ head %u; CQ head %u (rung %u) "
      "expecting phase %u; CQE at head: cid %u status 0x%04x sqhd %u dw0 0x%x (%s); eventfd %s%s",
      outstanding, qp->sq_tail, qp->sq_tail_rung, qp->sq_head, qp->cq_head, qp->cq_head_rung, qp->phase, e->cid,
      e->status, e->sqhd, e->dw0, (e->status & 1u) == qp->phase ? "POSTED but not reaped" : "not posted",
      b->efd < 0 ? "unused" : ev_ready ? "had a pending count " : "not signalled",
      ev_ready ? (ev > 1 ? "(>1)" : "(1)") : "");
}

/*
 * Wait until at least one completion may be available. Returns -1 on hang (no progress for 10 s). The server may
 * have made the eventfd non-blocking (vfiod does: O_NONBLOCK is a flag of the open file description both share), so
 * a plain read would return EAGAIN at once and the wait would spin a core: poll() blocks either way.
 */
static int wait_completion(struct bench *b, int *stall_ticks, int counting) {
  if (b->efd >= 0) {
    uint64_t v;
    struct pollfd p = {.fd = b->efd, .events = POLLIN};
    /* irq_waits counts the waits that slept (the server had to wake this thread) within the measured window, so that
     * the I/Os of that window divided by it is the I/Os per wake-up; an interrupt already pending costs no wake-up. */
    int r = poll(&p, 1, 0);
    if (r == 0) {
      if (counting) b->irq_waits++;
      r = poll(&p, 1, 1000);
    }
    if (r == 0 || (r < 0 && errno == EINTR)) {
      if (++*stall_ticks > 10) return -1;
      return 0;
    }
    if (r > 0) (void)!read(b->efd, &v, sizeof v);
    return 0;
  }
  return 0;
}

/*
 * Closed loop. phase_write: write every block of the span once (pattern) at the configured depth.
 * Otherwise run for ramp+seconds, recording latency after the ramp. Returns measured window ns.
 */
static uint64_t run_loop(struct bench *b, int phase_write, struct hist *h, uint64_t *ios_out, double *cpu_client,
                         double *cpu_server, int server_pid) {
  struct nvme_qpair *qp = &b->qp;
  uint32_t qd = b->o.qd;
  uint8_t opc = (phase_write || b->o.write) ? NVME_IO_WRITE : NVME_IO_READ;
  uint64_t next_seq = 0, total_seq = phase_write ? b->span_blocks : UINT64_MAX;
  uint64_t t0 = now_ns();
  uint64_t t_measure = phase_write ? t0 : t0 + (uint64_t)(b->o.ramp * 1e9);
  uint64_t t_end = phase_write ? UINT64_MAX : t_measure + (uint64_t)(b->o.seconds * 1e9);
  int measuring = phase_write, stopping = 0;
  uint32_t outstanding = 0;
  uint64_t ios = 0;
  struct rusage ru0, ru1;
  double srv0 = 0;
  if (measuring) {
    getrusage(RUSAGE_SELF, &ru0);
    srv0 = proc_cpu_s(server_pid);
  }
  struct nvme_cqe cqes[256];
  for (uint32_t i = 0; i < qd && next_seq < total_seq; i++) {
    uint64_t blk = phase_write ? next_seq : xorshift64s(&b->rng) % b->span_blocks;
    next_seq++;
    submit_slot(b, (uint16_t)i, opc, blk, t0);
    outstanding++;
  }
  nvme_qpair_ring_sq(qp);
  int stall = 0;
  uint64_t last_tick = (uint64_t)g_tick, batches = 0;
  uint64_t t_measure_actual = t0;
  while (outstanding > 0) {
    int n = nvme_qpair_reap(qp, cqes, 256);
    if (n == 0) {
      if (b->efd >= 0) {
        if (wait_completion(b, &stall, !phase_write && measuring && !stopping) < 0) hang_report(b, outstanding);
      } else if ((uint64_t)g_tick != last_tick) {
        last_tick = (uint64_t)g_tick;
        if (++stall > 10) hang_report(b, outstanding);
      } else {
        nvme_cpu_relax();
      }
      if (b->efd >= 0 && n == 0) {
        /* Spurious wake-up (eventfd counted completions we had already reaped) is counted on the next pass. */
      }
      continue;
    }
    stall = 0;
    uint64_t t = now_ns();
    if (!measuring && t >= t_measure) {
      measuring = 1;
      t_measure_actual = t;
      getrusage(RUSAGE_SELF, &ru0);
      srv0 = proc_cpu_s(server_pid);
    }
    if (!stopping && t >= t_end) stopping = 1;
    for (int i = 0; i < n; i++) {
      struct nvme_cqe *e = &cqes[i];
      uint16_t cid = e->cid;
      if (cid >= qd) die("completion with unknown cid %u (status 0x%x)", cid, e->status);
      struct slot *s = &b->slots[cid];
      uint16_t st = NVME_CQE_STATUS(e);
      if (st & 0x7ffu) {
        if (!b->io_errors) b->first_bad_status = st;
        b->io_errors++;
      } else if (b->o.verify && opc == NVME_IO_READ) {
        int bad = pattern_check((const uint64_t *)s->buf, b->o.bs / 8u, s->block, b->o.seed);
        b->verified++;
        if (bad) {
          if (b->verify_errors < 5)
            fprintf(stderr, "nvme-bench: verify mismatch at block %" PRIu64 " (byte offset %" PRIu64 ") word %d\n",
                    s->block, s->block * b->o.bs, bad - 1);
          b->verify_errors++;
        }
      }
      if (measuring && (phase_write || t <= t_end)) {
        h_record(h, t - s->start);
        ios++;
      }
      outstanding--;
      if (!stopping && next_seq < total_seq) {
        uint64_t blk = phase_write ? next_seq : xorshift64s(&b->rng) % b->span_blocks;
        next_seq++;
        submit_slot(b, cid, opc, blk, t);
        outstanding++;
      }
    }
    nvme_qpair_ring_cq(qp);
    nvme_qpair_ring_sq(qp);
    if (b->x && b->x->err) die("doorbell write failed: %s", b->x->c->last_error);
    if (b->x && b->x->mode == DB_POSTED && (++batches & 1023u) == 0) {
      int r = vfu_drain_unsolicited(b->x->c);
      if (r < 0) die("%s", b->x->c->last_error);
    }
  }
  uint64_t t_stop = now_ns();
  getrusage(RUSAGE_SELF, &ru1);
  double srv1 = proc_cpu_s(server_pid);
  uint64_t window;
  if (phase_write) {
    window = t_stop - t0;
  } else {
    if (!measuring) t_measure_actual = t_stop;
    window = (t_end < t_stop ? t_end : t_stop) - t_measure_actual;
  }
  *ios_out = ios;
  if (cpu_client) *cpu_client = (rusage_s(&ru1, 0) - rusage_s(&ru0, 0)) + (rusage_s(&ru1, 1) - rusage_s(&ru0, 1));
  if (cpu_server) *cpu_server = (srv0 >= 0 && srv1 >= 0) ? srv1 - srv0 : -1;
  return window;
}

/* --rtt: N synchronous register reads, each one request and one reply over the socket, timed one by one. */
static int run_rtt(const struct opts *o, struct vfu_client *c) {
  static struct hist h;
  h.min = UINT64_MAX;
  uint32_t csts = 0;
  for (uint32_t i = 0; i < o->rtt / 10u + 1u; i++) /* warm-up: first touches, page faults */
    if (vfu_region_read(c, VFU_PCI_BAR0_REGION, NVME_REG_CSTS, &csts, 4)) die("read CSTS: %s", c->last_error);
  uint64_t start = now_ns();
  for (uint32_t i = 0; i < o->rtt; i++) {
    uint64_t t0 = now_ns();
    if (vfu_region_read(c, VFU_PCI_BAR0_REGION, NVME_REG_CSTS, &csts, 4)) die("read CSTS: %s", c->last_error);
    h_record(&h, now_ns() - t0);
  }
  double secs = (double)(now_ns() - start) / 1e9, us = 1e3;
  if (o->json)
    printf("{\"tool\":\"nvme-bench\",\"ok\":true,\"mode\":\"rtt\",\"requests\":%u,\"seconds\":%.6f,"
           "\"lat_us\":{\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}}\n",
           o->rtt, secs, h.min / us, (double)h.sum / (double)h.count / us, h_percentile(&h, 50) / us,
           h_percentile(&h, 90) / us, h_percentile(&h, 99) / us, h_percentile(&h, 99.9) / us, h.max / us);
  else
    printf("vfio-user round trip (REGION_READ of CSTS), %u requests: min %.2f p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f "
           "max %.2f us\n", o->rtt, h.min / us, h_percentile(&h, 50) / us, h_percentile(&h, 90) / us,
           h_percentile(&h, 99) / us, h_percentile(&h, 99.9) / us, h.max / us);
  vfu_close(c);
  return 0;
}

int main(int argc, char **argv) {
  struct bench B;
  memset(&B, 0, sizeof B);
  struct opts *o = &B.o;
  o->bs = 4096;
  o->qd = 1;
  o->queues = 1;
  o->seconds = 5;
  o->ramp = 0.5;
  o->irq = -1;
  o->doorbell = "auto";
  o->nsid = 1;
  o->seed = 0x1234abcd5678ef01ull;
  o->loopback_size = 1ull << 30;
  const char *workload = "randread", *completion = NULL;
  static const struct option lo[] = {
      {"socket", 1, 0, 's'},     {"loopback", 0, 0, 'L'},   {"loopback-size", 1, 0, 'Z'}, {"workload", 1, 0, 'w'},
      {"bs", 1, 0, 'b'},         {"qd", 1, 0, 'q'},         {"seconds", 1, 0, 't'},       {"ramp", 1, 0, 'r'},
      {"queues", 1, 0, 'Q'},     {"completion", 1, 0, 'c'}, {"doorbell", 1, 0, 'd'},      {"verify", 0, 0, 'v'},
      {"span", 1, 0, 'S'},       {"json", 0, 0, 'j'},       {"nsid", 1, 0, 'n'},          {"seed", 1, 0, 'x'},
      {"help", 0, 0, 'h'},       {"qsize", 1, 0, 'E'},       {"rtt", 1, 0, 'R'},           {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (ch) {
    case 's': o->socket = optarg; break;
    case 'L': o->loopback = 1; break;
    case 'Z': o->loopback_size = parse_size(optarg); break;
    case 'w': workload = optarg; break;
    case 'b': o->bs = (uint32_t)parse_size(optarg); break;
    case 'q': o->qd = (uint32_t)atoi(optarg); break;
    case 't': o->seconds = atof(optarg); break;
    case 'r': o->ramp = atof(optarg); break;
    case 'Q': o->queues = (uint32_t)atoi(optarg); break;
    case 'c': completion = optarg; break;
    case 'd': o->doorbell = optarg; break;
    case 'v': o->verify = 1; break;
    case 'S': o->span = parse_size(optarg); break;
    case 'j': o->json = 1; break;
    case 'n': o->nsid = (uint32_t)atoi(optarg); break;
    case 'x': o->seed = strtoull(optarg, NULL, 0); break;
    case 'E': o->qsize = (uint32_t)atoi(optarg); break;
    case 'R': o->rtt = (uint32_t)atoi(optarg); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!o->socket == !o->loopback) { usage(stderr); return 2; }
  if (!strcmp(workload, "randread")) o->write = 0;
  else if (!strcmp(workload, "randwrite")) o->write = 1;
  else die("unknown workload '%s' (randread|randwrite)", workload);
  if (o->qd < 1 || o->qd > 1023) die("--qd must be 1..1023");
  if (!o->qsize) o->qsize = o->qd + 1u;
  if (o->qsize < o->qd + 1u || o->qsize > 65536) die("--qsize must be qd+1..65536");
  if (o->queues != 1) die("only --queues 1 is implemented");
  if (o->bs < 512 || (o->bs & 511u) || o->bs > (1u << 21)) die("--bs must be a multiple of 512, at most 2M");
  if (o->seconds <= 0) die("--seconds must be > 0");
  if (completion && !strcmp(completion, "irq")) o->irq = 1;
  else if (completion && !strcmp(completion, "poll")) o->irq = 0;
  else if (completion) die("--completion must be irq or poll");
  if (o->irq < 0) o->irq = o->loopback ? 0 : 1;
  if (o->loopback && o->irq) die("--loopback only supports --completion poll");
  if (o->rtt && o->loopback) die("--rtt needs --socket");

  /* Guest RAM: a shared memfd the server maps via DMA_MAP. */
  size_t need = RAM_RESERVED + 6u * PAGE * 2u + (size_t)o->qsize * 80u + 2u * PAGE +
                (size_t)o->qd * ((o->bs + PAGE - 1) / PAGE * PAGE + PAGE) + (1u << 20);
  size_t ram_size = 64u << 20;
  while (ram_size < need) ram_size <<= 1;
  int memfd = memfd_create("nvme-bench-guest-ram", MFD_CLOEXEC);
  if (memfd < 0) die("memfd_create: %s", strerror(errno));
  if (ftruncate(memfd, (off_t)ram_size) < 0) die("ftruncate: %s", strerror(errno));
  uint8_t *ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
  if (ram == MAP_FAILED) die("mmap guest RAM: %s", strerror(errno));
  struct nvme_dma_mem mem = {.vaddr = ram, .iova = RAM_IOVA, .size = ram_size, .used = RAM_RESERVED};

  struct nvme_regs_ops ops;
  struct vfu_client client;
  struct vfu_xport xport = {0};
  struct loopback_dev *lb = NULL;
  struct vfu_region_info bar0 = {.fd = -1};
  void *db_map = NULL;
  size_t db_map_len = 0;
  int efds[2] = {-1, -1};
  int nvec = 0, server_pid = -1;
  B.efd = -1;
  uint32_t irq_count = 0;

  if (o->loopback) {
    lb = loopback_create(ram, RAM_IOVA, ram_size, o->loopback_size);
    if (!lb) die("loopback device: out of memory");
    loopback_ops(lb, &ops);
  } else {
    struct vfu_client *c = &client;
    if (vfu_connect(c, o->socket)) die("%s", c->last_error);
    server_pid = vfu_peer_pid(c);
    if (vfu_negotiate_version(c)) die("VERSION: %s", c->last_error);
    if (vfu_device_get_info(c)) die("DEVICE_GET_INFO: %s", c->last_error);
    if (c->num_regions <= VFU_PCI_CONFIG_REGION) die("device has only %u regions", c->num_regions);
    if (vfu_get_region_info(c, VFU_PCI_BAR0_REGION, &bar0)) die("GET_REGION_INFO(BAR0): %s", c->last_error);
    if (bar0.size < 0x2000) die("BAR0 is only %" PRIu64 " bytes", bar0.size);
    if (c->num_irqs > VFU_PCI_MSIX_IRQ) {
      uint32_t fl;
      if (vfu_get_irq_info(c, VFU_PCI_MSIX_IRQ, &fl, &irq_count)) die("GET_IRQ_INFO(MSI-X): %s", c->last_error);
    }
    if (vfu_dma_map(c, memfd, 0, RAM_IOVA, ram_size, VFU_DMA_READ | VFU_DMA_WRITE)) die("DMA_MAP: %s", c->last_error);
    if (pci_enable(c, o->irq)) die("PCI config setup: %s", c->last_error);

    /* Doorbell mode. */
    uint64_t area_off = 0, area_size = 0;
    int mmap_ok = vfu_find_mmap_area(&bar0, NVME_REG_DOORBELLS, 8, &area_off, &area_size) == 0;
    if (!strcmp(o->doorbell, "auto")) xport.mode = mmap_ok ? DB_MMAP : DB_POSTED;
    else if (!strcmp(o->doorbell, "mmap")) xport.mode = DB_MMAP;
    else if (!strcmp(o->doorbell, "posted")) xport.mode = DB_POSTED;
    else if (!strcmp(o->doorbell, "sync")) xport.mode = DB_SYNC;
    else die("--doorbell must be auto|mmap|posted|sync");
    if (xport.mode == DB_MMAP) {
      if (!mmap_ok)
        die("--doorbell mmap: BAR0 offers no mmap-able doorbell page (flags 0x%x, %u sparse areas, fd %d); start the server with --poll",
            bar0.flags, bar0.nr_areas, bar0.fd);
      db_map_len = area_size;
      db_map = mmap(NULL, area_size, PROT_READ | PROT_WRITE, MAP_SHARED, bar0.fd, (off_t)(bar0.offset + area_off));
      if (db_map == MAP_FAILED) die("mmap of BAR0 area [0x%" PRIx64 "+0x%" PRIx64 "] at fd offset 0x%" PRIx64 ": %s",
                                    area_off, area_size, bar0.offset + area_off, strerror(errno));
      xport.db = (volatile uint32_t *)((uint8_t *)db_map + (NVME_REG_DOORBELLS - area_off));
    }
    xport.c = c;
    uint32_t cap_hi;
    if (vfu_region_read(c, VFU_PCI_BAR0_REGION, NVME_REG_CAP + 4, &cap_hi, 4)) die("read CAP: %s", c->last_error);
    xport.stride = 4u << (cap_hi & 0xfu);
    ops = (struct nvme_regs_ops){.ctx = &xport, .read32 = x_read32, .write32 = x_write32, .ring_doorbell = x_doorbell};
    B.x = &xport;

    if (o->irq) {
      if (irq_count < 1) die("--completion irq: device reports no MSI-X vectors");
      nvec = irq_count >= 2 ? 2 : 1;
      for (int i = 0; i < nvec; i++) {
        efds[i] = eventfd(0, EFD_CLOEXEC);
        if (efds[i] < 0) die("eventfd: %s", strerror(errno));
      }
      if (vfu_set_irqs_eventfd(c, VFU_PCI_MSIX_IRQ, 0, (uint32_t)nvec, efds)) die("SET_IRQS: %s", c->last_error);
      B.efd = efds[nvec - 1];
    }
  }

  if (o->rtt) return run_rtt(o, &client);

  /* Controller bring-up. */
  struct nvme_ctrl *ctrl = &B.ctrl;
  if (nvme_ctrl_init(ctrl, &ops, &mem, 32)) die("controller init: %s%s%s", ctrl->last_error, B.x ? " / " : "", B.x ? client.last_error : "");
  if (nvme_identify_ctrl(ctrl)) die("Identify controller: %s", ctrl->last_error);
  if (nvme_identify_ns(ctrl, o->nsid, &B.ns)) die("Identify namespace: %s", ctrl->last_error);
  uint16_t gsq = 0, gcq = 0;
  if (nvme_set_num_queues(ctrl, 1, 1, &gsq, &gcq)) die("Set Features (Number of Queues): %s", ctrl->last_error);
  if (o->bs % B.ns.lba_size) die("--bs %u is not a multiple of the LBA size %u", o->bs, B.ns.lba_size);
  if (ctrl->max_transfer && o->bs > ctrl->max_transfer) die("--bs %u exceeds MDTS (%u bytes)", o->bs, ctrl->max_transfer);
  B.lbas_per_io = o->bs / B.ns.lba_size;
  uint64_t ns_bytes = B.ns.nsze * B.ns.lba_size;
  uint64_t span = o->span ? o->span : (o->verify ? (ns_bytes < (64ull << 20) ? ns_bytes : (64ull << 20)) : ns_bytes);
  if (span > ns_bytes) span = ns_bytes;
  B.span_blocks = span / o->bs;
  if (B.span_blocks == 0) die("span smaller than one block");
  if (nvme_create_io_qpair(ctrl, &B.qp, 1, (uint16_t)o->qsize, o->irq ? nvec - 1 : -1))
    die("create I/O queue pair: %s", ctrl->last_error);

  B.slots = calloc(o->qd, sizeof *B.slots);
  for (uint32_t i = 0; i < o->qd; i++) {
    struct slot *s = &B.slots[i];
    s->buf = nvme_dma_alloc(&mem, (o->bs + PAGE - 1) / PAGE * PAGE, PAGE, &s->buf_iova);
    s->prp_list = nvme_dma_alloc(&mem, PAGE, PAGE, &s->prp_iova);
    if (!s->buf || !s->prp_list) die("DMA memory exhausted (buffers)");
  }
  B.rng = o->seed ? o->seed : 1;

  struct sigaction sa = {.sa_handler = on_alarm};
  sigaction(SIGALRM, &sa, NULL); /* no SA_RESTART: a blocked eventfd read returns EINTR once a second */
  struct itimerval it = {{1, 0}, {1, 0}};
  setitimer(ITIMER_REAL, &it, NULL);

  static struct hist hw, h;
  hw.min = h.min = UINT64_MAX;
  uint64_t written = 0;
  double write_s = 0;
  if (o->verify) {
    uint64_t w = run_loop(&B, 1, &hw, &written, NULL, NULL, -1);
    write_s = (double)w / 1e9;
    if (B.io_errors) die("verify: %" PRIu64 " write errors (first status 0x%x)", B.io_errors, B.first_bad_status);
    if (!o->quiet && !o->json)
      fprintf(stderr, "verify: wrote %" PRIu64 " blocks of %u bytes in %.2f s\n", written, o->bs, write_s);
  }
  uint64_t ios = 0;
  double cpu_c = 0, cpu_s = -1;
  uint64_t window = run_loop(&B, 0, &h, &ios, &cpu_c, &cpu_s, server_pid);

  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);

  /* Shutdown: delete queues, CC.SHN, disable IRQs, unmap, close. */
  int shutdown_ok = 1;
  if (nvme_delete_io_qpair(ctrl, &B.qp)) {
    fprintf(stderr, "nvme-bench: delete I/O queues: %s\n", ctrl->last_error);
    shutdown_ok = 0;
  }
  if (nvme_ctrl_shutdown(ctrl)) {
    fprintf(stderr, "nvme-bench: shutdown: %s\n", ctrl->last_error);
    shutdown_ok = 0;
  }
  uint64_t msgs = 0, posted = 0, stray = 0;
  if (!o->loopback) {
    struct vfu_client *c = &client;
    if (o->irq && vfu_set_irqs_disable(c, VFU_PCI_MSIX_IRQ)) {
      fprintf(stderr, "nvme-bench: SET_IRQS disable: %s\n", c->last_error);
      shutdown_ok = 0;
    }
    if (vfu_dma_unmap(c, RAM_IOVA, ram_size)) {
      fprintf(stderr, "nvme-bench: DMA_UNMAP: %s\n", c->last_error);
      shutdown_ok = 0;
    }
    msgs = c->msgs_sent;
    posted = c->posted_writes;
    stray = c->stray_replies;
    vfu_close(c);
    if (db_map) munmap(db_map, db_map_len);
    if (bar0.fd >= 0) close(bar0.fd);
    for (int i = 0; i < nvec; i++) close(efds[i]);
  } else {
    loopback_destroy(lb);
  }

  /* Identify strings go into JSON: keep them printable and quote-free. */
  for (char *p = ctrl->mn; *p; p++) if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\') *p = '?';
  for (char *p = ctrl->sn; *p; p++) if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\') *p = '?';
  for (char *p = ctrl->fr; *p; p++) if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\') *p = '?';
  double secs = (double)window / 1e9;
  double iops = secs > 0 ? (double)ios / secs : 0;
  double mbps = iops * o->bs / 1e6;
  double mean = h.count ? (double)h.sum / (double)h.count : 0;
  double us = 1e3;
  const char *target = o->loopback ? "loopback" : "vfio-user";
  const char *dbm = o->loopback ? "loopback" : db_name[xport.mode];
  const char *cm = o->irq ? "irq" : "poll";
  int ok = B.io_errors == 0 && B.verify_errors == 0;
  if (o->json) {
    printf("{\"tool\":\"nvme-bench\",\"ok\":%s,\"target\":\"%s\",\"doorbell\":\"%s\",\"completion\":\"%s\","
           "\"workload\":\"%s\",\"bs\":%u,\"qd\":%u,\"qsize\":%u,\"queues\":%u,\"seconds\":%.6f,\"ios\":%" PRIu64 ","
           "\"iops\":%.1f,\"mbps\":%.2f,"
           "\"lat_us\":{\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
           "\"client_cpu\":{\"seconds\":%.3f,\"util\":%.3f,\"us_per_io\":%.3f},",
           ok ? "true" : "false", target, dbm, cm, o->write ? "randwrite" : "randread", o->bs, o->qd, o->qsize, o->queues, secs,
           ios, iops, mbps, h.count ? h.min / us : 0, mean / us, h_percentile(&h, 50) / us, h_percentile(&h, 90) / us,
           h_percentile(&h, 99) / us, h_percentile(&h, 99.9) / us, h.max / us, cpu_c, secs > 0 ? cpu_c / secs : 0,
           ios ? cpu_c * 1e6 / (double)ios : 0);
    if (cpu_s >= 0)
      printf("\"server_cpu\":{\"pid\":%d,\"seconds\":%.3f,\"util\":%.3f,\"us_per_io\":%.3f},", server_pid, cpu_s,
             secs > 0 ? cpu_s / secs : 0, ios ? cpu_s * 1e6 / (double)ios : 0);
    else
      printf("\"server_cpu\":null,");
    printf("\"verify\":{\"enabled\":%s,\"span_bytes\":%" PRIu64 ",\"written\":%" PRIu64 ",\"write_seconds\":%.3f,"
           "\"checked\":%" PRIu64 ",\"errors\":%" PRIu64 "},"
           "\"io_errors\":%" PRIu64 ",\"first_error_status\":%u,"
           "\"transport\":{\"msgs_sent\":%" PRIu64 ",\"posted_writes\":%" PRIu64 ",\"stray_replies\":%" PRIu64
           ",\"irq_waits\":%" PRIu64 "},"
           "\"controller\":{\"mn\":\"%s\",\"sn\":\"%s\",\"fr\":\"%s\",\"mqes\":%u,\"mdts_bytes\":%u,\"nsid\":%u,"
           "\"ns_blocks\":%" PRIu64 ",\"lba_size\":%u,\"span_bytes\":%" PRIu64 "},\"clean_shutdown\":%s}\n",
           o->verify ? "true" : "false", B.span_blocks * o->bs, written, write_s, B.verified, B.verify_errors,
           B.io_errors, B.first_bad_status, msgs, posted, stray, B.irq_waits, ctrl->mn, ctrl->sn, ctrl->fr, ctrl->mqes,
           ctrl->max_transfer, B.ns.nsid, B.ns.nsze, B.ns.lba_size, B.span_blocks * o->bs,
           shutdown_ok ? "true" : "false");
  } else {
    printf("target %s (%s), doorbell %s, completion %s, %s bs=%u qd=%u, %.2f s\n", target, ctrl->mn, dbm, cm,
           o->write ? "randwrite" : "randread", o->bs, o->qd, secs);
    printf("  IOPS %.0f  %.1f MB/s  ios %" PRIu64 "\n", iops, mbps, ios);
    printf("  lat us: min %.2f mean %.2f p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", h.count ? h.min / us : 0,
           mean / us, h_percentile(&h, 50) / us, h_percentile(&h, 90) / us, h_percentile(&h, 99) / us,
           h_percentile(&h, 99.9) / us, h.max / us);
    printf("  client CPU %.2f s (%.0f%%, %.2f us/IO)", cpu_c, secs > 0 ? 100 * cpu_c / secs : 0,
           ios ? cpu_c * 1e6 / (double)ios : 0);
    if (cpu_s >= 0) printf("  server CPU %.2f s (%.0f%%, %.2f us/IO)", cpu_s, secs > 0 ? 100 * cpu_s / secs : 0, ios ? cpu_s * 1e6 / (double)ios : 0);
    printf("\n");
    if (o->verify)
      printf("  verify: %" PRIu64 " blocks written, %" PRIu64 " reads checked, %" PRIu64 " mismatches\n", written,
             B.verified, B.verify_errors);
    if (B.io_errors) printf("  I/O errors: %" PRIu64 " (first status 0x%x)\n", B.io_errors, B.first_bad_status);
    if (!o->loopback) printf("  messages sent %" PRIu64 " (posted %" PRIu64 "), stray replies %" PRIu64 ", irq waits %" PRIu64 "\n", msgs, posted, stray, B.irq_waits);
    if (!shutdown_ok) printf("  shutdown: NOT clean (see stderr)\n");
  }
  return ok ? 0 : 3;
}
