// The open conversation's tags under the chat header: shown, added and removed with 32840,
// kept live by push 32841 (protocol §3 "The desk"). Tags belong to a conversation_id.
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { describeError } from "./errors.js";

const $ = (id) => document.getElementById(id);

/** A tag is 1–32 characters without commas (32840). */
export function validTag(tag) {
  return typeof tag === "string" && tag.length >= 1 && [...tag].length <= 32 && !tag.includes(",");
}

/** Small read-only chips for lists. */
export function tagChips(tags, className = "tag-chips") {
  const box = el("span", className);
  for (const tag of tags || []) box.append(el("span", "tag-chip", tag));
  return box;
}

export class TagBar {
  /**
   * app: {client, conversationId() (of the open view, or null), resolveConversation() →
   * Promise of a conversation_id (the open one learned from the server), onTags(conversation_id,
   * gid, tags), gid()}
   */
  constructor(app) {
    this.app = app;
    this.tags = [];
    this.conversationId = null;
    this.gid = null; // the visitor whose tags are shown
    this.busy = false;
    // conversation_id -> tags from a 32840 answer or a 32841 push: newer than any answer to
    // a request sent before them, which must not show the tags of before (forget() on a
    // reconnection, when pushes may have been missed).
    this.latest = new Map();
    this.dom = {
      bar: $("chat-tags"), list: $("tag-list"), add: $("tag-add-btn"), form: $("tag-form"),
      input: $("tag-input"), cancel: $("tag-cancel"), error: $("tags-error"),
    };
    const d = this.dom;
    d.add.addEventListener("click", () => this._openForm());
    d.cancel.addEventListener("click", () => this._closeForm(true));
    d.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        this._closeForm(true);
      }
    });
    d.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this._add();
    });
    d.list.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-tag]");
      if (b) this._remove(b.dataset.tag);
    });
  }

  /** Show the tags of a conversation (null: the visitor has no conversation yet). */
  show(conversationId, tags) {
    const id = conversationId == null ? null : Number(conversationId);
    // Another visitor, or another of its conversations: close what was being typed. Not
    // when the open conversation's id is only learned now (it loads after the click).
    const gid = this.app.gid();
    const changed = gid !== this.gid || (this.conversationId != null && id !== this.conversationId);
    this.gid = gid;
    this.conversationId = id;
    this.tags = [...(this.latest.get(this.conversationId) || tags || [])];
    if (changed) {
      this._closeForm(false);
      this._error("");
    }
    this.render();
  }

  /** Push 32841, or the answer to my change. */
  update(conversationId, tags) {
    this.latest.set(Number(conversationId), [...(tags || [])]);
    if (this.conversationId == null || Number(conversationId) !== this.conversationId) return;
    this.tags = [...(tags || [])];
    this.render();
  }

  /** Pushes may have been missed (reconnected, signed out): fetched tags are the newest. */
  forget() {
    this.latest.clear();
  }

  render() {
    const d = this.dom;
    const focused = document.activeElement && d.list.contains(document.activeElement)
      ? document.activeElement.dataset.tag : null;
    d.list.replaceChildren(...this.tags.map((tag) => {
      const remove = el("button", "tag-remove", "×");
      remove.type = "button";
      remove.dataset.tag = tag;
      remove.setAttribute("aria-label", t("tags.remove", { tag }));
      remove.title = t("tags.remove", { tag });
      return el("li", "tag-chip", null, el("span", null, tag), remove);
    }));
    if (!this.tags.length) d.list.append(el("li", "tags-none", t("tags.none")));
    if (focused) {
      const again = [...d.list.querySelectorAll("button[data-tag]")].find((b) => b.dataset.tag === focused);
      (again || d.add).focus();
    }
  }

  _openForm() {
    const d = this.dom;
    d.add.hidden = true;
    d.form.hidden = false;
    d.input.value = "";
    this._error("");
    d.input.focus();
  }

  _closeForm(focus) {
    const d = this.dom;
    d.form.hidden = true;
    d.add.hidden = false;
    if (focus) d.add.focus();
  }

  _error(text) {
    this.dom.error.textContent = text || "";
    this.dom.error.hidden = !text;
  }

  async _change(params) {
    if (this.busy) return false;
    let cid = this.conversationId;
    if (cid == null) cid = await this.app.resolveConversation();
    if (cid == null) {
      this._error(t("tags.noConversation"));
      return false;
    }
    this.busy = true;
    try {
      const data = await this.app.client.request(32840, { conversation_id: cid, ...params });
      this.conversationId = Number(data.conversation_id ?? cid);
      this.tags = [...(data.tags || [])];
      this.latest.set(this.conversationId, [...this.tags]);
      this.render();
      this.app.onTags(this.conversationId, this.app.gid(), this.tags);
      this._error("");
      return true;
    } catch (err) {
      this._error(t("tags.failed", { reason: describeError(err) }));
      return false;
    } finally {
      this.busy = false;
    }
  }

  async _add() {
    const tag = this.dom.input.value.trim();
    if (!validTag(tag)) {
      this._error(t("tags.bad"));
      this.dom.input.focus();
      return;
    }
    if (this.tags.includes(tag)) {
      this._closeForm(true);
      return;
    }
    if (await this._change({ add: [tag] })) this._closeForm(true);
  }

  async _remove(tag) {
    await this._change({ remove: [tag] });
  }
}
