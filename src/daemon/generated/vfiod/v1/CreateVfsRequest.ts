// Original file: proto/vfiod/v1/devices.proto


export interface CreateVfsRequest {
  /**
   * the SR-IOV physical function
   */
  'pf'?: (string);
  /**
   * the VM the VFs are prepared for (not needed with num_vfs = 0)
   */
  'owner'?: (string);
  /**
   * 1..sriov_totalvfs; 0 removes every VF
   */
  'numVfs'?: (number);
  /**
   * wait for the VFs to appear (default 5000)
   */
  'timeoutMs'?: (number);
}

export interface CreateVfsRequest__Output {
  /**
   * the SR-IOV physical function
   */
  'pf': (string);
  /**
   * the VM the VFs are prepared for (not needed with num_vfs = 0)
   */
  'owner': (string);
  /**
   * 1..sriov_totalvfs; 0 removes every VF
   */
  'numVfs': (number);
  /**
   * wait for the VFs to appear (default 5000)
   */
  'timeoutMs': (number);
}
