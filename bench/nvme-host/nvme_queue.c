/* Transport-independent NVMe host logic; see nvme_queue.h. */
#define _GNU_SOURCE
#include "nvme_queue.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define PAGE 4096u

static int read64(struct nvme_ctrl *c, uint32_t off, uint64_t *v) {
  if (c->ops.read64) return c->ops.read64(c->ops.ctx, off, v);
  uint32_t lo, hi;
  int r = c->ops.read32(c->ops.ctx, off, &lo);
  if (!r) r = c->ops.read32(c->ops.ctx, off + 4, &hi);
  if (!r) *v = (uint64_t)hi << 32 | lo;
  return r;
}

static int write64(struct nvme_ctrl *c, uint32_t off, uint64_t v) {
  if (c->ops.write64) return c->ops.write64(c->ops.ctx, off, v);
  int r = c->ops.write32(c->ops.ctx, off, (uint32_t)v);
  return r ? r : c->ops.write32(c->ops.ctx, off + 4, (uint32_t)(v >> 32));
}

static int fail(struct nvme_ctrl *c, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
  va_end(ap);
  return err > 0 ? -err : (err ? err : -EIO);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_us(unsigned us) {
  struct timespec ts = {0, (long)us * 1000L};
  nanosleep(&ts, NULL);
}

void *nvme_dma_alloc(struct nvme_dma_mem *mem, size_t size, size_t align, uint64_t *iova) {
  if (align < 1) align = 1;
  size_t off = (mem->used + align - 1) & ~(align - 1);
  if (off + size > mem->size) return NULL;
  mem->used = off + size;
  memset(mem->vaddr + off, 0, size);
  if (iova) *iova = mem->iova + off;
  return mem->vaddr + off;
}

/* ---- I/O path ---- */

int nvme_qpair_submit(struct nvme_qpair *qp, const struct nvme_sqe *sqe) {
  uint16_t next = (uint16_t)(qp->sq_tail + 1 == qp->qsize ? 0 : qp->sq_tail + 1);
  if (next == qp->sq_head) return -1;
  memcpy(&qp->sq[qp->sq_tail], sqe, sizeof *sqe);
  qp->sq_tail = next;
  return 0;
}

int nvme_qpair_ring_sq(struct nvme_qpair *qp) {
  if (qp->sq_tail == qp->sq_tail_rung) return 0;
  qp->sq_tail_rung = qp->sq_tail;
  nvme_doorbell_barrier();
  return qp->ctrl->ops.ring_doorbell(qp->ctrl->ops.ctx, 2u * qp->qid, qp->sq_tail);
}

int nvme_qpair_reap(struct nvme_qpair *qp, struct nvme_cqe *out, int max) {
  int n = 0;
  while (n < max) {
    volatile struct nvme_cqe *e = &qp->cq[qp->cq_head];
    uint16_t st = __atomic_load_n(&e->status, __ATOMIC_ACQUIRE);
    if ((st & 1u) != qp->phase) break;
    out[n].dw0 = e->dw0;
    out[n].dw1 = e->dw1;
    out[n].sqhd = e->sqhd;
    out[n].sqid = e->sqid;
    out[n].cid = e->cid;
    out[n].status = st;
    /* The head may only move forward, up to the tail: (sqhd - head) <= (tail - head), modulo qsize. */
    uint16_t sqhd = out[n].sqhd;
    if (sqhd < qp->qsize &&
        (sqhd + qp->qsize - qp->sq_head) % qp->qsize <= (qp->sq_tail + qp->qsize - qp->sq_head) % qp->qsize)
      qp->sq_head = sqhd;
    n++;
    if (++qp->cq_head == qp->qsize) {
      qp->cq_head = 0;
      qp->phase ^= 1u;
    }
  }
  return n;
}

int nvme_qpair_ring_cq(struct nvme_qpair *qp) {
  if (qp->cq_head == qp->cq_head_rung) return 0;
  qp->cq_head_rung = qp->cq_head;
  nvme_doorbell_barrier();
  return qp->ctrl->ops.ring_doorbell(qp->ctrl->ops.ctx, 2u * qp->qid + 1u, qp->cq_head);
}

void nvme_build_rw(struct nvme_sqe *sqe, uint8_t opc, uint16_t cid, uint32_t nsid, uint64_t slba, uint32_t nlb,
                   uint64_t prp1, uint64_t prp2) {
  memset(sqe, 0, sizeof *sqe);
  sqe->cdw0 = (uint32_t)opc | ((uint32_t)cid << 16);
  sqe->nsid = nsid;
  sqe->prp1 = prp1;
  sqe->prp2 = prp2;
  sqe->cdw10 = (uint32_t)slba;
  sqe->cdw11 = (uint32_t)(slba >> 32);
  sqe->cdw12 = (nlb - 1u) & 0xffffu;
}

void nvme_build_dsm(struct nvme_sqe *sqe, uint16_t cid, uint32_t nsid, uint64_t range_iova, uint32_t attrs) {
  memset(sqe, 0, sizeof *sqe);
  sqe->cdw0 = (uint32_t)NVME_IO_DSM | ((uint32_t)cid << 16);
  sqe->nsid = nsid;
  sqe->prp1 = range_iova;
  sqe->cdw10 = 0; /* NR: 1 range (0-based) */
  sqe->cdw11 = attrs;
}

void nvme_fill_dsm_range(void *range, uint64_t slba, uint32_t nlb) {
  uint32_t words[4] = {0, nlb, (uint32_t)slba, (uint32_t)(slba >> 32)}; /* CATTR, NLB (1-based count), SLBA */
  memcpy(range, words, sizeof words);
}

void nvme_build_flush(struct nvme_sqe *sqe, uint16_t cid, uint32_t nsid) {
  memset(sqe, 0, sizeof *sqe);
  sqe->cdw0 = (uint32_t)NVME_IO_FLUSH | ((uint32_t)cid << 16);
  sqe->nsid = nsid;
}

int nvme_build_prps(uint64_t iova, uint32_t len, uint64_t *prp_list, uint64_t prp_list_iova, uint64_t *prp1,
                    uint64_t *prp2) {
  if (len == 0 || len > NVME_PRP_MAX_LEN(iova)) return -1;
  *prp1 = iova; /* may start inside a page; every later entry is page-aligned */
  *prp2 = 0;
  uint32_t first = PAGE - (uint32_t)(iova & (PAGE - 1));
  if (len <= first) return 0;
  uint64_t next = iova + first;
  uint32_t rest = len - first;
  if (rest <= PAGE) {
    *prp2 = next;
    return 0;
  }
  uint32_t pages = (rest + PAGE - 1) / PAGE; /* <= 512 by the length check: one list page, no chaining */
  for (uint32_t i = 0; i < pages; i++) prp_list[i] = next + (uint64_t)i * PAGE;
  *prp2 = prp_list_iova;
  return 0;
}

uint32_t nvme_mdts_bytes(uint64_t cap, uint8_t mdts) {
  if (mdts == 0) return 0;
  unsigned shift = 12u + (unsigned)((cap >> 48) & 0xfu) + mdts; /* log2 of the byte count */
  return shift >= 32 ? UINT32_MAX : 1u << shift;
}

/* ---- admin ---- */

int nvme_admin_cmd(struct nvme_ctrl *ctrl, struct nvme_sqe *sqe, struct nvme_cqe *cqe_out) {
  struct nvme_qpair *aq = &ctrl->admin;
  uint16_t cid = ctrl->admin_cid++;
  sqe->cdw0 = (sqe->cdw0 & 0xffffu) | ((uint32_t)cid << 16);
  if (nvme_qpair_submit(aq, sqe)) return fail(ctrl, EBUSY, "admin SQ full");
  int r = nvme_qpair_ring_sq(aq);
  if (r) return fail(ctrl, r, "admin SQ doorbell failed (%d)", r);
  uint64_t deadline = now_ms() + ctrl->timeout_ms;
  struct nvme_cqe cqe;
  unsigned spins = 0;
  for (;;) {
    if (nvme_qpair_reap(aq, &cqe, 1) == 1) {
      if (cqe.cid == cid) break;
      continue; /* stale completion (should not happen with a synchronous admin queue) */
    }
    if (++spins > 1000) {
      if (now_ms() > deadline) {
        return fail(ctrl, ETIMEDOUT, "admin command opc 0x%02x cid %u: no completion within %u ms",
                    sqe->cdw0 & 0xffu, cid, ctrl->timeout_ms);
      }
      pause_us(20);
    }
  }
  r = nvme_qpair_ring_cq(aq);
  if (r) return fail(ctrl, r, "admin CQ doorbell failed (%d)", r);
  if (cqe_out) *cqe_out = cqe;
  uint16_t status = NVME_CQE_STATUS(&cqe);
  if (status & 0x7ff)
    return fail(ctrl, EIO, "admin command opc 0x%02x failed: SCT %u SC 0x%02x (dw0 0x%x)", sqe->cdw0 & 0xffu,
                (status >> 8) & 7u, status & 0xffu, cqe.dw0);
  return 0;
}

static int wait_csts(struct nvme_ctrl *ctrl, uint32_t mask, uint32_t want, const char *what) {
  uint64_t deadline = now_ms() + ctrl->timeout_ms;
  for (;;) {
    uint32_t csts;
    int r = ctrl->ops.read32(ctrl->ops.ctx, NVME_REG_CSTS, &csts);
    if (r) return fail(ctrl, r, "reading CSTS failed (%d)", r);
    if ((csts & mask) == want) return 0;
    if (csts == 0xffffffffu) return fail(ctrl, EIO, "CSTS reads all ones (device gone)");
    if ((csts & 2u) && want != 0 && mask == 1u) return fail(ctrl, EIO, "controller fatal status (CSTS 0x%x) while %s", csts, what);
    if (now_ms() > deadline) return fail(ctrl, ETIMEDOUT, "timeout (%u ms) while %s: CSTS 0x%x", ctrl->timeout_ms, what, csts);
    pause_us(200);
  }
}

int nvme_ctrl_init(struct nvme_ctrl *ctrl, const struct nvme_regs_ops *ops, struct nvme_dma_mem *mem,
                   uint16_t admin_qsize) {
  memset(ctrl, 0, sizeof *ctrl);
  ctrl->ops = *ops;
  ctrl->mem = mem;
  ctrl->timeout_ms = 5000;
  int r = read64(ctrl, NVME_REG_CAP, &ctrl->cap);
  if (r) return fail(ctrl, r, "reading CAP failed (%d)", r);
  r = ops->read32(ops->ctx, NVME_REG_VS, &ctrl->vs);
  if (r) return fail(ctrl, r, "reading VS failed (%d)", r);
  ctrl->mqes = (uint16_t)((ctrl->cap & 0xffffu) + 1u);
  ctrl->dstrd = (uint32_t)((ctrl->cap >> 32) & 0xfu);
  uint32_t to = (uint32_t)((ctrl->cap >> 24) & 0xffu);
  ctrl->timeout_ms = to ? to * 500u : 5000u;
  if (ctrl->timeout_ms < 2000) ctrl->timeout_ms = 2000;
  uint32_t mpsmin = (uint32_t)((ctrl->cap >> 48) & 0xfu);
  if (mpsmin != 0) return fail(ctrl, ENOTSUP, "CAP.MPSMIN %u: 4 KiB pages unsupported", mpsmin);
  if (!((ctrl->cap >> 37) & 1u)) return fail(ctrl, ENOTSUP, "CAP.CSS lacks the NVM command set (CAP 0x%llx)", (unsigned long long)ctrl->cap);

  uint32_t cc;
  r = ops->read32(ops->ctx, NVME_REG_CC, &cc);
  if (r) return fail(ctrl, r, "reading CC failed (%d)", r);
  if (cc & 1u) {
    /* Mid-enable (CC.EN=1, RDY=0): let it finish first; clearing EN during the transition is undefined. */
    uint32_t csts;
    if (ops->read32(ops->ctx, NVME_REG_CSTS, &csts) == 0 && !(csts & 1u) && !(csts & 2u))
      (void)wait_csts(ctrl, 1u, 1u, "waiting for an enable in progress"); /* on timeout, disable anyway */
    r = ops->write32(ops->ctx, NVME_REG_CC, cc & ~1u);
    if (r) return fail(ctrl, r, "writing CC failed (%d)", r);
  }
  r = wait_csts(ctrl, 1u, 0u, "disabling the controller");
  if (r) return r;

  if (admin_qsize > ctrl->mqes) admin_qsize = ctrl->mqes;
  if (admin_qsize < 2) return fail(ctrl, EINVAL, "admin queue too small");
  struct nvme_qpair *aq = &ctrl->admin;
  aq->ctrl = ctrl;
  aq->qid = 0;
  aq->qsize = admin_qsize;
  aq->phase = 1;
  aq->irq_vector = -1;
  aq->sq = nvme_dma_alloc(mem, (size_t)admin_qsize * 64u, PAGE, &aq->sq_iova);
  aq->cq = nvme_dma_alloc(mem, (size_t)admin_qsize * 16u, PAGE, &aq->cq_iova);
  ctrl->scratch = nvme_dma_alloc(mem, PAGE, PAGE, &ctrl->scratch_iova);
  if (!aq->sq || !aq->cq || !ctrl->scratch) return fail(ctrl, ENOMEM, "DMA memory exhausted (admin queues)");

  uint32_t aqa = ((uint32_t)(admin_qsize - 1u) << 16) | (uint32_t)(admin_qsize - 1u);
  if ((r = ops->write32(ops->ctx, NVME_REG_AQA, aqa)) || (r = write64(ctrl, NVME_REG_ASQ, aq->sq_iova)) ||
      (r = write64(ctrl, NVME_REG_ACQ, aq->cq_iova)))
    return fail(ctrl, r, "programming the admin queue registers failed (%d)", r);
  /* IOCQES 4 (16 B), IOSQES 6 (64 B), AMS 0, MPS 0 (4 KiB), CSS 0 (NVM), EN. */
  cc = (4u << 20) | (6u << 16) | 1u;
  if ((r = ops->write32(ops->ctx, NVME_REG_CC, cc))) return fail(ctrl, r, "writing CC.EN failed (%d)", r);
  return wait_csts(ctrl, 1u, 1u, "enabling the controller");
}

static void copy_trim(char *dst, const uint8_t *src, size_t n) {
  memcpy(dst, src, n);
  dst[n] = 0;
  while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == 0)) dst[--n] = 0;
}

int nvme_identify_ctrl(struct nvme_ctrl *ctrl) {
  struct nvme_sqe sqe = {0};
  sqe.cdw0 = NVME_ADM_IDENTIFY;
  sqe.prp1 = ctrl->scratch_iova;
  sqe.cdw10 = 1; /* CNS 01h: controller */
  memset(ctrl->scratch, 0, PAGE);
  int r = nvme_admin_cmd(ctrl, &sqe, NULL);
  if (r) return r;
  const uint8_t *d = ctrl->scratch;
  copy_trim(ctrl->sn, d + 4, 20);
  copy_trim(ctrl->mn, d + 24, 40);
  copy_trim(ctrl->fr, d + 64, 8);
  ctrl->mdts = d[77];
  memcpy(&ctrl->nn, d + 516, 4);
  ctrl->max_transfer = nvme_mdts_bytes(ctrl->cap, ctrl->mdts);
  return 0;
}

int nvme_identify_ns(struct nvme_ctrl *ctrl, uint32_t nsid, struct nvme_ns_info *info) {
  struct nvme_sqe sqe = {0};
  sqe.cdw0 = NVME_ADM_IDENTIFY;
  sqe.nsid = nsid;
  sqe.prp1 = ctrl->scratch_iova;
  sqe.cdw10 = 0; /* CNS 00h: namespace */
  memset(ctrl->scratch, 0, PAGE);
  int r = nvme_admin_cmd(ctrl, &sqe, NULL);
  if (r) return r;
  const uint8_t *d = ctrl->scratch;
  info->nsid = nsid;
  memcpy(&info->nsze, d + 0, 8);
  uint8_t nlbaf = d[25], flbas = d[26];
  uint32_t fmt = (flbas & 0xfu) | ((uint32_t)(flbas >> 5) & 3u) << 4;
  if (fmt > nlbaf) return fail(ctrl, EPROTO, "namespace %u: FLBAS selects format %u of %u", nsid, fmt, nlbaf + 1u);
  uint32_t lbaf;
  memcpy(&lbaf, d + 128 + 4 * fmt, 4);
  uint32_t lbads = (lbaf >> 16) & 0xffu;
  if (info->nsze == 0) return fail(ctrl, ENODEV, "namespace %u is inactive (NSZE 0)", nsid);
  if (lbads < 9 || lbads > 16) return fail(ctrl, EPROTO, "namespace %u: odd LBADS %u", nsid, lbads);
  info->lba_size = 1u << lbads;
  if (info->nsze > UINT64_MAX >> lbads) /* callers work in bytes */
    return fail(ctrl, EPROTO, "namespace %u: NSZE %llu blocks of %u bytes overflows 64 bits", nsid,
                (unsigned long long)info->nsze, info->lba_size);
  return 0;
}

int nvme_set_num_queues(struct nvme_ctrl *ctrl, uint16_t nsq, uint16_t ncq, uint16_t *got_sq, uint16_t *got_cq) {
  struct nvme_sqe sqe = {0};
  struct nvme_cqe cqe;
  sqe.cdw0 = NVME_ADM_SET_FEATURES;
  sqe.cdw10 = NVME_FEAT_NUM_QUEUES;
  sqe.cdw11 = ((uint32_t)(ncq - 1u) << 16) | (uint32_t)(nsq - 1u);
  int r = nvme_admin_cmd(ctrl, &sqe, &cqe);
  if (r) return r;
  if (got_sq) *got_sq = (uint16_t)((cqe.dw0 & 0xffffu) + 1u);
  if (got_cq) *got_cq = (uint16_t)((cqe.dw0 >> 16) + 1u);
  return 0;
}

int nvme_create_io_qpair(struct nvme_ctrl *ctrl, struct nvme_qpair *qp, uint16_t qid, uint16_t qsize, int irq_vector) {
  return nvme_create_io_qpair_in(ctrl, ctrl->mem, qp, qid, qsize, irq_vector);
}

int nvme_create_io_qpair_in(struct nvme_ctrl *ctrl, struct nvme_dma_mem *mem, struct nvme_qpair *qp, uint16_t qid,
                            uint16_t qsize, int irq_vector) {
  memset(qp, 0, sizeof *qp);
  if (qsize > ctrl->mqes) return fail(ctrl, EINVAL, "queue size %u exceeds CAP.MQES+1 = %u", qsize, ctrl->mqes);
  if (qsize < 2) return fail(ctrl, EINVAL, "queue size must be >= 2");
  qp->ctrl = ctrl;
  qp->qid = qid;
  qp->qsize = qsize;
  qp->phase = 1;
  qp->irq_vector = irq_vector;
  qp->sq = nvme_dma_alloc(mem, ((size_t)qsize * 64u + PAGE - 1) & ~(size_t)(PAGE - 1), PAGE, &qp->sq_iova);
  qp->cq = nvme_dma_alloc(mem, ((size_t)qsize * 16u + PAGE - 1) & ~(size_t)(PAGE - 1), PAGE, &qp->cq_iova);
  if (!qp->sq || !qp->cq) return fail(ctrl, ENOMEM, "DMA memory exhausted (I/O queues)");
  struct nvme_sqe sqe = {0};
  sqe.cdw0 = NVME_ADM_CREATE_CQ;
  sqe.prp1 = qp->cq_iova;
  sqe.cdw10 = ((uint32_t)(qsize - 1u) << 16) | qid;
  sqe.cdw11 = 1u; /* PC */
  if (irq_vector >= 0) sqe.cdw11 |= ((uint32_t)irq_vector << 16) | 2u; /* IV, IEN */
  int r = nvme_admin_cmd(ctrl, &sqe, NULL);
  if (r) return r;
  memset(&sqe, 0, sizeof sqe);
  sqe.cdw0 = NVME_ADM_CREATE_SQ;
  sqe.prp1 = qp->sq_iova;
  sqe.cdw10 = ((uint32_t)(qsize - 1u) << 16) | qid;
  sqe.cdw11 = ((uint32_t)qid << 16) | 1u; /* CQID, QPRIO 0, PC */
  r = nvme_admin_cmd(ctrl, &sqe, NULL);
  if (r) {
    /* Do not leave the CQ behind: its id could not be created again, and it points into memory that goes away. */
    char why[sizeof ctrl->last_error];
    memcpy(why, ctrl->last_error, sizeof why);
    memset(&sqe, 0, sizeof sqe);
    sqe.cdw0 = NVME_ADM_DELETE_CQ;
    sqe.cdw10 = qid;
    nvme_admin_cmd(ctrl, &sqe, NULL);
    memcpy(ctrl->last_error, why, sizeof why);
  }
  return r;
}

int nvme_delete_io_qpair(struct nvme_ctrl *ctrl, struct nvme_qpair *qp) {
  struct nvme_sqe sqe = {0};
  sqe.cdw0 = NVME_ADM_DELETE_SQ;
  sqe.cdw10 = qp->qid;
  int r = nvme_admin_cmd(ctrl, &sqe, NULL);
  if (r) return r;
  memset(&sqe, 0, sizeof sqe);
  sqe.cdw0 = NVME_ADM_DELETE_CQ;
  sqe.cdw10 = qp->qid;
  return nvme_admin_cmd(ctrl, &sqe, NULL);
}

int nvme_ctrl_shutdown(struct nvme_ctrl *ctrl) {
  uint32_t cc;
  int r = ctrl->ops.read32(ctrl->ops.ctx, NVME_REG_CC, &cc);
  if (r) return fail(ctrl, r, "reading CC failed (%d)", r);
  cc = (cc & ~(3u << 14)) | (1u << 14); /* SHN = 01b normal */
  r = ctrl->ops.write32(ctrl->ops.ctx, NVME_REG_CC, cc);
  if (r) return fail(ctrl, r, "writing CC.SHN failed (%d)", r);
  return wait_csts(ctrl, 3u << 2, 2u << 2, "shutting down (CSTS.SHST)");
}
