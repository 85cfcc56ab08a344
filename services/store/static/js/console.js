// The agent console: conversations, the opened conversation with its messages, and its live sidebar.

import { seg } from "./api.js";
import { clear, h, safeHref } from "./dom.js";
import { signIn } from "./session.js";
import { LiveSidebar } from "./sidebar.js";
import { ConversationStream, StreamTokens } from "./stream.js";

const POLL_MS = 3000;
const SIDEBAR_FALLBACK_MS = 3000;

signIn(({ client, business }) => {
  document.getElementById("whoami").textContent = `${business.name} (${business.business_id})`;
  new Console(client).start();
});

class Console {
  constructor(client) {
    this.client = client;
    this.tokens = new StreamTokens(client);
    this.listEl = document.getElementById("conversation-list");
    this.viewEl = document.getElementById("conversation");
    this.refreshEl = document.getElementById("refresh");
    this.sidebar = new LiveSidebar(
      document.getElementById("cards"),
      document.getElementById("sidebar-status"),
      document.getElementById("timings"),
    );
    this.widgets = [];
    this.listed = "";
    this.current = null; // {conversationId, stream}
  }

  async start() {
    this.refreshEl.addEventListener("click", () => this.openSidebar(performance.now()));
    this.listEl.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-conversation-id]");
      if (button) this.select(button.dataset.conversationId, performance.now());
    });
    // Warm what a click needs before showing anything to click, so a click costs only the opening itself.
    await Promise.allSettled([this.loadWidgets(), this.tokens.token()]);
    await this.poll();
    setInterval(() => this.poll(), POLL_MS);
    setInterval(() => this.fallbackSidebar(), 1000);
  }

  async loadWidgets() {
    const widgets = await this.client.get("/widgets");
    this.widgets = widgets.filter((w) => w.active).map(({ widget_id, name, position }) => ({ widget_id, name, position }));
  }

  async poll() {
    try {
      const conversations = await this.client.get("/conversations");
      const serialized = JSON.stringify(conversations);
      if (serialized !== this.listed) {
        this.listed = serialized;
        this.renderList(conversations);
      }
      if (this.current) await this.loadMessages(this.current.conversationId);
    } catch (exc) {
      document.getElementById("list-status").textContent = `Could not refresh: ${exc.message}`;
      return;
    }
    document.getElementById("list-status").textContent = "";
  }

  renderList(conversations) {
    clear(this.listEl);
    if (conversations.length === 0) this.listEl.append(h("li", { class: "empty" }, "No conversations yet."));
    for (const c of conversations) {
      const selected = c.conversation_id === this.current?.conversationId;
      this.listEl.append(
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "conversation-row", "data-conversation-id": c.conversation_id, "aria-current": selected ? "true" : null },
            h("span", { class: "row-subject" }, c.subject || "(no subject)"),
            h("span", { class: "row-meta" }, `${c.channel ?? "—"} · ${c.conversation_id}`),
            h("time", { class: "row-time", datetime: c.updated_at }, shortTime(c.updated_at)),
          ),
        ),
      );
    }
  }

  /** The agent's click: show the conversation and open it (the sidebar starts now). */
  select(conversationId, clickedAt) {
    if (this.current?.conversationId !== conversationId) {
      this.current?.stream.close();
      const stream = new ConversationStream(this.client, this.tokens, conversationId, {
        widget: (body) => this.sidebar.receive("widget", body),
        sidebar: (body) => this.sidebar.receive("sidebar", body),
        state: (state) => (document.getElementById("stream-state").textContent = state === "live" ? "● live" : `○ ${state}`),
      });
      this.current = { conversationId, stream, opened: stream.start() };
      for (const row of this.listEl.querySelectorAll("button[data-conversation-id]")) {
        if (row.dataset.conversationId === conversationId) row.setAttribute("aria-current", "true");
        else row.removeAttribute("aria-current");
      }
      this.showConversation(conversationId);
    }
    this.openSidebar(clickedAt);
  }

  async openSidebar(clickedAt) {
    const { conversationId, opened } = this.current;
    this.refreshEl.disabled = false;
    const run = this.sidebar.begin(conversationId, this.widgets, clickedAt);
    this.loadWidgets().catch(() => {}); // for the next click
    await opened; // subscribed before the opening is published, so no card is missed
    if (run !== this.sidebar.run) return;
    try {
      const { event_id } = await this.client.post(`/conversations/${seg(conversationId)}/open`, {});
      this.sidebar.setTrigger(run, event_id);
    } catch (exc) {
      this.sidebar.fail(run, `Could not open the conversation: ${exc.message}`);
    }
  }

  /** If the stream missed the outcome (it was down), read the stored sidebar instead. */
  async fallbackSidebar() {
    const since = this.sidebar.pendingSince;
    if (since === null || performance.now() - since < SIDEBAR_FALLBACK_MS || this.fallbackBusy) return;
    this.fallbackBusy = true;
    try {
      const sidebar = await this.client.get(`/conversations/${seg(this.current.conversationId)}/sidebar`);
      this.sidebar.receive("sidebar", sidebar);
    } catch {
      // No sidebar yet: keep waiting for the stream.
    } finally {
      this.fallbackBusy = false;
    }
  }

  async showConversation(conversationId) {
    clear(this.viewEl).append(h("p", { class: "placeholder" }, "Loading…"));
    try {
      const conversation = await this.client.get(`/conversations/${seg(conversationId)}`);
      const customer = conversation.customer_id
        ? await this.client.get(`/customers/${seg(conversation.customer_id)}`).catch(() => null)
        : null;
      if (this.current?.conversationId !== conversationId) return;
      clear(this.viewEl).append(
        h(
          "header",
          { class: "conversation-head" },
          h("h2", {}, conversation.subject || "(no subject)"),
          h(
            "p",
            { class: "conversation-meta" },
            h("span", { class: "pill" }, conversation.channel ?? "no channel"),
            " ",
            customer ? `${customer.name ?? customer.customer_id} <${customer.email ?? "no email"}>` : "Unknown customer",
            ` · ${conversation.conversation_id}`,
            conversation.public_id ? ` · #${conversation.public_id}` : "",
          ),
        ),
        h("ol", { class: "messages", id: "messages" }),
      );
      this.shownMessages = "";
      await this.loadMessages(conversationId);
    } catch (exc) {
      clear(this.viewEl).append(h("p", { class: "error" }, `Could not load the conversation: ${exc.message}`));
    }
  }

  async loadMessages(conversationId) {
    const list = document.getElementById("messages");
    if (!list) return;
    let messages;
    try {
      messages = await this.client.get(`/conversations/${seg(conversationId)}/messages`);
    } catch (exc) {
      messages = null;
      if (exc.status !== 404) throw exc;
    }
    if (this.current?.conversationId !== conversationId) return;
    const serialized = JSON.stringify(messages);
    if (serialized === this.shownMessages) return;
    this.shownMessages = serialized;
    clear(list);
    if (!messages?.length) list.append(h("li", { class: "empty" }, "No messages."));
    for (const m of messages ?? []) list.append(renderMessage(m));
  }
}

function renderMessage(message) {
  const image = safeHref(message.image_url);
  return h(
    "li",
    { class: `message message-${message.author}` },
    h("div", { class: "message-author" }, message.author === "agent" ? "Agent" : "Customer", " · ", shortTime(message.created_at)),
    h("p", { class: "message-content" }, message.content),
    image && h("a", { href: image, target: "_blank", rel: "noopener noreferrer" }, h("img", { class: "message-image", src: image, alt: "Image sent by the customer" })),
  );
}

function shortTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : date.toLocaleDateString();
}
