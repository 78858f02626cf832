/**
 * The seam between the controller core (queues, admin commands, registers) and the NVM I/O command set
 * (Read/Write/Flush/...): the queue engine fetches an SQE, the command runner (commands.ts) hands it to
 * `executeIoCommand` (io.ts), which runs it against a namespace.
 */
import type { DmaMapping, DmaSpace } from '../memory/guest-memory.js';
import type { Namespace } from '../namespace/namespace.js';
import type { Logger } from '../util/log.js';
import type { IoBatch } from './io.js';
import type { ScratchBudget } from './scratch.js';

/** Counters that feed the SMART / Health log page and the controller's statistics. */
export interface SmartCounters {
  /** Bytes read by host Read/Compare commands (the log page reports units of 512 000 bytes, rounded up). */
  bytesRead: number;
  bytesWritten: number;
  hostReadCommands: number;
  hostWriteCommands: number;
  /** Milliseconds with at least one I/O outstanding (the log page reports minutes). */
  busyMillis: number;
  mediaErrors: number;
  /** Entries ever added to the error log. */
  errorLogEntries: number;
}

/**
 * One namespace's share of the I/O, for metrics: successful data-moving commands and their bytes (Read and Compare
 * as reads, like SmartCounters), and failed I/O commands by status (counted on the failure path only).
 */
export interface NamespaceIoCounters {
  readCommands: number;
  writeCommands: number;
  bytesRead: number;
  bytesWritten: number;
  readonly failedByStatus: Map<number, number>;
}

export function newNamespaceIoCounters(): NamespaceIoCounters {
  return { readCommands: 0, writeCommands: 0, bytesRead: 0, bytesWritten: 0, failedByStatus: new Map() };
}

/** What an I/O command needs from its controller. */
export interface IoContext {
  readonly dma: DmaSpace;
  /** The active namespace with this NSID (1-based), or undefined. */
  namespace(nsid: number): Namespace | undefined;
  /** Maximum data transfer per command in bytes (from MDTS); 0 = no limit. */
  readonly maxTransferBytes: number;
  readonly counters: SmartCounters;
  /** Per namespace (index NSID - 1), when the controller keeps them; tests of single commands may leave them out. */
  readonly namespaceCounters?: readonly NamespaceIoCounters[];
  /**
   * Every active namespace, for a Flush with NSID FFFFFFFFh. When absent, such a flush fails with Invalid Namespace
   * or Format (what the spec requires when Identify Controller VWC bits 2:1 = 10b, broadcast flush not supported).
   */
  allNamespaces?(): readonly Namespace[];
  /**
   * Volatile Write Cache feature, WCE bit. When false, a Write, Write Zeroes or DSM deallocation on a namespace with a
   * volatile write cache is flushed before it completes (write-through), as the guest turned the cache off. Absent
   * means enabled. Read on every such command, so a getter over the live feature value works (no allocation).
   */
  readonly writeCacheEnabled?: boolean;
  /** Where failed commands are reported (with nsid, opcode, cid); nothing is logged when absent. */
  readonly logger?: Logger;
  /**
   * The controller's scratch memory budget (Compare's buffer of stored data). Commands that do not fit wait for it.
   * Absent: no bound (tests of single commands).
   */
  readonly scratch?: ScratchBudget;
  /**
   * Where Reads and Writes on a synchronous store wait to have their data copied together (io.ts IoBatch); whoever
   * gives one must run it (runIoBatch) before it expects those commands complete. Absent: each copies at once.
   */
  readonly batch?: IoBatch;
}

/**
 * A command being executed. The command runner owns these objects and reuses them (no allocation per I/O): it
 * copies the 64-byte SQE into `sqe` before execution so the guest cannot change it mid-flight.
 */
export interface IoRequest {
  /** The 64-byte submission queue entry (a private copy). */
  readonly sqe: DataView;
  /** Guest-memory segments the data pointer resolved to; reused between commands. */
  readonly segments: Uint8Array[];
  /** Mappings pinned for the duration of asynchronous work; unpinned by whoever pinned them. */
  readonly pinned: DmaMapping[];
  /** Command-specific completion DW0. */
  result: number;
}

/**
 * Completion callback: `status` is a 16-bit status from src/spec/nvme.ts (`Status.*`, 0 = success). Called
 * exactly once, possibly synchronously before `executeIoCommand` returns.
 */
export type IoDone = (request: IoRequest, status: number) => void;
