// A small code editor on a <textarea>: line numbers, Tab/Shift+Tab indent, Enter keeps indentation.

import { h } from "./dom.js";

const INDENT = "    ";

export class CodeEditor {
  constructor(textarea) {
    this.textarea = textarea;
    this.gutter = h("pre", { class: "editor-gutter", "aria-hidden": "true" });
    const wrapper = h("div", { class: "editor" });
    textarea.replaceWith(wrapper);
    wrapper.append(this.gutter, textarea);
    textarea.spellcheck = false;
    textarea.setAttribute("wrap", "off");
    textarea.addEventListener("input", () => this.renumber());
    textarea.addEventListener("scroll", () => (this.gutter.scrollTop = textarea.scrollTop));
    textarea.addEventListener("keydown", (event) => this.onKey(event));
    this.renumber();
  }

  get value() {
    return this.textarea.value;
  }

  set value(text) {
    this.textarea.value = text;
    this.textarea.scrollTop = 0;
    this.renumber();
  }

  renumber() {
    const lines = this.textarea.value.split("\n").length;
    if (lines === this.lines) return;
    this.lines = lines;
    this.gutter.textContent = Array.from({ length: lines }, (_, i) => i + 1).join("\n") + "\n";
  }

  /** Select line `n` (1-based) and scroll to it, e.g. to show where a code check failed. */
  goToLine(n) {
    const lines = this.textarea.value.split("\n");
    const start = lines.slice(0, n - 1).reduce((sum, line) => sum + line.length + 1, 0);
    this.textarea.focus();
    this.textarea.setSelectionRange(start, start + (lines[n - 1]?.length ?? 0));
    const lineHeight = parseFloat(getComputedStyle(this.textarea).lineHeight) || 18;
    this.textarea.scrollTop = Math.max(0, (n - 5) * lineHeight);
  }

  onKey(event) {
    if (event.key === "Tab" && !event.ctrlKey && !event.altKey && !event.metaKey) {
      event.preventDefault();
      if (event.shiftKey) this.dedent();
      else this.indent();
    } else if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      const { value, selectionStart } = this.textarea;
      const lineStart = value.lastIndexOf("\n", selectionStart - 1) + 1;
      const line = value.slice(lineStart, selectionStart);
      let indent = line.match(/^[ \t]*/)[0];
      if (/:\s*$/.test(line)) indent += INDENT;
      this.insert(`\n${indent}`);
    }
  }

  indent() {
    const { value, selectionStart, selectionEnd } = this.textarea;
    if (!value.slice(selectionStart, selectionEnd).includes("\n")) {
      this.insert(INDENT);
      return;
    }
    this.editLines((line) => INDENT + line);
  }

  dedent() {
    this.editLines((line) => line.replace(/^( {1,4}|\t)/, ""));
  }

  /** Rewrite every line the selection touches, keeping those lines selected. */
  editLines(change) {
    const { value, selectionStart, selectionEnd } = this.textarea;
    const start = value.lastIndexOf("\n", selectionStart - 1) + 1;
    const endBreak = value.indexOf("\n", selectionEnd - (selectionEnd > selectionStart ? 1 : 0));
    const end = endBreak === -1 ? value.length : endBreak;
    const replaced = value.slice(start, end).split("\n").map(change).join("\n");
    this.textarea.setSelectionRange(start, end);
    this.insert(replaced);
    this.textarea.setSelectionRange(start, start + replaced.length);
  }

  /** Insert at the selection; execCommand keeps the browser's undo history when it is available. */
  insert(text) {
    const textarea = this.textarea;
    if (!document.execCommand?.("insertText", false, text)) {
      textarea.setRangeText(text, textarea.selectionStart, textarea.selectionEnd, "end");
      textarea.dispatchEvent(new Event("input"));
    }
  }
}
