/** Parses sizes such as `512`, `64M`, `1GiB`, `4k` into bytes. Throws with the offending text on bad input. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text);
  if (!match) throw new Error(`invalid size '${text}': expected a number with an optional K/M/G/T/P suffix`);
  const units: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };
  const bytes = Number(match[1]) * (units[(match[2] ?? '').toLowerCase()] ?? 1);
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid size '${text}': too large`);
  return bytes;
}

export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && value % 1024 === 0 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value}${units[unit]}`;
}
