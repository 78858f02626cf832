/*
 * Unit tests of nvme_queue.c (run by test/integration/bench-nvme-host.test.ts, built with ASan + UBSan): PRP construction, MDTS
 * arithmetic, phase tags and SQ head tracking on a hand-written CQ, and a loopback controller (loopback_dev.c) for
 * bring-up with composed 64-bit register access, queue-pair creation that fails half-way, and I/O that wraps the
 * rings many times. Prints one line per failed check and exits 1 if any failed.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loopback_dev.h"
#include "nvme_queue.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                                              \
  do {                                                                                                                \
    checks++;                                                                                                         \
    if (!(cond)) {                                                                                                    \
      failures++;                                                                                                     \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                                          \
      printf(__VA_ARGS__);                                                                                            \
      printf("\n");                                                                                                   \
    }                                                                                                                 \
  } while (0)

static void test_prps(void) {
  static uint64_t list[512];
  const uint64_t list_iova = 0x7000000;
  uint64_t p1, p2;
  /* one page, aligned: PRP2 unused */
  CHECK(nvme_build_prps(0x10000, 4096, list, list_iova, &p1, &p2) == 0 && p1 == 0x10000 && p2 == 0, "4k");
  /* two pages: PRP2 is the second page itself */
  CHECK(nvme_build_prps(0x10000, 8192, list, list_iova, &p1, &p2) == 0 && p2 == 0x11000, "8k");
  /* starts inside a page: PRP1 keeps the offset, the rest are page-aligned */
  CHECK(nvme_build_prps(0x10200, 0x600, list, list_iova, &p1, &p2) == 0 && p1 == 0x10200 && p2 == 0, "512+1024");
  CHECK(nvme_build_prps(0x10e00, 0x400, list, list_iova, &p1, &p2) == 0 && p2 == 0x11000, "crosses one boundary");
  memset(list, 0xff, sizeof list);
  CHECK(nvme_build_prps(0x10200, 8192, list, list_iova, &p1, &p2) == 0 && p2 == list_iova && list[0] == 0x11000 &&
            list[1] == 0x12000 && list[2] == ~0ull,
        "unaligned 8k: list of 2, got %#llx %#llx %#llx", (unsigned long long)list[0], (unsigned long long)list[1],
        (unsigned long long)list[2]);
  /* 2 MiB aligned: 511 list entries; 2 MiB from an offset: all 512; one byte more does not fit one list page */
  CHECK(nvme_build_prps(0x200000, 2u << 20, list, list_iova, &p1, &p2) == 0 && list[510] == 0x200000 + 511ull * 4096,
        "2M aligned");
  CHECK(nvme_build_prps(0x200800, 2u << 20, list, list_iova, &p1, &p2) == 0 && list[511] == 0x201000 + 511ull * 4096,
        "2M from an offset");
  CHECK(NVME_PRP_MAX_LEN(0x200800) == 0x800 + (2u << 20), "max len");
  p1 = p2 = 7;
  CHECK(nvme_build_prps(0x200800, 0x800 + (2u << 20) + 512, list, list_iova, &p1, &p2) == -1 && p1 == 7, "too long");
  CHECK(nvme_build_prps(0x200000, (2u << 20) + 4096, list, list_iova, &p1, &p2) == 0 && list[511] == 0x400000,
        "2M+4k aligned: first page + 512 entries");
  CHECK(nvme_build_prps(0x200000, (2u << 20) + 4096 + 512, list, list_iova, &p1, &p2) == -1, "one sector more");
  CHECK(nvme_build_prps(0x200000, 0, list, list_iova, &p1, &p2) == -1, "zero length");
}

static void test_mdts(void) {
  const uint64_t mpsmin4k = 0, mpsmin16k = 2ull << 48;
  CHECK(nvme_mdts_bytes(mpsmin4k, 0) == 0, "0 = unlimited");
  CHECK(nvme_mdts_bytes(mpsmin4k, 5) == 128u << 10, "5 -> 128 KiB");
  CHECK(nvme_mdts_bytes(mpsmin16k, 5) == 512u << 10, "MPSMIN 16 KiB");
  CHECK(nvme_mdts_bytes(mpsmin4k, 19) == 1u << 31, "19 -> 2 GiB");
  /* these used to shift a 32-bit value by 32 or more (undefined; UBSan aborts) or wrap to 0 = "unlimited" */
  CHECK(nvme_mdts_bytes(mpsmin4k, 20) == UINT32_MAX, "20 saturates");
  CHECK(nvme_mdts_bytes(mpsmin16k, 255) == UINT32_MAX, "255 saturates");
}

/* A queue pair over plain memory, no device: the test writes the CQEs. */
static void test_reap(void) {
  static struct nvme_sqe sq[4];
  static struct nvme_cqe cq[4];
  struct nvme_ctrl ctrl = {0};
  struct nvme_qpair qp = {.qid = 1, .qsize = 4, .sq = sq, .cq = cq, .phase = 1, .ctrl = &ctrl};
  struct nvme_sqe sqe = {0};
  struct nvme_cqe out[8];
  for (int i = 0; i < 3; i++) CHECK(nvme_qpair_submit(&qp, &sqe) == 0, "submit %d", i);
  CHECK(nvme_qpair_submit(&qp, &sqe) == -1, "4th submit: one slot stays empty");
  CHECK(nvme_qpair_sq_free(&qp) == 0, "no free slots");
  /* the device completes 2; the first CQE says SQHD 3, which is past the tail (3 is the tail: allowed) */
  cq[0] = (struct nvme_cqe){.sqhd = 2, .sqid = 1, .cid = 0, .status = 1};
  cq[1] = (struct nvme_cqe){.sqhd = 3, .sqid = 1, .cid = 1, .status = 1};
  CHECK(nvme_qpair_reap(&qp, out, 8) == 2 && qp.sq_head == 3 && qp.cq_head == 2, "reaped 2, head %u", qp.sq_head);
  CHECK(nvme_qpair_reap(&qp, out, 8) == 0, "old phase: nothing more");
  /* submit 3 more (tail 3 -> 2 via wrap); a CQE whose SQHD lies outside [head, tail] is ignored */
  for (int i = 0; i < 3; i++) CHECK(nvme_qpair_submit(&qp, &sqe) == 0, "submit after wrap %d", i);
  CHECK(qp.sq_tail == 2, "tail wrapped to %u", qp.sq_tail);
  cq[2] = (struct nvme_cqe){.sqhd = 2 /* == tail: fine */, .sqid = 1, .cid = 2, .status = 1};
  CHECK(nvme_qpair_reap(&qp, out, 1) == 1 && qp.sq_head == 2, "head %u", qp.sq_head);
  cq[3] = (struct nvme_cqe){.sqhd = 3 /* behind the head: bogus */, .sqid = 1, .cid = 3, .status = 1};
  CHECK(nvme_qpair_reap(&qp, out, 8) == 1 && qp.sq_head == 2, "bogus SQHD ignored, head %u", qp.sq_head);
  CHECK(qp.cq_head == 0 && qp.phase == 0, "CQ wrapped: head %u phase %u", qp.cq_head, qp.phase);
  cq[0] = (struct nvme_cqe){.sqhd = 9 /* >= qsize */, .sqid = 1, .cid = 4, .status = 0};
  CHECK(nvme_qpair_reap(&qp, out, 8) == 1 && qp.sq_head == 2 && out[0].cid == 4, "phase 0 after wrap");
  cq[1] = (struct nvme_cqe){.sqhd = 0, .sqid = 1, .cid = 5, .status = 1}; /* stale phase */
  CHECK(nvme_qpair_reap(&qp, out, 8) == 0, "stale phase not reaped");
}

static void test_loopback(void) {
  const size_t ram_size = 8u << 20;
  const uint64_t ram_iova = 0x100000000ull;
  void *ram = aligned_alloc(4096, ram_size);
  struct loopback_dev *dev = loopback_create(ram, ram_iova, ram_size, 1u << 20);
  CHECK(ram && dev, "loopback");
  if (!ram || !dev) return;
  struct nvme_regs_ops ops;
  loopback_ops(dev, &ops);
  ops.read64 = NULL; /* CAP, ASQ and ACQ through two 32-bit accesses */
  ops.write64 = NULL;
  struct nvme_dma_mem mem = {.vaddr = ram, .iova = ram_iova, .size = ram_size};
  struct nvme_ctrl ctrl;
  int r = nvme_ctrl_init(&ctrl, &ops, &mem, 8);
  CHECK(r == 0, "init: %s", ctrl.last_error);
  if (r) goto out;
  CHECK(ctrl.cap >> 37 & 1, "CAP high dword read: %#llx", (unsigned long long)ctrl.cap);
  CHECK(nvme_identify_ctrl(&ctrl) == 0 && ctrl.max_transfer == 128u << 10, "identify: %s", ctrl.last_error);
  struct nvme_ns_info ns;
  CHECK(nvme_identify_ns(&ctrl, 1, &ns) == 0 && ns.lba_size == 512, "identify ns: %s", ctrl.last_error);

  /* SQ creation fails after the CQ was created: the CQ must be deleted again */
  struct nvme_qpair qp;
  CHECK(nvme_create_io_qpair(&ctrl, &qp, 2, 4, -1) == 0, "qpair 2: %s", ctrl.last_error);
  struct nvme_sqe sqe = {.cdw0 = NVME_ADM_DELETE_CQ, .cdw10 = 2};
  CHECK(nvme_admin_cmd(&ctrl, &sqe, NULL) == 0, "delete CQ 2 alone: %s", ctrl.last_error); /* SQ 2 still exists */
  r = nvme_create_io_qpair(&ctrl, &qp, 2, 4, -1);
  CHECK(r != 0 && strstr(ctrl.last_error, "SC 0x01"), "SQ 2 exists: create fails (%s)", ctrl.last_error);
  sqe = (struct nvme_sqe){.cdw0 = NVME_ADM_CREATE_CQ, .prp1 = qp.cq_iova, .cdw10 = (3u << 16) | 2u, .cdw11 = 1};
  CHECK(nvme_admin_cmd(&ctrl, &sqe, NULL) == 0, "CQ 2 was deleted after the failed SQ create: %s", ctrl.last_error);

  /* I/O through a 4-entry queue pair: the rings and phase wrap many times; data round-trips */
  r = nvme_create_io_qpair(&ctrl, &qp, 1, 4, -1);
  CHECK(r == 0, "qpair 1: %s", ctrl.last_error);
  if (r) goto out;
  uint64_t buf_iova, list_iova;
  uint8_t *buf = nvme_dma_alloc(&mem, 3 * 4096, 4096, &buf_iova);
  uint64_t *list = nvme_dma_alloc(&mem, 4096, 4096, &list_iova);
  CHECK(buf && list, "DMA memory");
  if (!buf || !list) goto out;
  unsigned bad = 0;
  for (uint32_t i = 0; i < 40; i++) {
    uint8_t opc = i % 2 ? NVME_IO_READ : NVME_IO_WRITE;
    uint32_t len = 8192 + 512; /* from offset 512: three pages, a PRP list */
    if (opc == NVME_IO_WRITE) memset(buf + 512, (int)i, len);
    else memset(buf + 512, 0xee, len);
    uint64_t p1, p2;
    nvme_build_prps(buf_iova + 512, len, list, list_iova, &p1, &p2);
    nvme_build_rw(&sqe, opc, (uint16_t)i, 1, (uint64_t)(i / 2) * 17u, len / 512u, p1, p2);
    CHECK(nvme_qpair_submit(&qp, &sqe) == 0, "submit %u", i);
    nvme_qpair_ring_sq(&qp);
    struct nvme_cqe cqe;
    CHECK(nvme_qpair_reap(&qp, &cqe, 1) == 1 && cqe.cid == i && NVME_CQE_STATUS(&cqe) == 0, "completion %u", i);
    nvme_qpair_ring_cq(&qp);
    if (opc == NVME_IO_READ)
      for (uint32_t k = 0; k < len; k++) bad += buf[512 + k] != (uint8_t)(i - 1);
  }
  CHECK(bad == 0, "%u bytes read back differ", bad);
  CHECK(qp.sq_head == qp.sq_tail, "SQ head %u follows tail %u", qp.sq_head, qp.sq_tail);
  CHECK(nvme_delete_io_qpair(&ctrl, &qp) == 0, "delete: %s", ctrl.last_error);
  CHECK(nvme_ctrl_shutdown(&ctrl) == 0, "shutdown: %s", ctrl.last_error);
out:
  loopback_destroy(dev);
  free(ram);
}

int main(void) {
  test_prps();
  test_mdts();
  test_reap();
  test_loopback();
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
