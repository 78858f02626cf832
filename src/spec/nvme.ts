/**
 * The NVMe vocabulary every layer shares (the emulated controller and its I/O path, the NVMe/TCP initiator,
 * namespace backends): opcodes, status codes, register offsets, sizes. Values from the NVM Express Base
 * Specification 2.0 and NVM Command Set Specification 1.0. Imports nothing.
 */

/** Register offsets in BAR0. */
export const Reg = {
  CAP: 0x00,
  VS: 0x08,
  INTMS: 0x0c,
  INTMC: 0x10,
  CC: 0x14,
  CSTS: 0x1c,
  NSSR: 0x20,
  AQA: 0x24,
  ASQ: 0x28,
  ACQ: 0x30,
  CMBLOC: 0x38,
  CMBSZ: 0x3c,
  BPINFO: 0x40,
  BPRSEL: 0x44,
  BPMBL: 0x48,
  CMBMSC: 0x50,
  CMBSTS: 0x58,
  PMRCAP: 0xe00,
  /** First doorbell; doorbell stride is 4 bytes (CAP.DSTRD = 0). */
  DOORBELLS: 0x1000,
} as const;

export const AdminOpcode = {
  DELETE_IO_SQ: 0x00,
  CREATE_IO_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_IO_CQ: 0x04,
  CREATE_IO_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
  ASYNC_EVENT_REQUEST: 0x0c,
  NAMESPACE_MANAGEMENT: 0x0d,
  FIRMWARE_COMMIT: 0x10,
  FIRMWARE_DOWNLOAD: 0x11,
  DEVICE_SELF_TEST: 0x14,
  NAMESPACE_ATTACHMENT: 0x15,
  KEEP_ALIVE: 0x18,
  DIRECTIVE_SEND: 0x19,
  DIRECTIVE_RECEIVE: 0x1a,
  VIRTUALIZATION_MANAGEMENT: 0x1c,
  DOORBELL_BUFFER_CONFIG: 0x7c,
  FORMAT_NVM: 0x80,
  SECURITY_SEND: 0x81,
  SECURITY_RECEIVE: 0x82,
  SANITIZE: 0x84,
} as const;

export const IoOpcode = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
  WRITE_UNCORRECTABLE: 0x04,
  COMPARE: 0x05,
  WRITE_ZEROES: 0x08,
  DATASET_MANAGEMENT: 0x09,
  VERIFY: 0x0c,
} as const;

export const FeatureId = {
  ARBITRATION: 0x01,
  POWER_MANAGEMENT: 0x02,
  LBA_RANGE_TYPE: 0x03,
  TEMPERATURE_THRESHOLD: 0x04,
  ERROR_RECOVERY: 0x05,
  VOLATILE_WRITE_CACHE: 0x06,
  NUMBER_OF_QUEUES: 0x07,
  INTERRUPT_COALESCING: 0x08,
  INTERRUPT_VECTOR_CONFIGURATION: 0x09,
  WRITE_ATOMICITY_NORMAL: 0x0a,
  ASYNC_EVENT_CONFIGURATION: 0x0b,
  AUTONOMOUS_POWER_STATE_TRANSITION: 0x0c,
  HOST_MEMORY_BUFFER: 0x0d,
  TIMESTAMP: 0x0e,
  KEEP_ALIVE_TIMER: 0x0f,
  HOST_CONTROLLED_THERMAL_MANAGEMENT: 0x10,
  NON_OPERATIONAL_POWER_STATE: 0x11,
  SOFTWARE_PROGRESS_MARKER: 0x80,
  HOST_IDENTIFIER: 0x81,
} as const;

export const LogPageId = {
  ERROR_INFORMATION: 0x01,
  SMART_HEALTH: 0x02,
  FIRMWARE_SLOT: 0x03,
  CHANGED_NAMESPACE_LIST: 0x04,
  COMMANDS_SUPPORTED_AND_EFFECTS: 0x05,
  DEVICE_SELF_TEST: 0x06,
  TELEMETRY_HOST: 0x07,
} as const;

export const IdentifyCns = {
  NAMESPACE: 0x00,
  CONTROLLER: 0x01,
  ACTIVE_NAMESPACE_LIST: 0x02,
  NAMESPACE_DESCRIPTORS: 0x03,
  NVM_SET_LIST: 0x04,
  IO_COMMAND_SET_NAMESPACE: 0x05,
  IO_COMMAND_SET_CONTROLLER: 0x06,
  IO_COMMAND_SET_ACTIVE_NAMESPACE_LIST: 0x07,
  IO_COMMAND_SET_INDEPENDENT_NAMESPACE: 0x08,
  ALLOCATED_NAMESPACE_LIST: 0x10,
  ALLOCATED_NAMESPACE: 0x11,
  CONTROLLER_LIST_FOR_NAMESPACE: 0x12,
  CONTROLLER_LIST: 0x13,
  IO_COMMAND_SET: 0x1c,
} as const;

/** Status Code Types (CQE DW3 bits 27:25). */
export const StatusType = {
  GENERIC: 0,
  COMMAND_SPECIFIC: 1,
  MEDIA: 2,
  PATH: 3,
} as const;

/**
 * A status as a 16-bit value: bit 14 DNR, bits 10:8 SCT, bits 7:0 SC. The CQE's status field (DW3 31:17) holds it
 * shifted left by one with the phase tag in bit 16: `dw3 = (status << 17) | (phase << 16) | cid`.
 */
export const DNR = 0x4000;
export const status = (sct: number, sc: number, dnr = false): number => (dnr ? DNR : 0) | (sct << 8) | sc;

export const Status = {
  SUCCESS: 0x0000,
  // Generic (SCT 0)
  INVALID_OPCODE: status(0, 0x01, true),
  INVALID_FIELD: status(0, 0x02, true),
  COMMAND_ID_CONFLICT: status(0, 0x03, true),
  DATA_TRANSFER_ERROR: status(0, 0x04),
  ABORTED_POWER_LOSS: status(0, 0x05),
  INTERNAL_ERROR: status(0, 0x06),
  ABORT_REQUESTED: status(0, 0x07),
  ABORTED_SQ_DELETION: status(0, 0x08),
  INVALID_NAMESPACE_OR_FORMAT: status(0, 0x0b, true),
  COMMAND_SEQUENCE_ERROR: status(0, 0x0c, true),
  INVALID_SGL_SEGMENT_DESCRIPTOR: status(0, 0x0d, true),
  INVALID_SGL_DESCRIPTOR_COUNT: status(0, 0x0e, true),
  DATA_SGL_LENGTH_INVALID: status(0, 0x0f, true),
  METADATA_SGL_LENGTH_INVALID: status(0, 0x10, true),
  SGL_DESCRIPTOR_TYPE_INVALID: status(0, 0x11, true),
  PRP_OFFSET_INVALID: status(0, 0x13, true),
  SGL_OFFSET_INVALID: status(0, 0x16, true),
  KEEP_ALIVE_EXPIRED: status(0, 0x19),
  KEEP_ALIVE_TIMEOUT_INVALID: status(0, 0x1a, true),
  LBA_OUT_OF_RANGE: status(0, 0x80, true),
  CAPACITY_EXCEEDED: status(0, 0x81, true),
  NAMESPACE_NOT_READY: status(0, 0x82),
  // Command specific (SCT 1)
  COMPLETION_QUEUE_INVALID: status(1, 0x00, true),
  INVALID_QUEUE_IDENTIFIER: status(1, 0x01, true),
  INVALID_QUEUE_SIZE: status(1, 0x02, true),
  ABORT_COMMAND_LIMIT_EXCEEDED: status(1, 0x03, true),
  ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED: status(1, 0x05, true),
  INVALID_FIRMWARE_SLOT: status(1, 0x06, true),
  INVALID_INTERRUPT_VECTOR: status(1, 0x08, true),
  INVALID_LOG_PAGE: status(1, 0x09, true),
  INVALID_QUEUE_DELETION: status(1, 0x0c, true),
  FEATURE_NOT_SAVEABLE: status(1, 0x0d, true),
  FEATURE_NOT_CHANGEABLE: status(1, 0x0e, true),
  FEATURE_NOT_NAMESPACE_SPECIFIC: status(1, 0x0f, true),
  // Media and data integrity (SCT 2)
  WRITE_FAULT: status(2, 0x80),
  UNRECOVERED_READ_ERROR: status(2, 0x81),
  COMPARE_FAILURE: status(2, 0x85, true),
  // Path related (SCT 3)
  INTERNAL_PATH_ERROR: status(3, 0x00),
  // Appended for the I/O path (generic, SCT 0): a write to a read-only namespace.
  NAMESPACE_WRITE_PROTECTED: status(0, 0x20, true),
} as const;

const STATUS_NAMES = new Map<number, string>(Object.entries(Status).map(([name, value]) => [value & ~DNR, name]));

/** A status's name (`LBA_OUT_OF_RANGE`), DNR ignored; one vfiod never posts is named by its type and code (`SCT1_SC0x1b`). */
export function statusName(value: number): string {
  const plain = value & ~DNR;
  return STATUS_NAMES.get(plain) ?? `SCT${(plain >> 8) & 7}_SC0x${(plain & 0xff).toString(16).padStart(2, '0')}`;
}

/** Asynchronous event types (completion DW0 bits 2:0) and the information codes we raise. */
export const AsyncEvent = {
  TYPE_ERROR: 0,
  TYPE_SMART: 1,
  TYPE_NOTICE: 2,
  INFO_ERROR_INVALID_DOORBELL_REGISTER: 0x00,
  INFO_ERROR_INVALID_DOORBELL_VALUE: 0x01,
  INFO_NOTICE_NAMESPACE_ATTRIBUTE_CHANGED: 0x00,
} as const;

export const SQE_SIZE = 64;
export const CQE_SIZE = 16;
export const PAGE_SIZE = 4096;
