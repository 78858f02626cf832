/*
 * Minimal vfio-user client transport (protocol 0.0) for benchmarks and test tools.
 *
 * One synchronous request/reply channel over an AF_UNIX stream socket; file descriptors travel as SCM_RIGHTS.
 * Register accesses are REGION_READ/REGION_WRITE messages; doorbell writes can be "posted" (flag NO_REPLY, no reply
 * awaited), which is what QEMU does when nothing in the device is mmap-able. Not thread-safe: one caller at a time
 * per client (clients are independent of each other: each receives into its own buffer).
 */
#ifndef VFIO_USER_CLIENT_H
#define VFIO_USER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* Commands. */
enum {
  VFU_CMD_VERSION = 1,
  VFU_CMD_DMA_MAP = 2,
  VFU_CMD_DMA_UNMAP = 3,
  VFU_CMD_DEVICE_GET_INFO = 4,
  VFU_CMD_DEVICE_GET_REGION_INFO = 5,
  VFU_CMD_DEVICE_GET_IRQ_INFO = 7,
  VFU_CMD_DEVICE_SET_IRQS = 8,
  VFU_CMD_REGION_READ = 9,
  VFU_CMD_REGION_WRITE = 10,
  VFU_CMD_DEVICE_RESET = 13,
};

/* Header flags. */
#define VFU_F_TYPE_MASK 0xfu
#define VFU_F_TYPE_COMMAND 0u
#define VFU_F_TYPE_REPLY 1u
#define VFU_F_NO_REPLY 0x10u
#define VFU_F_ERROR 0x20u

/* Region info flags. */
#define VFU_REGION_READ 1u
#define VFU_REGION_WRITE 2u
#define VFU_REGION_MMAP 4u
#define VFU_REGION_CAPS 8u
#define VFU_CAP_SPARSE_MMAP 1u

/* Standard PCI region / IRQ indexes. */
#define VFU_PCI_BAR0_REGION 0u
#define VFU_PCI_CONFIG_REGION 7u
#define VFU_PCI_MSIX_IRQ 2u

/* SET_IRQS flags. */
#define VFU_IRQ_DATA_NONE 1u
#define VFU_IRQ_DATA_BOOL 2u
#define VFU_IRQ_DATA_EVENTFD 4u
#define VFU_IRQ_ACTION_MASK 8u
#define VFU_IRQ_ACTION_UNMASK 0x10u
#define VFU_IRQ_ACTION_TRIGGER 0x20u

/* DMA_MAP flags. */
#define VFU_DMA_READ 1u
#define VFU_DMA_WRITE 2u

#define VFU_MAX_SPARSE_AREAS 8

struct vfu_sparse_area {
  uint64_t offset; /* relative to the region start (and to region.offset in the fd) */
  uint64_t size;
};

struct vfu_region_info {
  uint32_t index;
  uint32_t flags;
  uint64_t size;
  uint64_t offset; /* mmap offset base within fd */
  int fd;          /* -1 when the reply carried none; owned by the caller */
  uint32_t nr_areas;
  struct vfu_sparse_area areas[VFU_MAX_SPARSE_AREAS];
};

struct vfu_client {
  int sock;
  uint8_t *rx; /* payload of the latest message received (64 KiB) */
  uint16_t next_id;
  /* Negotiated from the server's VERSION reply. */
  uint16_t server_major, server_minor;
  char server_caps[1024];
  uint32_t max_msg_fds;
  uint64_t max_data_xfer_size;
  /* DEVICE_GET_INFO. */
  uint32_t dev_flags, num_regions, num_irqs;
  /* Counters. */
  uint64_t msgs_sent;       /* every message written to the socket */
  uint64_t posted_writes;   /* REGION_WRITEs sent with NO_REPLY */
  uint64_t stray_replies;   /* replies whose msg_id matched nothing we were waiting for (discarded) */
  uint64_t server_requests; /* server->client commands (answered with an error) */
  int reply_timeout_ms;     /* per reply; default 5000 */
  char last_error[256];
};

/*
 * All functions return 0 on success, a negative errno on failure (client->last_error says more). vfu_connect
 * initialises the client even when it fails; vfu_close releases it either way.
 */
int vfu_connect(struct vfu_client *c, const char *socket_path);
int vfu_negotiate_version(struct vfu_client *c);
int vfu_device_get_info(struct vfu_client *c);
int vfu_get_region_info(struct vfu_client *c, uint32_t index, struct vfu_region_info *out);
int vfu_get_irq_info(struct vfu_client *c, uint32_t index, uint32_t *flags, uint32_t *count);
int vfu_dma_map(struct vfu_client *c, int fd, uint64_t fd_offset, uint64_t iova, uint64_t size, uint32_t prot);
int vfu_dma_unmap(struct vfu_client *c, uint64_t iova, uint64_t size);
/* Bind `count` eventfds to vectors start..start+count-1 of IRQ `index` (DATA_EVENTFD|ACTION_TRIGGER). */
int vfu_set_irqs_eventfd(struct vfu_client *c, uint32_t index, uint32_t start, uint32_t count, const int *fds);
/* Disable all interrupts of `index` (count 0, DATA_NONE|ACTION_TRIGGER). */
int vfu_set_irqs_disable(struct vfu_client *c, uint32_t index);
int vfu_region_read(struct vfu_client *c, uint32_t region, uint64_t offset, void *buf, uint32_t count);
int vfu_region_write(struct vfu_client *c, uint32_t region, uint64_t offset, const void *buf, uint32_t count);
/* REGION_WRITE with NO_REPLY: one send, no wait. The server must not reply; stray replies are discarded later. */
int vfu_region_write_posted(struct vfu_client *c, uint32_t region, uint64_t offset, const void *buf, uint32_t count);
int vfu_device_reset(struct vfu_client *c);
/*
 * Without blocking, read and discard whatever the server sent unasked (replies to posted writes from a server that
 * ignores NO_REPLY, server requests). Returns the number of messages drained or a negative errno.
 */
int vfu_drain_unsolicited(struct vfu_client *c);
/*
 * Find the mmap-able part of a region that covers [offset, offset+len): a sparse-mmap area, or the whole region when
 * it is mmap-able without areas. Returns 0 and the area (relative to the region start), or -1 when none does.
 */
int vfu_find_mmap_area(const struct vfu_region_info *region, uint64_t offset, uint64_t len, uint64_t *area_offset,
                       uint64_t *area_size);
/* PCI config space: Memory Space + Bus Master on (what a driver does before the device may DMA). */
int vfu_pci_enable_bus_master(struct vfu_client *c);
/*
 * PCI config space: set MSI-X Enable and clear Function Mask in the MSI-X capability (what a driver does before
 * using vectors). Returns -ENOENT when the function has no MSI-X capability.
 */
int vfu_pci_enable_msix(struct vfu_client *c);
/* Server process id (SO_PEERCRED), or -1. */
int vfu_peer_pid(struct vfu_client *c);
void vfu_close(struct vfu_client *c);

#endif
