// The conversation list: one entry per guest_info, most recent first.
import { t } from "/static/shared/i18n.js";
import { el, formatTime, summary, renderAvatar } from "/static/shared/render.js";
import { markOf, markChips } from "./marks.js";

/** The guest's name, or "Visitor #gid". */
export function guestName(g) {
  const name = g && typeof g.name === "string" ? g.name.trim() : "";
  return name || t("list.visitor", { gid: g ? g.gid : "?" });
}

/** A round avatar (http(s) picture, else the first letter), sized by .avatar. */
export function avatar(name, url) {
  return renderAvatar(name, url, "avatar");
}

export class ConversationList {
  /**
   * @param {HTMLElement} ul the <ul> to fill
   * @param {HTMLElement} empty shown when there is no conversation
   * @param {{onSelect: (gid:number)=>void, onChange: ()=>void, myId: ()=>number}} hooks
   */
  constructor(ul, empty, hooks) {
    this.ul = ul;
    this.empty = empty;
    this.hooks = hooks;
    this.guests = new Map(); // gid -> guest_info (kept up to date)
    this.items = new Map(); // gid -> <li>
    this.active = null;
    ul.addEventListener("click", (ev) => {
      const li = ev.target.closest(".conv-item");
      if (li) hooks.onSelect(Number(li.dataset.gid));
    });
    ul.addEventListener("keydown", (ev) => {
      const li = ev.target.closest(".conv-item");
      if (li && (ev.key === "Enter" || ev.key === " ")) {
        ev.preventDefault();
        hooks.onSelect(Number(li.dataset.gid));
      }
    });
  }

  get(gid) {
    return this.guests.get(Number(gid));
  }

  has(gid) {
    return this.guests.has(Number(gid));
  }

  /** Replace everything (login, 32000). */
  setAll(list) {
    this.guests.clear();
    for (const g of list || []) this.guests.set(Number(g.gid), { ...g });
    this.render();
  }

  /** Add or replace one conversation (32401). */
  upsert(info) {
    const gid = Number(info.gid);
    this.guests.set(gid, { ...(this.guests.get(gid) || {}), ...info });
    this.render();
  }

  /** Change some fields of one conversation's guest_info (context, tags, blocked…). */
  patch(gid, fields) {
    const g = this.get(gid);
    if (!g) return false;
    Object.assign(g, fields);
    this.render();
    return true;
  }

  remove(gid) {
    if (this.guests.delete(Number(gid))) this.render();
  }

  /** A new message in a conversation; counts it unread when asked. */
  addMessage(gid, m, countUnread) {
    const g = this.get(gid);
    if (!g) return false;
    const last = g.last_message;
    if (!last || !(Number(last.id) > Number(m.id))) g.last_message = m;
    g.updated_at = Math.max(Number(g.updated_at) || 0, Number(m.created_at) || 0);
    if (countUnread) g.unread = (Number(g.unread) || 0) + 1;
    this.render();
    return true;
  }

  setOnline(gid, online) {
    const g = this.get(gid);
    if (!g) return;
    g.online = !!online;
    this.render();
  }

  clearUnread(gid) {
    const g = this.get(gid);
    if (g && g.unread) {
      g.unread = 0;
      this.render();
    }
  }

  totalUnread() {
    let n = 0;
    for (const g of this.guests.values()) n += Number(g.unread) || 0;
    return n;
  }

  setActive(gid) {
    this.active = gid == null ? null : Number(gid);
    for (const [id, li] of this.items) {
      li.classList.toggle("active", id === this.active);
      li.setAttribute("aria-current", id === this.active ? "true" : "false");
    }
  }

  /** Bring the DOM in line with the data, reusing each conversation's <li>. */
  render() {
    const sorted = [...this.guests.values()].sort(
      (a, b) => (Number(b.updated_at) || 0) - (Number(a.updated_at) || 0) || b.gid - a.gid,
    );
    for (const [gid, li] of this.items) {
      if (!this.guests.has(gid)) {
        li.remove();
        this.items.delete(gid);
      }
    }
    for (const g of sorted) {
      const gid = Number(g.gid);
      let li = this.items.get(gid);
      if (!li) {
        li = el("li", "conv-item");
        li.dataset.gid = gid;
        li.tabIndex = 0;
        this.items.set(gid, li);
      }
      this._fill(li, g);
      this.ul.append(li); // moves it into sorted order
    }
    this.empty.hidden = this.guests.size > 0;
    this.setActive(this.active);
    this.hooks.onChange();
  }

  _fill(li, g) {
    const name = guestName(g);
    const wrap = el("span", "avatar-wrap");
    wrap.append(avatar(name, g.avatar));
    const dot = el("span", "presence-dot" + (g.online ? " on" : ""));
    dot.title = t(g.online ? "chat.online" : "chat.offline");
    wrap.append(dot);
    const m = g.last_message;
    const top = el("span", "conv-name", name);
    const time = el("span", "conv-time", formatTime(m ? m.created_at : g.updated_at));
    let preview = m ? summary(m) : "";
    if (m && m.sender === "agent" && Number(m.admin_id) === this.hooks.myId()) {
      preview = t("list.you") + preview;
    }
    const text = el("span", "conv-preview", preview.replace(/\s+/g, " "));
    const unread = Number(g.unread) || 0;
    const badge = el("span", "conv-badge", unread > 99 ? "99+" : unread);
    badge.hidden = !unread;
    li.replaceChildren(wrap, top, time, text, badge);
    li.setAttribute("aria-label", name + (unread ? " (" + unread + ")" : ""));
    // Left with the away form, rated (marks.js): a line of chips, read as the item's description.
    const chips = markChips(markOf(g.conversation_id));
    if (chips.length) {
      const marks = el("span", "conv-marks", null, ...chips);
      marks.id = "conv-marks-" + Number(g.gid);
      li.append(marks);
      li.setAttribute("aria-describedby", marks.id);
    } else li.removeAttribute("aria-describedby");
  }
}
