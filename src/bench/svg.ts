/**
 * Hand-written SVG charts for benchmark reports (no plotting dependency): shared helpers and a line chart with
 * a log2 or linear x axis and a linear or log10 y axis. bench/plot-serve.mjs uses the helpers too.
 */

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export function escapeXml(text: unknown): string {
  return String(text).replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The smallest 1/2/5 x 10^n at or above value (axis maximum). */
export function niceCeil(value: number): number {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/** 1234 -> "1.2k", 2500000 -> "2.5M"; small values keep up to two decimals. */
export function formatSi(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  return trim(value);
}

function trim(value: number): string {
  return Number(value.toFixed(Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2)).toString();
}

export interface Series {
  name: string;
  /** `low`..`high`: an error bar (e.g. min and max over repetitions) around `y`. */
  points: Array<{ x: number; y: number; low?: number; high?: number }>;
  /** Fixed colour (e.g. per target kind); default: the palette by position. */
  colour?: string;
  /** SVG stroke-dasharray, to tell apart series of one colour. */
  dash?: string;
}

export interface LineChart {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  xScale: 'log2' | 'linear';
  yScale: 'linear' | 'log10';
  series: Series[];
  /** Unit appended to point tooltips, e.g. "IOPS". */
  unit?: string;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A chart as an SVG group inside `box` (so several charts can share one document). */
export function lineChartGroup(chart: LineChart, box: Box): string {
  const left = box.x + 64, right = box.x + box.width - 12, top = box.y + 46, bottom = box.y + box.height - 70;
  const plotW = right - left, plotH = bottom - top;
  const all = chart.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  // The axes hold the error bars too.
  const yValues = all.flatMap((p) => [p.y, p.low, p.high]).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const out: string[] = [`<g>`];
  out.push(`<text x="${box.x + box.width / 2}" y="${box.y + 18}" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`);
  if (chart.subtitle) out.push(`<text x="${box.x + box.width / 2}" y="${box.y + 34}" text-anchor="middle" fill="#555">${escapeXml(chart.subtitle)}</text>`);
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#ccc"/>`);
  if (all.length === 0) {
    out.push(`<text x="${left + plotW / 2}" y="${top + plotH / 2}" text-anchor="middle" fill="#999">no data</text>`, '</g>');
    return out.join('\n');
  }

  const xs = [...new Set(all.map((p) => p.x))].sort((a, b) => a - b);
  const xT = (v: number): number => (chart.xScale === 'log2' ? Math.log2(v) : v);
  const xMin = xT(xs[0]!), xMax = xT(xs.at(-1)!);
  const pad = plotW * 0.04; // keep the end points off the frame
  const xPos = (v: number): number => (xMax === xMin ? left + plotW / 2 : left + pad + ((xT(v) - xMin) / (xMax - xMin)) * (plotW - 2 * pad));

  let yPos: (v: number) => number;
  const ticks: number[] = [];
  if (chart.yScale === 'log10') {
    const positive = yValues.filter((y) => y > 0);
    const lo = positive.length ? Math.floor(Math.log10(Math.min(...positive))) : 0;
    const hi = Math.max(lo + 1, positive.length ? Math.ceil(Math.log10(Math.max(...positive))) : 1);
    yPos = (v) => bottom - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * plotH;
    for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
  } else {
    const max = niceCeil(Math.max(...yValues));
    yPos = (v) => bottom - (v / max) * plotH;
    for (let i = 0; i <= 5; i++) ticks.push((max * i) / 5);
  }
  for (const t of ticks) {
    const y = yPos(t);
    out.push(`<line x1="${left}" x2="${right}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${formatSi(t)}</text>`);
  }
  for (const x of xs) {
    out.push(`<line x1="${xPos(x)}" x2="${xPos(x)}" y1="${top}" y2="${bottom}" stroke="#f4f4f4"/>`);
    out.push(`<text x="${xPos(x)}" y="${bottom + 16}" text-anchor="middle">${formatSi(x)}</text>`);
  }
  out.push(`<text x="${left + plotW / 2}" y="${bottom + 34}" text-anchor="middle">${escapeXml(chart.xLabel)}</text>`);
  const midY = top + plotH / 2;
  out.push(`<text x="${box.x + 14}" y="${midY}" transform="rotate(-90 ${box.x + 14} ${midY})" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`);

  chart.series.forEach((series, index) => {
    const colour = series.colour ?? PALETTE[index % PALETTE.length]!;
    const dash = series.dash ? ` stroke-dasharray="${escapeXml(series.dash)}"` : '';
    const pts = series.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
    if (pts.length > 1) {
      out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${dash} points="${pts.map((p) => `${xPos(p.x).toFixed(1)},${yPos(p.y).toFixed(1)}`).join(' ')}"/>`);
    }
    const unit = chart.unit ? ' ' + chart.unit : '';
    for (const p of pts) {
      const x = xPos(p.x);
      if (p.low !== undefined && p.high !== undefined && Number.isFinite(p.low) && Number.isFinite(p.high)) {
        const y1 = yPos(p.low).toFixed(1), y2 = yPos(p.high).toFixed(1), cap = 4;
        out.push(
          `<g class="error-bar" stroke="${colour}" stroke-width="1.2"><line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${y1}" y2="${y2}"/>` +
            `<line x1="${(x - cap).toFixed(1)}" x2="${(x + cap).toFixed(1)}" y1="${y1}" y2="${y1}"/><line x1="${(x - cap).toFixed(1)}" x2="${(x + cap).toFixed(1)}" y1="${y2}" y2="${y2}"/>` +
            `<title>${escapeXml(`${series.name}: ${chart.xLabel} ${p.x}: min ${formatSi(p.low)}, max ${formatSi(p.high)}${unit}`)}</title></g>`,
        );
      }
      out.push(
        `<circle cx="${x.toFixed(1)}" cy="${yPos(p.y).toFixed(1)}" r="3.5" fill="${colour}"><title>${escapeXml(
          `${series.name}: ${chart.xLabel} ${p.x} → ${formatSi(p.y)}${unit}`,
        )}</title></circle>`,
      );
    }
    const lx = left + (index % 3) * (plotW / 3), ly = bottom + 52 + Math.floor(index / 3) * 16;
    out.push(
      `<line x1="${lx}" x2="${lx + 14}" y1="${ly - 4}" y2="${ly - 4}" stroke="${colour}" stroke-width="3"${dash}/><text x="${lx + 18}" y="${ly}">${escapeXml(series.name)}</text>`,
    );
  });
  out.push('</g>');
  return out.join('\n');
}

/** A complete SVG document holding charts in a grid, `columns` wide (default: all side by side). */
export function svgDocument(charts: LineChart[], chartWidth = 520, chartHeight = 380, columns = charts.length): string {
  const legendRows = Math.max(0, ...charts.map((c) => Math.ceil(c.series.length / 3) - 1));
  const cellHeight = chartHeight + legendRows * 16;
  const perRow = Math.max(1, Math.min(columns, charts.length));
  const height = cellHeight * Math.max(1, Math.ceil(charts.length / perRow));
  const width = chartWidth * perRow;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...charts.map((chart, i) => lineChartGroup(chart, { x: (i % perRow) * chartWidth, y: Math.floor(i / perRow) * cellHeight, width: chartWidth, height: cellHeight })),
    '</svg>',
    '',
  ].join('\n');
}
