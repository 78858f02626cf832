#!/usr/bin/env node
// Renders a serve-bench result (bench/results/serve-*.json) as an SVG: IOPS and p99 latency per doorbell mode and
// completion style, at each queue depth, next to the client ceiling measured in the same run.
// usage: node bench/plot-serve.mjs [result.json] [out.svg]   (defaults: newest result, docs/img/serve-bench.svg)
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
// Axis and escaping helpers are shared with `vfiod bench`'s plots (src/bench/svg.ts, compiled by npm install).
import { escapeXml as escape, formatSi as formatK, niceCeil } from '../dist/bench/svg.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const resultsDir = path.join(root, 'bench', 'results');
const input = process.argv[2] ?? path.join(resultsDir, readdirSync(resultsDir).filter((f) => f.startsWith('serve-')).sort().at(-1));
const output = process.argv[3] ?? path.join(root, 'docs', 'img', 'serve-bench.svg');
const run = JSON.parse(readFileSync(input, 'utf8'));

const cells = run.cells.filter((cell) => cell.ok);
const qds = [...new Set(cells.map((cell) => cell.qd))].sort((a, b) => a - b);
const label = (cell) => (cell.kind === 'reference' ? 'client ceiling' : `${cell.mode} / ${cell.completion === 'irq' ? 'irq' : 'poll'} completion`);
const series = [...new Set(cells.map(label))];
const colours = ['#9e9e9e', '#1f77b4', '#6baed6', '#d62728', '#ff9896', '#2ca02c', '#98df8a'];

const width = 900, height = 420, left = 70, right = 20, top = 50, bottom = 110;
const plotW = width - left - right, plotH = height - top - bottom;
const maxIops = Math.max(...cells.map((cell) => cell.result.iops));
const scaleMax = niceCeil(maxIops);
const groupW = plotW / qds.length;
const barW = Math.min(40, (groupW * 0.8) / series.length);

const out = [];
out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`);
out.push(`<rect width="100%" height="100%" fill="white"/>`);
out.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">vfiod serve: 4k random read IOPS (memory namespace), ${run.started.slice(0, 10)}</text>`);
out.push(`<text x="${width / 2}" y="40" text-anchor="middle" fill="#555">bar label: p99 latency; ${run.machine.cpus} CPUs, ${escape(run.machine.cpu_model)}</text>`);
for (let tick = 0; tick <= 5; tick++) {
  const value = (scaleMax * tick) / 5;
  const y = top + plotH - (plotH * tick) / 5;
  out.push(`<line x1="${left}" x2="${width - right}" y1="${y}" y2="${y}" stroke="#eee"/>`);
  out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${formatK(value)}</text>`);
}
qds.forEach((qd, group) => {
  const groupCells = series.map((name) => cells.find((cell) => cell.qd === qd && label(cell) === name));
  const startX = left + group * groupW + (groupW - barW * series.length) / 2;
  groupCells.forEach((cell, index) => {
    if (!cell) return;
    const h = (plotH * cell.result.iops) / scaleMax;
    const x = startX + index * barW;
    const y = top + plotH - h;
    out.push(`<rect x="${x}" y="${y}" width="${barW - 3}" height="${h}" fill="${colours[series.indexOf(label(cell)) % colours.length]}"><title>${label(cell)} QD${qd}: ${Math.round(cell.result.iops)} IOPS, p50 ${cell.result.lat_us.p50} us, p99 ${cell.result.lat_us.p99} us</title></rect>`);
    out.push(`<text x="${x + (barW - 3) / 2}" y="${y - 4}" text-anchor="middle" font-size="9">${Math.round(cell.result.lat_us.p99)}µs</text>`);
  });
  out.push(`<text x="${left + group * groupW + groupW / 2}" y="${top + plotH + 18}" text-anchor="middle" font-weight="bold">QD ${qd}</text>`);
});
series.forEach((name, index) => {
  const x = left + (index % 4) * 200, y = height - bottom + 45 + Math.floor(index / 4) * 18;
  out.push(`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${colours[index % colours.length]}"/><text x="${x + 18}" y="${y}">${escape(name)}</text>`);
});
out.push(`<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle">IOPS</text>`);
out.push('</svg>');
mkdirSync(path.dirname(output), { recursive: true });
writeFileSync(output, out.join('\n') + '\n');
console.log(`wrote ${path.relative(root, output)} from ${path.relative(root, input)}`);
