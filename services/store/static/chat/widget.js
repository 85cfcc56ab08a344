/*
 * The embeddable customer chat widget: a launcher button and a chat panel in a Shadow DOM.
 *
 * Embed (the API origin is this script's own origin):
 *
 *   <script src="https://STORE/chat/widget.js" data-business="acme" async></script>
 *
 * Open it from your own code (see "Control Widget With Code"):
 *
 *   document.dispatchEvent(new CustomEvent("openChatEvent", {
 *     detail: {type: "OPEN_OCTOCOM", message: {content: "Hello", imageUrl: "https://..."}},
 *   }));
 *
 * Events dispatched before this script has loaded are kept by this one-line snippet,
 * placed before the tag above; the widget drains it when it loads:
 *
 *   <script>(function(d){var q=d.__ocq=d.__ocq||[];d.addEventListener("openChatEvent",function(e){if(q.push&&d.__ocq===q)q.push(e.detail)})})(document)</script>
 *
 * The widget defines no globals. Its only trace outside its shadow root is the
 * <octocom-chat> element and `document.__ocq`, which it replaces with a frozen
 * marker once loaded, so the snippet stops queueing and a second copy of the
 * script does nothing.
 */
(() => {
  "use strict";

  const QUEUE = "__ocq";
  const EVENT = "openChatEvent";
  const TYPE = "OPEN_OCTOCOM";
  const POLL_MS = 4000;
  const warn = (text) => console.warn(`[octocom chat] ${text}`);
  const STYLES = `
    :host { all: initial; }
    * { box-sizing: border-box; }
    [hidden] { display: none !important; }
    .root {
      position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
      display: flex; flex-direction: column; align-items: flex-end; gap: 12px;
      font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
      color: #1d2330; text-align: left; letter-spacing: normal;
    }
    .launcher {
      width: 56px; height: 56px; border-radius: 50%; border: 0; cursor: pointer;
      background: #3056d3; box-shadow: 0 6px 18px rgba(16, 24, 40, .25);
      display: grid; place-items: center; padding: 0;
    }
    .launcher:hover { background: #2546b5; }
    .launcher:focus-visible { outline: 3px solid #9db3f5; outline-offset: 2px; }
    .bubble {
      width: 24px; height: 20px; background: #fff; border-radius: 10px; position: relative; display: block;
    }
    .bubble::after {
      content: ""; position: absolute; left: 4px; bottom: -5px;
      border-width: 6px 6px 0 0; border-style: solid; border-color: #fff transparent transparent transparent;
    }
    .panel {
      width: min(360px, calc(100vw - 40px)); height: min(520px, calc(100vh - 120px));
      background: #fff; border-radius: 14px; overflow: hidden;
      box-shadow: 0 12px 40px rgba(16, 24, 40, .22); display: flex; flex-direction: column;
    }
    .head {
      background: #3056d3; color: #fff; padding: 14px 16px;
      display: flex; align-items: center; justify-content: space-between;
    }
    .title { font-weight: 600; font-size: 15px; }
    .close {
      background: none; border: 0; color: #fff; font-size: 22px; line-height: 1; cursor: pointer; padding: 0 4px;
    }
    .hint { color: #6b7280; margin: 16px; font-size: 13px; }
    .messages {
      list-style: none; margin: 0; padding: 12px; flex: 1; overflow-y: auto;
      display: flex; flex-direction: column; gap: 8px;
    }
    .msg { max-width: 80%; border-radius: 12px; padding: 8px 12px; }
    .msg-customer { align-self: flex-end; background: #3056d3; color: #fff; border-bottom-right-radius: 4px; }
    .msg-agent { align-self: flex-start; background: #f1f2f5; color: #1d2330; border-bottom-left-radius: 4px; }
    .text { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
    .image { display: block; max-width: 100%; max-height: 200px; margin-top: 6px; border-radius: 8px; }
    .status { display: block; font-size: 11px; opacity: .85; margin-top: 4px; }
    .retry { font: inherit; background: #fff; color: #3056d3; border: 0; border-radius: 4px; cursor: pointer; }
    .composer { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e5e7eb; }
    .input {
      flex: 1; font: inherit; color: inherit; border: 1px solid #d1d5db; border-radius: 8px; padding: 8px 10px;
      background: #fff;
    }
    .input:focus { outline: 2px solid #3056d3; outline-offset: -1px; }
    .send {
      font: inherit; font-weight: 600; border: 0; border-radius: 8px; padding: 0 14px;
      background: #3056d3; color: #fff; cursor: pointer;
    }
  `;

  const early = document[QUEUE];
  if (early && !Array.isArray(early)) return; // already running on this page

  const script =
    document.currentScript || document.querySelector('script[src*="/chat/widget.js"][data-business]');
  const business = script && script.dataset.business;
  if (!business) {
    warn('the <script> tag needs data-business="<your business id>"');
    return;
  }
  const endpoint = `${new URL(script.src, location.href).origin}/v1/chat/${encodeURIComponent(business)}/messages`;
  const visitorId = loadVisitorId();

  let ui = null; // built once <body> exists
  const known = new Map(); // message_id -> message from the server
  const unsent = []; // messages being sent, or that failed
  let sending = Promise.resolve();
  let pollTimer = null;
  let historyLoaded = false;

  const pending = Array.isArray(early) ? early.slice() : [];
  document[QUEUE] = Object.freeze({ loaded: true });
  document.addEventListener(EVENT, (event) => handle(event.detail));

  const bodyReady = new Promise((resolve) => {
    if (document.body) resolve();
    else document.addEventListener("DOMContentLoaded", () => resolve(), { once: true });
  });
  bodyReady.then(() => {
    ui = buildUi();
    for (const detail of pending.splice(0)) handle(detail);
  });

  function handle(detail) {
    if (ui === null) {
      pending.push(detail);
      return;
    }
    if (!detail || detail.type !== TYPE) {
      warn(`ignored an openChatEvent: detail.type must be "${TYPE}", got ${JSON.stringify(detail && detail.type)}`);
      return;
    }
    open();
    if (detail.message === undefined || detail.message === null) return;
    const { content, imageUrl } = typeof detail.message === "object" ? detail.message : {};
    if (typeof content !== "string" || content.trim() === "") {
      warn("openChatEvent message has no content: opened the chat without sending");
      return;
    }
    let image = null;
    if (imageUrl !== undefined && imageUrl !== null) {
      image = httpUrl(imageUrl);
      if (image === null) warn("openChatEvent message.imageUrl is not an http(s) URL: sending the text only");
    }
    send(content, image);
  }

  function loadVisitorId() {
    const key = `octocom.chat.visitor.${business}`;
    try {
      const stored = localStorage.getItem(key);
      if (stored && /^[A-Za-z0-9_-]{16,64}$/.test(stored)) return stored;
    } catch {
      // Storage blocked: the id lives as long as the page.
    }
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    try {
      localStorage.setItem(key, id);
    } catch {
      // As above.
    }
    return id;
  }

  function httpUrl(value) {
    try {
      const url = new URL(value);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function buildUi() {
    const host = document.createElement("octocom-chat");
    host.style.cssText = "all: initial !important; display: block !important;";
    const shadow = host.attachShadow({ mode: "open" });
    if ("adoptedStyleSheets" in shadow) {
      // A constructed sheet is not an inline style, so a host page's CSP (style-src) does not block it.
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES);
      shadow.adoptedStyleSheets = [sheet];
    } else {
      shadow.append(el("style", null, STYLES));
    }

    const root = el("div", "root");
    const panel = el("section", "panel");
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", "Chat");
    const header = el("header", "head");
    header.append(el("span", "title", "Chat with us"));
    const close = el("button", "close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "Close chat");
    close.addEventListener("click", () => setOpen(false));
    header.append(close);

    const list = el("ol", "messages");
    list.setAttribute("aria-live", "polite");
    const empty = el("p", "hint", "Ask us anything. We usually answer within minutes.");

    const form = el("form", "composer");
    const input = el("input", "input");
    input.placeholder = "Write a message…";
    input.maxLength = 4000;
    input.setAttribute("aria-label", "Message");
    const sendButton = el("button", "send", "Send");
    sendButton.type = "submit";
    form.append(input, sendButton);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.value.trim() === "") return;
      send(input.value, null);
      input.value = "";
    });
    panel.append(header, empty, list, form);

    const launcher = el("button", "launcher");
    launcher.type = "button";
    launcher.setAttribute("aria-label", "Open chat");
    launcher.setAttribute("aria-expanded", "false");
    launcher.append(el("span", "bubble"));
    launcher.addEventListener("click", () => setOpen(panel.hidden));

    root.append(panel, launcher);
    shadow.append(root);
    document.body.append(host);
    return { panel, list, empty, input, launcher };
  }

  function open() {
    setOpen(true);
  }

  function setOpen(isOpen) {
    ui.panel.hidden = !isOpen;
    ui.launcher.setAttribute("aria-expanded", String(isOpen));
    ui.launcher.setAttribute("aria-label", isOpen ? "Close chat" : "Open chat");
    clearInterval(pollTimer);
    if (isOpen) {
      refresh();
      pollTimer = setInterval(refresh, POLL_MS);
      ui.input.focus({ preventScroll: true });
    }
  }

  async function refresh() {
    try {
      const response = await fetch(`${endpoint}?visitor_id=${encodeURIComponent(visitorId)}`);
      if (response.ok) {
        for (const message of await response.json()) known.set(message.message_id, message);
      } else if (response.status !== 404) {
        return;
      }
      historyLoaded = true;
      render();
    } catch {
      // Offline for a moment: the next poll tries again.
    }
  }

  function send(content, imageUrl) {
    const entry = { content, image_url: imageUrl, state: "sending" };
    unsent.push(entry);
    render();
    sending = sending.then(() => post(entry));
  }

  async function post(entry) {
    entry.state = "sending";
    render();
    const body = { visitor_id: visitorId, content: entry.content };
    if (entry.image_url) body.image_url = entry.image_url;
    try {
      const response = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) throw new Error(await problem(response));
      const created = await response.json();
      unsent.splice(unsent.indexOf(entry), 1);
      known.set(created.message_id, { ...created, author: "customer", content: entry.content, image_url: entry.image_url });
    } catch (exc) {
      entry.state = "failed";
      entry.problem = exc.message;
    }
    render();
  }

  async function problem(response) {
    try {
      const data = await response.json();
      if (typeof data.detail === "string") return data.detail;
    } catch {
      // Not JSON.
    }
    return `HTTP ${response.status}`;
  }

  function render() {
    if (ui === null) return;
    const sent = [...known.values()].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
    const rows = [...sent.map((m) => row(m)), ...unsent.map((entry) => row(entry, entry))];
    ui.list.replaceChildren(...rows);
    ui.empty.hidden = rows.length > 0 || !historyLoaded;
    ui.list.scrollTop = ui.list.scrollHeight;
  }

  function row(message, entry) {
    const item = el("li", `msg msg-${message.author === "agent" ? "agent" : "customer"}`);
    item.append(el("p", "text", message.content));
    const image = message.image_url && httpUrl(message.image_url);
    if (image) {
      const img = el("img", "image");
      img.src = image;
      img.alt = "Attached image";
      item.append(img);
    }
    if (entry) {
      const status = el("span", "status", entry.state === "failed" ? `Not sent: ${entry.problem} ` : "Sending…");
      if (entry.state === "failed") {
        const retry = el("button", "retry", "Retry");
        retry.type = "button";
        retry.addEventListener("click", () => {
          sending = sending.then(() => post(entry));
        });
        status.append(retry);
      }
      item.append(status);
    }
    return item;
  }
})();
