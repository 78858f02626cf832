/*
 * In-process loopback NVMe "device" for the client-ceiling reference: a minimal controller (registers, admin queue,
 * Identify, Set Features, Create/Delete I/O queues, Read/Write over PRPs on a RAM namespace) that executes commands
 * synchronously inside the SQ-tail doorbell write. It exercises exactly the same host code (nvme_queue.c) as the
 * real runs, with zero transport cost, so its IOPS are what the client alone can drive on this machine.
 */
#ifndef LOOPBACK_DEV_H
#define LOOPBACK_DEV_H

#include "nvme_queue.h"

struct loopback_dev;

struct loopback_dev *loopback_create(void *ram, uint64_t ram_iova, size_t ram_size, uint64_t ns_bytes);
void loopback_destroy(struct loopback_dev *dev);
/* Fills ops (ctx = dev). */
void loopback_ops(struct loopback_dev *dev, struct nvme_regs_ops *ops);

#endif
