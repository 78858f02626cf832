/** NVMe over Fabrics constants the initiator uses (NVMe-oF 1.1; Linux include/linux/nvme.h). */

export const FabricsType = {
  /** Opcode of every Fabrics command; the command type (fctype) sits in SQE byte 4. */
  OPCODE: 0x7f,
  PROPERTY_SET: 0x00,
  CONNECT: 0x01,
  PROPERTY_GET: 0x04,
} as const;

/** Controller properties (register offsets). */
export const NvmfProperty = {
  CAP: 0x00,
  VS: 0x08,
  CC: 0x14,
  CSTS: 0x1c,
} as const;

export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';
export const DISCOVERY_LOG_PAGE = 0x70;
export const DEFAULT_IO_PORT = 4420;
export const DEFAULT_DISCOVERY_PORT = 8009;

/** Admin queue: Linux's NVME_AQ_DEPTH and NVME_TCP_ADMIN_CCSZ (8 KiB of in-capsule data). */
export const ADMIN_QUEUE_DEPTH = 32;
export const ADMIN_INCAPSULE_BYTES = 8192;

/** ONCS bits (Identify Controller byte 520). */
export const Oncs = {
  DSM: 1 << 2,
  WRITE_ZEROES: 1 << 3,
} as const;
