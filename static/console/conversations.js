// The left pane's two views: "My chats" (today's list, list.js) and "All conversations"
// (32800: filter mine / waiting / ended / all, a tag, paged with next_before — more on
// scroll or with the button). A row opens the conversation, read-only unless it is mine.
import { t } from "/static/shared/i18n.js";
import { el, formatTime, summary } from "/static/shared/render.js";
import { avatar } from "./list.js";
import { describeError } from "./errors.js";
import { tagChips } from "./tags.js";
import { learn, markOf, markChips } from "./marks.js";

const $ = (id) => document.getElementById(id);
const LIMIT = 30;

export class ConversationsView {
  /** app: {client, agentName(aix), myId(), openConversation(conv), knownTags(tags), onView(name)} */
  constructor(app) {
    this.app = app;
    this.view = "mine";
    this.items = []; // conversation_info, newest first
    this.next = null;
    this.loading = false;
    this.token = 0;
    this.loaded = false;
    this.key = null; // the parameters of the list shown
    this.active = null; // conversation_id open in the chat pane
    this.dom = {
      mineBtn: $("view-mine"), allBtn: $("view-all"), mine: $("mine-view"), all: $("all-view"),
      filter: $("all-filter"), tag: $("all-tag"), list: $("all-list"), status: $("all-status"),
      more: $("all-more"), pane: document.querySelector(".list-pane"),
    };
    const d = this.dom;
    d.mineBtn.addEventListener("click", () => this.setView("mine"));
    d.allBtn.addEventListener("click", () => this.setView("all"));
    d.filter.addEventListener("change", () => this.reload(true));
    let timer = null;
    d.tag.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.reload(true), 400);
    });
    d.tag.addEventListener("change", () => { // also on leaving the field: only if it changed
      clearTimeout(timer);
      this.reload(true);
    });
    d.more.addEventListener("click", () => this.loadMore());
    d.list.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-cid]");
      if (!b) return;
      const conv = this.items.find((c) => String(c.conversation_id) === b.dataset.cid);
      if (conv) this.app.openConversation(conv);
    });
    // More on scroll: when the button comes into view, load the next page.
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.view === "all") this.loadMore();
    }, { root: d.pane, rootMargin: "120px" });
    this.observer.observe(d.more);
  }

  setView(name) {
    this.view = name === "all" ? "all" : "mine";
    const all = this.view === "all";
    const d = this.dom;
    d.mineBtn.setAttribute("aria-pressed", all ? "false" : "true");
    d.allBtn.setAttribute("aria-pressed", all ? "true" : "false");
    d.mine.hidden = all;
    d.all.hidden = !all;
    if (all && !this.loaded) this.reload();
    this.app.onView(this.view);
  }

  /** Signed out: forget everything. */
  reset() {
    this.token++;
    this.items = [];
    this.next = null;
    this.loaded = false;
    this.key = null;
    this.loading = false;
    this.dom.filter.value = "all";
    this.dom.tag.value = "";
    this.setView("mine");
    this.render();
  }

  _params() {
    const params = { filter: this.dom.filter.value || "all", limit: LIMIT };
    const tag = this.dom.tag.value.trim();
    if (tag) params.tag = tag;
    return params;
  }

  /** The first page again; `ifChanged`: only when the filter or the tag changed. */
  async reload(ifChanged) {
    const params = this._params();
    const key = JSON.stringify(params);
    if (ifChanged && this.loaded && key === this.key) return;
    this.key = key;
    const token = ++this.token;
    this.loading = true;
    this.loaded = true;
    this.dom.status.textContent = t("chat.loading");
    // The rows shown stay until the new ones arrive (a click on one must not get lost).
    await this._page(token, params, true);
  }

  async loadMore() {
    if (this.loading || this.next == null || !this.loaded) return;
    const token = this.token;
    this.loading = true;
    this.dom.more.disabled = true;
    await this._page(token, { ...this._params(), before: this.next });
  }

  async _page(token, params, first) {
    let data;
    try {
      data = await this.app.client.request(32800, params);
    } catch (err) {
      if (token !== this.token) return;
      this.loading = false;
      this.dom.more.disabled = false;
      this.dom.status.textContent = t("all.failed", { reason: describeError(err) });
      return;
    }
    if (token !== this.token) return;
    if (first) {
      this.items = [];
      this.dom.pane.scrollTop = 0; // a new list starts at its top
    }
    learn(data.list);
    const seen = new Set(this.items.map((c) => Number(c.conversation_id)));
    for (const c of data.list || []) if (!seen.has(Number(c.conversation_id))) this.items.push(c);
    this.next = data.next_before ?? null;
    this.loading = false;
    this.dom.more.disabled = false;
    const tags = new Set();
    for (const c of this.items) for (const tag of c.tags || []) tags.add(tag);
    this.app.knownTags([...tags]);
    this.dom.status.textContent = this.items.length ? t("all.count", { n: this.items.length }) : t("all.none");
    this.render();
    // The pane is not full yet: keep going while there is more.
    const pane = this.dom.pane;
    if (this.next != null && this.view === "all" && pane.scrollHeight <= pane.clientHeight + 40) this.loadMore();
  }

  /** Push 32841 or my change: a conversation's tags. */
  setTags(conversationId, tags) {
    const c = this.items.find((x) => Number(x.conversation_id) === Number(conversationId));
    if (!c) return;
    c.tags = [...(tags || [])];
    this.render();
  }

  setActive(conversationId) {
    this.active = conversationId == null ? null : Number(conversationId);
    for (const b of this.dom.list.querySelectorAll("button[data-cid]")) {
      const on = Number(b.dataset.cid) === this.active;
      b.closest("li").classList.toggle("active", on);
      if (on) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
  }

  render() {
    const d = this.dom;
    const focused = document.activeElement && d.list.contains(document.activeElement)
      ? document.activeElement.dataset.cid : null;
    d.list.replaceChildren(...this.items.map((c) => this._row(c)));
    d.more.hidden = this.next == null;
    this.setActive(this.active);
    if (focused) {
      const again = d.list.querySelector(`button[data-cid="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  _row(c) {
    const name = c.name && String(c.name).trim() ? c.name : t("list.visitor", { gid: c.gid });
    const b = el("button", "conv-row");
    b.type = "button";
    b.dataset.cid = c.conversation_id;
    const m = c.last_message;
    const stateKey = c.waiting ? "waiting" : c.state === "open" ? "open" : "ended";
    const who = c.admin_id != null ? t("all.with", { name: this.app.agentName(c.admin_id) }) : t("all.unassigned");
    b.append(
      el("span", "avatar-wrap", null, avatar(name, null)),
      el("span", "conv-name", name),
      el("span", "conv-time", formatTime(m ? m.created_at : c.started_at)),
      el("span", "conv-preview", m ? summary(m).replace(/\s+/g, " ") : ""),
      el("span", "conv-state state-" + stateKey, t("all." + stateKey)),
      el("span", "conv-who", who),
    );
    // Left with the away form, rated (marks.js; a 32951 push changes it live).
    const chips = markChips(markOf(c.conversation_id) || c);
    if (chips.length) {
      b.classList.add("has-marks");
      b.append(el("span", "conv-marks", null, ...chips));
    }
    const li = el("li", "conv-item conv-all", null, b);
    if (c.tags && c.tags.length) li.append(tagChips(c.tags));
    return li;
  }
}
