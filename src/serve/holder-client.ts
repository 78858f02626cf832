/**
 * The data plane's side of crash recovery (holder.ts): one connection per controller to the holder, opened by the
 * controller's worker thread. The holder keeps a duplicate of every fd the controller gives it (`keep`) until it is
 * dropped or the controller detaches; a data plane that crashed gets them back from the next `attach`.
 *
 * Numbers: the holder keys each fd by its number in the data plane that kept it. `attach` returns what was held
 * with the numbers the previous data plane used (`number`, to rebuild its fd table) and the fds received here
 * (`fd`); before it resolves it tells the holder to key those by their new local numbers (`renumber`), so from then
 * on `keep` and `drop` always speak of this process's fd numbers, and the old numbers are never used again.
 *
 * `keep` and `drop` are written to the socket at once (a synchronous sendmsg), so a `keep` is in the holder's socket
 * buffer before the caller goes on (for example before it replies to its vfio-user client). Only when the socket
 * buffer is full are they queued: the call then returns false and `drained()` says when they have gone.
 */
import path from 'node:path';
import { native } from '../native/index.js';
import { HandoverChannel } from './handover-channel.js';
import { HOLDER_PROTOCOL } from './holder-protocol.js';

/** An fd the holder gave back: `number` is its number in the data plane that kept it, `fd` the one received here. */
export interface HeldFd {
  number: number;
  fd: number;
  name?: string;
}

const ATTACH_TIMEOUT_MS = 10_000;
const DETACH_TIMEOUT_MS = 5_000;

export class HolderClient {
  private closedByUs = false;
  private detachWaiter: (() => void) | undefined;
  private resolveLost!: (reason: string) => void;
  /**
   * Resolves with a reason when the connection to the holder ends without close() or detach() (the holder died or
   * closed it): from then on nothing is held for this controller.
   */
  readonly lost: Promise<string>;

  private constructor(
    private readonly channel: HandoverChannel,
    readonly controller: string,
  ) {
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
    channel.onMessage(({ message, fds }) => {
      for (const fd of fds) closeQuietly(fd);
      // Nothing but `detached` is expected from the holder; anything else is ignored.
      if (message.type === 'detached') this.confirmDetach();
    });
    channel.onClose((reason) => {
      this.confirmDetach();
      if (!this.closedByUs) this.resolveLost(reason);
    });
  }

  private confirmDetach(): void {
    this.detachWaiter?.();
    this.detachWaiter = undefined;
  }

  /**
   * Connects to the holder at `holderSocket` for the controller served on `controllerSocketPath` and returns what
   * the holder kept for it (nothing the first time; the caller owns the received fds). Rejects when the holder is not
   * there, refuses (the controller is attached on another connection), or does not answer within 10 s.
   */
  static async attach(
    holderSocket: string,
    controllerSocketPath: string,
    timeoutMs = ATTACH_TIMEOUT_MS,
  ): Promise<{ client: HolderClient; held: HeldFd[] }> {
    const controller = path.resolve(controllerSocketPath);
    let channel: HandoverChannel;
    try {
      channel = HandoverChannel.connect(holderSocket);
    } catch (error) {
      throw new Error(`cannot reach the vfiod holder at ${holderSocket}: ${(error as Error).message}`);
    }
    let fds: number[] = [];
    try {
      channel.send({ type: 'attach', protocol: HOLDER_PROTOCOL, controller });
      const reply = await channel.receive(timeoutMs, "the holder's answer");
      fds = reply.fds;
      const { message } = reply;
      if (message.type === 'refused') throw new Error(`the vfiod holder refused ${controller}: ${String(message['reason'])}`);
      if (message.type !== 'held') throw new Error(`unexpected ${message.type} from the vfiod holder`);
      const list = message['fds'];
      if (!Array.isArray(list) || list.length !== fds.length) throw new Error(`the vfiod holder named ${Array.isArray(list) ? list.length : 'no'} fds and sent ${fds.length}`);
      const held = list.map((item: { number?: unknown; name?: unknown }, index): HeldFd => {
        if (typeof item?.number !== 'number') throw new Error('the vfiod holder sent an fd without its number');
        return { number: item.number, fd: fds[index]!, ...(typeof item.name === 'string' ? { name: item.name } : {}) };
      });
      // From here on the holder knows these fds by their numbers in this process.
      if (held.length > 0) channel.send({ type: 'renumber', numbers: held.map((h) => h.fd) });
      return { client: new HolderClient(channel, controller), held };
    } catch (error) {
      for (const fd of fds) closeQuietly(fd);
      channel.close();
      throw error;
    }
  }

  get isClosed(): boolean {
    return this.channel.isClosed;
  }

  /**
   * Has the holder keep duplicates of `fds` (this process's fd numbers; the fds stay open here too). A number the
   * holder already holds is replaced. Returns true when the message is in the holder's socket buffer, false when the
   * socket was full and it is queued (await `drained()`). Throws when the connection to the holder is closed.
   */
  keep(fds: ReadonlyArray<{ fd: number; name?: string }>): boolean {
    if (fds.length === 0) return this.channel.queuedFrames === 0;
    this.channel.send(
      { type: 'keep', fds: fds.map((f) => (f.name !== undefined ? { number: f.fd, name: f.name } : { number: f.fd })) },
      fds.map((f) => f.fd),
    );
    return this.channel.queuedFrames === 0;
  }

  /** Has the holder close its copies of these fds (this process's numbers; unknown ones are ignored). Like keep. */
  drop(fds: readonly number[]): boolean {
    if (fds.length === 0) return this.channel.queuedFrames === 0;
    this.channel.send({ type: 'drop', numbers: [...fds] });
    return this.channel.queuedFrames === 0;
  }

  /** Resolves once everything sent has been accepted by the socket (or the connection closed). */
  drained(): Promise<void> {
    return this.channel.drained();
  }

  /**
   * The controller stopped cleanly: the holder closes everything it held for it and forgets it. Resolves when the
   * holder confirmed (or after 5 s, or at once when the connection is gone); the connection is closed afterwards.
   */
  async detach(timeoutMs = DETACH_TIMEOUT_MS): Promise<void> {
    if (this.channel.isClosed) {
      this.closedByUs = true;
      return;
    }
    this.closedByUs = true;
    const confirmed = new Promise<void>((resolve) => (this.detachWaiter = resolve));
    let timer: NodeJS.Timeout | undefined;
    try {
      this.channel.send({ type: 'detach' });
      await Promise.race([confirmed, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    } finally {
      if (timer) clearTimeout(timer);
      this.channel.close('detached');
    }
  }

  /**
   * Closes the connection without detaching: the holder keeps everything (what a crash does, for tests and for a
   * data plane that hands its controllers to a successor).
   */
  close(): void {
    this.closedByUs = true;
    this.channel.close('closed');
  }
}

function closeQuietly(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // not ours any more
  }
}
