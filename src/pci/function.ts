/**
 * One emulated PCI Express endpoint function: config space, BARs, MSI-X and INTx, exposed as vfio regions and
 * vfio IRQ indexes (numbering as in Linux vfio.h). It knows nothing of sockets or NVMe: the integrator supplies
 * BAR handlers and calls `signal()` to raise interrupts; the vfio-user layer forwards region accesses and SET_IRQS.
 *
 * Size: config space dispatch, BARs, MSI-X and INTx wiring and their live-upgrade snapshot are one state
 * machine over one config space; msix.ts, config-space.ts and capabilities.ts already hold the separable parts.
 */
import { readlinkSync } from 'node:fs';
import { native, POLL_READABLE, type FdWatcher } from '../native/index.js';
import {
  Errno,
  IRQ_SET_ACTION_MASK,
  IRQ_SET_DATA_MASK,
  IrqFlag,
  IrqIndex,
  IrqSetFlag,
  PCI_REGION_COUNT,
  RegionIndex,
  describeIrqSet,
  irqSetViolation,
} from '../spec/vfio.js';
import { rootLogger, type Logger } from '../util/log.js';
import {
  ConfigSpace,
  ConfigRegister,
  Command,
  CONFIG_SPACE_SIZE,
  PciAccessError,
  installMemoryBar,
  installType0Header,
} from './config-space.js';
import {
  CapabilityOffset,
  DeviceControl,
  MAX_PAYLOAD_ENCODING_SUPPORTED,
  MsixControl,
  MsixRegister,
  PcieRegister,
  PmControl,
  PmRegister,
  installStandardCapabilities,
} from './capabilities.js';
import { MsixVectors, closeQuietly, type MsixState } from './msix.js';
import { checkSnapshotVersion, fromBase64, toBase64, type FdCollector, type FdSource } from '../util/handover-fds.js';

/** The newest PCI function snapshot format this build writes and reads. */
const PCI_STATE_VERSION = 1;

/**
 * A PCI function in a live-upgrade snapshot (docs/restart.md): config space as the guest left it (command register,
 * BAR addresses, capability registers), MSI-X and INTx. fds are indexes into the snapshot's fds.
 */
export interface PciFunctionState {
  version: number;
  config: string;
  msix: MsixState;
  intx: { fd: number; resampleFd: number; masked: boolean; pending: boolean; clientUnmasks: boolean };
}

export interface BarDefinition {
  /** 0..5 */
  index: number;
  /** Power of two >= 4096 for memory BARs. */
  size: number;
  /** A 64-bit memory BAR occupies `index` and `index + 1`. */
  is64Bit: boolean;
  prefetchable?: boolean;
  /** Offset within the BAR; bounds already checked by PciFunction. */
  read(offset: number, dst: Uint8Array): void;
  write(offset: number, src: Uint8Array): void;
  /** Optional mmap-able backing: the fd, the BAR's offset in it and the mmap-able areas (relative to BAR start). */
  mmap?: { fd: number; fdOffset: number; areas: Array<{ offset: number; size: number }> };
}

export interface PciFunctionOptions {
  vendorId: number;
  deviceId: number;
  subsystemVendorId: number;
  subsystemId: number;
  revisionId: number;
  /** 24-bit, e.g. 0x010802 NVMe. */
  classCode: number;
  /** The integrator's BARs; the MSI-X BAR is created here. */
  bars: BarDefinition[];
  /** Vector count (DEFAULT_MSIX_VECTORS = 64 is the recommended value) and the BAR index for table and PBA. */
  msix: { vectors: number; bar: number };
  /** 0 = no INTx, 1 = INTA (default) .. 4 = INTD. */
  interruptPin?: number;
  /** Called when the guest writes Device Control "Initiate Function Level Reset", before the function resets. */
  onFunctionLevelReset?: () => void;
  logger?: Logger;
}

export interface RegionDescription {
  size: number;
  readable: boolean;
  writable: boolean;
  mmap?: BarDefinition['mmap'];
}

const BAR_COUNT = 6;
const MIN_BAR_SIZE = 4096;
const MAX_BAR32_SIZE = 2 ** 31;
const MAX_BAR64_SIZE = 2 ** 48;
const MAX_FD = 0x7fff_ffff;

const REGION_NAMES = ['BAR0', 'BAR1', 'BAR2', 'BAR3', 'BAR4', 'BAR5', 'ROM', 'CONFIG', 'VGA'] as const;
const IRQ_NAMES = ['INTx', 'MSI', 'MSI-X', 'ERR', 'REQ'] as const;

const ABSENT_REGION: RegionDescription = Object.freeze({ size: 0, readable: false, writable: false });

export class PciFunction {
  /** Regions 0..8: BAR0-5, ROM (size 0), CONFIG (4096), VGA (size 0). Absent BARs and upper halves have size 0. */
  readonly regions: readonly RegionDescription[];
  /** IRQ counts per index 0..4: INTx 1 (when an interrupt pin is set), MSI 0, MSI-X vectors, ERR 0, REQ 0. */
  readonly irqCounts: readonly number[];
  /** VFIO_IRQ_INFO flags per index, for GET_IRQ_INFO. */
  readonly irqFlags: readonly number[];
  readonly vectorCount: number;

  /** irqCounts and irqFlags together, what the SET_IRQS rules (irqSetViolation) check against. */
  private readonly irqInfo: ReadonlyArray<{ count: number; flags: number }>;
  private readonly logger: Logger;
  private readonly config = new ConfigSpace();
  /** Integrator BAR handlers by index (null for absent BARs, upper halves and the MSI-X BAR). */
  private readonly barHandlers: Array<BarDefinition | null> = new Array<BarDefinition | null>(BAR_COUNT).fill(null);
  private readonly msixBar: number;
  private readonly msix: MsixVectors;
  private readonly onFunctionLevelReset: (() => void) | undefined;

  // INTx, emulated the way vfio presents a level-triggered line: after firing it stays masked until the client
  // unmasks it (SET_IRQS UNMASK, or the resample eventfd), and a signal while masked re-fires on unmask. Clients
  // that never unmask (they never sent MASK/UNMASK) get one eventfd write per signal instead.
  private intxFd = -1;
  private intxResampleFd = -1;
  private intxResampleWatcher: FdWatcher | null = null;
  private intxMasked = false;
  private intxPending = false;
  private intxClientUnmasks = false;

  constructor(options: PciFunctionOptions) {
    this.logger = (options.logger ?? rootLogger).child({ component: 'pci' });
    this.onFunctionLevelReset = options.onFunctionLevelReset;
    const interruptPin = options.interruptPin ?? 1;
    validateIdentity(options, interruptPin);

    this.msixBar = options.msix.bar;
    this.msix = new MsixVectors(options.msix.vectors, this.logger);
    this.vectorCount = this.msix.vectorCount;
    const layout = this.msix.layout;

    const regions: RegionDescription[] = new Array<RegionDescription>(PCI_REGION_COUNT).fill(ABSENT_REGION);
    const occupied = new Array<string | null>(BAR_COUNT).fill(null);
    if (!isBarIndex(this.msixBar)) throw new Error(`MSI-X BAR index ${this.msixBar} must be 0..5`);
    occupied[this.msixBar] = 'the MSI-X table';

    for (const bar of options.bars) {
      validateBar(bar, occupied);
      occupied[bar.index] = `BAR${bar.index}`;
      if (bar.is64Bit) occupied[bar.index + 1] = `the upper half of BAR${bar.index}`;
      this.barHandlers[bar.index] = bar;
      regions[bar.index] = { size: bar.size, readable: true, writable: true, ...(bar.mmap ? { mmap: bar.mmap } : {}) };
      installMemoryBar(this.config, {
        index: bar.index,
        size: bar.size,
        is64Bit: bar.is64Bit,
        prefetchable: bar.prefetchable ?? false,
      });
    }
    regions[this.msixBar] = { size: layout.barSize, readable: true, writable: true };
    installMemoryBar(this.config, { index: this.msixBar, size: layout.barSize, is64Bit: false, prefetchable: false });
    regions[RegionIndex.CONFIG] = { size: CONFIG_SPACE_SIZE, readable: true, writable: true };
    this.regions = Object.freeze(regions);

    installType0Header(this.config, {
      vendorId: options.vendorId,
      deviceId: options.deviceId,
      subsystemVendorId: options.subsystemVendorId,
      subsystemId: options.subsystemId,
      revisionId: options.revisionId,
      classCode: options.classCode,
      interruptPin,
      capabilitiesPointer: CapabilityOffset.POWER_MANAGEMENT,
    });
    installStandardCapabilities(this.config, {
      vectors: layout.vectors,
      bar: this.msixBar,
      tableOffset: layout.tableOffset,
      pbaOffset: layout.pbaOffset,
    });
    this.config.capturePowerOnValues();

    this.irqCounts = Object.freeze([interruptPin !== 0 ? 1 : 0, 0, layout.vectors, 0, 0]);
    this.irqFlags = Object.freeze([
      IrqFlag.EVENTFD | IrqFlag.MASKABLE | IrqFlag.AUTOMASKED,
      IrqFlag.EVENTFD,
      IrqFlag.EVENTFD | IrqFlag.MASKABLE,
      IrqFlag.EVENTFD,
      IrqFlag.EVENTFD,
    ]);
    this.irqInfo = this.irqCounts.map((count, index) => ({ count, flags: this.irqFlags[index]! }));
  }

  // ---- regions ----

  regionRead(index: number, offset: number, dst: Uint8Array): void {
    this.checkRegionAccess(index, offset, dst.length, 'read');
    if (dst.length === 0) return;
    if (index === RegionIndex.CONFIG) {
      // Reads have no side effects, so splitting into dwords would give the same bytes.
      dst.set(this.config.bytes.subarray(offset, offset + dst.length));
    } else if (index === this.msixBar) {
      this.msix.readBar(offset, dst);
    } else {
      this.barHandlers[index]!.read(offset, dst);
    }
  }

  regionWrite(index: number, offset: number, src: Uint8Array): void {
    this.checkRegionAccess(index, offset, src.length, 'write');
    if (src.length === 0) return;
    if (index === RegionIndex.CONFIG) {
      this.writeConfig(offset, src);
    } else if (index === this.msixBar) {
      this.msix.writeBar(offset, src);
    } else {
      this.barHandlers[index]!.write(offset, src);
    }
  }

  private checkRegionAccess(index: number, offset: number, length: number, kind: 'read' | 'write'): void {
    if (!Number.isInteger(index) || index < 0 || index >= PCI_REGION_COUNT) {
      throw new PciAccessError(Errno.EINVAL, `${kind} of region ${index}: no such region (0..${PCI_REGION_COUNT - 1})`);
    }
    const region = this.regions[index]!;
    if (region.size === 0) {
      throw new PciAccessError(
        Errno.EINVAL,
        `${kind} of region ${index} (${REGION_NAMES[index]}): the region is not implemented`,
      );
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > region.size) {
      throw new PciAccessError(
        Errno.EINVAL,
        `${kind} of ${length} bytes at offset ${offset} of region ${index} (${REGION_NAMES[index]}): outside its ${region.size} bytes`,
      );
    }
  }

  /**
   * Applies a config write dword by dword (any size and alignment: each piece stays inside one dword), then runs
   * the side effects of the registers it touched.
   */
  private writeConfig(offset: number, src: Uint8Array): void {
    let done = 0;
    while (done < src.length) {
      const at = offset + done;
      const dwordOffset = at & ~3;
      const firstByte = at & 3;
      const length = Math.min(4 - firstByte, src.length - done);
      let data = 0;
      let byteEnables = 0;
      for (let i = 0; i < length; i++) {
        const shift = (firstByte + i) * 8;
        data |= src[done + i]! << shift;
        byteEnables |= 0xff << shift;
      }
      data >>>= 0;
      byteEnables >>>= 0;
      const old = this.config.read32(dwordOffset);
      this.config.guestWriteDword(dwordOffset, data, byteEnables);
      this.afterConfigWrite(dwordOffset, old, data, byteEnables);
      done += length;
    }
  }

  private afterConfigWrite(dwordOffset: number, old: number, data: number, byteEnables: number): void {
    switch (dwordOffset) {
      case ConfigRegister.COMMAND:
        this.onCommandWritten(old & 0xffff);
        break;
      case CapabilityOffset.POWER_MANAGEMENT + PmRegister.CONTROL_STATUS:
        this.onPowerControlWritten(old & 0xffff);
        break;
      case CapabilityOffset.MSIX:
        this.onMsixControlWritten(old >>> 16);
        break;
      case CapabilityOffset.PCI_EXPRESS + PcieRegister.DEVICE_CONTROL:
        this.onDeviceControlWritten(old & 0xffff, data & byteEnables);
        break;
      default:
        break;
    }
  }

  private onCommandWritten(old: number): void {
    const now = this.config.read16(ConfigRegister.COMMAND);
    if (now !== old && this.logger.enabled('debug')) {
      this.logger.debug('command register changed', {
        memorySpace: (now & Command.MEMORY_SPACE) !== 0,
        busMaster: (now & Command.BUS_MASTER) !== 0,
        intxDisabled: (now & Command.INTX_DISABLE) !== 0,
      });
    }
  }

  private onPowerControlWritten(old: number): void {
    const offset = CapabilityOffset.POWER_MANAGEMENT + PmRegister.CONTROL_STATUS;
    const now = this.config.read16(offset);
    const state = now & PmControl.POWER_STATE_MASK;
    const previous = old & PmControl.POWER_STATE_MASK;
    if (state !== PmControl.D0 && state !== PmControl.D3_HOT) {
      // D1/D2 are not supported: the spec says such a write completes but changes nothing.
      this.config.set16(offset, (now & ~PmControl.POWER_STATE_MASK) | previous);
      return;
    }
    if (state !== previous) {
      // NoSoftReset=1: D3hot -> D0 keeps all state, so there is nothing to reset here.
      this.logger.info('power state changed', { from: powerStateName(previous), to: powerStateName(state) });
    }
  }

  private onMsixControlWritten(oldControl: number): void {
    const control = this.config.read16(CapabilityOffset.MSIX + MsixRegister.MESSAGE_CONTROL);
    const enabled = (control & MsixControl.ENABLE) !== 0;
    const functionMasked = (control & MsixControl.FUNCTION_MASK) !== 0;
    if (((control ^ oldControl) & MsixControl.ENABLE) !== 0) {
      this.logger.info(enabled ? 'MSI-X enabled' : 'MSI-X disabled', { vectors: this.vectorCount });
    }
    this.msix.setControl(enabled, functionMasked);
  }

  private onDeviceControlWritten(old: number, written: number): void {
    if ((written & DeviceControl.INITIATE_FLR) !== 0) {
      this.functionLevelReset();
      return;
    }
    const offset = CapabilityOffset.PCI_EXPRESS + PcieRegister.DEVICE_CONTROL;
    const now = this.config.read16(offset);
    const payload = (now & DeviceControl.MAX_PAYLOAD_MASK) >>> DeviceControl.MAX_PAYLOAD_SHIFT;
    if (payload > MAX_PAYLOAD_ENCODING_SUPPORTED) {
      // A Max_Payload_Size above what Device Capabilities advertises is invalid; keep the previous setting.
      this.config.set16(offset, (now & ~DeviceControl.MAX_PAYLOAD_MASK) | (old & DeviceControl.MAX_PAYLOAD_MASK));
    }
  }

  private functionLevelReset(): void {
    this.logger.info('function level reset');
    if (this.onFunctionLevelReset) {
      try {
        this.onFunctionLevelReset();
      } catch (error) {
        this.logger.error('function level reset hook failed', { error });
      }
    }
    this.reset();
  }

  // ---- state queries ----

  msixEnabled(): boolean {
    return this.msix.isEnabled();
  }

  busMasterEnabled(): boolean {
    return (this.config.read16(ConfigRegister.COMMAND) & Command.BUS_MASTER) !== 0;
  }

  /** Power-on/FLR state: config registers, MSI-X table/PBA/control and INTx pending state. Eventfds stay bound. */
  reset(): void {
    this.config.restorePowerOnValues();
    this.msix.reset();
    this.intxPending = false;
  }

  // ---- live upgrade ----

  /** Stops watching the INTx resample eventfd (a successor is about to take it over); `resumeWatching` undoes it. */
  quiesce(): void {
    this.intxResampleWatcher?.stop();
  }

  resumeWatching(): void {
    this.intxResampleWatcher?.start(POLL_READABLE);
  }

  /** The function's state for a successor process; its eventfds are added to `fds` and stay bound here too. */
  snapshot(fds: FdCollector): PciFunctionState {
    return {
      version: PCI_STATE_VERSION,
      config: toBase64(this.config.bytes),
      msix: this.msix.snapshot(fds),
      intx: {
        fd: this.intxFd >= 0 ? fds.add(this.intxFd) : -1,
        resampleFd: this.intxResampleFd >= 0 ? fds.add(this.intxResampleFd) : -1,
        masked: this.intxMasked,
        pending: this.intxPending,
        clientUnmasks: this.intxClientUnmasks,
      },
    };
  }

  /**
   * Takes on a predecessor's state (a function built with the same options). Signals nothing and does not watch the
   * resample eventfd until `resumeWatching()`: the predecessor may still resume.
   */
  restore(state: PciFunctionState, fds: FdSource): void {
    checkSnapshotVersion(state, 'PCI function state', PCI_STATE_VERSION);
    const config = fromBase64(state.config, 'config space', CONFIG_SPACE_SIZE);
    // The read-only parts (ids, class, capability layout) must be the ones this build presents: the guest has them.
    const mismatch = this.readOnlyMismatch(config);
    if (mismatch !== undefined) {
      throw new Error(`snapshot: config space differs from this function's at 0x${mismatch.toString(16)} (a read-only register)`);
    }
    this.msix.restore(state.msix, fds);
    this.config.bytes.set(config);
    const intx = state.intx;
    this.intxFd = intx.fd === -1 ? -1 : fds.take(intx.fd);
    this.intxMasked = intx.masked === true;
    this.intxPending = intx.pending === true;
    this.intxClientUnmasks = intx.clientUnmasks === true;
    if (intx.resampleFd !== -1) {
      const fd = fds.take(intx.resampleFd);
      this.intxResampleFd = fd;
      this.intxResampleWatcher = native.createWatcher(fd, this.onIntxResample);
    }
  }

  /** The first dword offset where `config` differs from ours in a bit the guest cannot write, if any. */
  private readOnlyMismatch(config: Uint8Array): number | undefined {
    const theirs = new DataView(config.buffer, config.byteOffset, config.byteLength);
    for (let offset = 0; offset < CONFIG_SPACE_SIZE; offset += 4) {
      // Write-1-to-clear status bits are the device's to set; they may differ.
      const fixed = ~(this.config.writableMask32(offset) | this.config.writeOneToClearMask32(offset)) >>> 0;
      if (((this.config.read32(offset) ^ theirs.getUint32(offset, true)) & fixed) >>> 0 !== 0) return offset;
    }
    return undefined;
  }

  /** Closes every eventfd this function owns (the client went away) and forgets per-client interrupt state. */
  releaseInterrupts(): void {
    this.msix.release();
    this.disableIntx();
    this.intxClientUnmasks = false;
  }

  // ---- interrupts ----

  /**
   * Raises interrupt `vector` (the NVMe controller's InterruptSink). MSI-X when enabled (pending in the PBA while
   * masked), otherwise INTx. Never throws: an out-of-range vector is a controller bug, logged and dropped.
   */
  signal(vector: number): void {
    if (vector >>> 0 !== vector || vector >= this.vectorCount) {
      this.logger.warn('signal for a vector the function does not have', { vector, vectors: this.vectorCount });
      return;
    }
    if (this.msix.isEnabled()) {
      this.msix.signal(vector);
      return;
    }
    this.signalIntx();
  }

  private signalIntx(): void {
    if (this.irqCounts[IrqIndex.INTX] === 0) {
      this.dropIntx('the function has no interrupt pin');
      return;
    }
    if ((this.config.read16(ConfigRegister.COMMAND) & Command.INTX_DISABLE) !== 0) {
      this.dropIntx('INTx disabled in the command register');
      return;
    }
    if (this.intxFd < 0) {
      this.dropIntx('no INTx eventfd bound');
      return;
    }
    if (this.intxMasked) {
      this.intxPending = true;
      return;
    }
    this.fireIntx();
    if (this.intxClientUnmasks) this.intxMasked = true;
  }

  private dropIntx(reason: string): void {
    if (this.logger.enabled('debug')) this.logger.debug('interrupt dropped', { reason });
  }

  private fireIntx(): void {
    try {
      // false: the counter is saturated (nobody reads it), so an interrupt is pending already. Never blocks for
      // long: the fd was checked to be an eventfd and set non-blocking when it was bound, and if the client cleared
      // O_NONBLOCK again the addon interrupts the write within ~0.2 s (docs/native.md).
      if (!native.eventfdWrite(this.intxFd, 1) && this.logger.enabled('debug')) {
        this.logger.debug('INTx eventfd counter saturated; interrupt already pending', { fd: this.intxFd });
      }
    } catch (error) {
      this.logger.warn('INTx eventfd write failed', { fd: this.intxFd, error });
    }
  }

  private unmaskIntx(): void {
    this.intxMasked = false;
    if (this.intxPending) {
      this.intxPending = false;
      this.signalIntx();
    }
  }

  private disableIntx(): void {
    this.closeIntxResample();
    if (this.intxFd >= 0) closeQuietly(this.intxFd, this.logger);
    this.intxFd = -1;
    this.intxMasked = false;
    this.intxPending = false;
  }

  private closeIntxResample(): void {
    if (this.intxResampleWatcher) {
      try {
        this.intxResampleWatcher.close();
      } catch (error) {
        this.logger.warn('closing the INTx resample watcher failed', { error });
      }
      this.intxResampleWatcher = null;
    }
    if (this.intxResampleFd >= 0) closeQuietly(this.intxResampleFd, this.logger);
    this.intxResampleFd = -1;
  }

  /**
   * KVM signals the resample eventfd when the guest EOIs the line: that is our unmask. On failure nothing changed:
   * the previous resample fd stays bound and `fd` is not closed (the caller still owns it).
   */
  private bindIntxResample(fd: number): void {
    if (fd === this.intxResampleFd) return;
    if (fd < 0) {
      this.closeIntxResample();
      return;
    }
    let watcher: FdWatcher;
    try {
      watcher = native.createWatcher(fd, this.onIntxResample);
    } catch (error) {
      throw new PciAccessError(Errno.EINVAL, `SET_IRQS INTx UNMASK eventfd ${fd}: cannot watch it: ${String(error)}`);
    }
    try {
      watcher.start(POLL_READABLE);
    } catch (error) {
      watcher.close();
      throw new PciAccessError(Errno.EINVAL, `SET_IRQS INTx UNMASK eventfd ${fd}: cannot watch it: ${String(error)}`);
    }
    this.closeIntxResample();
    this.intxResampleFd = fd;
    this.intxResampleWatcher = watcher;
  }

  private readonly onIntxResample = (events: number): void => {
    if (events < 0) {
      this.logger.warn('INTx resample eventfd failed; no longer watching it', { fd: this.intxResampleFd, errno: -events });
      this.closeIntxResample();
      return;
    }
    let eois: number | null;
    try {
      // Drains the counter: the watcher is level-triggered.
      eois = native.eventfdRead(this.intxResampleFd);
    } catch (error) {
      this.logger.warn('reading the INTx resample eventfd failed; no longer watching it', { fd: this.intxResampleFd, error });
      this.closeIntxResample();
      return;
    }
    if (eois !== null) this.unmaskIntx();
  };

  /**
   * VFIO_DEVICE_SET_IRQS for INTx and MSI-X. On success every fd in `fds` is ours: bound, and the fds they replace
   * are closed. On failure (a PciAccessError, EINVAL) nothing changed and none of `fds` was closed or kept: they
   * still belong to the caller, who closes them (the vfio-user server does). Only eventfds are accepted, and they
   * are switched to O_NONBLOCK (a file status flag, so the client's copy becomes non-blocking too): an interrupt
   * must never block this thread, whatever the client does with the counter. A client that clears the flag again
   * costs this thread at most ~0.2 s per interrupt (native eventfdWrite's watchdog), never a hang.
   */
  setIrqs(index: number, flags: number, start: number, count: number, fds: readonly number[], bools?: Uint8Array): void {
    this.validateIrqSet(index, flags, start, count, fds, bools);

    const data = flags & IRQ_SET_DATA_MASK;
    const action = flags & IRQ_SET_ACTION_MASK;
    const boolData = data === IrqSetFlag.DATA_BOOL ? bools : undefined;
    // DATA_EVENTFD with no fds de-assigns the range.
    const eventfds = data === IrqSetFlag.DATA_EVENTFD && fds.length === 0 ? new Array<number>(count).fill(-1) : fds;
    if (this.logger.enabled('debug')) {
      this.logger.debug('SET_IRQS', { irq: IRQ_NAMES[index], flags, start, count, fds: [...fds] });
    }

    if (index === IrqIndex.MSIX) {
      if (action === IrqSetFlag.ACTION_TRIGGER) {
        if (count === 0) this.msix.disableAll();
        else if (data === IrqSetFlag.DATA_EVENTFD) this.msix.bindEventfds(start, eventfds);
        else this.msix.triggerForTest(start, count, boolData);
      } else {
        this.msix.setIrqMask(start, count, action === IrqSetFlag.ACTION_MASK, boolData);
      }
      return;
    }

    // INTx (the only other index with interrupts; validation rejected the rest).
    const selected = boolData === undefined || boolData[0] !== 0;
    if (action === IrqSetFlag.ACTION_TRIGGER) {
      if (count === 0) {
        this.disableIntx();
      } else if (data === IrqSetFlag.DATA_EVENTFD) {
        const fd = eventfds[0]!;
        if (this.intxFd >= 0 && this.intxFd !== fd) closeQuietly(this.intxFd, this.logger);
        this.intxFd = fd;
        if (this.intxPending && !this.intxMasked) this.unmaskIntx();
      } else if (selected && this.intxFd >= 0) {
        this.fireIntx();
      }
      return;
    }
    // The client masks/unmasks: from now on it is told about each assertion exactly once (automask).
    this.intxClientUnmasks = true;
    if (action === IrqSetFlag.ACTION_MASK) {
      if (selected) this.intxMasked = true;
    } else if (data === IrqSetFlag.DATA_EVENTFD) {
      this.bindIntxResample(eventfds[0]!); // may throw, before anything changed
    } else if (selected) {
      this.unmaskIntx();
    }
  }

  private validateIrqSet(
    index: number,
    flags: number,
    start: number,
    count: number,
    fds: readonly number[],
    bools: Uint8Array | undefined,
  ): void {
    const fail = (reason: string): never => {
      throw new PciAccessError(Errno.EINVAL, `${describeIrqSet({ index, flags, start, count })}: ${reason}`);
    };
    // The vfio.h rules (the vfio-user server checks the same), then what only this function knows: its fds.
    const violation = irqSetViolation(
      { index, flags, start, count, fdCount: fds.length, dataBytes: bools?.length ?? 0 },
      this.irqInfo,
    );
    if (violation !== null) fail(violation);
    if ((flags & IRQ_SET_DATA_MASK) !== IrqSetFlag.DATA_EVENTFD) return;
    const action = flags & IRQ_SET_ACTION_MASK;
    const seen = new Set<number>();
    for (const fd of fds) {
      if (!Number.isInteger(fd) || fd < -1 || fd > MAX_FD) fail(`invalid fd ${fd}`);
      if (fd < 0) continue;
      if (seen.has(fd)) fail(`fd ${fd} appears twice`);
      seen.add(fd);
      if (this.isOwnedElsewhere(fd, index, action, start, count)) fail(`fd ${fd} is already bound to another interrupt`);
    }
    // Only now touch the fds: every other reason to refuse the request has been checked.
    for (const fd of seen) {
      let eventfd = false;
      try {
        eventfd = native.isEventfd(fd);
      } catch (error) {
        fail(`fd ${fd} cannot be checked to be an eventfd: ${String(error)}`);
      }
      // A write to a socket, pipe or file can block this thread for good (a full socket nobody reads).
      if (!eventfd) fail(`fd ${fd} is not an eventfd (${describeFd(fd)})`);
    }
    for (const fd of seen) {
      try {
        native.setNonBlocking(fd, true);
      } catch (error) {
        fail(`fd ${fd}: cannot make it non-blocking: ${String(error)}`);
      }
    }
  }

  /** Whether we already own `fd` in a slot this request does not replace (binding it again would double-close). */
  private isOwnedElsewhere(fd: number, index: number, action: number, start: number, count: number): boolean {
    const replacesIntxTrigger = index === IrqIndex.INTX && action === IrqSetFlag.ACTION_TRIGGER;
    const replacesIntxResample = index === IrqIndex.INTX && action === IrqSetFlag.ACTION_UNMASK;
    if (fd === this.intxFd && !replacesIntxTrigger) return true;
    if (fd === this.intxResampleFd && !replacesIntxResample) return true;
    const [exceptStart, exceptCount] = index === IrqIndex.MSIX ? [start, count] : [0, 0];
    return this.msix.ownsEventfd(fd, exceptStart, exceptCount);
  }
}

/** What an fd is, for the message refusing it: the /proc/self/fd link ("socket:[123]", "/memfd:x (deleted)"). */
function describeFd(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return 'unknown kind';
  }
}

function isBarIndex(index: number): boolean {
  return Number.isInteger(index) && index >= 0 && index < BAR_COUNT;
}

function powerStateName(state: number): string {
  return state === PmControl.D3_HOT ? 'D3hot' : `D${state}`;
}

function checkField(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new Error(`PCI function ${name} ${value} must be an integer in 0..0x${max.toString(16)}`);
  }
}

function validateIdentity(options: PciFunctionOptions, interruptPin: number): void {
  checkField('vendorId', options.vendorId, 0xffff);
  checkField('deviceId', options.deviceId, 0xffff);
  checkField('subsystemVendorId', options.subsystemVendorId, 0xffff);
  checkField('subsystemId', options.subsystemId, 0xffff);
  checkField('revisionId', options.revisionId, 0xff);
  checkField('classCode', options.classCode, 0xff_ffff);
  checkField('interruptPin', interruptPin, 4);
}

function validateBar(bar: BarDefinition, occupied: Array<string | null>): void {
  const what = `BAR${bar.index}`;
  if (!isBarIndex(bar.index)) throw new Error(`BAR index ${bar.index} must be 0..5`);
  if (bar.is64Bit && bar.index === BAR_COUNT - 1) throw new Error(`${what} cannot be 64-bit: it is the last BAR`);
  for (const index of bar.is64Bit ? [bar.index, bar.index + 1] : [bar.index]) {
    const owner = occupied[index];
    if (owner) throw new Error(`${what} overlaps BAR slot ${index}, already used by ${owner}`);
  }
  const maxSize = bar.is64Bit ? MAX_BAR64_SIZE : MAX_BAR32_SIZE;
  if (!Number.isSafeInteger(bar.size) || bar.size < MIN_BAR_SIZE || bar.size > maxSize || !isPowerOfTwo(bar.size)) {
    throw new Error(`${what} size ${bar.size} must be a power of two in ${MIN_BAR_SIZE}..${maxSize}`);
  }
  if (typeof bar.read !== 'function' || typeof bar.write !== 'function') {
    throw new Error(`${what} needs read and write handlers`);
  }
  if (bar.mmap) {
    const { fd, fdOffset, areas } = bar.mmap;
    if (!Number.isInteger(fd) || fd < 0) throw new Error(`${what} mmap fd ${fd} is invalid`);
    if (!Number.isSafeInteger(fdOffset) || fdOffset < 0) throw new Error(`${what} mmap fdOffset ${fdOffset} is invalid`);
    for (const area of areas) {
      if (
        !Number.isSafeInteger(area.offset) ||
        !Number.isSafeInteger(area.size) ||
        area.offset < 0 ||
        area.size <= 0 ||
        area.offset + area.size > bar.size
      ) {
        throw new Error(`${what} mmap area at ${area.offset} of ${area.size} bytes is outside the BAR`);
      }
    }
  }
}

function isPowerOfTwo(value: number): boolean {
  // Works beyond 32 bits, where bitwise operators would truncate.
  return value > 0 && 2 ** Math.round(Math.log2(value)) === value;
}
