/**
 * Every reason a VfiodError can carry: the single source of truth for the control API's `google.rpc.ErrorInfo`
 * reasons (docs/daemon.md, "Error reasons", is generated from this table and a test compares them), the gRPC codes
 * each reason comes with, the resource it names (`google.rpc.ResourceInfo`) and the ErrorInfo metadata keys it
 * carries. A reason is stable: programs switch on it, so one is never renamed or given another meaning; the message
 * next to it is for people and may change.
 *
 * Sites write metadata as camelCase keys in VfiodError's details (`{ reason: 'DEVICE_IN_USE', bdf, holderPid }`); on
 * the wire they are snake_case (`bdf`, `holder_pid`).
 */
import type { ErrorCode } from './errors.js';

/** `google.rpc.ErrorInfo.domain` of every vfiod error. */
export const ERROR_DOMAIN = 'vfiod.dev';

/** What a `google.rpc.ResourceInfo` names, and the metadata keys its name and owner come from. */
export const RESOURCE_TYPES = {
  'pci-device': { name: ['bdf'], owner: 'owner' },
  'iommu-group': { name: ['iommu_group'], owner: 'owner' },
  controller: { name: ['controller_id'], owner: undefined },
  attachment: { name: ['vm_id', 'device_id'], owner: 'vm_id' },
  vm: { name: ['vm_id'], owner: undefined },
  file: { name: ['path'], owner: 'controller_id' },
  socket: { name: ['socket_path'], owner: 'controller_id' },
  daemon: { name: [], owner: undefined },
  operation: { name: ['operation'], owner: 'vm_id' },
} as const satisfies Record<string, { name: readonly string[]; owner: string | undefined }>;
export type ResourceType = keyof typeof RESOURCE_TYPES;

/**
 * Metadata any reason may carry besides its own: the context an operation adds when it passes a lower layer's error
 * on (attach adds the VM and the attachment; a rolled-back prepare says what it undid; a hypervisor adapter says
 * whether the VMM command the error is about reached the VMM: `command_sent`).
 */
export const CONTEXT_METADATA = ['vm_id', 'device_id', 'rpc', 'state', 'rolled_back', 'rollback_failed', 'overridden', 'command_sent'] as const;

export interface ReasonSpec {
  /** The gRPC codes it comes with (more than one only where an RPC has always used another code for it). */
  codes: readonly ErrorCode[];
  /** What ResourceInfo names (from the metadata, see RESOURCE_TYPES); none for a request without a subject. */
  resource?: ResourceType;
  /** When (docs/daemon.md). */
  when: string;
  /** Its own ErrorInfo metadata keys (snake_case), besides CONTEXT_METADATA. */
  metadata: readonly string[];
}

export const ERROR_REASONS = {
  // --- requests ---
  FIELD_REQUIRED: { codes: ['INVALID_ARGUMENT'], when: 'a required request field is missing or empty', metadata: ['field'] },
  FIELD_INVALID: {
    codes: ['INVALID_ARGUMENT'],
    when: 'a request field has the wrong form (an unknown enum value, a relative path, a bad size, ...)',
    metadata: ['field'],
  },
  FIELD_OUT_OF_RANGE: {
    codes: ['INVALID_ARGUMENT'],
    when: 'a number outside its range (controller limits, waits, boot index, PCI segment, chassis, socket mode)',
    metadata: ['field', 'value', 'min', 'max'],
  },
  FIELD_TOO_LONG: { codes: ['INVALID_ARGUMENT'], when: 'a text field longer than 256 characters', metadata: ['field', 'length', 'limit'] },
  FIELD_CONTROL_CHARACTERS: { codes: ['INVALID_ARGUMENT'], when: 'a text field or path with control characters', metadata: ['field'] },
  PCI_ADDRESS_INVALID: { codes: ['INVALID_ARGUMENT'], when: 'a field that must be a PCI address is not one', metadata: ['field'] },
  SOCKET_PATH_INVALID: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'socket',
    when: 'a socket path that is relative, not normalised, longer than 107 bytes, or holds a space or comma',
    metadata: ['field', 'socket_path', 'controller_id'],
  },
  DEVICE_ID_DUPLICATE: { codes: ['INVALID_ARGUMENT'], resource: 'vm', when: 'GetVmConfig: one device id given to two devices', metadata: ['device_id'] },
  BOOT_INDEX_DUPLICATE: { codes: ['INVALID_ARGUMENT'], resource: 'vm', when: 'GetVmConfig: one boot index given to two devices', metadata: ['boot_index'] },
  BOOT_INDEX_UNSUPPORTED: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'vm',
    when: '`boot_index` for a cloud-hypervisor hot-plug (cloud-hypervisor has no boot order)',
    metadata: [],
  },

  // --- PCI devices (DeviceService, and attach / GetVmConfig preparing a device) ---
  DEVICE_NOT_FOUND: { codes: ['NOT_FOUND'], resource: 'pci-device', when: 'no such PCI device, or it disappeared during the operation', metadata: ['bdf'] },
  CLAIM_NOT_FOUND: { codes: ['NOT_FOUND'], resource: 'pci-device', when: 'ReleaseDevice of a device vfiod has not claimed', metadata: ['bdf'] },
  DEVICE_CLAIMED_BY_OTHER_VM: {
    codes: ['ALREADY_EXISTS', 'FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'the device is claimed by another VM: `ALREADY_EXISTS` from PrepareDevice, `FAILED_PRECONDITION` from ReleaseDevice and AttachDevice',
    metadata: ['bdf', 'owner'],
  },
  DEVICE_IS_BRIDGE: { codes: ['FAILED_PRECONDITION'], resource: 'pci-device', when: 'prepare of a PCI bridge', metadata: ['bdf'] },
  DEVICE_NO_IOMMU_GROUP: { codes: ['FAILED_PRECONDITION'], resource: 'pci-device', when: 'the device has no IOMMU group (the IOMMU is off)', metadata: ['bdf'] },
  CLAIM_INCONSISTENT: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'the device has a claim for this VM that is not `prepared` on vfio-pci (an interrupted operation): reconcile',
    metadata: ['bdf', 'owner', 'claim_state', 'driver'],
  },
  IOMMU_GROUP_HELD: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'iommu-group',
    when: 'prepare: a process (another VM) has the IOMMU group open',
    metadata: ['bdf', 'iommu_group', 'holder_pid', 'holder_comm'],
  },
  IOMMU_GROUP_MEMBER_CLAIMED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'iommu-group',
    when: 'prepare: another member of the IOMMU group is claimed by another VM',
    metadata: ['bdf', 'iommu_group', 'member', 'owner'],
  },
  IOMMU_GROUP_NOT_VIABLE: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'iommu-group',
    when: 'prepare: other members of the IOMMU group would stay on host drivers (`whole_group` binds them), or VFIO reports the group not viable',
    metadata: ['bdf', 'iommu_group', 'members'],
  },
  DEVICE_IN_USE: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'prepare: the device (or a function prepared with it) is in use on the host: mounted, swap, a network interface that is up, ... (`force` overrides)',
    metadata: ['bdf', 'in_use'],
  },
  DEVICE_NO_RESET: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'prepare: VFIO offers no usable reset, so state would leak between VMs (`force` overrides)',
    metadata: ['bdf'],
  },
  DEVICE_STILL_HELD: {
    codes: ['UNAVAILABLE'],
    resource: 'pci-device',
    when: 'release: a process (a VMM) still has the device\'s VFIO group or cdev open after `wait_ms`',
    metadata: ['bdf', 'holder_pid', 'holder_comm', 'holder_path'],
  },
  VFIO_BIND_FAILED: { codes: ['INTERNAL'], resource: 'pci-device', when: 'the device did not bind to vfio-pci (rolled back)', metadata: ['bdf', 'driver'] },
  VFIO_NODE_TIMEOUT: {
    codes: ['UNAVAILABLE'],
    resource: 'pci-device',
    when: 'the VFIO device node did not appear after binding (rolled back)',
    metadata: ['bdf', 'path', 'timeout_ms'],
  },
  VFIO_PROBE_FAILED: {
    codes: ['INTERNAL'],
    resource: 'pci-device',
    when: 'the VFIO probe that proves a prepared device usable failed or found no regions (rolled back)',
    metadata: ['bdf'],
  },
  REBIND_FAILED: {
    codes: ['INTERNAL'],
    resource: 'pci-device',
    when: 'release: the device did not go back to its host driver; the claim is kept as `failed`',
    metadata: ['bdf', 'driver'],
  },
  DEVICE_ATTACHED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'a change that would pull a device from under its guest (a vGPU profile, removing VFs) while it is attached to a VM or a VMM holds it',
    metadata: ['bdf', 'attached_to', 'holder_pid', 'holder_comm'],
  },
  IOMMUFD_UNAVAILABLE: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'a device to give through iommufd (asked for, or it has no group node) has no VFIO cdev, or the host has no `/dev/iommu`',
    metadata: ['bdf'],
  },
  VFIO_GROUP_UNAVAILABLE: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: '`vfio_backend: group` for a device with a VFIO cdev and no group node (`/dev/vfio/<group>`): it goes through iommufd',
    metadata: ['bdf'],
  },
  VFIO_BACKENDS_MIXED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'a QEMU VM would get VFIO devices through both the group and iommufd (QEMU 11.1.3 aborts): one asked for the other backend, or cannot take it',
    metadata: ['bdf'],
  },
  VMM_CANNOT_USE_IOMMUFD: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'a device that needs iommufd (asked for, or a cdev without group node) for cloud-hypervisor: v48 opens VFIO devices through their group only',
    metadata: ['bdf'],
  },
  VGPU_NOT_SUPPORTED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'a vGPU profile request for a device that is not an NVIDIA vGPU VF (no `nvidia/current_vgpu_type`)',
    metadata: ['bdf'],
  },
  VGPU_TYPE_NOT_CREATABLE: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'SetVgpuType: the VF cannot take that profile now (not in its `nvidia/creatable_vgpu_types`)',
    metadata: ['bdf', 'vgpu_type', 'creatable'],
  },
  VGPU_TYPE_NOT_APPLIED: {
    codes: ['INTERNAL'],
    resource: 'pci-device',
    when: 'the driver refused the `current_vgpu_type` write or reads back another profile (rolled back)',
    metadata: ['bdf', 'vgpu_type', 'current'],
  },
  SRIOV_NOT_SUPPORTED: { codes: ['FAILED_PRECONDITION'], resource: 'pci-device', when: 'CreateVfs on a device without SR-IOV (no `sriov_totalvfs`)', metadata: ['bdf'] },
  SRIOV_VFS_IN_USE: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'CreateVfs: the PF has VFs that are claimed, attached, held by a VMM or in use on the host (changing `sriov_numvfs` destroys them)',
    metadata: ['bdf', 'in_use'],
  },
  SRIOV_VFS_TIMEOUT: {
    codes: ['UNAVAILABLE'],
    resource: 'pci-device',
    when: 'CreateVfs: the VFs did not appear in sysfs after `sriov_numvfs` was written (rolled back)',
    metadata: ['bdf', 'num_vfs', 'timeout_ms'],
  },

  // --- emulated controllers (ControllerService) ---
  CONTROLLER_ID_INVALID: { codes: ['INVALID_ARGUMENT'], when: 'a controller id that is not 1-64 of letters, digits, `_`, `.`, `-`', metadata: ['controller_id'] },
  CONTROLLER_NOT_FOUND: { codes: ['NOT_FOUND'], resource: 'controller', when: 'no such controller', metadata: ['controller_id'] },
  CONTROLLER_EXISTS: { codes: ['ALREADY_EXISTS'], resource: 'controller', when: 'CreateController with the id of an existing controller', metadata: ['controller_id'] },
  CONTROLLER_LIMIT_REACHED: {
    codes: ['RESOURCE_EXHAUSTED'],
    resource: 'daemon',
    when: 'CreateController beyond `--max-controllers`',
    metadata: ['controller_id', 'count', 'limit'],
  },
  SOCKET_IN_USE: {
    codes: ['ALREADY_EXISTS'],
    resource: 'socket',
    when: 'the socket path is another controller\'s socket (by inode: any name of it), or another process listens on it',
    metadata: ['controller_id', 'socket_path', 'other_controller'],
  },
  SOCKET_PATH_NOT_A_SOCKET: { codes: ['ALREADY_EXISTS'], resource: 'socket', when: 'something that is not a socket exists at the socket path', metadata: ['controller_id', 'socket_path'] },
  NAMESPACE_URI_INVALID: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'controller',
    when: 'a namespace URI that does not parse, or a `file:` URI with a relative path',
    metadata: ['controller_id', 'namespace', 'uri'],
  },
  NAMESPACE_BACKING_NOT_STORAGE: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'file',
    when: 'a `file:` namespace that is not a regular file or a block device (a character device, FIFO, socket, directory)',
    metadata: ['controller_id', 'namespace', 'path'],
  },
  NAMESPACE_BACKING_PSEUDO_FILESYSTEM: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'file',
    when: 'a `file:` namespace on a kernel pseudo filesystem (`/proc`, `/sys`, ...)',
    metadata: ['controller_id', 'namespace', 'path'],
  },
  NAMESPACE_OUTSIDE_NAMESPACE_DIRS: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'file',
    when: 'a `file:` namespace not in a `--namespace-dir`, by name or with symlinks resolved',
    metadata: ['controller_id', 'namespace', 'path', 'real_path'],
  },
  NAMESPACE_DUPLICATE: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'file',
    when: 'one file or block device twice in one controller (the same inode)',
    metadata: ['controller_id', 'path'],
  },
  NAMESPACE_IN_USE: {
    codes: ['ALREADY_EXISTS'],
    resource: 'file',
    when: 'a namespace file or block device that is already a namespace of another controller (the same inode)',
    metadata: ['controller_id', 'path', 'other_controller'],
  },
  MEMORY_NAMESPACE_WITH_CRASH_RECOVERY: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'controller',
    when: 'a `memory:` namespace on a daemon that runs with `--crash-recovery` (its data would die with the process)',
    metadata: ['controller_id', 'namespace'],
  },
  MEMORY_BUDGET_EXCEEDED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: '`memory:` namespaces that, with those of the running controllers, exceed the host\'s RAM',
    metadata: ['controller_id', 'memory_bytes', 'others_bytes', 'limit_bytes'],
  },
  IDENTITY_INVALID: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'controller',
    when: 'a controller identity that is malformed: serial, model or firmware too long or not printable ASCII, an NQN not of either NQN form, an IEEE OUI or controller ID out of range',
    metadata: ['controller_id', 'field'],
  },
  NAMESPACE_IDENTITY_INVALID: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'controller',
    when: 'a `namespace_identities` entry whose nsid is not one of the namespaces\' or is given twice, an NGUID, EUI-64 or UUID (there or in AttachNamespace\'s `identity`) malformed or zero, two slots asking for one id, or a block size other than 512 or 4096',
    metadata: ['controller_id', 'field', 'nsid'],
  },
  IDENTITY_CONFLICT: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: "asked-for identities that clash with the persisted ones: another slot of the controller has that NGUID, EUI-64 or UUID, or a block size the namespace URI's `block-size` contradicts",
    metadata: ['controller_id', 'identity_path'],
  },
  IDENTITY_PATH_INVALID: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'controller',
    when: 'an `identity_path` that is relative, not normalised or does not end in `.json`',
    metadata: ['controller_id', 'identity_path'],
  },
  IDENTITY_PATH_OUTSIDE_ALLOWED_DIRS: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'controller',
    when: 'an `identity_path` outside the namespace directories and `<state dir>/controllers`',
    metadata: ['controller_id', 'identity_path'],
  },
  IDENTITY_FILE_FOREIGN: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'an `identity_path` holding a file that is not a vfiod identity file (left unchanged)',
    metadata: ['controller_id', 'identity_path'],
  },
  CONTROLLER_START_FAILED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'the controller failed to start, or was not listening within 60 s (nothing is left behind)',
    metadata: ['controller_id', 'socket_path'],
  },
  CONTROLLER_SAVE_FAILED: { codes: ['INTERNAL'], resource: 'controller', when: '`controllers.json` could not be written (CreateController: the controller is stopped again; a namespace change stays made and is saved with the next one)', metadata: ['controller_id', 'path'] },
  CONTROLLER_STARTING: { codes: ['FAILED_PRECONDITION'], resource: 'controller', when: 'DeleteController of a controller that is still starting', metadata: ['controller_id'] },
  CONTROLLER_BEING_DELETED: { codes: ['FAILED_PRECONDITION'], resource: 'controller', when: 'DeleteController of a controller already being deleted', metadata: ['controller_id'] },
  CONTROLLER_ATTACHED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'DeleteController while a VM has the controller attached (each attachment is a violation)',
    metadata: ['controller_id', 'attachments', 'client_connected'],
  },
  CONTROLLER_NOT_SERVING: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'attaching (or configuring a VM with) a controller that is not serving, or changing its namespaces or rate limits then',
    metadata: ['controller_id', 'controller_state'],
  },

  // --- I/O rate limits (CreateController's spec.limits, SetControllerLimits) ---
  IO_LIMIT_INVALID: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'controller',
    when: 'a rate limit that is not an integer from 0 to its maximum, a burst without its rate, or an NSID given limits twice',
    metadata: ['controller_id', 'field', 'value', 'max', 'nsid'],
  },
  IO_LIMITS_CHANGE_FAILED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'the serving controller did not take the new rate limits (it was being handed over or stopped); nothing changed',
    metadata: ['controller_id'],
  },

  // --- namespaces of a running controller (AttachNamespace, DetachNamespace, ResizeNamespace) ---
  NAMESPACE_NOT_FOUND: {
    codes: ['NOT_FOUND'],
    resource: 'controller',
    when: 'DetachNamespace, ResizeNamespace, SwapNamespaceBacking or namespace rate limits (SetControllerLimits, CreateController) for an NSID the controller does not have',
    metadata: ['controller_id', 'nsid'],
  },
  NAMESPACE_ID_IN_USE: { codes: ['ALREADY_EXISTS'], resource: 'controller', when: 'AttachNamespace with an NSID the controller already has', metadata: ['controller_id', 'nsid'] },
  NAMESPACE_LIMIT_REACHED: {
    codes: ['RESOURCE_EXHAUSTED'],
    resource: 'controller',
    when: 'AttachNamespace without an NSID to a controller that has every NSID up to 1024',
    metadata: ['controller_id', 'limit'],
  },
  NAMESPACE_LAST: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'DetachNamespace of the controller\'s only namespace (delete the controller instead)',
    metadata: ['controller_id', 'nsid'],
  },
  NAMESPACE_SHRINK_REFUSED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'ResizeNamespace to fewer bytes than the namespace has (the guest\'s data there would be lost)',
    metadata: ['controller_id', 'nsid', 'size_bytes', 'current_bytes'],
  },
  NAMESPACE_RESIZE_UNSUPPORTED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'ResizeNamespace of a namespace whose size is not vfiod\'s to change: a block device, NVMe/TCP, a read-only file',
    metadata: ['controller_id', 'nsid', 'uri'],
  },
  NAMESPACE_CHANGE_FAILED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when:
      'the running controller could not make the change, nothing changed: the backing did not open or grow, or the namespace needs a smaller MDTS ' +
      'or a volatile write cache the controller did not report when the guest bound it',
    metadata: ['controller_id', 'nsid'],
  },

  // --- attachments (AttachmentService) ---
  ATTACHMENT_NOT_FOUND: {
    codes: ['NOT_FOUND'],
    resource: 'attachment',
    when: 'the VM has no such attachment (by device id, or no attachment of that PCI address)',
    metadata: ['bdf', 'other_vm'],
  },
  ATTACHMENT_EXISTS: { codes: ['ALREADY_EXISTS'], resource: 'attachment', when: 'the VM already has an attachment with that device id, of another device', metadata: [] },
  DEVICE_ATTACHED_TO_OTHER_VM: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'attachment',
    when: 'the device (or controller socket) is attached to another VM',
    metadata: ['other_vm', 'other_device_id'],
  },
  DEVICE_IS_COMPANION: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'pci-device',
    when: 'the function was prepared or attached as a companion of another (a GPU\'s audio): attach that one',
    metadata: ['bdf', 'primary_bdf', 'other_vm'],
  },
  ATTACHED_THROUGH_OTHER_ENDPOINT: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'attachment',
    when: 'the device is attached to this VM through another VMM socket',
    metadata: [],
  },
  ATTACHED_THROUGH_OTHER_VFIO_BACKEND: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'attachment',
    when: 'a repeat attach asks for the other VFIO backend (`group`, `iommufd`) than the attachment has (`auto` takes the one it has)',
    metadata: ['vfio_backend', 'requested_vfio_backend'],
  },
  ATTACHED_UNDER_OTHER_ID: { codes: ['FAILED_PRECONDITION'], resource: 'attachment', when: 'the device is attached to this VM under another device id', metadata: [] },
  ATTACHMENT_PENDING: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'attachment',
    when: 'attach of a device whose attachment is attaching, detaching or detach-pending: detach it first',
    metadata: [],
  },
  GUEST_DID_NOT_RELEASE: {
    codes: ['DEADLINE_EXCEEDED'],
    resource: 'attachment',
    when: 'detach: the guest did not let go within `timeout_ms`; in `Operation.error` of a detach that ended OPERATION_STATE_DETACH_PENDING (not a call status): the attachment is detach-pending, the device stays claimed',
    metadata: ['vmm_device_id', 'timeout_ms'],
  },
  GUEST_REFUSED_UNPLUG: { codes: ['FAILED_PRECONDITION'], resource: 'vm', when: 'detach: the guest refused the unplug (QEMU `DEVICE_UNPLUG_GUEST_ERROR`)', metadata: [] },
  VMM_NOT_LISTING_DEVICE: { codes: ['INTERNAL'], resource: 'attachment', when: 'attach: the VMM accepted the device but does not list it (rolled back)', metadata: ['missing'] },
  VMM_NO_FREE_SLOT: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'vm',
    when: 'QEMU has no empty `pcie-root-port` to hot-plug into',
    metadata: [],
  },
  VMM_SOCKET_MISSING: { codes: ['UNAVAILABLE'], resource: 'vm', when: 'the VM\'s API / QMP socket does not exist (is the VM running?)', metadata: ['socket_path'] },
  VMM_UNAVAILABLE: {
    codes: ['UNAVAILABLE'],
    resource: 'vm',
    when: 'the VMM refused the connection, closed it, or was busy (HTTP 429/503; QMP: its listen queue full while another client holds it)',
    metadata: ['http_status', 'socket_path'],
  },
  VMM_TIMEOUT: {
    codes: ['DEADLINE_EXCEEDED'],
    resource: 'vm',
    when:
      'the VMM did not answer (or greet, for QMP: another client may hold its socket) in time; `command_sent` says whether the command had reached it. ' +
      'An attach fails on it before prepare when asking the QEMU VM for its VFIO backend; a hot-plug that never reached the VMM (`command_sent` `false`) is rolled back ' +
      'without asking the VMM again, one that did is removed again (detach-pending when that fails too). During a detach the attachment is detach-pending, as for `GUEST_DID_NOT_RELEASE`, ' +
      'unless the removal never reached the VMM (`command_sent` `false`): then nothing changed and it keeps its state',
    metadata: ['vmm_device_id', 'timeout_ms', 'socket_path'],
  },
  VMM_BAD_ANSWER: { codes: ['INTERNAL'], resource: 'vm', when: 'the VMM\'s answer was not what its API defines (not JSON, too large, ...)', metadata: ['http_status'] },
  VMM_DEVICE_NOT_FOUND: { codes: ['NOT_FOUND'], resource: 'vm', when: 'the VMM does not know the device (or host device) it was asked about', metadata: ['http_status', 'qmp_class', 'qmp_desc'] },
  VMM_DEVICE_ID_TAKEN: { codes: ['ALREADY_EXISTS'], resource: 'vm', when: 'the VMM already has a device with that id', metadata: ['http_status', 'qmp_class', 'qmp_desc'] },
  VMM_REFUSED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'vm',
    when: 'the VMM refused the operation in its current state (VFIO group not viable, no vfio-user support, VM not running, ...)',
    metadata: ['http_status', 'qmp_class', 'qmp_desc'],
  },
  VMM_REJECTED_REQUEST: { codes: ['INVALID_ARGUMENT'], resource: 'vm', when: 'the VMM found vfiod\'s request invalid', metadata: ['http_status', 'qmp_class', 'qmp_desc'] },
  VMM_ERROR: { codes: ['INTERNAL'], resource: 'vm', when: 'any other error answer or failure of the VMM', metadata: ['http_status', 'qmp_class', 'qmp_desc'] },

  // --- who may do what (docs/daemon.md) ---
  ADMIN_ROLE_REQUIRED: {
    codes: ['PERMISSION_DENIED'],
    when: 'a read-only caller called an RPC that changes something (anything but List, Get, Stream, Watch, Wait; GetVmConfig with prepare_devices)',
    metadata: ['role', 'caller'],
  },
  CALLER_NOT_AUTHORIZED: {
    codes: ['PERMISSION_DENIED'],
    when: 'the caller (unix peer uid/gid, client certificate name) is in no role: every vfiod.v1 call is refused',
    metadata: ['caller'],
  },

  // --- moving a namespace to another backing (SwapNamespaceBacking; in Operation.error once the operation runs) ---
  SWAP_ALREADY_RUNNING: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'SwapNamespaceBacking while a namespace of the same controller is moving already (one at a time per controller)',
    metadata: ['controller_id', 'nsid', 'operation'],
  },
  SWAP_SAME_BACKING: {
    codes: ['INVALID_ARGUMENT'],
    resource: 'controller',
    when: 'SwapNamespaceBacking to the backing the namespace has now (the same file or device, by any name)',
    metadata: ['controller_id', 'nsid', 'uri'],
  },
  SWAP_BACKING_TOO_SMALL: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'the new backing has fewer blocks than the namespace (a file: URI is opened at the namespace\'s size; a block device or NVMe/TCP namespace has its own)',
    metadata: ['controller_id', 'nsid', 'uri'],
  },
  SWAP_BACKING_INCOMPATIBLE: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when:
      'the new backing would change what the guest sees: another block size, read-only, a smaller transfer limit than the MDTS or a write cache ' +
      'the controller did not report, or more blocks than the namespace where its URI cannot say the size (NVMe/TCP)',
    metadata: ['controller_id', 'nsid', 'uri'],
  },
  SWAP_BACKING_OPEN_FAILED: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'controller',
    when: 'the new backing did not open (a file that cannot be created or opened, a device in use)',
    metadata: ['controller_id', 'nsid', 'uri'],
  },
  SWAP_BACKING_UNREACHABLE: {
    codes: ['UNAVAILABLE'],
    resource: 'controller',
    when: 'the new NVMe/TCP backing did not answer or has no such namespace',
    metadata: ['controller_id', 'nsid', 'uri'],
  },
  SWAP_FAILED: {
    codes: ['UNAVAILABLE'],
    resource: 'controller',
    when: 'copying to the new backing failed (a read or write error, commands that never finished): the namespace stays on its old backing, nothing lost',
    metadata: ['controller_id', 'nsid', 'uri'],
  },
  SWAP_INTERRUPTED: {
    codes: ['UNAVAILABLE'],
    resource: 'controller',
    when: 'a live upgrade, planned restart, daemon shutdown or deletion stopped the move before the switch: the old backing serves on (docs/restart.md)',
    metadata: ['controller_id', 'nsid', 'uri'],
  },

  // --- request ids, operations, events ---
  REQUEST_ID_REUSED: {
    codes: ['INVALID_ARGUMENT'],
    when: 'a create call (CreateController, PrepareDevice, AttachDevice) repeats a `request_id` with a different request',
    metadata: ['field', 'request_id'],
  },
  OPERATION_NOT_FOUND: { codes: ['NOT_FOUND'], resource: 'operation', when: 'no operation of that name (or no longer kept)', metadata: ['operation'] },
  OPERATION_INTERRUPTED: {
    codes: ['INTERNAL'],
    resource: 'operation',
    when: 'in `Operation.error`: the daemon stopped while the operation ran; the attachment reconcile at the next start finished or rolled it back',
    metadata: ['operation'],
  },
  EVENTS_EXPIRED: {
    codes: ['FAILED_PRECONDITION'],
    when: 'WatchEvents: the replay point is older than the oldest kept event (events in between were dropped)',
    metadata: ['oldest_sequence', 'retention'],
  },
  EVENT_STREAM_OVERFLOW: {
    codes: ['RESOURCE_EXHAUSTED'],
    when: 'WatchEvents: the client read too slowly and fell too far behind; resume after `last_sequence`',
    metadata: ['last_sequence', 'max_lag'],
  },

  // --- the daemon ---
  DAEMON_SHUTTING_DOWN: { codes: ['UNAVAILABLE'], resource: 'daemon', when: 'the daemon is stopping', metadata: [] },
  NO_CRASH_RECOVERY: { codes: ['FAILED_PRECONDITION'], resource: 'daemon', when: 'RestartDaemon on a daemon without `--crash-recovery`', metadata: [] },
  INTERNAL_ERROR: { codes: ['INTERNAL'], when: 'anything unexpected (a bug; logged with the RPC)', metadata: [] },

  // --- start-up of `vfiod daemon` (exit codes, not statuses) ---
  DAEMON_OPTION_INVALID: {
    codes: ['INVALID_ARGUMENT'],
    when: 'start-up: a bad option (`--tcp`, TLS files, `--namespace-dir`, nothing to listen on)',
    metadata: ['option'],
  },
  PLAIN_TCP_REFUSED: { codes: ['INVALID_ARGUMENT'], when: 'start-up: `--tcp` without TLS and without `--insecure-tcp`', metadata: ['address'] },
  TLS_CLIENT_CA_REQUIRED: { codes: ['INVALID_ARGUMENT'], when: 'start-up: TLS without `--tls-ca` and without `--insecure-tls-no-client-cert`', metadata: [] },
  DAEMON_SOCKET_IN_USE: { codes: ['FAILED_PRECONDITION'], resource: 'socket', when: 'start-up: another process listens on the daemon\'s socket', metadata: ['socket_path'] },
  DAEMON_SOCKET_NOT_A_SOCKET: {
    codes: ['FAILED_PRECONDITION'],
    resource: 'socket',
    when: 'start-up: something that is not a socket is at the daemon\'s socket path, or replaced the socket just bound',
    metadata: ['socket_path'],
  },
  STATE_FILE_UNREADABLE: { codes: ['INTERNAL'], resource: 'file', when: 'start-up: `controllers.json` cannot be read', metadata: ['path'] },
} as const satisfies Record<string, ReasonSpec>;

export type Reason = keyof typeof ERROR_REASONS;

export function isReason(value: unknown): value is Reason {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_REASONS, value);
}

/** camelCase (as sites write details) to snake_case (as ErrorInfo metadata goes on the wire). */
export function snakeCase(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/-/g, '_').toLowerCase();
}

/** The reasons table of docs/daemon.md, generated from ERROR_REASONS. */
export function reasonsTable(): string {
  const rows = ['| reason | gRPC code | when | resource | metadata |', '|---|---|---|---|---|'];
  for (const [reason, spec] of Object.entries(ERROR_REASONS) as Array<[Reason, ReasonSpec]>) {
    const codes = spec.codes.map((c) => `\`${c}\``).join(', ');
    const metadata = spec.metadata.map((m) => `\`${m}\``).join(', ');
    rows.push(`| \`${reason}\` | ${codes} | ${spec.when.replace(/\|/g, '\\|')} | ${spec.resource ? `\`${spec.resource}\`` : ''} | ${metadata} |`);
  }
  return `${rows.join('\n')}\n`;
}
