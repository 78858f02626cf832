// Original file: proto/vfiod/v1/daemon.proto

import type { DaemonInfo as _vfiod_v1_DaemonInfo, DaemonInfo__Output as _vfiod_v1_DaemonInfo__Output } from '../../vfiod/v1/DaemonInfo.js';

export interface GetDaemonResponse {
  'daemon'?: (_vfiod_v1_DaemonInfo | null);
}

export interface GetDaemonResponse__Output {
  'daemon': (_vfiod_v1_DaemonInfo__Output | null);
}
