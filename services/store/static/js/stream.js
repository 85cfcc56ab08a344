// The live sidebar stream (Server-Sent Events) of one conversation, authorized by short-lived tokens.
//
// EventSource cannot send headers, so the key is exchanged for a stream token
// (POST .../stream-tokens), renewed before it expires. A stream whose
// connection is refused (an expired token gets 401) is reopened with a fresh
// token and ?last_event_id=, so no event held by the server is missed.

import { seg } from "./api.js";

const DEFAULT_TTL_MS = 5 * 60_000;

export class StreamTokens {
  constructor(client) {
    this.client = client;
    this.current = null;
    this.expiresAt = 0;
    this.pending = null;
    this.timer = null;
  }

  /** A token valid for at least a while longer. */
  async token() {
    if (this.current === null || performance.now() > this.expiresAt - 30_000) await this.renew();
    return this.current;
  }

  renew() {
    this.pending ??= this.client
      .post("/stream-tokens")
      .then(({ token, expires_at }) => {
        // Trust the server's lifetime, not its clock: a skewed browser clock would misplace expires_at.
        let ttl = Date.parse(expires_at) - Date.now();
        if (!(ttl > 0 && ttl <= 3_600_000)) ttl = DEFAULT_TTL_MS;
        this.current = token;
        this.expiresAt = performance.now() + ttl;
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.renew().catch(() => {}), ttl * 0.8);
      })
      .finally(() => {
        this.pending = null;
      });
    return this.pending;
  }

  stop() {
    clearTimeout(this.timer);
  }
}

export class ConversationStream {
  /** handlers: {widget(body), sidebar(body), state("connecting"|"live"|"reconnecting")} */
  constructor(client, tokens, conversationId, handlers) {
    this.client = client;
    this.tokens = tokens;
    this.conversationId = conversationId;
    this.handlers = handlers;
    this.source = null;
    this.lastEventId = null;
    this.closed = false;
    this.retryMs = 500;
  }

  /** Connect; resolves once the stream is open (or after `waitMs`, so a slow stream never blocks the caller). */
  start(waitMs = 2000) {
    return new Promise((resolve) => {
      this.onFirstOpen = resolve;
      setTimeout(resolve, waitMs);
      this.connect().catch(() => this.scheduleReconnect());
    });
  }

  async connect() {
    this.handlers.state?.("connecting");
    const token = await this.tokens.token();
    if (this.closed) return;
    const params = new URLSearchParams({ conversation_id: this.conversationId, token });
    if (this.lastEventId) params.set("last_event_id", this.lastEventId);
    const source = new EventSource(`/v1/businesses/${seg(this.client.businessId)}/stream?${params}`);
    this.source = source;
    source.addEventListener("open", () => {
      this.retryMs = 500;
      this.handlers.state?.("live");
      this.onFirstOpen?.();
    });
    source.addEventListener("widget", (event) => this.deliver(event, this.handlers.widget));
    source.addEventListener("sidebar", (event) => this.deliver(event, this.handlers.sidebar));
    source.addEventListener("error", () => {
      if (this.closed || source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (an expired token, a restart): reconnect ourselves with a fresh token.
        this.scheduleReconnect(true);
      } else {
        this.handlers.state?.("reconnecting"); // the browser retries on its own, sending Last-Event-ID
      }
    });
  }

  deliver(event, handler) {
    if (event.lastEventId) this.lastEventId = event.lastEventId;
    let body;
    try {
      body = JSON.parse(event.data);
    } catch {
      return;
    }
    handler?.(body);
  }

  scheduleReconnect(renewToken = false) {
    if (this.closed) return;
    this.source?.close();
    this.handlers.state?.("reconnecting");
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 10_000);
    setTimeout(async () => {
      if (this.closed) return;
      try {
        if (renewToken) await this.tokens.renew();
        await this.connect();
      } catch {
        this.scheduleReconnect(renewToken);
      }
    }, delay);
  }

  close() {
    this.closed = true;
    this.source?.close();
  }
}
