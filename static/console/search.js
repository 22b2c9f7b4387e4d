// Search as the agent types (32810, debounced): visitors whose name matches and messages
// with their snippet, the matching parts in <mark> (built with textContent, never HTML).
// A combobox: the input keeps the focus, arrows move in the list, Enter opens the result
// (the conversation scrolled to the message), Escape closes, then clears.
import { t } from "/static/shared/i18n.js";
import { el, formatTime } from "/static/shared/render.js";
import { describeError } from "./errors.js";

const $ = (id) => document.getElementById(id);
const DEBOUNCE_MS = 250;
const LIMIT = 20;

/** A snippet ([{text, match}]) as nodes: matches in <mark>. */
export function snippetNodes(parts) {
  const box = el("span", "snippet");
  if (typeof parts === "string") {
    box.textContent = parts;
    return box;
  }
  for (const p of parts || []) {
    if (!p || p.text == null) continue;
    box.append(p.match ? el("mark", null, String(p.text)) : String(p.text));
  }
  return box;
}

export class SearchBox {
  /** app: {client, openMessage(hit), openVisitor(v)} */
  constructor(app) {
    this.app = app;
    this.input = $("search-input");
    this.box = $("search-results");
    this.status = $("search-status");
    this.options = []; // [{node, pick()}]
    this.active = -1;
    this.timer = null;
    this.token = 0;
    this.q = "";
    this.next = null;
    this.messages = [];
    this.visitors = [];
    this.input.addEventListener("input", () => this._typed());
    this.input.addEventListener("keydown", (ev) => this._key(ev));
    this.input.addEventListener("focus", () => { if (this.q && this.options.length) this._show(true); });
    this.input.addEventListener("blur", () => setTimeout(() => {
      if (!this.box.contains(document.activeElement) && document.activeElement !== this.input) this._show(false);
    }, 150));
    this.box.addEventListener("mousedown", (ev) => ev.preventDefault());
    this.box.addEventListener("click", (ev) => {
      const o = ev.target.closest("[role=option]");
      if (o) this._pick(Number(o.dataset.index));
    });
  }

  reset() {
    this.token++;
    clearTimeout(this.timer);
    this.input.value = "";
    this.q = "";
    this.messages = [];
    this.visitors = [];
    this.next = null;
    this.status.textContent = "";
    this._render();
    this._show(false);
  }

  _typed() {
    clearTimeout(this.timer);
    const q = this.input.value.trim();
    if (!q) {
      this.token++;
      this.q = "";
      this.messages = [];
      this.visitors = [];
      this.next = null;
      this._render();
      this._show(false);
      this.status.textContent = "";
      return;
    }
    this.timer = setTimeout(() => this.run(q), DEBOUNCE_MS);
  }

  async run(q, more = false) {
    const token = ++this.token;
    const params = { q: q.slice(0, 100), limit: LIMIT };
    if (more && this.next != null) params.before = this.next;
    if (!more) this.status.textContent = t("search.busy");
    let data;
    try {
      data = await this.app.client.request(32810, params);
    } catch (err) {
      if (token !== this.token) return;
      this.q = q;
      this.messages = [];
      this.visitors = [];
      this.next = null;
      this._render(t("search.failed", { reason: describeError(err) }));
      this._show(true);
      this.status.textContent = t("search.failed", { reason: describeError(err) });
      return;
    }
    if (token !== this.token) return;
    this.q = q;
    if (more) this.messages = this.messages.concat(data.messages || []);
    else {
      this.messages = data.messages || [];
      this.visitors = data.visitors || [];
    }
    this.next = data.next_before ?? null;
    const n = this.messages.length + this.visitors.length;
    const none = t(data.message_search === false ? "search.namesOnly" : "search.none", { q });
    this._render(n ? null : none);
    this._show(true);
    this.status.textContent = n ? t("search.count", { n, q }) : none;
    if (more) this._setActive(Math.min(this.active, this.options.length - 1));
  }

  _option(i, content, pick, cls) {
    const o = el("div", "search-option " + (cls || ""), null, ...content);
    o.setAttribute("role", "option");
    o.id = "search-opt-" + i;
    o.dataset.index = i;
    o.setAttribute("aria-selected", "false");
    this.options.push({ node: o, pick });
    return o;
  }

  _group(labelKey, children) {
    const g = el("div", "search-group");
    g.setAttribute("role", "group");
    const id = "search-group-" + labelKey.replace(/\W/g, "-");
    const label = el("div", "search-group-label", t(labelKey));
    label.id = id;
    label.setAttribute("role", "presentation");
    g.setAttribute("aria-labelledby", id);
    g.append(label, ...children);
    return g;
  }

  _render(message) {
    this.options = [];
    const parts = [];
    if (this.visitors.length) {
      parts.push(this._group("search.visitors", this.visitors.map((v) => {
        const name = v.name && String(v.name).trim() ? v.name : t("list.visitor", { gid: v.gid });
        return this._option(this.options.length, [el("span", "search-name", name),
          el("span", "search-meta", "#" + v.gid)], () => this.app.openVisitor(v), "search-visitor");
      })));
    }
    if (this.messages.length) {
      const rows = this.messages.map((m) => {
        const name = m.name && String(m.name).trim() ? m.name : t("list.visitor", { gid: m.gid });
        const who = m.sender === "agent" ? t("search.fromAgent", { name }) : t("search.fromVisitor", { name });
        return this._option(this.options.length, [
          el("span", "search-head", null, el("span", "search-name", who), el("span", "search-meta", formatTime(m.created_at))),
          snippetNodes(m.snippet)], () => this.app.openMessage(m), "search-message");
      });
      if (this.next != null) {
        rows.push(this._option(this.options.length, [el("span", "search-more", t("search.more"))],
          () => this.run(this.q, true), "search-more-option"));
      }
      parts.push(this._group("search.messages", rows));
    }
    if (message) {
      const none = el("div", "search-none", message);
      none.setAttribute("role", "option");
      none.setAttribute("aria-disabled", "true");
      none.setAttribute("aria-selected", "false");
      none.id = "search-none";
      parts.push(none);
    }
    this.box.replaceChildren(...parts);
    this.active = -1;
    this.input.removeAttribute("aria-activedescendant");
  }

  _show(on) {
    const open = on && !!this.q;
    this.box.hidden = !open;
    this.input.setAttribute("aria-expanded", open ? "true" : "false");
    if (!open) this.input.removeAttribute("aria-activedescendant");
  }

  _setActive(i) {
    this.active = i;
    this.options.forEach((o, j) => {
      o.node.setAttribute("aria-selected", j === i ? "true" : "false");
      o.node.classList.toggle("active", j === i);
    });
    const o = this.options[i];
    if (o) {
      this.input.setAttribute("aria-activedescendant", o.node.id);
      o.node.scrollIntoView({ block: "nearest" });
    } else this.input.removeAttribute("aria-activedescendant");
  }

  _pick(i) {
    const o = this.options[i];
    if (!o) return;
    const more = o.node.classList.contains("search-more-option");
    if (!more) this._show(false);
    o.pick();
  }

  _key(ev) {
    const n = this.options.length;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (!this.q) return;
      ev.preventDefault();
      if (this.box.hidden) this._show(true);
      if (!n) return;
      const step = ev.key === "ArrowDown" ? 1 : -1;
      this._setActive(this.active < 0 ? (step > 0 ? 0 : n - 1) : (this.active + step + n) % n);
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      clearTimeout(this.timer);
      const q = this.input.value.trim();
      if (q && q !== this.q) return this.run(q); // not searched yet: search now
      if (this.active >= 0) this._pick(this.active);
      else if (n && !this.options[0].node.classList.contains("search-more-option")) this._pick(0);
    } else if (ev.key === "Escape") {
      if (!this.box.hidden) {
        ev.preventDefault();
        this._show(false);
      } else if (this.input.value) {
        ev.preventDefault();
        this.input.value = "";
        this._typed();
      }
    } else if (ev.key === "Home" || ev.key === "End") {
      // In the input: the caret moves (not the list).
    }
  }
}
