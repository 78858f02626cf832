// Original file: proto/vfiod/v1/events.proto

import type { EventResourceType as _vfiod_v1_EventResourceType, EventResourceType__Output as _vfiod_v1_EventResourceType__Output } from '../../vfiod/v1/EventResourceType.js';
import type { DeviceStateChanged as _vfiod_v1_DeviceStateChanged, DeviceStateChanged__Output as _vfiod_v1_DeviceStateChanged__Output } from '../../vfiod/v1/DeviceStateChanged.js';
import type { AttachmentInfo as _vfiod_v1_AttachmentInfo, AttachmentInfo__Output as _vfiod_v1_AttachmentInfo__Output } from '../../vfiod/v1/AttachmentInfo.js';
import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from '../../vfiod/v1/Operation.js';
import type { Long } from '@grpc/proto-loader';

export interface Event {
  'sequence'?: (number | string | Long);
  /**
   * RFC 3339, milliseconds
   */
  'time'?: (string);
  'resourceType'?: (_vfiod_v1_EventResourceType);
  /**
   * "devices/0000:01:00.1", "controllers/nvme0", "vms/vm1/attachments/disk1", "operations/<uuid>"
   */
  'resourceName'?: (string);
  /**
   * What happened: DeviceEventKind without its prefix for devices (PREPARED, ATTACHED, ...); CREATED, DELETED,
   * NAMESPACE_ATTACHED, NAMESPACE_DETACHED, NAMESPACE_RESIZED, NAMESPACE_BACKING_SWAPPED, LIMITS_SET for controllers;
   * the new AttachmentState without its prefix (ATTACHED, DETACH_PENDING, ...) or DETACHED for attachments; the
   * OperationState without its prefix for operations (RUNNING also for progress).
   */
  'action'?: (string);
  /**
   * the VM, when there is one
   */
  'vmId'?: (string);
  /**
   * for people
   */
  'detail'?: (string);
  'device'?: (_vfiod_v1_DeviceStateChanged | null);
  'attachment'?: (_vfiod_v1_AttachmentInfo | null);
  'operation'?: (_vfiod_v1_Operation | null);
  'snapshot'?: "device"|"attachment"|"operation";
}

export interface Event__Output {
  'sequence': (number);
  /**
   * RFC 3339, milliseconds
   */
  'time': (string);
  'resourceType': (_vfiod_v1_EventResourceType__Output);
  /**
   * "devices/0000:01:00.1", "controllers/nvme0", "vms/vm1/attachments/disk1", "operations/<uuid>"
   */
  'resourceName': (string);
  /**
   * What happened: DeviceEventKind without its prefix for devices (PREPARED, ATTACHED, ...); CREATED, DELETED,
   * NAMESPACE_ATTACHED, NAMESPACE_DETACHED, NAMESPACE_RESIZED, NAMESPACE_BACKING_SWAPPED, LIMITS_SET for controllers;
   * the new AttachmentState without its prefix (ATTACHED, DETACH_PENDING, ...) or DETACHED for attachments; the
   * OperationState without its prefix for operations (RUNNING also for progress).
   */
  'action': (string);
  /**
   * the VM, when there is one
   */
  'vmId': (string);
  /**
   * for people
   */
  'detail': (string);
  'device'?: (_vfiod_v1_DeviceStateChanged__Output | null);
  'attachment'?: (_vfiod_v1_AttachmentInfo__Output | null);
  'operation'?: (_vfiod_v1_Operation__Output | null);
  'snapshot'?: "device"|"attachment"|"operation";
}
