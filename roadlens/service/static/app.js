// The RoadLens dashboard: sources, live events, heat maps, drive map and statistics.
// Plain ES modules served by the service itself: no build step, nothing from the internet.

import { ApiError, getJSON, getKey, getObjectUrl, getPages, setKey } from "./api.js";
import { renderChart, seriesFromStats } from "./charts.js";
import { LiveFeed } from "./feed.js";
import { renderMap } from "./geo.js";
import { formatCount, formatTime } from "./svg.js";

const FEED_MAX_ITEMS = 200;
const FEED_PREFILL = 50;
const REFRESH_MS = { health: 15_000, sources: 5_000, videos: 30_000, stats: 60_000 };
const MAP_LIMITS = { detections: 5000, events: 2000 };

const $ = (selector) => document.querySelector(selector);

// --- status and errors ------------------------------------------------------------------

function sectionError(sectionId, err) {
  const box = document.querySelector(`#${sectionId} .error`);
  if (!box) return;
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = err instanceof ApiError ? `The server said ${err.message}` : `Failed: ${err.message}`;
  if (err instanceof ApiError && err.isAuth) showAuthProblem(err);
}

function showAuthProblem(err) {
  const banner = $("#auth-banner");
  banner.hidden = false;
  banner.textContent = `${err.detail} — enter an API key with the read scope above.`;
}

async function guarded(sectionId, work) {
  try {
    await work();
    sectionError(sectionId, null);
    return true;
  } catch (err) {
    sectionError(sectionId, err);
    return false;
  }
}

async function refreshHealth() {
  const status = $("#server-status");
  try {
    const health = await getJSON("health");
    const feed = health.live_feed === "kafka" ? "Kafka" : "lake poller";
    status.textContent = `Server up · live feed: ${feed}` + (health.open_mode ? " · open mode (no key needed)" : "");
    status.dataset.state = "up";
  } catch (err) {
    status.textContent = `Server unreachable (${err.message})`;
    status.dataset.state = "down";
  }
}

// --- sources ----------------------------------------------------------------------------

async function refreshSources() {
  const ok = await guarded("sources", async () => {
    const [sources, statuses] = await Promise.all([getJSON("sources"), getJSON("sources/status")]);
    const byId = new Map(statuses.map((s) => [s.source_id, s]));
    $("#sources-body").replaceChildren(...sources.map((s) => sourceRow(s, byId.get(s.id))));
    $("#sources-empty").hidden = sources.length > 0;
  });
  if (ok) $("#auth-banner").hidden = true;
}

function cell(text, attrs = {}) {
  const td = document.createElement("td");
  td.textContent = text;
  Object.assign(td.dataset, attrs);
  return td;
}

function sourceRow(source, status = { state: "STOPPED" }) {
  const tr = document.createElement("tr");
  tr.dataset.sourceId = source.id;
  const name = cell("");
  const strong = document.createElement("strong");
  strong.textContent = source.id;
  name.append(strong, source.name && source.name !== source.id ? ` ${source.name}` : "");
  const state = cell("", { field: "state" });
  const badge = document.createElement("span");
  badge.className = `badge state-${status.state.toLowerCase()}`;
  badge.textContent = status.state; // the word, not only the colour, carries the state
  state.append(badge);
  const beat = status.last_heartbeat
    ? `${formatTime(status.last_heartbeat)} (${ago(status.heartbeat_age_s)})`
    : "never";
  tr.append(
    name,
    cell(source.kind),
    state,
    cell(beat, { field: "heartbeat" }),
    cell(String(status.chunks_closed ?? 0)),
    cell(status.last_error || ""),
  );
  return tr;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "age unknown";
  if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

// --- live feed --------------------------------------------------------------------------

const seen = new Set(); // event ids shown (rows can be delivered twice; see feeds.py)
let newest = null; // captured_at (ms) of the newest event seen: where polling resumes
let baseline = false; // the first load has looked at the lake: polling may start from `newest`

function rememberTime(row) {
  const t = Date.parse(row.captured_at);
  if (Number.isFinite(t) && (newest === null || t > newest)) newest = t;
}

function feedItem(row, fresh) {
  const li = document.createElement("li");
  li.dataset.eventId = row.event_id;
  li.dataset.sourceId = row.source_id;
  li.dataset.ruleId = row.rule_id;
  if (fresh) li.className = "fresh";
  const time = document.createElement("time");
  time.dateTime = row.captured_at;
  time.textContent = formatTime(row.captured_at);
  const rule = document.createElement("strong");
  rule.textContent = row.rule_name || row.rule_id;
  const details = [row.class_name, row.direction].filter(Boolean).join(" ");
  const where = document.createElement("span");
  where.className = "where";
  where.textContent = `${row.source_id} · ${row.video_id} · frame ${row.frame_number}`;
  li.append(time, " ", rule, details ? ` ${details} ` : " ", where);
  return li;
}

function addEvents(rows, fresh) {
  const list = $("#feed-list");
  const added = rows
    .filter((r) => r && r.event_id && !seen.has(r.event_id))
    .sort((a, b) => Date.parse(a.captured_at) - Date.parse(b.captured_at));
  for (const row of added) {
    seen.add(row.event_id);
    rememberTime(row);
    list.prepend(feedItem(row, fresh)); // newest on top
  }
  while (list.children.length > FEED_MAX_ITEMS) {
    seen.delete(list.lastElementChild.dataset.eventId);
    list.lastElementChild.remove();
  }
  $("#feed-empty").hidden = list.children.length > 0;
  return added.length;
}

function onLiveEvents(rows) {
  const count = addEvents(rows, true);
  if (!count) return;
  const counter = $("#feed-count");
  counter.dataset.count = String(Number(counter.dataset.count) + count);
  counter.textContent = formatCount(counter.dataset.count);
  // New rows change the charts and maybe the videos (heat maps, map): refresh soon, once.
  later("stats", refreshStats, 1000);
  later("videos", refreshVideos, 2000);
}

// Polling fallback: events captured at or after the newest one seen (duplicates are
// dropped by id). An event captured earlier than that but written later (a re-run of an
// old video) reaches the dashboard only through the WebSocket.
async function pollEvents() {
  if (!baseline) return []; // else the whole history would arrive as "live" events
  const since = newest === null ? undefined : new Date(newest).toISOString();
  const { items } = await getPages("events", { since, limit: 500 }, 4);
  return items;
}

// The latest events before the live feed starts: those of the last statistics bin.
async function prefillFeed(eventStats) {
  const bins = eventStats.rows.map((r) => Date.parse(r.bin_start)).filter(Number.isFinite);
  if (!bins.length) return;
  const since = new Date(Math.max(...bins)).toISOString();
  const { items } = await getPages("events", { since, limit: 1000 }, 5);
  addEvents(items.slice(-FEED_PREFILL), false);
}

function setFeedState(state, detail) {
  const label = $("#feed-state");
  label.dataset.state = state;
  label.textContent = state;
  $("#feed-detail").textContent = detail ? `(${detail})` : "";
}

const feed = new LiveFeed({ onEvents: onLiveEvents, onState: setFeedState, poll: pollEvents });

// --- heat maps and the drive map --------------------------------------------------------

const heatmapUrls = new Map(); // video_id -> object URL, fetched once per video

function byRecency(a, b) {
  return (
    b.capture_date.localeCompare(a.capture_date) ||
    String(b.capture_start ?? "").localeCompare(String(a.capture_start ?? "")) ||
    b.video_id.localeCompare(a.video_id)
  );
}

async function refreshVideos() {
  await guarded("heatmaps", async () => {
    const videos = (await getJSON("videos")).sort(byRecency);
    await renderHeatmaps(videos);
    updateVideoChoices(videos);
  });
}

async function renderHeatmaps(videos) {
  const latest = new Map(); // source_id -> newest video with a heat map
  for (const v of videos) if (v.heatmap && !latest.has(v.source_id)) latest.set(v.source_id, v);
  const figures = await Promise.all([...latest.values()].map(heatmapFigure));
  $("#heatmap-grid").replaceChildren(...figures);
  $("#heatmaps-empty").hidden = figures.length > 0;
  for (const [videoId, url] of heatmapUrls) {
    if (![...latest.values()].some((v) => v.video_id === videoId)) {
      URL.revokeObjectURL(url);
      heatmapUrls.delete(videoId);
    }
  }
}

async function heatmapFigure(video) {
  const figure = document.createElement("figure");
  figure.className = "heatmap";
  figure.dataset.sourceId = video.source_id;
  figure.dataset.videoId = video.video_id;
  const caption = document.createElement("figcaption");
  caption.textContent = `${video.source_id} — ${video.video_id} (${video.capture_date})`;
  try {
    if (!heatmapUrls.has(video.video_id)) {
      heatmapUrls.set(video.video_id, await getObjectUrl(`heatmaps/${encodeURIComponent(video.video_id)}.png`));
    }
    const img = document.createElement("img");
    img.src = heatmapUrls.get(video.video_id);
    img.alt = `Dwell heat map of ${video.source_id}, video ${video.video_id}`;
    img.loading = "lazy";
    figure.append(img, caption);
  } catch (err) {
    const note = document.createElement("p");
    note.className = "empty";
    note.textContent = `No dwell heat map (${err.message}).`;
    figure.append(note, caption);
  }
  return figure;
}

function updateVideoChoices(videos) {
  const select = $("#map-video");
  const current = select.value;
  const choices = videos.filter((v) => v.detections || v.events);
  select.replaceChildren(
    ...choices.map((v) => {
      const option = document.createElement("option");
      option.value = v.video_id;
      option.textContent = `${v.video_id} — ${v.source_id}, ${v.capture_date}`;
      return option;
    }),
  );
  if (!choices.length) {
    renderMap($("#map-figure"), {
      detections: [],
      events: [],
      title: "Drive map",
      emptyText: "No videos with detections or events yet.",
    });
    delete $("#map-figure").dataset.videoId;
    return;
  }
  select.value = choices.some((v) => v.video_id === current) ? current : choices[0].video_id;
  if (select.value !== $("#map-figure").dataset.videoId) loadMap(select.value);
}

async function loadMap(videoId) {
  await guarded("map", async () => {
    const [dets, evs] = await Promise.all([
      getPages("detections", { video_id: videoId, limit: MAP_LIMITS.detections }, 1),
      getPages("events", { video_id: videoId, limit: MAP_LIMITS.events }, 1),
    ]);
    if ($("#map-video").value !== videoId) return; // the user picked another one meanwhile
    const partial = !dets.complete || !evs.complete ? " (first rows only)" : "";
    const figure = $("#map-figure");
    renderMap(figure, { detections: dets.items, events: evs.items, title: `${videoId}${partial}` });
    figure.dataset.videoId = videoId;
  });
}

// --- statistics -------------------------------------------------------------------------

async function refreshStats() {
  let events = null;
  await guarded("charts", async () => {
    const bin = $("#bin-minutes").value;
    const [ev, det] = await Promise.all([
      getJSON("stats", { table: "events", group_by: "rule_id", bin_minutes: bin }),
      getJSON("stats", { table: "detections", group_by: "class_name", bin_minutes: bin }),
    ]);
    renderChart($("#chart-events"), seriesFromStats(ev.rows, "rule_id"), {
      kind: "bars",
      title: "Events per rule",
      binMinutes: ev.bin_minutes,
    });
    renderChart($("#chart-detections"), seriesFromStats(det.rows, "class_name"), {
      kind: "lines",
      title: "Detections per class",
      binMinutes: det.bin_minutes,
    });
    events = ev;
  });
  return events;
}

// --- scheduling -------------------------------------------------------------------------

const pending = new Map();

// Runs `work` once after `ms`, however often it is asked for meanwhile (bursts of live
// events cost one refresh, not one per event).
function later(name, work, ms) {
  if (pending.has(name)) return;
  pending.set(
    name,
    setTimeout(() => {
      pending.delete(name);
      work();
    }, ms),
  );
}

async function loadAll() {
  await refreshHealth();
  const [, , eventStats] = await Promise.all([refreshSources(), refreshVideos(), refreshStats()]);
  if (eventStats) {
    const filled =
      $("#feed-list").children.length > 0 || (await guarded("feed", () => prefillFeed(eventStats)));
    baseline = baseline || filled;
  }
}

function wireKeyForm() {
  const input = $("#api-key");
  input.value = getKey();
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    reload();
  });
  $("#key-forget").addEventListener("click", () => {
    input.value = "";
    setKey("");
    reload();
  });
}

function reload() {
  $("#auth-banner").hidden = true;
  heatmapUrls.forEach((url) => URL.revokeObjectURL(url));
  heatmapUrls.clear();
  delete $("#map-figure").dataset.videoId;
  feed.restart();
  loadAll();
}

function main() {
  wireKeyForm();
  $("#bin-minutes").addEventListener("change", refreshStats);
  $("#map-video").addEventListener("change", (event) => loadMap(event.target.value));
  feed.start();
  loadAll().finally(() => {
    document.body.dataset.ready = "true"; // the first load finished (tests wait for it)
  });
  setInterval(refreshHealth, REFRESH_MS.health);
  setInterval(refreshSources, REFRESH_MS.sources);
  setInterval(refreshVideos, REFRESH_MS.videos);
  setInterval(refreshStats, REFRESH_MS.stats);
}

main();
