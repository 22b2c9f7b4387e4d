// Canned replies in the composer (protocol §3 32860): "/" at the start of the message
// opens a list filtered by what follows (shortcut first, then text); arrows move, Enter or
// Tab inserts the reply with {visitor_name} and {agent_name} filled in, Escape closes.
// The textarea keeps the focus; the list is its aria-activedescendant listbox.
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";

const MAX_SHOWN = 50;
const RELOAD_MS = 60_000;

/** The replies matching `q`: shortcut prefix, then shortcut containing it, then text. */
export function filterCanned(list, q) {
  const query = q.trim().toLowerCase();
  if (!query) return list.slice(0, MAX_SHOWN);
  const ranked = [];
  for (const c of list) {
    const shortcut = String(c.shortcut || "").toLowerCase();
    const text = String(c.text || "").toLowerCase();
    const rank = shortcut.startsWith(query) ? 0 : shortcut.includes(query) ? 1 : text.includes(query) ? 2 : -1;
    if (rank >= 0) ranked.push([rank, c]);
  }
  ranked.sort((a, b) => a[0] - b[0] || String(a[1].shortcut).localeCompare(String(b[1].shortcut)));
  return ranked.slice(0, MAX_SHOWN).map((r) => r[1]);
}

export class CannedPicker {
  /**
   * textarea, popup (the role=listbox element); load() → Promise of [{id, shortcut, text}];
   * fill(text) → the text to insert; enabled() → whether "/" may open the list now.
   */
  constructor({ textarea, popup, load, fill, enabled }) {
    this.ta = textarea;
    this.popup = popup;
    this.load = load;
    this.fill = fill;
    this.enabled = enabled || (() => true);
    this.items = null; // the group's replies, once loaded
    this.shown = [];
    this.active = -1;
    this.isOpen = false;
    this.dismissed = null; // the text the list was closed on with Escape
    this.loading = null;
    this.loadedAt = 0;
    textarea.addEventListener("input", () => this.update());
    textarea.addEventListener("click", () => this.update());
    textarea.addEventListener("blur", () => setTimeout(() => {
      if (document.activeElement !== textarea) this.close();
    }, 150));
    popup.addEventListener("mousedown", (ev) => ev.preventDefault()); // the textarea keeps the focus
    popup.addEventListener("click", (ev) => {
      const o = ev.target.closest("[role=option]");
      if (o && o.dataset.index != null) this.pick(Number(o.dataset.index));
    });
  }

  /** What follows the "/" the message starts with, or null. */
  _query() {
    const v = this.ta.value;
    if (!v.startsWith("/") || v.includes("\n")) return null;
    return v.slice(1);
  }

  async update() {
    const q = this._query();
    if (q == null || !this.enabled() || this.ta.disabled) return this.close();
    if (this.dismissed === this.ta.value) return;
    this.dismissed = null;
    if (this.items && !this.isOpen && Date.now() - this.loadedAt > RELOAD_MS) this.items = null; // an admin may have changed them
    if (!this.items) {
      if (!this.loading) {
        this.loading = Promise.resolve(this.load()).then(
          (list) => {
            this.items = Array.isArray(list) ? list : [];
            this.loadedAt = Date.now();
          },
          () => { this.items = []; },
        ).finally(() => { this.loading = null; });
      }
      await this.loading;
      if (this._query() == null) return this.close();
    }
    this._render(filterCanned(this.items, this._query() || ""));
  }

  /** Forget the loaded replies (they changed, or another agent signed in). */
  reset() {
    this.items = null;
    this.close();
  }

  _render(shown) {
    this.shown = shown;
    this.isOpen = true;
    this.popup.hidden = false;
    if (!shown.length) {
      const none = el("div", "canned-none", t(this.items.length ? "canned.none" : "canned.empty"));
      none.setAttribute("role", "option");
      none.setAttribute("aria-disabled", "true");
      none.setAttribute("aria-selected", "false");
      none.id = "canned-none";
      this.popup.replaceChildren(none);
      this.active = -1;
      this.ta.removeAttribute("aria-activedescendant");
      return;
    }
    this.popup.replaceChildren(...shown.map((c, i) => {
      const o = el("div", "canned-option", null,
        el("span", "canned-shortcut", "/" + c.shortcut),
        el("span", "canned-text", String(c.text || "").replace(/\s+/g, " ")));
      o.setAttribute("role", "option");
      o.id = "canned-opt-" + i;
      o.dataset.index = i;
      return o;
    }));
    this._setActive(Math.min(Math.max(this.active, 0), shown.length - 1));
  }

  _setActive(i) {
    this.active = i;
    for (const o of this.popup.querySelectorAll("[role=option][data-index]")) {
      const on = Number(o.dataset.index) === i;
      o.setAttribute("aria-selected", on ? "true" : "false");
      o.classList.toggle("active", on);
      if (on) {
        this.ta.setAttribute("aria-activedescendant", o.id);
        o.scrollIntoView({ block: "nearest" });
      }
    }
  }

  close() {
    if (!this.isOpen && this.popup.hidden) return;
    this.isOpen = false;
    this.popup.hidden = true;
    this.popup.replaceChildren();
    this.shown = [];
    this.active = -1;
    this.ta.removeAttribute("aria-activedescendant");
  }

  pick(i) {
    const c = this.shown[i];
    if (!c) return;
    this.close();
    this.ta.value = this.fill(String(c.text || ""));
    this.ta.setSelectionRange(this.ta.value.length, this.ta.value.length);
    this.ta.dispatchEvent(new Event("input", { bubbles: true }));
    this.ta.focus();
  }

  /** A keydown of the textarea: true when the list used it. */
  handleKey(ev) {
    if (!this.isOpen || ev.isComposing) return false;
    const n = this.shown.length;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (n) this._setActive((this.active + (ev.key === "ArrowDown" ? 1 : -1) + n) % n);
      return true;
    }
    if (ev.key === "Enter" || ev.key === "Tab") {
      if (ev.shiftKey) return false;
      if (ev.key === "Tab" && !(n && this.active >= 0)) {
        this.close(); // Tab still leaves the message box
        return false;
      }
      ev.preventDefault();
      if (n && this.active >= 0) this.pick(this.active);
      else {
        this.dismissed = this.ta.value;
        this.close();
      }
      return true;
    }
    if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      this.dismissed = this.ta.value;
      this.close();
      return true;
    }
    return false;
  }
}
