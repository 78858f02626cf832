/*
 * Transport-independent NVMe host logic: controller bring-up, admin commands, I/O queue pairs.
 *
 * Register access and doorbells go through `struct nvme_regs_ops`, so the same code drives a vfio-user device
 * (REGION_READ/WRITE messages, or an mmap-ed doorbell page), a real VFIO device (mmap-ed BAR0), or an in-process
 * loopback device. Queue memory and data buffers live in DMA memory that the caller provides (host virtual address
 * + I/O virtual address of one contiguous range); allocation is a simple bump allocator.
 *
 * The I/O path (nvme_qpair_*) does no system calls itself; the only costs are the transport's doorbell writes.
 * Single-threaded per queue pair.
 */
#ifndef NVME_QUEUE_H
#define NVME_QUEUE_H

#include <stddef.h>
#include <stdint.h>

/* Register offsets. */
#define NVME_REG_CAP 0x00
#define NVME_REG_VS 0x08
#define NVME_REG_INTMS 0x0c
#define NVME_REG_INTMC 0x10
#define NVME_REG_CC 0x14
#define NVME_REG_CSTS 0x1c
#define NVME_REG_AQA 0x24
#define NVME_REG_ASQ 0x28
#define NVME_REG_ACQ 0x30
#define NVME_REG_DOORBELLS 0x1000

/* Opcodes. */
#define NVME_ADM_DELETE_SQ 0x00
#define NVME_ADM_CREATE_SQ 0x01
#define NVME_ADM_DELETE_CQ 0x04
#define NVME_ADM_CREATE_CQ 0x05
#define NVME_ADM_IDENTIFY 0x06
#define NVME_ADM_SET_FEATURES 0x09
#define NVME_IO_FLUSH 0x00
#define NVME_IO_WRITE 0x01
#define NVME_IO_READ 0x02
#define NVME_IO_DSM 0x09
#define NVME_DSM_ATTR_DEALLOCATE (1u << 2)

#define NVME_FEAT_NUM_QUEUES 0x07

struct nvme_regs_ops {
  void *ctx;
  int (*read32)(void *ctx, uint32_t offset, uint32_t *value);
  /* 64-bit registers (CAP, ASQ, ACQ); NULL: two 32-bit accesses, low dword first (like Linux' lo_hi_readq). */
  int (*read64)(void *ctx, uint32_t offset, uint64_t *value);
  int (*write32)(void *ctx, uint32_t offset, uint32_t value);
  int (*write64)(void *ctx, uint32_t offset, uint64_t value); /* NULL: low dword, then high dword */
  /*
   * Write `value` to doorbell number `index` (SQ y tail = 2y, CQ y head = 2y+1); the transport applies the stride.
   * nvme_qpair_ring_* issue nvme_doorbell_barrier() first, so earlier SQE stores and CQE loads are ordered before it.
   */
  int (*ring_doorbell)(void *ctx, uint32_t index, uint32_t value);
};

/*
 * Before a doorbell write: SQE stores must reach memory before the device can see the new tail, and CQE loads must
 * be done before the device may reuse the slot. x86 keeps stores in order, but a WC/UC MMIO write can pass the
 * store buffer: sfence, as SPDK does. Weakly ordered CPUs need a full barrier against the outer domain.
 */
static inline void nvme_doorbell_barrier(void) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("sfence" ::: "memory");
#elif defined(__aarch64__)
  __asm__ volatile("dsb sy" ::: "memory");
#else
  __sync_synchronize();
#endif
}

/* Busy-wait hint for polling loops. */
static inline void nvme_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

struct nvme_dma_mem {
  uint8_t *vaddr;
  uint64_t iova;
  size_t size;
  size_t used;
};

/* Returns NULL when exhausted. Memory is zeroed. */
void *nvme_dma_alloc(struct nvme_dma_mem *mem, size_t size, size_t align, uint64_t *iova);

struct nvme_sqe {
  uint32_t cdw0; /* opcode 7:0, fuse 9:8, psdt 15:14, cid 31:16 */
  uint32_t nsid;
  uint32_t cdw2, cdw3;
  uint64_t mptr;
  uint64_t prp1, prp2;
  uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};

struct nvme_cqe {
  uint32_t dw0, dw1;
  uint16_t sqhd, sqid;
  uint16_t cid;
  uint16_t status; /* bit 0 phase, 15:1 status field */
};

/* Status field without the phase bit: SCT (bits 10:8) / SC (7:0) as in the spec's 15-bit status >> 1. */
#define NVME_CQE_STATUS(cqe) ((uint16_t)((cqe)->status >> 1))

struct nvme_qpair {
  uint16_t qid;
  uint16_t qsize; /* entries in each ring */
  struct nvme_sqe *sq;
  volatile struct nvme_cqe *cq;
  uint64_t sq_iova, cq_iova;
  uint16_t sq_tail, sq_tail_rung; /* rung: last value written to the doorbell */
  uint16_t sq_head;               /* from the latest CQE's SQHD */
  uint16_t cq_head, cq_head_rung;
  uint8_t phase;
  int irq_vector; /* -1: interrupts disabled */
  struct nvme_ctrl *ctrl;
};

struct nvme_ctrl {
  struct nvme_regs_ops ops;
  struct nvme_dma_mem *mem;
  uint64_t cap;
  uint32_t vs;
  uint16_t mqes; /* max queue entries (1-based) */
  uint32_t dstrd;
  uint32_t timeout_ms;
  struct nvme_qpair admin;
  uint16_t admin_cid;
  void *scratch; /* one 4 KiB page for identify data */
  uint64_t scratch_iova;
  /* Identify controller. */
  char mn[41], sn[21], fr[9];
  uint32_t nn;
  uint8_t mdts;
  uint32_t max_transfer; /* bytes, 0 = unlimited */
  char last_error[256];
};

struct nvme_ns_info {
  uint32_t nsid;
  uint64_t nsze;     /* blocks */
  uint32_t lba_size; /* bytes */
};

/* Disable, program the admin queue (admin_qsize entries), enable, wait for CSTS.RDY. */
int nvme_ctrl_init(struct nvme_ctrl *ctrl, const struct nvme_regs_ops *ops, struct nvme_dma_mem *mem,
                   uint16_t admin_qsize);
/* Synchronous admin command (polled completion, timeout ctrl->timeout_ms). cqe may be NULL. */
int nvme_admin_cmd(struct nvme_ctrl *ctrl, struct nvme_sqe *sqe, struct nvme_cqe *cqe);
int nvme_identify_ctrl(struct nvme_ctrl *ctrl);
int nvme_identify_ns(struct nvme_ctrl *ctrl, uint32_t nsid, struct nvme_ns_info *info);
int nvme_set_num_queues(struct nvme_ctrl *ctrl, uint16_t nsq, uint16_t ncq, uint16_t *got_sq, uint16_t *got_cq);
/* Create CQ then SQ with id qid; irq_vector < 0 disables interrupts for the CQ. */
int nvme_create_io_qpair(struct nvme_ctrl *ctrl, struct nvme_qpair *qp, uint16_t qid, uint16_t qsize, int irq_vector);
/* The same, with the rings allocated from `mem` instead of ctrl->mem (e.g. one DMA region per queue owner). */
int nvme_create_io_qpair_in(struct nvme_ctrl *ctrl, struct nvme_dma_mem *mem, struct nvme_qpair *qp, uint16_t qid,
                            uint16_t qsize, int irq_vector);
int nvme_delete_io_qpair(struct nvme_ctrl *ctrl, struct nvme_qpair *qp);
/* CC.SHN = normal shutdown; waits for CSTS.SHST = complete. */
int nvme_ctrl_shutdown(struct nvme_ctrl *ctrl);

/* ---- I/O path ---- */

/* Free SQ slots (one slot always stays empty). */
static inline uint16_t nvme_qpair_sq_free(const struct nvme_qpair *qp) {
  uint16_t used = (uint16_t)((qp->sq_tail + qp->qsize - qp->sq_head) % qp->qsize);
  return (uint16_t)(qp->qsize - 1 - used);
}

/* Copy an SQE into the ring and advance the tail (no doorbell). Returns -1 when the SQ is full. */
int nvme_qpair_submit(struct nvme_qpair *qp, const struct nvme_sqe *sqe);
/* Write the SQ tail doorbell if the tail moved since the last ring. */
int nvme_qpair_ring_sq(struct nvme_qpair *qp);
/*
 * Reap up to max completions by phase tag (no doorbell). Returns the number reaped. A CQE's SQHD moves sq_head only
 * when it lies within the entries that were submitted (a bogus one cannot open SQ slots that are still in use).
 */
int nvme_qpair_reap(struct nvme_qpair *qp, struct nvme_cqe *out, int max);
/* Write the CQ head doorbell if the head moved since the last ring. */
int nvme_qpair_ring_cq(struct nvme_qpair *qp);

/* Fill a Read/Write SQE; data must be described by prp1/prp2 (see nvme_build_prps). nlb is 1-based. */
void nvme_build_rw(struct nvme_sqe *sqe, uint8_t opc, uint16_t cid, uint32_t nsid, uint64_t slba, uint32_t nlb,
                   uint64_t prp1, uint64_t prp2);
/* Fill a Dataset Management SQE for one range (nr 1) whose 16-byte descriptor is at range_iova; attrs e.g. AD. */
void nvme_build_dsm(struct nvme_sqe *sqe, uint16_t cid, uint32_t nsid, uint64_t range_iova, uint32_t attrs);
/* Write one DSM range descriptor (context attributes 0, nlb blocks starting at slba). */
void nvme_fill_dsm_range(void *range, uint64_t slba, uint32_t nlb);
/* Fill a Flush SQE. */
void nvme_build_flush(struct nvme_sqe *sqe, uint16_t cid, uint32_t nsid);
/*
 * Describe a contiguous (in IOVA space), dword-aligned buffer (iova, len) with PRPs (page size 4 KiB). When more
 * than two pages are needed, the list is written to prp_list (one 4 KiB page at prp_list_iova: 512 entries, i.e.
 * 2 MiB after the first page). Returns 0, or -1 (nothing written) when len is 0 or needs more than one list page.
 */
#define NVME_PRP_MAX_LEN(iova) ((uint32_t)(4096u - ((iova) & 4095u)) + 512u * 4096u)
int nvme_build_prps(uint64_t iova, uint32_t len, uint64_t *prp_list, uint64_t prp_list_iova, uint64_t *prp1,
                    uint64_t *prp2);
/* MDTS (Identify Controller byte 77, units of CAP.MPSMIN pages) in bytes; 0 = no limit; saturates at UINT32_MAX. */
uint32_t nvme_mdts_bytes(uint64_t cap, uint8_t mdts);

#endif
