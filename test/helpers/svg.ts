/** Checks on the SVG plots of the bench reports (test/unit/bench). */
import { expect } from 'vitest';

/** Tags balance, attributes are quoted, text is escaped, and the document is one <svg> element. */
export function assertWellFormedSvg(svg: string): void {
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let match: RegExpExecArray | null;
  while ((match = tag.exec(svg))) {
    const text = svg.slice(last, match.index);
    expect(text, `text before <${match[2]}>`).not.toMatch(/<|&(?!(amp|lt|gt|quot|#\d+);)/);
    last = tag.lastIndex;
    if (match[1]) expect(stack.pop(), `closing </${match[2]}>`).toBe(match[2]);
    else if (!match[4]) stack.push(match[2]!);
  }
  expect(svg.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
}
