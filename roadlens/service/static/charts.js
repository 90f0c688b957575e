// Bar and line charts of /stats rows, drawn as inline SVG.

import { PALETTE, formatCount, formatTime, niceTicks, svg, titled } from "./svg.js";

const WIDTH = 640;
const HEIGHT = 240;
const MARGIN = { top: 12, right: 12, bottom: 40, left: 48 };
const MAX_BINS = 96; // older bins are left out of the drawing (never of the totals)
const MAX_SERIES = PALETTE.length;

// /stats rows -> { bins: [ISO...], series: [{ name, values[], total }], total }.
// Bins are the non-empty ones, in time order; series are ordered by total, largest first.
export function seriesFromStats(rows, key) {
  const bins = [...new Set(rows.map((r) => r.bin_start))].sort(
    (a, b) => Date.parse(a) - Date.parse(b),
  );
  const index = new Map(bins.map((b, i) => [b, i]));
  const byName = new Map();
  for (const row of rows) {
    const name = row[key] ?? "(none)";
    if (!byName.has(name)) byName.set(name, new Array(bins.length).fill(0));
    byName.get(name)[index.get(row.bin_start)] += row.count;
  }
  const series = [...byName]
    .map(([name, values]) => ({ name, values, total: values.reduce((a, b) => a + b, 0) }))
    .sort((a, b) => b.total - a.total || a.name.localeCompare(b.name));
  // More series than colours: the smallest are summed into "other".
  if (series.length > MAX_SERIES) {
    const rest = series.splice(MAX_SERIES - 1);
    const values = bins.map((_, i) => rest.reduce((sum, s) => sum + s.values[i], 0));
    series.push({ name: "other", values, total: rest.reduce((a, s) => a + s.total, 0) });
  }
  return { bins, series, total: series.reduce((a, s) => a + s.total, 0) };
}

// Draws `data` into `figure` (a <figure>): kind "bars" (stacked) or "lines".
export function renderChart(figure, data, { kind, title, binMinutes }) {
  figure.replaceChildren();
  figure.dataset.total = String(data.total);
  const id = figure.id || "chart";
  const caption = document.createElement("figcaption");
  caption.id = `${id}-caption`;
  caption.textContent = `${title} — ${formatCount(data.total)} in total`;
  figure.append(caption);
  if (data.total === 0) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "No data yet.";
    figure.append(empty);
    return;
  }
  const shown = sliceBins(data, MAX_BINS);
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-labelledby": `${id}-caption ${id}-desc`,
    class: `chart-svg chart-${kind}`,
  });
  chart.append(svg("desc", { id: `${id}-desc` }, describe(shown, binMinutes)));
  const max = kind === "bars" ? maxStack(shown) : maxValue(shown);
  const scale = drawAxes(chart, shown, max);
  if (kind === "bars") drawBars(chart, shown, scale, binMinutes);
  else drawLines(chart, shown, scale, binMinutes);
  figure.append(chart, legend(data));
  if (shown.bins.length < data.bins.length) {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = `Drawing the last ${shown.bins.length} of ${data.bins.length} bins.`;
    figure.append(note);
  }
}

function sliceBins(data, n) {
  if (data.bins.length <= n) return data;
  const from = data.bins.length - n;
  return {
    ...data,
    bins: data.bins.slice(from),
    series: data.series.map((s) => ({ ...s, values: s.values.slice(from) })),
  };
}

function maxStack(data) {
  return Math.max(0, ...data.bins.map((_, i) => data.series.reduce((a, s) => a + s.values[i], 0)));
}

function maxValue(data) {
  return Math.max(0, ...data.series.flatMap((s) => s.values));
}

function describe(data, binMinutes) {
  const first = formatTime(data.bins[0], { seconds: false });
  const last = formatTime(data.bins[data.bins.length - 1], { seconds: false });
  const parts = data.series.map((s) => `${s.name}: ${s.total}`);
  return `${data.bins.length} bins of ${binMinutes} minutes from ${first} to ${last}; ${parts.join(", ")}.`;
}

// Y axis with round ticks, X axis labelled with (thinned) bin start times; returns the scales.
function drawAxes(chart, data, max) {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const { ticks } = niceTicks(0, max, 4);
  const top = Math.max(max, ticks[ticks.length - 1] ?? 1);
  const y = (v) => MARGIN.top + plotH - (v / top) * plotH;
  const band = plotW / data.bins.length;
  const x = (i) => MARGIN.left + band * i;
  const axes = svg("g", { class: "axis", "aria-hidden": "true" });
  for (const t of ticks) {
    axes.append(
      svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(t), y2: y(t), class: "grid" }),
      svg("text", { x: MARGIN.left - 6, y: y(t) + 4, "text-anchor": "end" }, formatCount(t)),
    );
  }
  const every = Math.ceil(data.bins.length / 6); // at most about six time labels
  const multiDay = new Set(data.bins.map((b) => b.slice(0, 10))).size > 1;
  data.bins.forEach((bin, i) => {
    if (i % every !== 0) return;
    const cx = x(i) + band / 2;
    axes.append(
      svg("line", { x1: cx, x2: cx, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + 4 }),
      svg(
        "text",
        { x: cx, y: HEIGHT - MARGIN.bottom + 18, "text-anchor": "middle" },
        formatTime(bin, { seconds: false, date: false }),
      ),
    );
    if (multiDay) {
      axes.append(
        svg("text", { x: cx, y: HEIGHT - 6, "text-anchor": "middle" }, bin.slice(0, 10)),
      );
    }
  });
  axes.append(
    svg("line", {
      x1: MARGIN.left,
      x2: WIDTH - MARGIN.right,
      y1: MARGIN.top + plotH,
      y2: MARGIN.top + plotH,
      class: "baseline",
    }),
  );
  chart.append(axes);
  return { x, y, band };
}

function binLabel(bin, binMinutes) {
  const end = new Date(Date.parse(bin) + binMinutes * 60_000);
  return `${formatTime(bin, { seconds: false })}–${formatTime(end, { seconds: false, date: false })}`;
}

function drawBars(chart, data, { x, y, band }, binMinutes) {
  const width = Math.max(1, band * 0.8);
  const group = svg("g", { class: "bars" });
  data.bins.forEach((bin, i) => {
    let base = 0;
    data.series.forEach((s, k) => {
      const value = s.values[i];
      if (!value) return;
      const rect = svg("rect", {
        x: x(i) + (band - width) / 2,
        y: y(base + value),
        width,
        height: Math.max(0.5, y(base) - y(base + value)),
        fill: PALETTE[k % PALETTE.length],
        "data-series": s.name,
        "data-count": value,
      });
      group.append(titled(rect, `${binLabel(bin, binMinutes)} · ${s.name}: ${formatCount(value)}`));
      base += value;
    });
  });
  chart.append(group);
}

function drawLines(chart, data, { x, y, band }, binMinutes) {
  const group = svg("g", { class: "lines" });
  const dots = data.bins.length <= 48; // markers only while they stay readable
  data.series.forEach((s, k) => {
    const colour = PALETTE[k % PALETTE.length];
    const points = s.values.map((v, i) => `${(x(i) + band / 2).toFixed(1)},${y(v).toFixed(1)}`);
    if (points.length > 1) {
      group.append(
        svg("polyline", { points: points.join(" "), fill: "none", stroke: colour, "data-series": s.name }),
      );
    }
    if (dots || points.length === 1) {
      s.values.forEach((v, i) => {
        const dot = svg("circle", {
          cx: x(i) + band / 2,
          cy: y(v),
          r: 3,
          fill: colour,
          "data-series": s.name,
          "data-count": v,
        });
        group.append(titled(dot, `${binLabel(data.bins[i], binMinutes)} · ${s.name}: ${formatCount(v)}`));
      });
    }
  });
  chart.append(group);
}

function legend(data) {
  const list = document.createElement("ul");
  list.className = "legend";
  data.series.forEach((s, k) => {
    const item = document.createElement("li");
    item.dataset.series = s.name;
    item.dataset.total = String(s.total);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = PALETTE[k % PALETTE.length];
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = formatCount(s.total);
    item.append(swatch, ` ${s.name} `, count);
    list.append(item);
  });
  return list;
}
