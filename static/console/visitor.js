// The visitor panel beside the chat (protocol §3 "The desk"): what the widget and the
// server know of the visitor (guest_info.context, push 32097) — the page it is on, where it
// came from, browser, system, device, language, its local time (live, from its time zone),
// first seen, visits, e-mail, phone, the shop's attributes — and its conversations (32800
// with gid), each opening read-only in the chat pane, with their tags and pages.
import { t, getLanguage } from "/static/shared/i18n.js";
import { el, formatTime, safeUrl, summary } from "/static/shared/render.js";
import { describeError } from "./errors.js";
import { tagChips } from "./tags.js";
import { learn, markOf, markChips } from "./marks.js";

const $ = (id) => document.getElementById(id);
const CLOCK_MS = 15_000;
const WIDE = "(min-width: 1100px)";

function link(href, text) {
  const a = el("a", "fact-link", text);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

/** The visitor's wall-clock time now in `zone`, or "" for an unknown zone. */
export function localTime(zone, now = new Date()) {
  if (!zone || typeof zone !== "string") return "";
  try {
    return new Intl.DateTimeFormat(getLanguage(), {
      timeZone: zone, weekday: "short", hour: "2-digit", minute: "2-digit",
    }).format(now);
  } catch (e) {
    return "";
  }
}

function fullDate(ms) {
  if (!ms) return "";
  return new Date(Number(ms)).toLocaleString(getLanguage(), {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

export class VisitorPanel {
  /**
   * app: {client, agentName(aix), myId(), openConversation(conv), onToggle(open)}
   */
  constructor(app) {
    this.app = app;
    this.gid = null;
    this.guest = null;
    this.viewing = null; // the conversation_id shown in the chat pane, or null (current)
    this.conversations = [];
    this.loadToken = 0;
    this.clock = null;
    this.reloadTimer = null;
    this.expanded = matchMedia(WIDE).matches;
    this.dom = {
      panel: $("visitor-panel"), toggle: $("visitor-btn"), close: $("visitor-close"),
      facts: $("visitor-facts"), nofacts: $("visitor-nofacts"), pages: $("visitor-pages"),
      pagesTitle: $("visitor-pages-title"), convs: $("visitor-convs"), status: $("visitor-convs-status"),
    };
    const d = this.dom;
    d.toggle.addEventListener("click", () => this.setExpanded(!this.expanded, true));
    d.close.addEventListener("click", () => this.setExpanded(false, true));
    d.panel.addEventListener("keydown", (ev) => {
      // Where the panel covers the chat (not the wide three-column layout), Escape closes it.
      if (ev.key === "Escape" && !matchMedia(WIDE).matches) this.setExpanded(false, true);
    });
    d.convs.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-cid]");
      if (!b) return;
      const conv = this.conversations.find((c) => String(c.conversation_id) === b.dataset.cid);
      if (conv) this.app.openConversation(conv);
    });
    // Narrower than the three-column layout, the panel covers (part of) the chat: closed
    // when the window gets that narrow.
    matchMedia(WIDE).addEventListener("change", (e) => { if (!e.matches) this.setExpanded(false); });
  }

  setExpanded(on, focus) {
    this.expanded = !!on;
    this._layout();
    if (focus) (this.expanded ? this.dom.close : this.dom.toggle).focus();
    this.app.onToggle(this.expanded);
  }

  _layout() {
    const shown = this.expanded && this.gid != null;
    this.dom.panel.hidden = !shown;
    this.dom.toggle.setAttribute("aria-expanded", shown ? "true" : "false");
    document.body.classList.toggle("show-visitor", shown);
    clearInterval(this.clock);
    this.clock = shown ? setInterval(() => this._tick(), CLOCK_MS) : null;
  }

  /**
   * The chat pane shows `guest` (guest_info or what is known), at `conversationId` (null:
   * current); `reload`: read its conversations again (the pane was opened anew).
   */
  show(guest, conversationId, reload) {
    const gid = guest ? Number(guest.gid) : null;
    const other = gid !== this.gid;
    const newConversation = !other && guest && this.guest &&
      guest.conversation_id != null && guest.conversation_id !== this.guest.conversation_id;
    this.gid = gid;
    this.guest = guest ? { ...guest } : null;
    this.viewing = conversationId == null ? null : Number(conversationId);
    this._layout();
    if (gid == null) {
      this.conversations = [];
      return;
    }
    if (other) this.factsKey = null;
    this.renderFacts();
    if (other) {
      this.conversations = [];
      this.convsKey = null;
      this.dom.convs.replaceChildren();
      this.dom.pages.replaceChildren();
      this.load();
    } else {
      this.renderConversations();
      if (reload || newConversation) this.load();
    }
  }

  /** The guest_info changed (list update). */
  updateGuest(guest) {
    if (!guest || Number(guest.gid) !== this.gid) return;
    this.guest = { ...this.guest, ...guest };
    this.renderFacts();
  }

  /** Push 32097: the visitor moved to another page. */
  setContext(gid, context) {
    if (Number(gid) !== this.gid) return;
    this.guest = { ...this.guest, context };
    this.renderFacts();
    clearTimeout(this.reloadTimer); // the conversation's pages changed too
    this.reloadTimer = setTimeout(() => this.load(), 800);
  }

  /** A message of the shown visitor: its conversations' counts and previews, a little later. */
  refreshSoon(gid) {
    if (Number(gid) !== this.gid || !this.expanded) return;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load(), 2000);
  }

  /** Push 32841 / my change: tags of a conversation. */
  setTags(conversationId, tags) {
    const c = this.conversations.find((x) => Number(x.conversation_id) === Number(conversationId));
    if (!c) return;
    c.tags = [...(tags || [])];
    this.renderConversations();
  }

  _tick() {
    const cell = this.dom.facts.querySelector("[data-fact=localTime]");
    const zone = this.guest && this.guest.context && this.guest.context.timezone;
    if (cell && zone) cell.textContent = localTime(zone) + " (" + zone + ")";
  }

  renderFacts() {
    const d = this.dom;
    const c = (this.guest && this.guest.context) || null;
    // Only when something changed: a re-render would drop the focus of a link in it.
    const key = getLanguage() + JSON.stringify(c);
    if (key === this.factsKey) return;
    this.factsKey = key;
    const rows = [];
    const add = (key, value, name) => {
      if (value == null || value === "") return;
      const dd = el("dd");
      if (value instanceof Node) dd.append(value);
      else dd.textContent = String(value);
      if (name) dd.dataset.fact = name;
      rows.push(el("div", "fact", null, el("dt", null, t(key)), dd));
    };
    if (c) {
      const url = safeUrl(c.url);
      if (url) add("visitor.page", link(url, c.title || c.url));
      else if (c.title || c.url) add("visitor.page", c.title || c.url);
      const ref = safeUrl(c.referrer);
      add("visitor.referrer", ref ? link(ref, c.referrer) : c.referrer);
      add("visitor.browser", c.browser);
      add("visitor.os", c.os);
      add("visitor.device", c.device ? (t("visitor.device." + c.device) !== "visitor.device." + c.device
        ? t("visitor.device." + c.device) : c.device) : null);
      add("visitor.language", c.language);
      const time = localTime(c.timezone);
      if (time) add("visitor.localTime", time + " (" + c.timezone + ")", "localTime");
      add("visitor.firstSeen", fullDate(c.first_seen));
      add("visitor.visits", c.visits);
      add("visitor.email", c.email);
      add("visitor.phone", c.phone);
      add("visitor.ip", c.ip);
      if (c.attrs && typeof c.attrs === "object") {
        for (const [k, v] of Object.entries(c.attrs)) {
          if (v == null || typeof v === "object") continue;
          const dd = el("dd", null, String(v));
          rows.push(el("div", "fact", null, el("dt", null, k), dd));
        }
      }
    }
    d.facts.replaceChildren(...rows);
    d.nofacts.hidden = rows.length > 0;
  }

  async load() {
    const gid = this.gid;
    if (gid == null) return;
    const token = ++this.loadToken;
    this.dom.status.textContent = this.conversations.length ? "" : t("chat.loading");
    let data;
    try {
      data = await this.app.client.request(32800, { gid, filter: "all", limit: 30 });
    } catch (err) {
      if (token === this.loadToken) {
        this.dom.status.textContent = t("visitor.convFailed", { reason: describeError(err) });
      }
      return;
    }
    if (token !== this.loadToken || gid !== this.gid) return;
    this.conversations = data.list || [];
    learn(this.conversations);
    this.dom.status.textContent = this.conversations.length ? "" : t("visitor.noConversations");
    this.renderConversations();
    this.app.onConversations(gid, this.conversations);
  }

  /** The conversation shown: the one viewed, else the visitor's open (or latest) one. */
  _shownConversation() {
    if (this.viewing != null) {
      return this.conversations.find((c) => Number(c.conversation_id) === this.viewing) || null;
    }
    const cid = this.guest && this.guest.conversation_id;
    if (cid != null) return this.conversations.find((c) => Number(c.conversation_id) === Number(cid)) || null;
    return this.conversations.find((c) => c.state === "open") || null;
  }

  renderConversations(force) {
    const d = this.dom;
    const shown = this._shownConversation();
    const current = this.guest && this.guest.conversation_id != null ? Number(this.guest.conversation_id) : null;
    // Only when something changed (a re-render would close an open <details>, drop the focus).
    const key = [getLanguage(), shown && shown.conversation_id, current, JSON.stringify(this.conversations),
      JSON.stringify(this.conversations.map((c) => markOf(c.conversation_id)))].join("|");
    if (!force && key === this.convsKey) return;
    this.convsKey = key;
    const pages = (shown && shown.pages) || [];
    d.pages.replaceChildren(...pages.slice().reverse().map((p) => {
      const url = safeUrl(p.url);
      const text = p.title || p.url || t("visitor.untitled");
      const li = el("li", "page-item", null, url ? link(url, text) : el("span", null, text));
      if (p.at) li.append(el("span", "page-time", formatTime(p.at)));
      return li;
    }));
    if (!pages.length) d.pages.append(el("li", "muted small", t("visitor.noPages")));
    const focused = document.activeElement && d.convs.contains(document.activeElement)
      ? document.activeElement.dataset.cid : null;
    d.convs.replaceChildren(...this.conversations.map((c) => {
      const id = Number(c.conversation_id);
      const b = el("button", "past-open");
      b.type = "button";
      b.dataset.cid = id;
      const state = c.waiting ? t("all.waiting") : t(c.state === "open" ? "all.open" : "all.ended");
      const who = c.admin_id != null ? t("all.with", { name: this.app.agentName(c.admin_id) }) : t("all.unassigned");
      b.append(el("span", "past-when", formatTime(c.started_at)),
        el("span", "past-state state-" + (c.waiting ? "waiting" : c.state), state),
        el("span", "past-who", who),
        el("span", "past-preview", c.last_message ? summary(c.last_message).replace(/\s+/g, " ") : ""));
      const isShown = shown && Number(shown.conversation_id) === id;
      if (isShown) b.setAttribute("aria-current", "true");
      const li = el("li", "past-item" + (isShown ? " shown" : ""), null, b);
      const meta = el("div", "past-meta", t("all.messages", { g: c.guest_messages ?? 0, a: c.agent_messages ?? 0 }));
      if (id === current) meta.append(" · ", el("strong", null, t("visitor.current")));
      li.append(meta);
      // Left with the away form; the visitor's rating and comment (marks.js, push 32951).
      const chips = markChips(markOf(id) || c, { comment: true });
      if (chips.length) li.append(el("div", "past-marks", null, ...chips));
      if (c.tags && c.tags.length) li.append(tagChips(c.tags));
      if (c.pages && c.pages.length) {
        const det = el("details", "past-pages", null, el("summary", null, t("visitor.pagesOf", { n: c.pages.length })));
        const ol = el("ol", "page-list");
        for (const p of c.pages.slice().reverse()) {
          const url = safeUrl(p.url);
          const text = p.title || p.url || t("visitor.untitled");
          ol.append(el("li", "page-item", null, url ? link(url, text) : el("span", null, text)));
        }
        det.append(ol);
        li.append(det);
      }
      return li;
    }));
    if (focused) {
      const again = d.convs.querySelector(`button[data-cid="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  clear() {
    this.gid = null;
    this.guest = null;
    this.conversations = [];
    this.loadToken++;
    clearTimeout(this.reloadTimer);
    this.dom.facts.replaceChildren();
    this.dom.convs.replaceChildren();
    this.dom.pages.replaceChildren();
    this.dom.status.textContent = "";
    this.factsKey = this.convsKey = null;
    this._layout();
  }
}
