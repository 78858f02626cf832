// Original file: proto/vfiod/v1/devices.proto

import type { PrepareDeviceResponse as _vfiod_v1_PrepareDeviceResponse, PrepareDeviceResponse__Output as _vfiod_v1_PrepareDeviceResponse__Output } from '../../vfiod/v1/PrepareDeviceResponse.js';

export interface CreateVfsResponse {
  'pf'?: (string);
  'owner'?: (string);
  'numVfs'?: (number);
  /**
   * unused VFs destroyed to create the new ones
   */
  'replaced'?: (string)[];
  /**
   * each new VF, prepared for owner
   */
  'vfs'?: (_vfiod_v1_PrepareDeviceResponse)[];
  /**
   * the release of the last of these VFs turns it back on
   */
  'autoprobeTurnedOff'?: (boolean);
  /**
   * num_vfs = 0: the VFs removed
   */
  'removed'?: (string)[];
}

export interface CreateVfsResponse__Output {
  'pf': (string);
  'owner': (string);
  'numVfs': (number);
  /**
   * unused VFs destroyed to create the new ones
   */
  'replaced': (string)[];
  /**
   * each new VF, prepared for owner
   */
  'vfs': (_vfiod_v1_PrepareDeviceResponse__Output)[];
  /**
   * the release of the last of these VFs turns it back on
   */
  'autoprobeTurnedOff': (boolean);
  /**
   * num_vfs = 0: the VFs removed
   */
  'removed': (string)[];
}
