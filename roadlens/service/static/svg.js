// Small helpers for the hand-drawn SVG charts and map.

const SVG_NS = "http://www.w3.org/2000/svg";

// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
export const PALETTE = [
  "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
];

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// A native tooltip that screen readers also announce.
export function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

// Round tick values (1, 2 or 5 times a power of ten) covering [lo, hi], about `count` of them.
export function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { ticks: [], step: 1 };
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toFixed(12))); // drop float noise such as 0.30000000000000004
  }
  return { ticks, step };
}

// Decimals needed to tell ticks `step` apart.
export function decimalsFor(step) {
  return Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
}

export function formatCount(n) {
  return Number(n).toLocaleString("en-US");
}

// Timestamps are shown in UTC, as stored in the lake (no local-time surprises).
export function formatTime(value, { seconds = true, date = true } = {}) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return "—";
  const iso = d.toISOString();
  const time = iso.slice(11, seconds ? 19 : 16);
  return date ? `${iso.slice(0, 10)} ${time}Z` : `${time}Z`;
}
