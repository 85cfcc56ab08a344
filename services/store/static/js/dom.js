// Building DOM nodes from data without ever parsing it as HTML.
//
// h("a", {class: "x", href}, "text", child) sets attributes with setAttribute
// and appends strings as text nodes; there is no way to pass markup.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** The URL as a string when it is an absolute http(s) URL; otherwise null (render it inert). */
export function safeHref(link) {
  if (typeof link !== "string") return null;
  try {
    const url = new URL(link);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** Resolve after the browser has painted the current DOM changes (next frame, then a task). */
export function afterPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

export function clear(node) {
  node.replaceChildren();
  return node;
}
