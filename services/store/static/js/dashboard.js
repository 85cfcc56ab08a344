// The widget dashboard: list, create, edit, activate/deactivate, reorder and delete widgets, and test them.

import { seg } from "./api.js";
import { clear, h } from "./dom.js";
import { CodeEditor } from "./editor.js";
import { signIn } from "./session.js";
import { TestPanel } from "./testpanel.js";

const NEW_WIDGET_CODE = `import requests

def get_sidebar_data(context):
    customer = context["customer"]

    if not customer or not customer.get("email"):
        return {"title": "My widget", "items": []}

    return {
        "title": "My widget",
        "items": [
            {
                "title": customer.get("name") or customer["email"],
                "subtitle": customer["email"],
                "badge": {"text": "Customer", "color": "blue"},
                "sections": [
                    {"title": "Details", "fields": {"Email": customer["email"]}},
                ],
            },
        ],
    }
`;

signIn(({ client, business }) => {
  document.getElementById("whoami").textContent = `${business.name} (${business.business_id})`;
  new Dashboard(client).start();
});

class Dashboard {
  constructor(client) {
    this.client = client;
    this.widgets = [];
    this.editing = null; // the saved widget in the editor; null for a new one
    this.chosen = false; // the user opened a widget or started a new one
    this.listEl = document.getElementById("widget-list");
    this.form = document.getElementById("widget-form");
    this.statusEl = document.getElementById("save-status");
    this.editor = new CodeEditor(this.form.elements.code);
    this.tests = new TestPanel(client, this.editor, () => this.editing);
  }

  async start() {
    document.getElementById("new-widget").addEventListener("click", () => {
      this.chosen = true;
      if (this.confirmDiscard()) this.edit(null);
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    document.getElementById("delete-widget").addEventListener("click", () => this.remove());
    this.listEl.addEventListener("click", (event) => this.onListClick(event));
    this.listEl.addEventListener("change", (event) => {
      if (event.target.matches("input[data-active]")) this.setActive(event.target.dataset.active, event.target.checked);
    });
    await this.reload();
    // Open the first widget, unless the user already picked one or started a new one meanwhile.
    if (!this.chosen) this.edit(this.widgets[0] ?? null);
  }

  async reload() {
    try {
      this.widgets = await this.client.get("/widgets");
    } catch (exc) {
      this.setStatus(`Could not load the widgets: ${exc.message}`, true);
      return;
    }
    if (this.editing) this.editing = this.widgets.find((w) => w.widget_id === this.editing.widget_id) ?? null;
    this.renderList();
  }

  renderList() {
    clear(this.listEl);
    if (this.widgets.length === 0) this.listEl.append(h("li", { class: "empty" }, "No widgets yet."));
    this.widgets.forEach((widget, index) => {
      const id = widget.widget_id;
      this.listEl.append(
        h(
          "li",
          { class: "widget-row", "data-widget-id": id, "aria-current": id === this.editing?.widget_id ? "true" : null },
          h("button", { type: "button", class: "widget-open", "data-open": id },
            h("span", { class: "widget-name" }, widget.name),
            h("span", { class: "widget-meta" }, `${id} · position ${widget.position}`),
          ),
          h("label", { class: "switch", title: widget.active ? "Active" : "Inactive" },
            h("input", { type: "checkbox", "data-active": id, checked: widget.active, "aria-label": `${widget.name} active` }),
            h("span", {}, widget.active ? "On" : "Off"),
          ),
          h("span", { class: "order-buttons" },
            h("button", { type: "button", class: "icon-button", "data-move": id, "data-by": "-1", disabled: index === 0, "aria-label": `Move ${widget.name} up` }, "↑"),
            h("button", { type: "button", class: "icon-button", "data-move": id, "data-by": "1", disabled: index === this.widgets.length - 1, "aria-label": `Move ${widget.name} down` }, "↓"),
          ),
        ),
      );
    });
  }

  onListClick(event) {
    const open = event.target.closest("[data-open]");
    if (open) this.chosen = true;
    if (open && this.confirmDiscard()) this.edit(this.widgets.find((w) => w.widget_id === open.dataset.open));
    const move = event.target.closest("[data-move]");
    if (move) this.move(move.dataset.move, Number(move.dataset.by));
  }

  edit(widget) {
    this.editing = widget;
    const fields = this.form.elements;
    fields.name.value = widget?.name ?? "";
    fields.widget_id.value = widget?.widget_id ?? "";
    fields.widget_id.readOnly = widget !== null;
    fields.timeout_s.value = widget?.timeout_s ?? 10;
    fields.active.checked = widget?.active ?? true;
    this.editor.value = widget?.code ?? NEW_WIDGET_CODE;
    document.getElementById("editor-title").textContent = widget ? `Edit ${widget.name}` : "New widget";
    document.getElementById("delete-widget").hidden = widget === null;
    this.setStatus("");
    this.renderList();
  }

  get dirty() {
    const fields = this.form.elements;
    if (this.editing === null) return this.editor.value !== NEW_WIDGET_CODE || fields.name.value !== "";
    return this.editor.value !== this.editing.code || fields.name.value !== this.editing.name;
  }

  confirmDiscard() {
    return !this.dirty || confirm("Discard your unsaved changes?");
  }

  async save() {
    const fields = this.form.elements;
    const body = {
      name: fields.name.value.trim(),
      code: this.editor.value,
      active: fields.active.checked,
      timeout_s: Number(fields.timeout_s.value),
    };
    this.setStatus("Saving…");
    try {
      if (this.editing) {
        this.editing = await this.client.patch(`/widgets/${seg(this.editing.widget_id)}`, body);
      } else {
        const last = this.widgets.at(-1);
        const widgetId = fields.widget_id.value.trim();
        this.editing = await this.client.post("/widgets", {
          ...body,
          ...(widgetId ? { widget_id: widgetId } : {}),
          position: last ? last.position + 10 : 10,
        });
      }
    } catch (exc) {
      const line = exc.body?.line;
      this.setStatus(line ? `Line ${line}: ${exc.message}` : exc.message, true);
      if (line) this.editor.goToLine(line);
      return;
    }
    this.setStatus(`Saved ${new Date().toLocaleTimeString()}`);
    await this.reload();
    this.edit(this.editing);
    this.setStatus(`Saved ${new Date().toLocaleTimeString()}`);
  }

  async setActive(widgetId, active) {
    try {
      await this.client.patch(`/widgets/${seg(widgetId)}`, { active });
    } catch (exc) {
      this.setStatus(exc.message, true);
    }
    await this.reload();
    if (this.editing?.widget_id === widgetId) this.form.elements.active.checked = this.editing.active;
  }

  /** Move a widget one place up or down, renumbering positions 10, 20, 30… where they change. */
  async move(widgetId, by) {
    const order = [...this.widgets];
    const from = order.findIndex((w) => w.widget_id === widgetId);
    const to = from + by;
    if (from < 0 || to < 0 || to >= order.length) return;
    [order[from], order[to]] = [order[to], order[from]];
    const changes = order
      .map((widget, index) => [widget, (index + 1) * 10])
      .filter(([widget, position]) => widget.position !== position);
    try {
      await Promise.all(changes.map(([w, position]) => this.client.patch(`/widgets/${seg(w.widget_id)}`, { position })));
    } catch (exc) {
      this.setStatus(`Could not reorder: ${exc.message}`, true);
    }
    await this.reload();
  }

  async remove() {
    const widget = this.editing;
    if (!widget || !confirm(`Delete the widget "${widget.name}"? This cannot be undone.`)) return;
    try {
      await this.client.del(`/widgets/${seg(widget.widget_id)}`);
    } catch (exc) {
      this.setStatus(exc.message, true);
      return;
    }
    this.editing = null;
    await this.reload();
    this.edit(this.widgets[0] ?? null);
  }

  setStatus(text, isError = false) {
    this.statusEl.textContent = text;
    this.statusEl.classList.toggle("error", isError);
  }
}
