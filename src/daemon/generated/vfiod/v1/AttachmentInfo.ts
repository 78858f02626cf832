// Original file: proto/vfiod/v1/attachments.proto

import type { HypervisorKind as _vfiod_v1_HypervisorKind, HypervisorKind__Output as _vfiod_v1_HypervisorKind__Output } from '../../vfiod/v1/HypervisorKind.js';
import type { HypervisorEndpoint as _vfiod_v1_HypervisorEndpoint, HypervisorEndpoint__Output as _vfiod_v1_HypervisorEndpoint__Output } from '../../vfiod/v1/HypervisorEndpoint.js';
import type { DeviceSource as _vfiod_v1_DeviceSource, DeviceSource__Output as _vfiod_v1_DeviceSource__Output } from '../../vfiod/v1/DeviceSource.js';
import type { AttachedFunction as _vfiod_v1_AttachedFunction, AttachedFunction__Output as _vfiod_v1_AttachedFunction__Output } from '../../vfiod/v1/AttachedFunction.js';
import type { AttachmentState as _vfiod_v1_AttachmentState, AttachmentState__Output as _vfiod_v1_AttachmentState__Output } from '../../vfiod/v1/AttachmentState.js';

export interface AttachmentInfo {
  'vmId'?: (string);
  /**
   * unique per VM: the primary function's VMM device id
   */
  'deviceId'?: (string);
  'hypervisor'?: (_vfiod_v1_HypervisorKind);
  'endpoint'?: (_vfiod_v1_HypervisorEndpoint | null);
  'source'?: (_vfiod_v1_DeviceSource | null);
  'functions'?: (_vfiod_v1_AttachedFunction)[];
  'state'?: (_vfiod_v1_AttachmentState);
  /**
   * detach releases the device only then
   */
  'preparedByAttach'?: (boolean);
  'bootIndex'?: (number);
  'note'?: (string);
  'createdAt'?: (string);
  'updatedAt'?: (string);
  '_bootIndex'?: "bootIndex";
}

export interface AttachmentInfo__Output {
  'vmId': (string);
  /**
   * unique per VM: the primary function's VMM device id
   */
  'deviceId': (string);
  'hypervisor': (_vfiod_v1_HypervisorKind__Output);
  'endpoint': (_vfiod_v1_HypervisorEndpoint__Output | null);
  'source': (_vfiod_v1_DeviceSource__Output | null);
  'functions': (_vfiod_v1_AttachedFunction__Output)[];
  'state': (_vfiod_v1_AttachmentState__Output);
  /**
   * detach releases the device only then
   */
  'preparedByAttach': (boolean);
  'bootIndex'?: (number);
  'note': (string);
  'createdAt': (string);
  'updatedAt': (string);
  '_bootIndex'?: "bootIndex";
}
