// The sidebar renderer, shared by the agent console and the dashboard's test panel.
//
// It renders the widget return format (title, items, subtitle, link, badge,
// actions, collapsible, sections, fields) exactly, as text only: every string
// from a widget goes through text nodes, and only absolute http(s) links
// become hrefs (others stay plain, inert text).

import { h, safeHref } from "./dom.js";

const BADGE_COLORS = new Set(["blue", "green", "red", "yellow", "gray"]);
let nextId = 0;

/** A card still waiting for its widget: the title and a shimmering placeholder. */
export function renderSkeleton(widget) {
  return h(
    "section",
    { class: "card card-pending", "data-widget-id": widget.widget_id, "data-status": "pending", "aria-busy": "true" },
    h("header", { class: "card-head" }, h("h3", { class: "card-title" }, widget.name), h("span", { class: "spinner" })),
    h("div", { class: "card-body" }, h("div", { class: "skeleton-line" }), h("div", { class: "skeleton-line short" })),
  );
}

/**
 * One widget's card from a sidebar widget ({widget_id, name, status, duration_ms, data, error}):
 * its items when ok, an error or timeout state that keeps the title otherwise.
 */
export function renderCard(widget) {
  const title = widget.data?.title || widget.name;
  const meta = Number.isFinite(widget.duration_ms) ? `${widget.duration_ms} ms` : null;
  const card = h(
    "section",
    { class: `card card-${widget.status}`, "data-widget-id": widget.widget_id, "data-status": widget.status },
    h("header", { class: "card-head" }, h("h3", { class: "card-title" }, title), meta && h("span", { class: "card-meta" }, meta)),
  );
  const body = h("div", { class: "card-body" });
  if (widget.status === "ok") {
    body.append(...renderItems(widget.data?.items ?? []));
  } else {
    body.append(renderProblem(widget.status, widget.error));
  }
  card.append(body);
  return card;
}

function renderProblem(status, error) {
  const label = status === "timeout" ? "Timed out" : status === "expired" ? "Not run (too late)" : "Failed";
  return h(
    "div",
    { class: "card-problem", role: "alert" },
    h("strong", {}, label),
    error && h("span", { class: "problem-type" }, error.type),
    error && h("p", { class: "problem-message" }, error.message),
  );
}

export function renderItems(items) {
  if (items.length === 0) return [h("p", { class: "empty" }, "Nothing to show.")];
  return items.map(renderItem);
}

function renderItem(item) {
  const collapsible = item.collapsible !== false;
  const bodyId = `item-${++nextId}`;
  const body = h(
    "div",
    { class: "item-body", id: bodyId },
    (item.sections ?? []).map(renderSection),
    item.actions?.length > 0 && h("div", { class: "actions" }, item.actions.map(renderAction)),
  );
  const heading = h(
    "div",
    { class: "item-heading" },
    h("div", { class: "item-title-row" }, renderTitle(item.title, item.link), item.badge && renderBadge(item.badge)),
    item.subtitle != null && h("div", { class: "item-subtitle" }, item.subtitle),
  );
  const head = h("div", { class: "item-head" }, collapsible && toggleButton(body, item.title), heading);
  return h("article", { class: "item", "data-collapsible": collapsible ? "true" : "false" }, head, body);
}

function renderTitle(text, link) {
  const href = safeHref(link);
  if (href === null) return h("span", { class: "item-title" }, text);
  return h("a", { class: "item-title", href, target: "_blank", rel: "noopener noreferrer" }, text);
}

function renderBadge(badge) {
  const color = BADGE_COLORS.has(badge.color) ? badge.color : "gray";
  return h("span", { class: `badge badge-${color}`, "data-color": color }, badge.text);
}

function renderAction(action) {
  const href = safeHref(action.link);
  if (href === null) return h("button", { class: "action", type: "button", disabled: true, title: "No http(s) link" }, action.label);
  return h("a", { class: "action", href, target: "_blank", rel: "noopener noreferrer", role: "button" }, action.label);
}

function renderSection(section) {
  const fields = h(
    "dl",
    { class: "fields", id: `section-${++nextId}` },
    Object.entries(section.fields ?? {}).map(([key, value]) =>
      h("div", { class: "field" }, h("dt", {}, key), h("dd", {}, formatValue(value))),
    ),
  );
  const title = h("h4", { class: "section-title" }, section.title);
  const head = section.collapsible === true
    ? h("div", { class: "section-head" }, toggleButton(fields, section.title), title)
    : h("div", { class: "section-head" }, title);
  return h("div", { class: "section", "data-collapsible": section.collapsible === true ? "true" : "false" }, head, fields);
}

function formatValue(value) {
  if (value === null || value === undefined) return "—";
  return String(value);
}

/** A chevron button that shows or hides `target`; expanded to start with. */
function toggleButton(target, label) {
  const button = h("button", {
    class: "toggle",
    type: "button",
    "aria-expanded": "true",
    "aria-controls": target.id,
    "aria-label": `Collapse ${label}`,
  });
  button.addEventListener("click", () => {
    const expand = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(expand));
    button.setAttribute("aria-label", `${expand ? "Collapse" : "Expand"} ${label}`);
    target.hidden = !expand;
  });
  return button;
}
