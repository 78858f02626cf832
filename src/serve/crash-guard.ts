/**
 * One controller's crash recovery while it serves (docs/restart.md): every fd the controller depends on goes to the
 * holder (holder-client.ts) the moment it exists, and its state goes to the checkpoint (checkpoint-area.ts) before
 * the client or the guest can see its effect:
 * - after a vfio-user request changed state, before the replies go out (`stateChanged`, `beforeSend`);
 * - after an admin command ran, before its completion is posted (the NVMe controller calls `checkpointNow`);
 * - when a client connects or its cleanup ends;
 * - every second, for the counters (SMART, error log) that move with I/O.
 * The queues' positions and the commands in flight are in the command journal, which the controller writes itself.
 *
 * Fds are named by keys: `generation * 2^20 + fd` in the data plane that kept them. The holder hands them back with
 * those keys as names, so a checkpoint stays readable by every later data plane, whatever numbers its fds get.
 */
import type { Logger } from '../util/log.js';
import { FdCollector, FdSource } from '../util/handover-fds.js';
import { Command } from '../vfio-user/protocol.js';
import type { CrashRecoveryHooks } from '../vfio-user/server.js';
import type { ConnectionStreamsState, RecoveredStreams, StreamJournal } from '../vfio-user/connection.js';
import type { CheckpointArea, FdKeys, JournaledStream } from './checkpoint-area.js';
import type { HeldFd, HolderClient } from './holder-client.js';
import type { ControllerHandoverState } from './controller.js';
import { fromBase64 } from '../util/handover-fds.js';

const KEY_FDS = 2 ** 20;
const PERIODIC_CHECKPOINT_MS = 1000;
export const CHECKPOINT_FD_NAME = 'checkpoint';
const CHECKPOINT_VERSION = 1;

/** What the checkpoint's JSON slot holds. */
export interface CrashCheckpoint {
  version: number;
  generation: number;
  state: ControllerHandoverState;
  /** The state's fd indexes name these keys. */
  fdKeys: number[];
}

export class CrashGuard implements CrashRecoveryHooks, FdKeys {
  /** Builds the controller's state for a checkpoint (set once the controller exists). */
  snapshot: ((fds: FdCollector) => ControllerHandoverState) | undefined;
  /** Interrupt mode: BAR0 doorbell writes change only the doorbell page, which lives in the checkpoint memfd. */
  isDoorbellWrite: (region: number, offset: number) => boolean = () => false;
  private readonly keys = new Map<number, number>();
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  checkpoints = 0;

  constructor(
    private readonly holder: HolderClient,
    readonly area: CheckpointArea,
    private readonly logger: Logger,
    recovered: readonly HeldFd[] = [],
  ) {
    for (const held of recovered) {
      const key = Number(held.name);
      if (Number.isSafeInteger(key)) this.keys.set(held.fd, key);
    }
  }

  // ---- FdKeys ----

  keep(fd: number): number {
    const key = this.area.generation * KEY_FDS + fd;
    this.holder.keep([{ fd, name: String(key) }]);
    this.keys.set(fd, key);
    return key;
  }

  keyOf(fd: number): number {
    return this.keys.get(fd) ?? this.keep(fd);
  }

  // ---- CrashRecoveryHooks ----

  keepFd(fd: number): void {
    this.keep(fd);
  }

  stateChanged(command: number, region?: number, offset?: number): void {
    if (command === Command.REGION_WRITE && this.isDoorbellWrite(region!, offset!)) return;
    this.dirty = true;
  }

  clientChanged(): void {
    // Now, not at the client's first reply: the process may die before it sends one.
    this.checkpointNow();
  }

  beforeSend(): void {
    if (this.dirty) this.checkpointNow();
  }

  streamJournal(fresh: boolean): StreamJournal {
    return this.area.streamJournal(fresh, this);
  }

  // ---- checkpoints ----

  /** Writes the checkpoint now. A failure is logged (the controller serves on, without crash protection). */
  checkpointNow(): void {
    if (!this.snapshot) return;
    this.dirty = false;
    try {
      const fds = new FdCollector();
      const state = this.snapshot(fds);
      const checkpoint: CrashCheckpoint = {
        version: CHECKPOINT_VERSION,
        generation: this.area.generation,
        state,
        fdKeys: fds.fds.map((fd) => this.keyOf(fd)),
      };
      this.area.writeJson(checkpoint);
      this.checkpoints++;
      this.dropUnreferenced(checkpoint.fdKeys);
    } catch (error) {
      if ((this.failures++ & (this.failures - 1)) === 0) {
        this.logger.error('crash checkpoint failed: a crash now would lose this controller', { error, failures: this.failures });
      }
    }
  }

  /**
   * The holder lets go of what neither the checkpoint just written nor the stream journal names any more (a DMA
   * mapping's memfd after DMA_UNMAP, eventfds SET_IRQS replaced): those fds are closed here or about to be, and the
   * holder's copy would keep, say, unplugged guest memory allocated.
   */
  private dropUnreferenced(checkpointKeys: readonly number[]): void {
    if (this.keys.size <= checkpointKeys.length) return;
    const referenced = new Set(checkpointKeys);
    for (const key of this.area.streamFdKeys()) referenced.add(key);
    const unreferenced: number[] = [];
    for (const [fd, key] of this.keys) if (!referenced.has(key)) unreferenced.push(fd);
    if (unreferenced.length === 0) return;
    this.holder.drop(unreferenced);
    for (const fd of unreferenced) this.keys.delete(fd);
  }

  start(): void {
    this.timer = setInterval(() => this.checkpointNow(), PERIODIC_CHECKPOINT_MS);
    this.timer.unref();
  }

  /** A clean stop: the holder forgets this controller. */
  async detach(): Promise<void> {
    clearInterval(this.timer);
    await this.holder.detach().catch((error: unknown) => this.logger.warn('detaching from the holder failed', { error }));
    this.area.close();
  }

  /** Stops checkpointing without telling the holder (what a crash would leave). */
  close(): void {
    clearInterval(this.timer);
    this.holder.close();
  }
}

/** The checkpoint a recovering data plane reads, with its fds as this process's numbers. */
export function readCheckpoint(area: CheckpointArea, held: readonly HeldFd[]): { checkpoint: CrashCheckpoint; fds: FdSource; local: Map<number, number> } {
  const checkpoint = area.readJson() as CrashCheckpoint | undefined;
  if (checkpoint === undefined) throw new Error('the data plane died before its first checkpoint');
  if (checkpoint.version !== CHECKPOINT_VERSION) throw new Error(`checkpoint version ${checkpoint.version}; this build reads ${CHECKPOINT_VERSION}`);
  const local = new Map<number, number>();
  for (const entry of held) if (entry.name !== undefined && entry.name !== CHECKPOINT_FD_NAME) local.set(Number(entry.name), entry.fd);
  const fds = checkpoint.fdKeys.map((key) => {
    const fd = local.get(key);
    if (fd === undefined) throw new Error(`the checkpoint names fd key ${key}, which the holder does not have`);
    return fd;
  });
  return { checkpoint, fds: new FdSource(fds), local };
}

/**
 * Where the client connection's streams resume: from the checkpoint when it was written after the stream journal
 * last settled (it then holds the replies not yet sent), else from the journal. Replies the client already got are
 * dropped when regenerated (`clientHasUpTo`).
 */
export function recoveredStreams(
  checkpointed: ConnectionStreamsState | undefined,
  journal: JournaledStream,
  checkpointFds: FdSource,
  local: ReadonlyMap<number, number>,
): RecoveredStreams {
  if (journal.overflow) throw new Error('the stream journal overflowed (the client was neither reading nor pausing)');
  const inputFds = (fromPos: number): RecoveredStreams['inputFds'] =>
    journal.fdBatches
      .filter((batch) => batch.pos >= fromPos)
      .map((batch) => ({
        pos: batch.pos,
        truncated: batch.truncated,
        fds: batch.keys.map((key) => {
          const fd = local.get(key);
          if (fd === undefined) throw new Error(`the stream journal names fd key ${key}, which the holder does not have`);
          return fd;
        }),
      }));
  const journalEnd = journal.startPos + journal.bytes.length;
  if (checkpointed !== undefined && checkpointed.handledPos >= journal.startPos) {
    if (checkpointed.handledPos > journalEnd) throw new Error('the checkpoint has handled input the stream journal never received');
    const output = fromBase64(checkpointed.unsent, 'unsent replies');
    return {
      inputPos: checkpointed.handledPos,
      input: journal.bytes.subarray(checkpointed.handledPos - journal.startPos),
      inputFds: inputFds(checkpointed.handledPos),
      outputPos: checkpointed.sentPos,
      output,
      outputFds: checkpointed.unsentFds.map((mark) => ({ pos: checkpointed.sentPos + mark.offset, fds: mark.fds.map((index) => checkpointFds.take(index)) })),
      clientHasUpTo: journal.sentPos,
    };
  }
  return {
    inputPos: journal.startPos,
    input: journal.bytes,
    inputFds: inputFds(journal.startPos),
    outputPos: journal.outPosAtStart,
    output: new Uint8Array(0),
    outputFds: [],
    clientHasUpTo: journal.sentPos,
  };
}
