/*
 * vfiod fio engine: the pieces shared by the fio glue (engine.c) and the two transports.
 *
 * A transport turns a target (a vfio-user socket, or a PCI function on vfio-pci) into NVMe register access and
 * doorbells (struct nvme_regs_ops, driven by bench/nvme-host/nvme_queue.c) plus DMA mapping of host memory at an I/O
 * virtual address the device uses. Nothing here knows about fio.
 */
#ifndef VFIOD_FIO_ENGINE_H
#define VFIOD_FIO_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "nvme_queue.h"

#define VFIOD_ERR_LEN 512

/* Host memory the device may DMA to/from: a memfd mapped shared (vfio-user passes the fd to the server). */
struct vfiod_dma_region {
  uint8_t *vaddr;
  uint64_t iova;
  size_t size;
  int fd;
  int mapped; /* DMA-mapped into the device's address space */
};

/* size is rounded up to 2 MiB. Returns 0, or -errno with err filled. */
int vfiod_dma_region_alloc(struct vfiod_dma_region *r, size_t size, const char *name, char *err, size_t errlen);
void vfiod_dma_region_free(struct vfiod_dma_region *r);

struct vfiod_xport {
  const char *kind;     /* "vfio-user" | "vfio" */
  char target[256];     /* socket path or PCI address, for messages */
  const char *doorbell; /* how doorbells reach the device: "mmap" | "trapped" */
  struct nvme_regs_ops ops;
  /* Doorbell registers the mapping reaches (SQ y = 2y, CQ y = 2y+1); UINT32_MAX when the server checks (trapped). */
  uint32_t doorbells;
  /* Map/unmap r at r->iova for device DMA. 0 or -errno with err filled. */
  int (*dma_map)(struct vfiod_xport *x, struct vfiod_dma_region *r, char *err, size_t errlen);
  int (*dma_unmap)(struct vfiod_xport *x, struct vfiod_dma_region *r, char *err, size_t errlen);
  /*
   * Interrupts (MSI-X) for completion: vectors available (0 = not supported by this transport), and binding an
   * eventfd to one vector. 0 or -errno with err filled.
   */
  uint32_t irq_vectors;
  int (*irq_bind)(struct vfiod_xport *x, uint32_t vector, int efd, char *err, size_t errlen);
  /* Latest transport-level error (socket/ioctl detail behind a failed register access or doorbell). */
  const char *(*last_error)(struct vfiod_xport *x);
  void (*destroy)(struct vfiod_xport *x);
};

/*
 * vfio-user: connect to a `vfiod serve` socket, negotiate, enable memory + bus mastering. doorbell_mode: "auto"
 * (mmap the doorbell page when BAR0 offers it, i.e. `vfiod serve --poll`, else trapped posted writes), "mmap" or
 * "trapped".
 */
struct vfiod_xport *vfiod_xport_vfio_user_open(const char *socket_path, const char *doorbell_mode, char *err,
                                               size_t errlen);
/* VFIO: open a PCI function bound to vfio-pci (legacy container/group API, type1 IOMMU), map BAR0, bus master on. */
struct vfiod_xport *vfiod_xport_vfio_open(const char *bdf, char *err, size_t errlen);

#endif
