/*
 * VFIO transport of the fio engine (engine.h): an NVMe controller (PF or VF) bound to vfio-pci, through the legacy
 * container/group API with a type1 IOMMU. BAR0 is mmapped, so register access and doorbells are plain loads and
 * stores and the I/O path takes no lock.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <limits.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct vf_xport {
  struct vfiod_xport base;
  int container, group, device;
  volatile uint8_t *bar0;
  size_t bar0_len;
  uint32_t stride;
  int msix_enabled;
  pthread_mutex_t irq_lock; /* jobs bind their vectors from their own threads */
  char error[VFIOD_ERR_LEN];
};

static int vf_read32(void *ctx, uint32_t off, uint32_t *v) {
  struct vf_xport *x = ctx;
  *v = *(volatile uint32_t *)(x->bar0 + off);
  return 0;
}
static int vf_write32(void *ctx, uint32_t off, uint32_t v) {
  struct vf_xport *x = ctx;
  *(volatile uint32_t *)(x->bar0 + off) = v;
  return 0;
}
static int vf_doorbell(void *ctx, uint32_t index, uint32_t value) {
  struct vf_xport *x = ctx;
  /* nvme_qpair_ring_* issued nvme_doorbell_barrier(): queue memory is ordered before this MMIO write */
  *(volatile uint32_t *)(x->bar0 + NVME_REG_DOORBELLS + index * x->stride) = value;
  return 0;
}

static int vf_dma_map(struct vfiod_xport *base, struct vfiod_dma_region *r, char *err, size_t errlen) {
  struct vf_xport *x = (struct vf_xport *)base;
  struct vfio_iommu_type1_dma_map m = {.argsz = sizeof m,
                                       .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                                       .vaddr = (uintptr_t)r->vaddr,
                                       .iova = r->iova,
                                       .size = r->size};
  if (ioctl(x->container, VFIO_IOMMU_MAP_DMA, &m) < 0) {
    int e = errno;
    snprintf(err, errlen, "VFIO_IOMMU_MAP_DMA of %zu bytes at IOVA 0x%" PRIx64 ": %s%s", r->size, r->iova, strerror(e),
             e == ENOMEM ? " (RLIMIT_MEMLOCK too low?)" : "");
    return -e;
  }
  r->mapped = 1;
  return 0;
}

static int vf_dma_unmap(struct vfiod_xport *base, struct vfiod_dma_region *r, char *err, size_t errlen) {
  struct vf_xport *x = (struct vf_xport *)base;
  if (!r->mapped) return 0;
  struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof u, .iova = r->iova, .size = r->size};
  r->mapped = 0;
  if (ioctl(x->container, VFIO_IOMMU_UNMAP_DMA, &u) < 0) {
    int e = errno;
    snprintf(err, errlen, "VFIO_IOMMU_UNMAP_DMA at IOVA 0x%" PRIx64 ": %s", r->iova, strerror(e));
    return -e;
  }
  return 0;
}

/* VFIO_DEVICE_SET_IRQS on the MSI-X index with eventfds (-1 = no trigger) for vectors start..start+count-1. */
static int set_msix(struct vf_xport *x, uint32_t start, uint32_t count, const int32_t *fds) {
  size_t size = sizeof(struct vfio_irq_set) + count * sizeof(int32_t);
  struct vfio_irq_set *set = calloc(1, size);
  if (!set) return -ENOMEM;
  set->argsz = (uint32_t)size;
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = VFIO_PCI_MSIX_IRQ_INDEX;
  set->start = start;
  set->count = count;
  memcpy(set->data, fds, count * sizeof(int32_t));
  int r = ioctl(x->device, VFIO_DEVICE_SET_IRQS, set) < 0 ? -errno : 0;
  free(set);
  return r;
}

static int vf_irq_bind(struct vfiod_xport *base, uint32_t vector, int efd, char *err, size_t errlen) {
  struct vf_xport *x = (struct vf_xport *)base;
  int r = 0;
  pthread_mutex_lock(&x->irq_lock);
  if (!x->msix_enabled) {
    /* vfio-pci enables MSI-X with a fixed vector count: enable all of them (no eventfds), then bind one by one. */
    int32_t *none = malloc(base->irq_vectors * sizeof *none);
    if (!none) r = -ENOMEM;
    for (uint32_t i = 0; none && i < base->irq_vectors; i++) none[i] = -1;
    if (!r && (r = set_msix(x, 0, base->irq_vectors, none)))
      snprintf(err, errlen, "enabling %u MSI-X vectors (VFIO_DEVICE_SET_IRQS): %s", base->irq_vectors, strerror(-r));
    free(none);
    if (!r) x->msix_enabled = 1;
  }
  int32_t fd = efd;
  if (!r && (r = set_msix(x, vector, 1, &fd)))
    snprintf(err, errlen, "binding MSI-X vector %u (VFIO_DEVICE_SET_IRQS): %s", vector, strerror(-r));
  pthread_mutex_unlock(&x->irq_lock);
  return r;
}

static const char *vf_last_error(struct vfiod_xport *base) { return ((struct vf_xport *)base)->error; }

static void vf_destroy(struct vfiod_xport *base) {
  struct vf_xport *x = (struct vf_xport *)base;
  if (x->msix_enabled) { /* count 0 + DATA_NONE: disable MSI-X, release the eventfds */
    struct vfio_irq_set off = {.argsz = sizeof off,
                               .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                               .index = VFIO_PCI_MSIX_IRQ_INDEX};
    ioctl(x->device, VFIO_DEVICE_SET_IRQS, &off);
  }
  pthread_mutex_destroy(&x->irq_lock);
  if (x->bar0) munmap((void *)x->bar0, x->bar0_len);
  if (x->device >= 0) close(x->device);
  if (x->group >= 0) close(x->group);
  if (x->container >= 0) close(x->container);
  free(x);
}

/* Last path component of a sysfs symlink (driver name, group number), or "" when there is no link. */
static void link_name(const char *path, char *out, size_t outlen) {
  char buf[PATH_MAX];
  ssize_t n = readlink(path, buf, sizeof buf - 1);
  out[0] = 0;
  if (n <= 0) return;
  buf[n] = 0;
  snprintf(out, outlen, "%s", basename(buf));
}

struct vfiod_xport *vfiod_xport_vfio_open(const char *bdf, char *err, size_t errlen) {
  unsigned dom, bus, dev, fn;
  char tail;
  if (sscanf(bdf, "%4x:%2x:%2x.%1x%c", &dom, &bus, &dev, &fn, &tail) != 4 || strlen(bdf) != 12) {
    snprintf(err, errlen, "vfiod_bdf=%s: expected a PCI address like 0000:01:00.1", bdf);
    return NULL;
  }
  char path[PATH_MAX], name[64];
  snprintf(path, sizeof path, "/sys/bus/pci/devices/%s", bdf);
  if (access(path, F_OK) != 0) {
    snprintf(err, errlen, "vfio %s: no such PCI device (%s missing)", bdf, path);
    return NULL;
  }
  snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver", bdf);
  link_name(path, name, sizeof name);
  if (strcmp(name, "vfio-pci") != 0) {
    snprintf(err, errlen, "vfio %s: bound to %s, not vfio-pci (bind it first, e.g. `vfiod devices prepare`)", bdf,
             name[0] ? name : "no driver");
    return NULL;
  }
  snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/iommu_group", bdf);
  link_name(path, name, sizeof name);
  if (!name[0]) {
    snprintf(err, errlen, "vfio %s: no IOMMU group (IOMMU off? boot with intel_iommu=on / amd_iommu=on)", bdf);
    return NULL;
  }

  struct vf_xport *x = calloc(1, sizeof *x);
  if (!x) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  x->container = x->group = x->device = -1;
  pthread_mutex_init(&x->irq_lock, NULL);
  x->base.kind = "vfio";
  x->base.doorbell = "mmap";
  snprintf(x->base.target, sizeof x->base.target, "%s", bdf);
  const char *step;
  int e = 0;

  step = "open /dev/vfio/vfio";
  if ((x->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC)) < 0) goto fail_errno;
  step = "VFIO_GET_API_VERSION";
  if (ioctl(x->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
    e = EPROTO;
    goto fail;
  }
  unsigned long iommu_type = VFIO_TYPE1v2_IOMMU;
  if (ioctl(x->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0) {
    iommu_type = VFIO_TYPE1_IOMMU;
    step = "type1 IOMMU support (VFIO_CHECK_EXTENSION)";
    if (ioctl(x->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) <= 0) {
      e = ENOTSUP;
      goto fail;
    }
  }
  snprintf(path, sizeof path, "/dev/vfio/%s", name);
  step = path;
  if ((x->group = open(path, O_RDWR | O_CLOEXEC)) < 0) {
    e = errno;
    if (e == EBUSY) step = "open of the IOMMU group (busy: another process holds it)";
    goto fail;
  }
  struct vfio_group_status gs = {.argsz = sizeof gs};
  step = "VFIO_GROUP_GET_STATUS";
  if (ioctl(x->group, VFIO_GROUP_GET_STATUS, &gs) < 0) goto fail_errno;
  if (!(gs.flags & VFIO_GROUP_FLAGS_VIABLE)) {
    snprintf(err, errlen,
             "vfio %s: IOMMU group %s is not viable (every device in it must be bound to vfio-pci or no driver)",
             bdf, name);
    vf_destroy(&x->base);
    return NULL;
  }
  step = "VFIO_GROUP_SET_CONTAINER";
  if (ioctl(x->group, VFIO_GROUP_SET_CONTAINER, &x->container) < 0) goto fail_errno;
  step = "VFIO_SET_IOMMU";
  if (ioctl(x->container, VFIO_SET_IOMMU, iommu_type) < 0) goto fail_errno;
  step = "VFIO_GROUP_GET_DEVICE_FD";
  if ((x->device = ioctl(x->group, VFIO_GROUP_GET_DEVICE_FD, bdf)) < 0) goto fail_errno;

  struct vfio_region_info cfg = {.argsz = sizeof cfg, .index = VFIO_PCI_CONFIG_REGION_INDEX};
  step = "config space region info";
  if (ioctl(x->device, VFIO_DEVICE_GET_REGION_INFO, &cfg) < 0) goto fail_errno;
  uint16_t cmd;
  step = "reading the PCI command register";
  if (pread(x->device, &cmd, 2, (off_t)cfg.offset + 4) != 2) goto fail_errno;
  uint16_t want = (uint16_t)(cmd | 0x6u); /* memory space + bus master */
  step = "setting memory space + bus master";
  if (want != cmd && pwrite(x->device, &want, 2, (off_t)cfg.offset + 4) != 2) goto fail_errno;

  struct vfio_region_info bar = {.argsz = sizeof bar, .index = VFIO_PCI_BAR0_REGION_INDEX};
  step = "BAR0 region info";
  if (ioctl(x->device, VFIO_DEVICE_GET_REGION_INFO, &bar) < 0) goto fail_errno;
  if (!(bar.flags & VFIO_REGION_INFO_FLAG_MMAP) || bar.size < 0x2000) {
    snprintf(err, errlen, "vfio %s: BAR0 (%llu bytes, flags 0x%x) is not an mmap-able NVMe register BAR", bdf,
             (unsigned long long)bar.size, bar.flags);
    vf_destroy(&x->base);
    return NULL;
  }
  step = "mmap of BAR0";
  void *m = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, x->device, (off_t)bar.offset);
  if (m == MAP_FAILED) goto fail_errno;
  x->bar0 = m;
  x->bar0_len = bar.size;
  uint32_t cap_hi = *(volatile uint32_t *)(x->bar0 + NVME_REG_CAP + 4);
  if (cap_hi == 0xffffffffu) {
    snprintf(err, errlen, "vfio %s: BAR0 reads all ones (device not responding)", bdf);
    vf_destroy(&x->base);
    return NULL;
  }
  x->stride = 4u << (cap_hi & 0xfu);
  x->base.doorbells = (uint32_t)((bar.size - NVME_REG_DOORBELLS) / x->stride); /* stores past BAR0 would fault */
  struct vfio_irq_info irq = {.argsz = sizeof irq, .index = VFIO_PCI_MSIX_IRQ_INDEX};
  if (ioctl(x->device, VFIO_DEVICE_GET_IRQ_INFO, &irq) == 0 && (irq.flags & VFIO_IRQ_INFO_EVENTFD))
    x->base.irq_vectors = irq.count;
  x->base.irq_bind = vf_irq_bind;
  x->base.ops = (struct nvme_regs_ops){.ctx = x, .read32 = vf_read32, .write32 = vf_write32, .ring_doorbell = vf_doorbell};
  x->base.dma_map = vf_dma_map;
  x->base.dma_unmap = vf_dma_unmap;
  x->base.last_error = vf_last_error;
  x->base.destroy = vf_destroy;
  return &x->base;

fail_errno:
  e = errno;
fail:
  snprintf(err, errlen, "vfio %s: %s: %s", bdf, step, strerror(e));
  vf_destroy(&x->base);
  return NULL;
}
