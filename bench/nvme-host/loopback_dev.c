/* In-process loopback NVMe device; see loopback_dev.h. Deliberately small: no error log, no AER, one namespace. */
#define _GNU_SOURCE
#include "loopback_dev.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define LB_MAXQ 8
#define LB_LBA 512u

struct lb_sq {
  int valid;
  uint64_t iova;
  uint16_t size, head, tail, cqid;
};
struct lb_cq {
  int valid;
  uint64_t iova;
  uint16_t size, tail, head;
  uint8_t phase;
};

struct loopback_dev {
  uint8_t *ram;
  uint64_t ram_iova;
  size_t ram_size;
  uint8_t *ns;
  uint64_t ns_bytes;
  uint64_t cap;
  uint32_t cc, csts, aqa;
  uint64_t asq, acq;
  struct lb_sq sq[LB_MAXQ];
  struct lb_cq cq[LB_MAXQ];
};

static void *xlate(struct loopback_dev *d, uint64_t iova, size_t len) {
  if (iova < d->ram_iova || iova - d->ram_iova + len > d->ram_size) return NULL;
  return d->ram + (iova - d->ram_iova);
}

struct loopback_dev *loopback_create(void *ram, uint64_t ram_iova, size_t ram_size, uint64_t ns_bytes) {
  struct loopback_dev *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->ram = ram;
  d->ram_iova = ram_iova;
  d->ram_size = ram_size;
  d->ns_bytes = ns_bytes;
  d->ns = mmap(NULL, ns_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0); /* distinct pages: real cache misses */
  if (d->ns == MAP_FAILED) {
    free(d);
    return NULL;
  }
  /* MQES 1023, CQR, TO 10 (5 s), DSTRD 0, CSS NVM, MPSMIN/MAX 0. */
  d->cap = 1023u | (1u << 16) | (10u << 24) | (1ull << 37);
  return d;
}

void loopback_destroy(struct loopback_dev *d) {
  if (!d) return;
  munmap(d->ns, d->ns_bytes);
  free(d);
}

static void post(struct loopback_dev *d, uint16_t sqid, uint16_t cid, uint16_t status, uint32_t dw0) {
  struct lb_sq *sq = &d->sq[sqid];
  struct lb_cq *cq = &d->cq[sq->cqid];
  struct nvme_cqe *e = xlate(d, cq->iova + (uint64_t)cq->tail * 16u, 16);
  if (!e) return;
  e->dw0 = dw0;
  e->dw1 = 0;
  e->sqhd = sq->head;
  e->sqid = sqid;
  e->cid = cid;
  __atomic_store_n(&e->status, (uint16_t)((status << 1) | cq->phase), __ATOMIC_RELEASE);
  if (++cq->tail == cq->size) {
    cq->tail = 0;
    cq->phase ^= 1u;
  }
}

/* Copy between the namespace and guest memory described by PRPs. Returns 0 or an NVMe status. */
static uint16_t prp_xfer(struct loopback_dev *d, const struct nvme_sqe *s, uint8_t *ns, uint32_t len, int to_guest) {
  uint64_t prp1 = s->prp1;
  uint32_t first = 4096u - (uint32_t)(prp1 & 4095u);
  if (first > len) first = len;
  uint8_t *p = xlate(d, prp1, first);
  if (!p) return 0x0004; /* data transfer error */
  if (to_guest) memcpy(p, ns, first); else memcpy(ns, p, first);
  uint32_t done = first;
  if (done == len) return 0;
  const uint64_t *list = NULL;
  if (len - done <= 4096u) {
    uint8_t *q = xlate(d, s->prp2, len - done);
    if (!q) return 0x0004;
    if (to_guest) memcpy(q, ns + done, len - done); else memcpy(ns + done, q, len - done);
    return 0;
  }
  list = xlate(d, s->prp2, 4096);
  if (!list) return 0x0004;
  for (uint32_t i = 0; done < len && i < 512; i++) {
    uint32_t n = len - done < 4096u ? len - done : 4096u;
    uint8_t *q = xlate(d, list[i], n);
    if (!q) return 0x0004;
    if (to_guest) memcpy(q, ns + done, n); else memcpy(ns + done, q, n);
    done += n;
  }
  return 0;
}

static uint16_t exec_admin(struct loopback_dev *d, const struct nvme_sqe *s, uint32_t *dw0) {
  uint8_t opc = s->cdw0 & 0xffu;
  switch (opc) {
  case NVME_ADM_IDENTIFY: {
    uint8_t *buf = xlate(d, s->prp1, 4096);
    if (!buf) return 0x0004;
    memset(buf, 0, 4096);
    uint32_t cns = s->cdw10 & 0xffu;
    if (cns == 1) {
      memcpy(buf + 4, "LOOPBACK0001        ", 20);
      memcpy(buf + 24, "vfiod loopback (client ceiling)         ", 40);
      memcpy(buf + 64, "1.0     ", 8);
      buf[77] = 5; /* MDTS 128 KiB */
      uint32_t nn = 1;
      memcpy(buf + 516, &nn, 4);
      buf[512] = 0x66; /* SQES */
      buf[513] = 0x44; /* CQES */
    } else if (cns == 0) {
      if (s->nsid != 1) return 0x400b;
      uint64_t nsze = d->ns_bytes / LB_LBA;
      memcpy(buf, &nsze, 8);
      memcpy(buf + 8, &nsze, 8);
      memcpy(buf + 16, &nsze, 8);
      uint32_t lbaf0 = 9u << 16;
      memcpy(buf + 128, &lbaf0, 4);
    } else {
      return 0x4002;
    }
    return 0;
  }
  case NVME_ADM_SET_FEATURES:
    if ((s->cdw10 & 0xffu) == NVME_FEAT_NUM_QUEUES) {
      *dw0 = ((uint32_t)(LB_MAXQ - 2) << 16) | (LB_MAXQ - 2);
      return 0;
    }
    return 0x4002;
  case NVME_ADM_CREATE_CQ: {
    uint16_t qid = s->cdw10 & 0xffffu, size = (uint16_t)((s->cdw10 >> 16) + 1u);
    if (qid == 0 || qid >= LB_MAXQ || d->cq[qid].valid) return 0x4101;
    d->cq[qid] = (struct lb_cq){.valid = 1, .iova = s->prp1, .size = size, .phase = 1};
    return 0;
  }
  case NVME_ADM_CREATE_SQ: {
    uint16_t qid = s->cdw10 & 0xffffu, size = (uint16_t)((s->cdw10 >> 16) + 1u), cqid = (uint16_t)(s->cdw11 >> 16);
    if (qid == 0 || qid >= LB_MAXQ || d->sq[qid].valid) return 0x4101;
    if (cqid >= LB_MAXQ || !d->cq[cqid].valid) return 0x4100;
    d->sq[qid] = (struct lb_sq){.valid = 1, .iova = s->prp1, .size = size, .cqid = cqid};
    return 0;
  }
  case NVME_ADM_DELETE_SQ:
    d->sq[s->cdw10 & (LB_MAXQ - 1)].valid = 0;
    return 0;
  case NVME_ADM_DELETE_CQ:
    d->cq[s->cdw10 & (LB_MAXQ - 1)].valid = 0;
    return 0;
  default:
    return 0x4001;
  }
}

static uint16_t exec_io(struct loopback_dev *d, const struct nvme_sqe *s) {
  uint8_t opc = s->cdw0 & 0xffu;
  if (opc == NVME_IO_FLUSH) return 0;
  if (opc != NVME_IO_READ && opc != NVME_IO_WRITE) return 0x4001;
  if (s->nsid != 1) return 0x400b;
  uint64_t slba = (uint64_t)s->cdw10 | ((uint64_t)s->cdw11 << 32);
  uint32_t nlb = (s->cdw12 & 0xffffu) + 1u;
  uint64_t off = slba * LB_LBA, len = (uint64_t)nlb * LB_LBA;
  if (off + len > d->ns_bytes) return 0x0080; /* LBA out of range */
  return prp_xfer(d, s, d->ns + off, (uint32_t)len, opc == NVME_IO_READ);
}

static void process_sq(struct loopback_dev *d, uint16_t qid) {
  struct lb_sq *sq = &d->sq[qid];
  while (sq->head != sq->tail) {
    const struct nvme_sqe *s = xlate(d, sq->iova + (uint64_t)sq->head * 64u, 64);
    if (!s) return;
    struct nvme_sqe copy = *s;
    if (++sq->head == sq->size) sq->head = 0;
    uint32_t dw0 = 0;
    uint16_t st = qid == 0 ? exec_admin(d, &copy, &dw0) : exec_io(d, &copy);
    post(d, qid, (uint16_t)(copy.cdw0 >> 16), st, dw0);
  }
}

static int lb_read32(void *ctx, uint32_t off, uint32_t *v) {
  struct loopback_dev *d = ctx;
  switch (off) {
  case NVME_REG_CAP: *v = (uint32_t)d->cap; break;
  case NVME_REG_CAP + 4: *v = (uint32_t)(d->cap >> 32); break;
  case NVME_REG_VS: *v = 0x00010400; break;
  case NVME_REG_CC: *v = d->cc; break;
  case NVME_REG_CSTS: *v = d->csts; break;
  case NVME_REG_AQA: *v = d->aqa; break;
  default: *v = 0;
  }
  return 0;
}

static int lb_read64(void *ctx, uint32_t off, uint64_t *v) {
  uint32_t lo, hi;
  lb_read32(ctx, off, &lo);
  lb_read32(ctx, off + 4, &hi);
  *v = (uint64_t)hi << 32 | lo;
  return 0;
}

static int lb_write32(void *ctx, uint32_t off, uint32_t v) {
  struct loopback_dev *d = ctx;
  switch (off) {
  case NVME_REG_CC:
    if ((v & 1u) && !(d->cc & 1u)) {
      memset(d->sq, 0, sizeof d->sq);
      memset(d->cq, 0, sizeof d->cq);
      d->sq[0] = (struct lb_sq){.valid = 1, .iova = d->asq, .size = (uint16_t)((d->aqa & 0xfffu) + 1u), .cqid = 0};
      d->cq[0] = (struct lb_cq){.valid = 1, .iova = d->acq, .size = (uint16_t)(((d->aqa >> 16) & 0xfffu) + 1u), .phase = 1};
      d->csts = 1;
    } else if (!(v & 1u)) {
      d->csts = 0;
    }
    if (((v >> 14) & 3u) != 0) d->csts = (d->csts & ~0xcu) | (2u << 2);
    d->cc = v;
    break;
  case NVME_REG_AQA: d->aqa = v; break;
  case NVME_REG_ASQ: d->asq = (d->asq & ~0xffffffffull) | v; break;
  case NVME_REG_ASQ + 4: d->asq = (d->asq & 0xffffffffull) | (uint64_t)v << 32; break;
  case NVME_REG_ACQ: d->acq = (d->acq & ~0xffffffffull) | v; break;
  case NVME_REG_ACQ + 4: d->acq = (d->acq & 0xffffffffull) | (uint64_t)v << 32; break;
  default: break;
  }
  return 0;
}

static int lb_write64(void *ctx, uint32_t off, uint64_t v) {
  lb_write32(ctx, off, (uint32_t)v);
  return lb_write32(ctx, off + 4, (uint32_t)(v >> 32));
}

static int lb_doorbell(void *ctx, uint32_t index, uint32_t value) {
  struct loopback_dev *d = ctx;
  uint16_t qid = (uint16_t)(index / 2u);
  if (qid >= LB_MAXQ || !(d->csts & 1u)) return 0;
  if (index & 1u) {
    if (d->cq[qid].valid) d->cq[qid].head = (uint16_t)value;
  } else if (d->sq[qid].valid) {
    d->sq[qid].tail = (uint16_t)value;
    process_sq(d, qid);
  }
  return 0;
}

void loopback_ops(struct loopback_dev *dev, struct nvme_regs_ops *ops) {
  ops->ctx = dev;
  ops->read32 = lb_read32;
  ops->read64 = lb_read64;
  ops->write32 = lb_write32;
  ops->write64 = lb_write64;
  ops->ring_doorbell = lb_doorbell;
}
