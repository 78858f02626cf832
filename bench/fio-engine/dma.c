/* DMA-able host memory for the fio engine; see engine.h. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DMA_ALIGN (2u << 20)

int vfiod_dma_region_alloc(struct vfiod_dma_region *r, size_t size, const char *name, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
  if (size > SIZE_MAX - DMA_ALIGN) {
    snprintf(err, errlen, "%s: %zu bytes is more than can be mapped", name, size);
    return -ENOMEM;
  }
  size = (size + DMA_ALIGN - 1) & ~(size_t)(DMA_ALIGN - 1);
  if (size == 0) size = DMA_ALIGN;
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "memfd_create(%s): %s", name, strerror(e));
    return -e;
  }
  if (ftruncate(fd, (off_t)size) < 0) {
    int e = errno;
    snprintf(err, errlen, "ftruncate of the %s memfd to %zu bytes: %s", name, size, strerror(e));
    close(fd);
    return -e;
  }
  /* MAP_POPULATE: the pages exist before the device (or the IOMMU pinning) first touches them. */
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    snprintf(err, errlen, "mmap of %zu bytes for %s: %s", size, name, strerror(e));
    close(fd);
    return -e;
  }
  r->vaddr = p;
  r->size = size;
  r->fd = fd;
  return 0;
}

void vfiod_dma_region_free(struct vfiod_dma_region *r) {
  if (r->vaddr) munmap(r->vaddr, r->size);
  if (r->fd >= 0) close(r->fd);
  memset(r, 0, sizeof *r);
  r->fd = -1;
}
