// A drive map without tiles: GPS fixes, the track and events drawn in SVG with an
// equirectangular projection (x = lon * cos(lat0), y = lat), which is accurate to well
// under 1 % over the few kilometres of a drive and needs no map data at all.

import { decimalsFor, formatTime, niceTicks, svg, titled } from "./svg.js";

const WIDTH = 640;
const HEIGHT = 420;
const MARGIN = { top: 12, right: 16, bottom: 36, left: 76 };
const METRES_PER_DEGREE = (6_371_008.8 * Math.PI) / 180; // mean Earth radius
const MIN_SPAN_DEG = 0.002; // about 200 m: a parked vehicle still gets a readable map
const MAX_DOTS = 2000;

const hasFix = (row) => Number.isFinite(row.lat) && Number.isFinite(row.lon);

// The track: fixes in time order, without consecutive repeats (many boxes share a frame).
export function trackOf(rows) {
  const sorted = rows.filter(hasFix).sort((a, b) => Date.parse(a.captured_at) - Date.parse(b.captured_at));
  const track = [];
  for (const r of sorted) {
    const last = track[track.length - 1];
    if (!last || last[0] !== r.lon || last[1] !== r.lat) track.push([r.lon, r.lat]);
  }
  return track;
}

// Projection fitted to the points, keeping metres square on screen.
function projection(points) {
  const lons = points.map((p) => p[0]);
  const lats = points.map((p) => p[1]);
  const lonC = (Math.min(...lons) + Math.max(...lons)) / 2;
  const latC = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((latC * Math.PI) / 180);
  const spanX = Math.max((Math.max(...lons) - Math.min(...lons)) * k, MIN_SPAN_DEG);
  const spanY = Math.max(Math.max(...lats) - Math.min(...lats), MIN_SPAN_DEG);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const scale = 0.9 * Math.min(plotW / spanX, plotH / spanY); // px per degree of latitude
  const cx = MARGIN.left + plotW / 2;
  const cy = MARGIN.top + plotH / 2;
  return {
    x: (lon) => cx + (lon - lonC) * k * scale,
    y: (lat) => cy - (lat - latC) * scale,
    lon: (px) => lonC + (px - cx) / (k * scale),
    lat: (py) => latC - (py - cy) / scale,
    metresPerPx: METRES_PER_DEGREE / scale,
    plotW,
    plotH,
  };
}

// Renders into `figure`; data-events and data-fixes on it say what was drawn.
export function renderMap(figure, { detections, events, title, emptyText }) {
  figure.replaceChildren();
  const geoEvents = events.filter(hasFix);
  const fixes = detections.filter(hasFix).length;
  // The detections carry the vehicle's position frame by frame; events only now and then.
  const track = trackOf(fixes ? detections : geoEvents);
  const caption = document.createElement("figcaption");
  caption.id = "map-caption";
  caption.textContent = title;
  if (detections.length || events.length) {
    caption.textContent +=
      `: ${fixes} geo-tagged detections, ${geoEvents.length} geo-tagged events` +
      (detections.length > fixes ? ` (${detections.length - fixes} detections without a GPS fix)` : "");
  }
  figure.append(caption);
  figure.dataset.events = String(geoEvents.length);
  figure.dataset.fixes = String(fixes);
  if (!track.length && !geoEvents.length) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = emptyText || "No GPS fixes in this video (a fixed camera, or no GPS track).";
    figure.append(empty);
    return;
  }
  const proj = projection([...track, ...geoEvents.map((e) => [e.lon, e.lat])]);
  const map = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-labelledby": "map-caption",
    class: "map-svg",
  });
  drawGraticule(map, proj);
  if (track.length > 1) {
    const points = track.map(([lon, lat]) => `${proj.x(lon).toFixed(1)},${proj.y(lat).toFixed(1)}`);
    map.append(svg("polyline", { points: points.join(" "), class: "track", "data-points": track.length }));
  }
  drawDots(map, track, proj);
  drawEvents(map, geoEvents, proj);
  drawScaleBar(map, proj);
  figure.append(map, mapLegend());
}

function drawGraticule(map, proj) {
  const left = MARGIN.left;
  const right = WIDTH - MARGIN.right;
  const top = MARGIN.top;
  const bottom = HEIGHT - MARGIN.bottom;
  const group = svg("g", { class: "axis", "aria-hidden": "true" });
  group.append(svg("rect", { x: left, y: top, width: proj.plotW, height: proj.plotH, class: "frame" }));
  const lon = niceTicks(proj.lon(left), proj.lon(right), 5);
  const lonDigits = decimalsFor(lon.step);
  for (const t of lon.ticks) {
    const x = proj.x(t);
    group.append(
      svg("line", { x1: x, x2: x, y1: top, y2: bottom, class: "grid" }),
      svg("text", { x, y: bottom + 16, "text-anchor": "middle" }, degrees(t, lonDigits, "E", "W")),
    );
  }
  const lat = niceTicks(proj.lat(bottom), proj.lat(top), 5);
  const latDigits = decimalsFor(lat.step);
  for (const t of lat.ticks) {
    const y = proj.y(t);
    group.append(
      svg("line", { x1: left, x2: right, y1: y, y2: y, class: "grid" }),
      svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, degrees(t, latDigits, "N", "S")),
    );
  }
  map.append(group);
}

function degrees(value, digits, positive, negative) {
  return `${Math.abs(value).toFixed(digits)}°${value < 0 ? negative : positive}`;
}

function drawDots(map, track, proj) {
  const step = Math.ceil(track.length / MAX_DOTS); // thin long drives: the line carries the shape
  const group = svg("g", { class: "fixes", "aria-hidden": "true" });
  for (let i = 0; i < track.length; i += step) {
    const [lon, lat] = track[i];
    group.append(svg("circle", { cx: proj.x(lon), cy: proj.y(lat), r: 1.6 }));
  }
  map.append(group);
}

function drawEvents(map, events, proj) {
  const group = svg("g", { class: "events" });
  for (const e of events) {
    const marker = svg("circle", {
      cx: proj.x(e.lon),
      cy: proj.y(e.lat),
      r: 4.5,
      class: "event-marker",
      "data-event-id": e.event_id,
    });
    const what = [e.rule_name || e.rule_id, e.class_name, e.direction].filter(Boolean).join(" · ");
    group.append(titled(marker, `${formatTime(e.captured_at)} ${what}`));
  }
  map.append(group);
}

// A bar of a round length (1, 2 or 5 × 10^n metres) no longer than a quarter of the plot.
function drawScaleBar(map, proj) {
  const maxMetres = (proj.plotW / 4) * proj.metresPerPx;
  const power = 10 ** Math.floor(Math.log10(maxMetres));
  const metres = [5, 2, 1].map((m) => m * power).find((m) => m <= maxMetres) ?? power;
  const px = metres / proj.metresPerPx;
  const x = WIDTH - MARGIN.right - px - 12;
  const y = HEIGHT - MARGIN.bottom - 14;
  const label = metres >= 1000 ? `${metres / 1000} km` : `${metres} m`;
  const group = svg("g", { class: "scale-bar", "data-metres": metres });
  group.append(
    svg("rect", { x: x - 6, y: y - 16, width: px + 12, height: 24, class: "scale-bg" }),
    svg("path", { d: `M${x},${y - 4}V${y}H${x + px}V${y - 4}` }),
    svg("text", { x: x + px / 2, y: y - 5, "text-anchor": "middle" }, label),
  );
  map.append(group);
}

function mapLegend() {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const [cls, text] of [
    ["legend-track", "track (GPS fixes of the detections)"],
    ["legend-event", "event"],
  ]) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${cls}`;
    item.append(swatch, ` ${text}`);
    list.append(item);
  }
  return list;
}
