/**
 * systemd's service notifications (sd_notify(3)) for `Type=notify` units: READY=1 once serving, STOPPING=1 on the
 * way down, RELOADING=1 around a planned restart, STATUS= for `systemctl status`, and WATCHDOG=1 pings when the unit
 * sets WatchdogSec=. Outside systemd ($NOTIFY_SOCKET unset) every call does nothing.
 */
import { native } from '../native/index.js';
import { rootLogger } from './log.js';

let warned = false;

/** Sends `fields` (KEY=VALUE lines) to $NOTIFY_SOCKET; false when not under systemd or the send failed. */
export function sdNotify(fields: Record<string, string | number>): boolean {
  const socket = process.env['NOTIFY_SOCKET'];
  if (!socket) return false;
  const text = Object.entries(fields).map(([key, value]) => `${key}=${String(value).replace(/\n/g, ' ')}`).join('\n');
  try {
    native.sendDatagram(socket, new TextEncoder().encode(text));
    return true;
  } catch (error) {
    if (!warned) {
      warned = true;
      rootLogger.child({ component: 'systemd' }).warn('cannot notify systemd', { socket, error: (error as Error).message });
    }
    return false;
  }
}

/** READY=1 with a status line. */
export function notifyReady(status: string): void {
  sdNotify({ READY: 1, STATUS: status, MAINPID: process.pid });
}

export function notifyStopping(status: string): void {
  sdNotify({ STOPPING: 1, STATUS: status });
}

export function notifyStatus(status: string): void {
  sdNotify({ STATUS: status });
}

/** RELOADING=1 (Type=notify-reload wants CLOCK_MONOTONIC's time with it); READY=1 follows when done. */
export function notifyReloading(status: string): void {
  sdNotify({ RELOADING: 1, MONOTONIC_USEC: Math.round(Number(process.hrtime.bigint() / 1000n)), STATUS: status });
}

/**
 * WATCHDOG=1 at half the unit's WatchdogSec= (from $WATCHDOG_USEC, when $WATCHDOG_PID is unset or this process),
 * from this event loop: a loop that stops turning stops the pings and systemd acts. Returns a stop function.
 */
export function startWatchdog(): () => void {
  const usec = Number(process.env['WATCHDOG_USEC']);
  const pid = process.env['WATCHDOG_PID'];
  if (!Number.isFinite(usec) || usec <= 0 || (pid !== undefined && Number(pid) !== process.pid)) return () => undefined;
  const timer = setInterval(() => sdNotify({ WATCHDOG: 1 }), Math.max(1, Math.floor(usec / 2000)));
  timer.unref();
  return () => clearInterval(timer);
}
