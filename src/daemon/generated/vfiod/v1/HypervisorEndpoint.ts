// Original file: proto/vfiod/v1/attachments.proto


/**
 * How to reach one VM's VMM.
 */
export interface HypervisorEndpoint {
  /**
   * cloud-hypervisor --api-socket path
   */
  'cloudHypervisorApiSocket'?: (string);
  /**
   * QEMU -qmp unix:<path>,server=on,wait=off
   */
  'qemuQmpSocket'?: (string);
  /**
   * cloud-hypervisor only, optional: the VM's --event-monitor path=<file>. An unplug then completes on its
   * device-removed event instead of the next vm.info poll.
   */
  'cloudHypervisorEventMonitor'?: (string);
  'endpoint'?: "cloudHypervisorApiSocket"|"qemuQmpSocket";
}

/**
 * How to reach one VM's VMM.
 */
export interface HypervisorEndpoint__Output {
  /**
   * cloud-hypervisor --api-socket path
   */
  'cloudHypervisorApiSocket'?: (string);
  /**
   * QEMU -qmp unix:<path>,server=on,wait=off
   */
  'qemuQmpSocket'?: (string);
  /**
   * cloud-hypervisor only, optional: the VM's --event-monitor path=<file>. An unplug then completes on its
   * device-removed event instead of the next vm.info poll.
   */
  'cloudHypervisorEventMonitor': (string);
  'endpoint'?: "cloudHypervisorApiSocket"|"qemuQmpSocket";
}
