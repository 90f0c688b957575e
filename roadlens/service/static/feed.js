// The live event feed: the /ws WebSocket, reconnected with exponential backoff; while
// the socket keeps failing, /events is polled instead, until the socket is back.

import { wsUrl } from "./api.js";

export class LiveFeed {
  /**
   * @param {object} options
   * @param {(rows: object[], via: string) => void} options.onEvents  new event rows
   * @param {(state: string, detail: string) => void} options.onState
   *   "connecting" | "live" | "reconnecting" | "polling" | "stopped"
   * @param {() => Promise<object[]>} options.poll  fetches events newer than those seen
   */
  constructor({ onEvents, onState, poll, pollMs = 3000, failuresBeforePolling = 2,
                minDelayMs = 1000, maxDelayMs = 30000 }) {
    Object.assign(this, { onEvents, onState, poll, pollMs, failuresBeforePolling,
                          minDelayMs, maxDelayMs });
    this.ws = null;
    this.failures = 0; // consecutive closes without a subscription in between
    this.retryTimer = null;
    this.pollTimer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.failures = 0;
    this.onState("connecting", "opening the WebSocket");
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stopPolling();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null; // its close handler sees it is no longer current and does nothing
      ws.close(1000, "dashboard stopped");
    }
    this.onState("stopped", "");
  }

  restart() {
    this.stop();
    this.start();
  }

  open() {
    let ws;
    try {
      ws = new WebSocket(wsUrl({ tables: "events" }));
    } catch (err) {
      this.closed(null, false, String(err));
      return;
    }
    this.ws = ws;
    let subscribed = false;
    ws.onmessage = (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      if (data.type === "subscribed") {
        subscribed = true;
        this.failures = 0;
        this.onState("live", "WebSocket");
        // Polled while the socket was down: one last look covers the switch-over.
        if (this.pollTimer !== null) {
          this.stopPolling();
          this.pollOnce();
        }
      } else if (data.type === "events" && Array.isArray(data.rows)) {
        this.onEvents(data.rows, "websocket");
      } else if (data.type === "error") {
        console.warn("live feed:", data.detail);
      }
    };
    ws.onclose = (event) => this.closed(ws, subscribed, event.reason || `code ${event.code}`);
  }

  closed(ws, subscribed, reason) {
    if (this.stopped || ws !== this.ws) return;
    this.ws = null;
    this.failures = subscribed ? 1 : this.failures + 1;
    // Full jitter keeps many dashboards from reconnecting in lockstep after a restart.
    const ceiling = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** (this.failures - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    if (this.failures >= this.failuresBeforePolling) this.startPolling(reason);
    else this.onState("reconnecting", `${reason}; retrying in ${Math.round(delay / 1000)} s`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.stopped || this.open(), delay);
  }

  startPolling(reason) {
    this.onState("polling", `WebSocket unavailable (${reason}); polling /events`);
    if (this.pollTimer !== null) return;
    this.pollTimer = setInterval(() => this.pollOnce(), this.pollMs);
    this.pollOnce();
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  async pollOnce() {
    try {
      const rows = await this.poll();
      if (rows.length) this.onEvents(rows, "poll");
    } catch (err) {
      console.warn("live feed: polling failed:", err);
    }
  }
}
