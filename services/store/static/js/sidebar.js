// The live sidebar of one opening ("trigger"): skeletons first, each card filled as its
// `widget` event arrives, then replaced by the authoritative `sidebar` event.
// Records click -> first card painted and click -> complete sidebar painted.

import { afterPaint, clear, h } from "./dom.js";
import { renderCard, renderSkeleton } from "./render.js";

export const timings = (window.sidebarTimings ??= []);

export class LiveSidebar {
  constructor(cardsEl, statusEl, timingsEl) {
    this.cardsEl = cardsEl;
    this.statusEl = statusEl;
    this.timingsEl = timingsEl;
    this.run = null;
  }

  /**
   * A new opening of `conversationId`, clicked at `clickedAt`; `widgets` are the expected cards in order.
   * Returns the run, which setTrigger and fail take, so a late answer never lands on a newer run.
   */
  begin(conversationId, widgets, clickedAt) {
    this.run = {
      conversationId,
      clickedAt,
      trigger: null,
      buffered: [],
      cards: new Map(),
      complete: false,
      final: false,
      firstCardMs: null,
      timing: null,
    };
    clear(this.cardsEl);
    for (const widget of widgets) this.place(widget, renderSkeleton(widget));
    if (widgets.length === 0) this.cardsEl.append(h("p", { class: "empty" }, "Waiting for the sidebar…"));
    this.setStatus("Running widgets…");
    return this.run;
  }

  /** The opening's event id is known: apply what arrived for it meanwhile. */
  setTrigger(run, eventId) {
    if (run !== this.run) return;
    run.trigger = eventId;
    run.triggeredAt = performance.now();
    for (const [kind, body] of run.buffered.splice(0)) this.receive(kind, body);
  }

  /** The opening failed: show why, and accept whatever sidebar the stream has. */
  fail(run, message) {
    if (run !== this.run) return;
    run.trigger = "*";
    this.setStatus(message, true);
    for (const [kind, body] of run.buffered.splice(0)) this.receive(kind, body);
  }

  get pendingSince() {
    const run = this.run;
    return run && !run.complete && run.trigger && run.trigger !== "*" ? run.triggeredAt : null;
  }

  receive(kind, body) {
    const run = this.run;
    if (run === null || body.conversation_id !== run.conversationId) return;
    if (run.trigger === null) {
      run.buffered.push([kind, body]);
      return;
    }
    if (run.trigger !== "*" && body.trigger_event_id !== run.trigger) return;
    if (kind === "widget") {
      if (!run.final) this.fill(body.widget);
    } else {
      this.replaceAll(body);
    }
  }

  fill(widget) {
    this.cardsEl.querySelector(":scope > .empty")?.remove();
    this.place(widget, renderCard(widget));
    this.painted();
  }

  replaceAll(sidebar) {
    const run = this.run;
    clear(this.cardsEl);
    run.cards.clear();
    for (const widget of sidebar.widgets) this.place(widget, renderCard(widget));
    if (sidebar.widgets.length === 0) this.cardsEl.append(h("p", { class: "empty" }, "No active widgets."));
    run.final = true;
    this.painted();
  }

  /** Put `node` in the card slot of `widget`, keeping position order. */
  place(widget, node) {
    const cards = this.run.cards;
    const existing = cards.get(widget.widget_id);
    node.dataset.position = String(widget.position ?? 0);
    if (existing) {
      existing.replaceWith(node);
    } else {
      const after = [...cards.values()].find((card) => Number(card.dataset.position) > (widget.position ?? 0));
      this.cardsEl.insertBefore(node, after ?? null);
    }
    cards.set(widget.widget_id, node);
  }

  painted() {
    const run = this.run;
    const allFilled = run.final || ![...run.cards.values()].some((card) => card.dataset.status === "pending");
    if (allFilled) run.complete = true;
    const hasCard = run.cards.size > 0;
    afterPaint().then(() => {
      const elapsed = Math.round(performance.now() - run.clickedAt);
      if (hasCard && run.firstCardMs === null) run.firstCardMs = elapsed;
      if (allFilled && run.timing === null) {
        run.timing = { conversation_id: run.conversationId, first_card_ms: run.firstCardMs, complete_ms: elapsed };
        timings.push(run.timing);
        if (run.trigger !== "*") this.setStatus(`Complete · ${new Date().toLocaleTimeString()}`);
      }
      this.showTimings(run);
    });
  }

  showTimings(run) {
    if (run !== this.run) return;
    const parts = [];
    if (run.firstCardMs !== null) parts.push(`first card ${run.firstCardMs} ms`);
    if (run.timing) parts.push(`complete ${run.timing.complete_ms} ms`);
    this.timingsEl.textContent = parts.length ? `Click → ${parts.join(" · ")}` : "";
  }

  setStatus(text, isError = false) {
    this.statusEl.textContent = text;
    this.statusEl.classList.toggle("error", isError);
  }
}
