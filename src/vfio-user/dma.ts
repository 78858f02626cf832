/**
 * DMA_MAP and DMA_UNMAP: the client's guest memory, validated and kept in a `GuestMemory`.
 *
 * A mapping becomes windows of mmaps of the fd that came with DMA_MAP (see src/memory/guest-memory.ts); the
 * mapping owns that fd from then on and keeps it open while the mapping lives (windows past the first and last are
 * mapped on first use, and a live upgrade hands the fd to the successor process). DMA_UNMAP retires mappings at once
 * and completes when in-flight I/O has let go of them, so its reply is asynchronous.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import { F_SEAL_SHRINK, native, PROT_READ, PROT_WRITE } from '../native/index.js';
import type { Logger } from '../util/log.js';
import type { FdCollector, FdSource } from '../util/handover-fds.js';
import { closeFds, type IncomingMessage } from './connection.js';
import { Errno } from '../spec/vfio.js';
import { VfioUserError, errnoOf, messageOf } from './errors.js';
import { PAGE_SIZE } from './limits.js';
import { BodySize, DmaMapFlag, DmaUnmapFlag, readDmaMap, readDmaUnmap } from './protocol.js';
import { NO_FDS, expectArgsz, expectBody } from './request.js';

const OPERATOR_HINT_NO_FD =
  'vfiod can only reach guest memory that the hypervisor shares with it as a file descriptor. ' +
  'QEMU: back guest RAM with a shared memfd, e.g. `-object memory-backend-memfd,id=mem0,size=<RAM size>,share=on ' +
  '-machine memory-backend=mem0`. cloud-hypervisor: `--memory size=<RAM size>,shared=on`. ' +
  'Maps without fd for ROM or VGA memory are harmless when the guest RAM maps arrive with an fd.';

/** A validated DMA_UNMAP on its way: `removal` resolves to the number of mappings removed. */
export interface PendingUnmap {
  readonly where: string;
  readonly iova: number;
  readonly size: number;
  readonly all: boolean;
  readonly removal: Promise<number>;
}

/** A live mapping as the client made it: what a successor needs to map it again (docs/restart.md). */
interface MappingRecord {
  iova: number;
  size: number;
  /** DmaMapFlag bits. */
  flags: number;
  fdOffset: number;
  /** Undefined for memory the client did not share (a DMA_MAP without fd). */
  fd: number | undefined;
}

/** A mapping in a snapshot; `fd` is an index into the snapshot's fds (absent for memory that was not shared). */
export interface DmaMappingState {
  iova: number;
  size: number;
  flags: number;
  fdOffset: number;
  fd?: number;
}

/** One client's DMA requests. */
export class DmaRequests {
  private warnedWithoutFd = false;
  private notedUnsealed = false;
  /** The live mappings with their fds, until each is released. */
  private readonly records = new Set<MappingRecord>();

  constructor(
    private readonly memory: GuestMemory,
    private readonly log: Logger,
    private readonly maxDmaMaps: number,
  ) {}

  /** DMA_MAP: validates the request and adds the mapping. Its fd (if any) is consumed either way. */
  map(m: IncomingMessage): void {
    try {
      this.addMapping(m);
    } finally {
      // On success the mapping owns the fd (m.fds is empty then); on failure nothing does.
      closeFds(m.fds);
      m.fds = NO_FDS;
    }
  }

  private addMapping(m: IncomingMessage): void {
    expectBody(m, BodySize.DMA_MAP);
    expectArgsz(m, BodySize.DMA_MAP);
    if (m.fds.length > 1)
      throw new VfioUserError(Errno.EINVAL, `DMA_MAP takes at most one file descriptor, got ${m.fds.length}`);
    const { flags, offset: fdOffset, address: iova, size } = readDmaMap(m.view, m.bodyOffset);
    const where = `DMA_MAP iova 0x${iova.toString(16)} size 0x${size.toString(16)}`;
    if ((flags & ~(DmaMapFlag.READ | DmaMapFlag.WRITE)) !== 0 || flags === 0) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${where}: flags 0x${flags.toString(16)} (READ=1 and/or WRITE=2 expected)`,
      );
    }
    const withOffset = `${where} offset 0x${fdOffset.toString(16)}`;
    const inRange = Number.isSafeInteger(iova + size) && Number.isSafeInteger(fdOffset + size);
    if (iova < 0 || size <= 0 || fdOffset < 0 || !inRange) {
      throw new VfioUserError(Errno.EINVAL, `${withOffset}: range is empty or beyond 2^53`);
    }
    if (iova % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0 || fdOffset % PAGE_SIZE !== 0) {
      throw new VfioUserError(Errno.EINVAL, `${withOffset}: not ${PAGE_SIZE}-byte aligned`);
    }
    const overlapped = this.memory.overlapping(iova, size);
    if (overlapped && m.replayed && this.isMapped({ iova, size, flags, fdOffset })) {
      // Crash recovery handles again a DMA_MAP the predecessor had made (docs/restart.md): it stands.
      this.log.info('DMA_MAP handled again after a crash: the mapping exists already', { iova, size });
      return;
    }
    if (overlapped) {
      throw new VfioUserError(
        Errno.EEXIST,
        `${where}: overlaps the mapping at 0x${overlapped.iova.toString(16)} size 0x${overlapped.size.toString(16)}`,
      );
    }
    const count = this.memory.regions.length;
    if (count >= this.maxDmaMaps) {
      throw new VfioUserError(Errno.ENOSPC, `${where}: already ${count} mappings (max_dma_maps)`);
    }
    const fd = m.fds[0];
    if (fd === undefined) {
      // QEMU maps its ROM and flash this way on every boot. The protocol would have the server reach such memory
      // with DMA_READ/DMA_WRITE messages, which vfiod does not do; an NVMe device never needs ROM. So the mapping is
      // recorded as unreachable: it overlaps, counts and unmaps like the others, and a device access to it fails
      // with a reason that names it. Guest RAM mapped this way is a configuration error, hence the hint.
      if (!this.warnedWithoutFd) {
        this.warnedWithoutFd = true;
        this.log.warn(
          'DMA_MAP without a file descriptor: this memory is not shared with vfiod and cannot be used for DMA',
          { iova: '0x' + iova.toString(16), size, hint: OPERATOR_HINT_NO_FD },
        );
      }
      this.install({ iova, size, flags, fdOffset, fd: undefined }, where);
      return;
    }
    // QEMU's memory-backend-memfd seals its memory against shrinking; cloud-hypervisor does not. Unsealed memory is
    // fine: if the client truncates it, touching the lost pages fails this controller, not the process (the native
    // SIGBUS guard, docs/native.md). Said once per client, for whoever investigates such a failure.
    const sealed = shrinkSealed(fd);
    if (!sealed && !this.notedUnsealed) {
      this.notedUnsealed = true;
      this.log.info(
        'guest memory is not sealed against shrinking (F_SEAL_SHRINK); a client that truncates it fails this controller',
        { iova: '0x' + iova.toString(16), size },
      );
    }
    m.fds = NO_FDS; // the mapping owns the fd from here on: it closes it when done with it, also if the add fails
    this.install({ iova, size, flags, fdOffset, fd }, where);
    if (this.log.enabled('debug')) this.log.debug('dma mapped', { iova, size, flags, sealed });
  }

  /** Maps `record` into guest memory; the mapping owns its fd from here on, also when this throws. */
  private install(record: MappingRecord, where: string): void {
    const { iova, size, flags, fdOffset, fd } = record;
    const prot =
      ((flags & DmaMapFlag.READ) !== 0 ? PROT_READ : 0) | ((flags & DmaMapFlag.WRITE) !== 0 ? PROT_WRITE : 0);
    const log = this.log;
    const records = this.records;
    records.add(record);
    if (fd === undefined) {
      const unreachable = `${where} came without a file descriptor`;
      const readable = (flags & DmaMapFlag.READ) !== 0;
      const writable = (flags & DmaMapFlag.WRITE) !== 0;
      this.memory.add({ iova, size, readable, writable, unreachable, release: () => records.delete(record) });
      return;
    }
    try {
      // One mmap per window of the mapping (src/memory/guest-memory.ts): no JavaScript buffer can cover more than
      // 4 GiB, and guests map hundreds of GiB at once.
      this.memory.add({
        iova,
        size,
        readable: (flags & DmaMapFlag.READ) !== 0,
        writable: (flags & DmaMapFlag.WRITE) !== 0,
        map: (offset, length) => {
          try {
            return new Uint8Array(native.mmap(fd, fdOffset + offset, length, prot));
          } catch (error) {
            const at = `offset 0x${(fdOffset + offset).toString(16)} length 0x${length.toString(16)}`;
            throw new VfioUserError(
              errnoOf(error, Errno.EINVAL),
              `${where}: mmap of the fd at ${at} failed: ${messageOf(error)}`,
            );
          }
        },
        unmap: (bytes) => {
          try {
            native.munmap(bytes.buffer as ArrayBuffer);
          } catch (error) {
            log.error('munmap of a DMA mapping window failed', { iova, size, error });
          }
        },
        // Windows past the first and last are mapped on first use, from this fd; it stays open until the mapping
        // is released so that a live upgrade can hand it over.
        release: () => {
          records.delete(record);
          try {
            native.close(fd);
          } catch (error) {
            log.warn('closing a DMA mapping fd failed', { iova, fd, error });
          }
        },
      });
    } catch (error) {
      if (error instanceof VfioUserError) throw error;
      throw new VfioUserError(Errno.EINVAL, `${where}: ${messageOf(error)}`);
    }
  }

  private isMapped(wanted: Omit<MappingRecord, 'fd'>): boolean {
    for (const record of this.records) {
      if (record.iova === wanted.iova && record.size === wanted.size && record.flags === wanted.flags && record.fdOffset === wanted.fdOffset) {
        return true;
      }
    }
    return false;
  }

  /** The live mappings, their fds added to `fds` (a live upgrade's snapshot). */
  snapshot(fds: FdCollector): DmaMappingState[] {
    const live = new Set(this.memory.regions.map((region) => region.iova));
    const states: DmaMappingState[] = [];
    for (const record of this.records) {
      // A retired mapping still pinned by I/O is not the client's any more (the caller drained I/O first).
      if (!live.has(record.iova)) continue;
      const { iova, size, flags, fdOffset, fd } = record;
      const state: DmaMappingState = { iova, size, flags, fdOffset };
      if (fd !== undefined) state.fd = fds.add(fd);
      states.push(state);
    }
    return states.sort((a, b) => a.iova - b.iova);
  }

  /** Maps again what a predecessor's snapshot lists (the fds come from the hand-over). */
  restore(states: readonly DmaMappingState[], fds: FdSource): void {
    for (const state of states) {
      const fd = state.fd === undefined ? undefined : fds.take(state.fd);
      const where = `restored DMA mapping iova 0x${state.iova.toString(16)} size 0x${state.size.toString(16)}`;
      this.install({ iova: state.iova, size: state.size, flags: state.flags, fdOffset: state.fdOffset, fd }, where);
    }
  }

  /** DMA_UNMAP: validates the request and starts the removal; the caller replies when it settles. */
  unmap(m: IncomingMessage): PendingUnmap {
    if (m.fds.length > 0) {
      // The specification sends no fd with DMA_UNMAP, but SPDK's client (v24.01) attaches the region's fd again.
      // The unmap does not need it: close it and carry on, as refusing would leave the mapping in place.
      this.log.debug('DMA_UNMAP came with file descriptors; closed them', { msgId: m.msgId, fds: m.fds.length });
      closeFds(m.fds);
      m.fds = NO_FDS;
    }
    expectBody(m, BodySize.DMA_UNMAP);
    expectArgsz(m, BodySize.DMA_UNMAP);
    const { flags, address: iova, size } = readDmaUnmap(m.view, m.bodyOffset);
    const where = `DMA_UNMAP iova 0x${iova.toString(16)} size 0x${size.toString(16)}`;
    if ((flags & DmaUnmapFlag.GET_DIRTY_BITMAP) !== 0) {
      throw new VfioUserError(Errno.ENOTSUP, `${where}: dirty page tracking is not supported`);
    }
    if ((flags & ~DmaUnmapFlag.ALL) !== 0) {
      throw new VfioUserError(Errno.EINVAL, `${where}: unknown flags 0x${flags.toString(16)}`);
    }
    const all = (flags & DmaUnmapFlag.ALL) !== 0;
    if (!all) {
      if (iova < 0 || size <= 0 || !Number.isSafeInteger(iova + size)) {
        throw new VfioUserError(Errno.EINVAL, `${where}: range is empty or beyond 2^53`);
      }
      if (iova % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0) {
        throw new VfioUserError(Errno.EINVAL, `${where}: not ${PAGE_SIZE}-byte aligned`);
      }
    }
    const started = Date.now();
    const removal = (all ? this.memory.removeAll() : this.memory.remove(iova, size)).then((count) => {
      const waited = Date.now() - started;
      if (this.log.enabled('debug') || waited > 1000) {
        const fields = { iova, size, all, mappings: count, waitedMs: waited };
        this.log[waited > 1000 ? 'warn' : 'debug']('dma unmapped', fields);
      }
      return count;
    });
    return { where, iova, size, all, removal };
  }
}

/** Whether the file behind `fd` can never shrink (a memfd sealed with F_SEAL_SHRINK). */
function shrinkSealed(fd: number): boolean {
  try {
    return ((native.fileSeals(fd) ?? 0) & F_SEAL_SHRINK) !== 0;
  } catch {
    return false;
  }
}
