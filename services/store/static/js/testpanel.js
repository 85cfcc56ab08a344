// The dashboard's test panel: Run Test against a conversation (id or public id) and show
// the rendered card, the raw JSON, the logs, the duration and any validation error with its path.

import { ApiError, seg } from "./api.js";
import { clear, h } from "./dom.js";
import { renderCard } from "./render.js";

const FORMAT_ERROR_PREFIX = "return value does not match the format: ";

export class TestPanel {
  constructor(client, editor, getWidget) {
    this.client = client;
    this.editor = editor;
    this.getWidget = getWidget; // () => the saved widget being edited, or null
    this.form = document.getElementById("test-form");
    this.resultEl = document.getElementById("test-result");
    this.form.elements.business.value = client.businessId;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
    this.suggestConversations();
  }

  async suggestConversations() {
    const list = document.getElementById("conversation-options");
    try {
      for (const c of await this.client.get("/conversations?limit=50")) {
        list.append(h("option", { value: c.conversation_id }, c.subject ?? ""));
      }
    } catch {
      // Suggestions only.
    }
  }

  async run() {
    const widget = this.getWidget();
    const target = this.form.elements.conversation.value.trim().replace(/^#/, "");
    if (!widget) return this.showMessage("Save the widget first, then run a test.");
    if (!target) return this.showMessage("Enter a conversation ID or a public ID.");
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    this.showMessage("Running…");
    const unsaved = this.editor.value !== widget.code;
    const path = `/widgets/${seg(widget.widget_id)}/test`;
    const extra = unsaved ? { code: this.editor.value } : {};
    try {
      let result;
      try {
        result = await this.client.post(path, { conversation_id: target, ...extra });
      } catch (exc) {
        // Not a conversation id: the docs let the user paste a public id into the same box.
        if (!(exc instanceof ApiError && exc.status === 404 && /^conversation /.test(exc.detail))) throw exc;
        result = await this.client.post(path, { public_id: target, ...extra });
      }
      this.showResult(widget, result, unsaved);
    } catch (exc) {
      const line = exc.body?.line ? ` (line ${exc.body.line})` : "";
      this.showMessage(`Test failed: ${exc.message}${line}`, true);
      if (exc.body?.line) this.editor.goToLine(exc.body.line);
    } finally {
      button.disabled = false;
    }
  }

  showMessage(text, isError = false) {
    clear(this.resultEl).append(h("p", { class: isError ? "error test-message" : "muted test-message" }, text));
  }

  showResult(widget, result, unsaved) {
    const validation = result.error?.type === "invalid_return" ? parseFormatError(result.error.message) : null;
    clear(this.resultEl).append(
      h(
        "p",
        { class: "test-summary" },
        h("span", { class: `status status-${result.status}`, "data-status": result.status }, result.status),
        h("span", { class: "duration" }, `${result.duration_ms} ms`),
        unsaved && h("span", { class: "muted" }, "unsaved code"),
      ),
      validation &&
        h(
          "div",
          { class: "validation-error", role: "alert" },
          h("strong", {}, "Validation error"),
          h(
            "ul",
            {},
            validation.map(([path, message]) => h("li", {}, h("code", { class: "error-path" }, path), " ", message)),
          ),
        ),
      h("h3", { class: "test-heading" }, "Card"),
      h("div", { class: "test-card" }, renderCard({ widget_id: widget.widget_id, name: widget.name, ...result })),
      h("h3", { class: "test-heading" }, "Raw JSON"),
      h("pre", { class: "code-block raw-json" }, JSON.stringify(result.data, null, 2)),
      h("h3", { class: "test-heading" }, "Logs", result.logs_truncated && h("span", { class: "muted" }, " (truncated)")),
      h("pre", { class: "code-block logs" }, result.logs || "(no output)"),
    );
  }
}

/** "return value does not match the format: a.b: msg; c: msg" -> [["a.b", "msg"], ["c", "msg"]]. */
export function parseFormatError(message) {
  const body = message.startsWith(FORMAT_ERROR_PREFIX) ? message.slice(FORMAT_ERROR_PREFIX.length) : message;
  return body.split("; ").map((part) => {
    const at = part.indexOf(": ");
    return at === -1 ? ["(root)", part] : [part.slice(0, at), part.slice(at + 2)];
  });
}
