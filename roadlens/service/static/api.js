// The REST API client: every request carries the API key stored in localStorage.

const KEY_STORAGE = "roadlens.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }

  // 401 (no or unknown key) and 403 (scope too low, or open mode from afar) mean
  // "fix the key", not "the server is broken".
  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled (private mode): work without a stored key
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lasts until the page is closed */
  }
}

// URLs are relative to the page, so the dashboard also works behind a path prefix.
export function apiUrl(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of [].concat(value)) url.searchParams.append(name, item);
  }
  return url;
}

// Browsers cannot set headers on a WebSocket: the service takes the key as ?api_key=.
export function wsUrl(params = {}) {
  const url = apiUrl("ws", { ...params, api_key: getKey() || undefined });
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

async function request(path, params) {
  const key = getKey();
  const response = await fetch(apiUrl(path, params), {
    headers: key ? { "X-API-Key": key } : {},
    cache: "no-store",
  });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch {
      /* not JSON: keep the status text */
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

export async function getJSON(path, params) {
  return (await request(path, params)).json();
}

// Images need the key header too, so they are fetched and shown through an object URL.
export async function getObjectUrl(path, params) {
  const blob = await (await request(path, params)).blob();
  return URL.createObjectURL(blob);
}

// Follows next_cursor of a paged endpoint (/events, /detections) up to maxPages pages.
export async function getPages(path, params, maxPages = 5) {
  const items = [];
  let cursor;
  for (let page = 0; page < maxPages; page += 1) {
    const body = await getJSON(path, { ...params, cursor });
    items.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) return { items, complete: true };
  }
  return { items, complete: false };
}
