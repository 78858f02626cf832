/**
 * The limits this server applies and advertises in its VERSION reply. Protocol facts (message layouts, command ids)
 * live in protocol.ts; these are vfiod's choices, bounded by what the clients accept.
 */

/** DMA page size we accept and advertise (pgsizes). */
export const PAGE_SIZE = 4096;
/** Most fds per message. QEMU accepts at most 16; cloud-hypervisor sends eventfds in batches of 16 regardless. */
export const MAX_MSG_FDS = 16;
/** QEMU rejects a max_data_xfer_size above 64 MiB. */
export const MAX_DATA_TRANSFER_LIMIT = 64 * 1024 * 1024;
export const DEFAULT_MAX_DATA_TRANSFER = 1024 * 1024;
export const DEFAULT_MAX_DMA_MAPS = 1024;
/** QEMU rejects max_dma_maps above 65535. */
export const MAX_DMA_MAPS_LIMIT = 65535;
/** Highest minor version we speak; QEMU proposes 0.0 (and rejects a higher reply), cloud-hypervisor 0.1. */
export const SUPPORTED_MINOR = 1;
/** Room for VERSION JSON and SET_IRQS bool payloads in messages that carry no bulk data. */
export const CONTROL_MESSAGE_ROOM = 64 * 1024;
/** Per-connection budget of per-request error log lines; a hostile client must not flood the log. */
export const ERROR_LOG_BUDGET = 100;
