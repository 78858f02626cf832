/*
 * vfio-user transport of the fio engine (engine.h): a `vfiod serve` socket through bench/nvme-host/vfio_user_client.c.
 *
 * One socket per controller, shared by every fio job (thread) using it. Socket traffic (register access, trapped
 * doorbells, DMA_MAP) is serialised by the connection's mutex; connections to different targets do not wait for
 * each other. With mmapped doorbells (`vfiod serve --poll`) the I/O path never touches the socket and takes no lock.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio_user_client.h"

/* Replies a server sends to posted writes (vfiod sends none) are drained this often so the socket never fills. */
#define DRAIN_EVERY 1024u

struct vu_xport {
  struct vfiod_xport base;
  struct vfu_client c;
  int mmap_doorbells;
  volatile uint32_t *db; /* BAR0 + 0x1000 when mmapped */
  uint32_t stride;       /* bytes between doorbells */
  void *db_map;
  size_t db_map_len;
  int bar0_fd;
  int msix_enabled;
  unsigned posted;
  pthread_mutex_t lock; /* one request/reply on the socket at a time */
  char error[VFIOD_ERR_LEN];
};


static void note(struct vu_xport *x) { snprintf(x->error, sizeof x->error, "%s", x->c.last_error); }

static int vu_read32(void *ctx, uint32_t off, uint32_t *v) {
  struct vu_xport *x = ctx;
  pthread_mutex_lock(&x->lock);
  int r = vfu_region_read(&x->c, VFU_PCI_BAR0_REGION, off, v, 4);
  if (r) note(x);
  pthread_mutex_unlock(&x->lock);
  return r;
}

static int vu_write32(void *ctx, uint32_t off, uint32_t v) {
  struct vu_xport *x = ctx;
  pthread_mutex_lock(&x->lock);
  int r = vfu_region_write(&x->c, VFU_PCI_BAR0_REGION, off, &v, 4);
  if (r) note(x);
  pthread_mutex_unlock(&x->lock);
  return r;
}

static int vu_doorbell(void *ctx, uint32_t index, uint32_t value) {
  struct vu_xport *x = ctx;
  uint32_t off = index * x->stride;
  if (x->mmap_doorbells) {
    x->db[off / 4u] = value; /* nvme_qpair_ring_* fenced the queue memory */
    return 0;
  }
  pthread_mutex_lock(&x->lock);
  int r = vfu_region_write_posted(&x->c, VFU_PCI_BAR0_REGION, NVME_REG_DOORBELLS + off, &value, 4);
  if (!r && ++x->posted % DRAIN_EVERY == 0) r = vfu_drain_unsolicited(&x->c) < 0 ? -EIO : 0;
  if (r) note(x);
  pthread_mutex_unlock(&x->lock);
  return r;
}

static int vu_dma_map(struct vfiod_xport *base, struct vfiod_dma_region *r, char *err, size_t errlen) {
  struct vu_xport *x = (struct vu_xport *)base;
  pthread_mutex_lock(&x->lock);
  int rc = vfu_dma_map(&x->c, r->fd, 0, r->iova, r->size, VFU_DMA_READ | VFU_DMA_WRITE);
  if (rc) snprintf(err, errlen, "DMA_MAP of %zu bytes at IOVA 0x%" PRIx64 ": %s", r->size, r->iova, x->c.last_error);
  pthread_mutex_unlock(&x->lock);
  if (!rc) r->mapped = 1;
  return rc;
}

static int vu_dma_unmap(struct vfiod_xport *base, struct vfiod_dma_region *r, char *err, size_t errlen) {
  struct vu_xport *x = (struct vu_xport *)base;
  if (!r->mapped) return 0;
  pthread_mutex_lock(&x->lock);
  int rc = vfu_dma_unmap(&x->c, r->iova, r->size);
  if (rc) snprintf(err, errlen, "DMA_UNMAP at IOVA 0x%" PRIx64 ": %s", r->iova, x->c.last_error);
  pthread_mutex_unlock(&x->lock);
  r->mapped = 0;
  return rc;
}

static int vu_irq_bind(struct vfiod_xport *base, uint32_t vector, int efd, char *err, size_t errlen) {
  struct vu_xport *x = (struct vu_xport *)base;
  pthread_mutex_lock(&x->lock);
  int r = 0;
  if (!x->msix_enabled) {
    r = vfu_pci_enable_msix(&x->c);
    if (r) snprintf(err, errlen, "enabling MSI-X: %s", x->c.last_error);
    else x->msix_enabled = 1;
  }
  if (!r && (r = vfu_set_irqs_eventfd(&x->c, VFU_PCI_MSIX_IRQ, vector, 1, &efd)))
    snprintf(err, errlen, "SET_IRQS (MSI-X vector %u): %s", vector, x->c.last_error);
  pthread_mutex_unlock(&x->lock);
  return r;
}

static const char *vu_last_error(struct vfiod_xport *base) { return ((struct vu_xport *)base)->error; }

static void vu_destroy(struct vfiod_xport *base) {
  struct vu_xport *x = (struct vu_xport *)base;
  if (x->db_map) munmap(x->db_map, x->db_map_len);
  if (x->bar0_fd >= 0) close(x->bar0_fd);
  vfu_close(&x->c);
  pthread_mutex_destroy(&x->lock);
  free(x);
}

/* No lock while opening: nobody else can see the connection until it is returned. */
struct vfiod_xport *vfiod_xport_vfio_user_open(const char *socket_path, const char *doorbell_mode, char *err,
                                               size_t errlen) {
  int want_mmap; /* 1 mmap, 0 trapped, -1 auto */
  if (!doorbell_mode || !strcmp(doorbell_mode, "auto")) want_mmap = -1;
  else if (!strcmp(doorbell_mode, "mmap")) want_mmap = 1;
  else if (!strcmp(doorbell_mode, "trapped")) want_mmap = 0;
  else {
    snprintf(err, errlen, "vfiod_doorbell=%s: must be auto, mmap or trapped", doorbell_mode);
    return NULL;
  }
  struct vu_xport *x = calloc(1, sizeof *x);
  if (!x) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&x->lock, NULL);
  x->bar0_fd = -1;
  x->base.kind = "vfio-user";
  snprintf(x->base.target, sizeof x->base.target, "%s", socket_path);
  struct vfu_client *c = &x->c;
  struct vfu_region_info bar0 = {.fd = -1};
  const char *step = "connect";
  if (vfu_connect(c, socket_path)) goto fail;
  step = "VERSION";
  if (vfu_negotiate_version(c)) goto fail;
  step = "DEVICE_GET_INFO";
  if (vfu_device_get_info(c)) goto fail;
  if (c->num_regions <= VFU_PCI_CONFIG_REGION) {
    snprintf(c->last_error, sizeof c->last_error, "device has only %u regions (not a PCI device?)", c->num_regions);
    goto fail;
  }
  step = "GET_REGION_INFO(BAR0)";
  if (vfu_get_region_info(c, VFU_PCI_BAR0_REGION, &bar0)) goto fail;
  x->bar0_fd = bar0.fd;
  if (bar0.size < 0x2000) {
    snprintf(c->last_error, sizeof c->last_error, "BAR0 is only %" PRIu64 " bytes (not an NVMe controller?)",
             bar0.size);
    goto fail;
  }
  step = "PCI command register";
  if (vfu_pci_enable_bus_master(c)) goto fail;
  step = "reading CAP";
  uint32_t cap_hi;
  if (vfu_region_read(c, VFU_PCI_BAR0_REGION, NVME_REG_CAP + 4, &cap_hi, 4)) goto fail;
  x->stride = 4u << (cap_hi & 0xfu);
  if (c->num_irqs > VFU_PCI_MSIX_IRQ) {
    step = "GET_IRQ_INFO(MSI-X)";
    uint32_t flags;
    if (vfu_get_irq_info(c, VFU_PCI_MSIX_IRQ, &flags, &x->base.irq_vectors)) goto fail;
  }

  uint64_t area_off = 0, area_size = 0;
  int can_mmap = vfu_find_mmap_area(&bar0, NVME_REG_DOORBELLS, 8, &area_off, &area_size) == 0;
  if (want_mmap == 1 && !can_mmap) {
    snprintf(err, errlen,
             "vfio-user %s: vfiod_doorbell=mmap but BAR0 offers no mmap-able doorbell page "
             "(start the server with --poll)",
             socket_path);
    vu_destroy(&x->base);
    return NULL;
  }
  x->mmap_doorbells = want_mmap == -1 ? can_mmap : want_mmap;
  if (x->mmap_doorbells) {
    step = "mmap of the doorbell page";
    void *m = mmap(NULL, area_size, PROT_READ | PROT_WRITE, MAP_SHARED, bar0.fd, (off_t)(bar0.offset + area_off));
    if (m == MAP_FAILED) {
      snprintf(c->last_error, sizeof c->last_error, "BAR0 area [0x%" PRIx64 "+0x%" PRIx64 "]: %s", area_off, area_size,
               strerror(errno));
      goto fail;
    }
    x->db_map = m;
    x->db_map_len = area_size;
    x->db = (volatile uint32_t *)((uint8_t *)m + (NVME_REG_DOORBELLS - area_off));
    x->base.doorbells = (uint32_t)((area_off + area_size - NVME_REG_DOORBELLS) / x->stride); /* the rest is not ours */
  } else {
    x->base.doorbells = UINT32_MAX;
  }
  x->base.doorbell = x->mmap_doorbells ? "mmap" : "trapped";
  x->base.ops = (struct nvme_regs_ops){.ctx = x, .read32 = vu_read32, .write32 = vu_write32, .ring_doorbell = vu_doorbell};
  x->base.dma_map = vu_dma_map;
  x->base.dma_unmap = vu_dma_unmap;
  x->base.irq_bind = vu_irq_bind;
  x->base.last_error = vu_last_error;
  x->base.destroy = vu_destroy;
  return &x->base;

fail:
  snprintf(err, errlen, "vfio-user %s: %s: %s", socket_path, step, c->last_error);
  vu_destroy(&x->base);
  return NULL;
}
