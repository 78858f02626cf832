/**
 * Device events for StreamDeviceEvents: what the daemon did to a device (prepared, released, attached, ...), delivered
 * live to every subscribed stream. Ids increase within one daemon run.
 */
import { EventEmitter } from 'node:events';

export type DeviceEventKind = 'PREPARED' | 'PREPARE_FAILED' | 'RELEASED' | 'RELEASE_FAILED' | 'ATTACHED' | 'DETACHED' | 'VGPU_TYPE_CHANGED';

export interface DeviceEventRecord {
  id: string;
  bdf: string;
  kind: DeviceEventKind;
  owner: string;
  detail: string;
  at: string;
}

export class DeviceEventBus {
  private readonly emitter = new EventEmitter();
  private sequence = 0;

  constructor() {
    // One listener per streaming client; many clients are normal, not a leak.
    this.emitter.setMaxListeners(0);
  }

  publish(bdf: string, kind: DeviceEventKind, owner: string, detail: string): DeviceEventRecord {
    const event: DeviceEventRecord = { id: String(++this.sequence), bdf, kind, owner, detail, at: new Date().toISOString() };
    this.emitter.emit('event', event);
    return event;
  }

  /** Ends every stream (daemon shutdown: open streams would otherwise hold the drain until its timeout). */
  close(): void {
    this.emitter.emit('close');
    this.emitter.removeAllListeners();
  }

  onClose(listener: () => void): () => void {
    this.emitter.once('close', listener);
    return () => this.emitter.off('close', listener);
  }

  subscribe(listener: (event: DeviceEventRecord) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
