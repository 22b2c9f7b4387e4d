// The chat pane: history with paging, sending text and files, read ticks,
// typing indicators, catching up after a reconnect.
import { t } from "/static/shared/i18n.js";
import { el, renderMessage, setRead } from "/static/shared/render.js";
import { newMsgId } from "/static/shared/chat-client.js";
import { uploadFile } from "/static/shared/upload.js";
import { guestName, avatar } from "./list.js";
import { describeError } from "./errors.js";

const PAGE = 30;
const CATCH_UP_PAGE = 100;
const TYPING_SEND_MS = 3000;
const TYPING_SHOW_MS = 4000;
const $ = (id) => document.getElementById(id);

export class ChatPane {
  /**
   * app: {client, list, token(), myId(), agentName(aix), isVisible(), onSent(gid, m), onQueued(),
   *       onNotMine(gid), onShow(gid|null), onTransfer(gid), onEnd(gid)}
   */
  constructor(app) {
    this.app = app;
    this.gid = null;
    this.guest = null;
    this.readOnly = false;
    this.rows = new Map(); // message id -> row
    this.pending = new Map(); // gid -> Map(client_msg_id -> entry)
    this.oldestId = null;
    this.newestId = null;
    this.lastReadId = 0;
    this.hasMore = false;
    this.loadingOlder = false;
    this.openToken = 0;
    this.atBottom = true;
    this.lastTypingSent = 0;
    this.typingTimer = null;
    this.dom = {
      empty: $("chat-empty"), main: $("chat-main"), avatar: $("chat-avatar"), name: $("chat-name"),
      presence: $("chat-presence"), scroller: $("messages"), top: $("history-top"),
      list: $("message-list"), typing: $("typing"), notice: $("chat-notice"),
      composer: $("composer"), text: $("composer-text"), send: $("send-btn"),
      attach: $("attach-btn"), file: $("file-input"), drop: $("drop-hint"),
      transfer: $("transfer-btn"), end: $("end-btn"), back: $("back-btn"),
    };
    this._wire();
  }

  // ---- wiring -----------------------------------------------------------------
  _wire() {
    const d = this.dom;
    d.composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.sendText();
    });
    d.text.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        this.sendText();
      }
    });
    d.text.addEventListener("input", () => {
      this._autosize();
      this._typed();
    });
    d.text.addEventListener("paste", (ev) => {
      const files = ev.clipboardData ? [...ev.clipboardData.files] : [];
      if (files.length) {
        ev.preventDefault();
        this.sendFiles(files);
      }
    });
    d.attach.addEventListener("click", () => d.file.click());
    d.file.addEventListener("change", () => {
      this.sendFiles([...d.file.files]);
      d.file.value = "";
    });
    d.transfer.addEventListener("click", () => this.gid && this.app.onTransfer(this.gid));
    d.end.addEventListener("click", () => this.gid && this.app.onEnd(this.gid));
    d.back.addEventListener("click", () => this.close());
    d.scroller.addEventListener("scroll", () => {
      const s = d.scroller;
      this.atBottom = s.scrollHeight - s.scrollTop - s.clientHeight < 40;
      if (s.scrollTop < 80) this.loadOlder();
    });
    // A picture that finishes loading, a notice or a taller composer must not push
    // the newest message out of view.
    d.scroller.addEventListener("load", () => { if (this.atBottom) this._toBottom(); }, true);
    new ResizeObserver(() => { if (this.atBottom) this._toBottom(); }).observe(d.scroller);
    d.list.addEventListener("click", (ev) => {
      const row = ev.target.closest(".cs-failed");
      if (row && row.dataset.cid) this._retry(row.dataset.cid);
    });
    this._wireDrop();
  }

  _wireDrop() {
    const d = this.dom;
    const hasFiles = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
    // Files dropped outside the chat must not make the browser leave the console.
    for (const type of ["dragover", "drop"]) {
      addEventListener(type, (ev) => { if (hasFiles(ev)) ev.preventDefault(); });
    }
    d.main.addEventListener("dragover", (ev) => {
      if (!hasFiles(ev) || this.readOnly) return;
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "copy";
      d.drop.hidden = false;
    });
    d.main.addEventListener("dragleave", (ev) => {
      if (!ev.relatedTarget || !d.main.contains(ev.relatedTarget)) d.drop.hidden = true;
    });
    d.main.addEventListener("drop", (ev) => {
      d.drop.hidden = true;
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      if (!this.readOnly) this.sendFiles([...ev.dataTransfer.files]);
    });
  }

  _autosize() {
    const ta = this.dom.text;
    ta.style.height = "auto";
    ta.style.height = Math.min(ta.scrollHeight + 2, 160) + "px";
  }

  _toBottom() {
    const s = this.dom.scroller;
    s.scrollTop = s.scrollHeight;
    this.atBottom = true;
  }

  // ---- opening and closing ------------------------------------------------
  /** Show a conversation of the list and load its newest messages. */
  async open(gid) {
    const g = this.app.list.get(gid);
    if (!g) return;
    const token = ++this.openToken;
    this.gid = Number(gid);
    this.guest = { ...g };
    this.readOnly = false;
    this.rows.clear();
    this.oldestId = this.newestId = null;
    this.lastReadId = 0;
    this.hasMore = false;
    this.loadingOlder = true;
    this.lastTypingSent = 0;
    const d = this.dom;
    d.list.replaceChildren();
    d.top.textContent = t("chat.loading");
    d.empty.hidden = true;
    d.main.hidden = false;
    this._hideTyping();
    this.setNotice("");
    this._setComposer(true);
    this.refreshHeader();
    this.app.onShow(this.gid);
    if (matchMedia("(min-width: 721px)").matches) d.text.focus();
    let data;
    try {
      data = await this.app.client.request(32100, { gid: this.gid, group_id: g.group_id, page_size: PAGE });
    } catch (err) {
      if (token !== this.openToken) return;
      this.loadingOlder = false;
      d.top.textContent = "";
      this.setNotice(t("chat.loadFailed", { reason: describeError(err) }), true);
      return;
    }
    if (token !== this.openToken) return;
    for (const m of data.list) this.place(m);
    for (const entry of this._pendingOf(this.gid).values()) this._showPending(entry);
    this.hasMore = data.list.length >= PAGE && data.total > data.list.length;
    this.loadingOlder = false;
    d.top.textContent = this.hasMore ? t("chat.more") : t("chat.start");
    this._toBottom();
    this.markRead();
    if (this.hasMore && d.scroller.scrollHeight <= d.scroller.clientHeight) this.loadOlder();
  }

  /** Back to "no conversation" (and to the list on a phone). */
  close() {
    this.openToken++;
    this.gid = null;
    this.guest = null;
    this.rows.clear();
    this.dom.list.replaceChildren();
    this.dom.main.hidden = true;
    this.dom.empty.hidden = false;
    this._hideTyping();
    this.app.onShow(null);
  }

  /** Header and composer after a change of the list (name, presence, assignment). */
  refreshHeader() {
    if (this.gid == null) return;
    const g = this.app.list.get(this.gid);
    if (g) this.guest = { ...g };
    const name = guestName(this.guest);
    this.dom.avatar.replaceChildren(avatar(name, this.guest.avatar));
    this.dom.name.textContent = name;
    this.dom.presence.textContent = t(this.guest.online ? "chat.online" : "chat.offline");
    this.dom.presence.classList.toggle("on", !!this.guest.online);
  }

  /** The conversation is no longer mine (ended, transferred, released): read only. */
  setReadOnly(text) {
    this.readOnly = true;
    this._setComposer(false);
    this._hideTyping();
    if (text) this.setNotice(text, false);
  }

  /** It is mine again (assigned back while open). */
  setWritable() {
    if (!this.readOnly) return;
    this.readOnly = false;
    this._setComposer(true);
    this.setNotice("");
  }

  _setComposer(on) {
    const d = this.dom;
    for (const b of [d.text, d.send, d.attach, d.transfer, d.end]) b.disabled = !on;
    d.composer.classList.toggle("disabled", !on);
  }

  /** Messages waiting for the server (all conversations). */
  get waiting() {
    let n = 0;
    for (const map of this.pending.values()) for (const e of map.values()) if (!e.failed) n++;
    return n;
  }

  setNotice(text, isError) {
    const n = this.dom.notice;
    n.textContent = text || "";
    n.hidden = !text;
    n.classList.toggle("info", !isError);
  }

  // ---- messages ----------------------------------------------------------
  _rowFor(m) {
    const mine = m.sender === "agent";
    const row = renderMessage(m, mine ? { mine: true, showRead: true } : { mine: false });
    if (mine && m.admin_id != null && Number(m.admin_id) !== this.app.myId()) {
      const col = row.querySelector(".cs-col");
      if (col) col.prepend(el("div", "cs-name", this.app.agentName(m.admin_id)));
    }
    if (mine && m.id && Number(m.id) <= this.lastReadId) setRead(row, true);
    return row;
  }

  /** Insert a message of the open conversation in id order; a repeat is ignored. */
  place(m) {
    if (this.gid == null || Number(m.gid) !== this.gid) return false;
    const id = Number(m.id);
    if (m.client_msg_id) {
      const entry = this._pendingOf(this.gid).get(m.client_msg_id);
      if (entry) {
        if (entry.row) entry.row.remove();
        this._pendingOf(this.gid).delete(m.client_msg_id);
      }
    }
    const known = this.rows.get(id);
    if (known) {
      if (m.read && m.sender === "agent") setRead(known, true);
      return false;
    }
    const row = this._rowFor(m);
    const list = this.dom.list;
    let after = null;
    for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
      if (node.dataset.id && Number(node.dataset.id) < id) {
        after = node;
        break;
      }
    }
    const stick = this.atBottom;
    // After the last older message (rows still waiting for the server stay below).
    if (after) after.after(row);
    else list.prepend(row);
    this.rows.set(id, row);
    this.oldestId = this.oldestId == null ? id : Math.min(this.oldestId, id);
    this.newestId = this.newestId == null ? id : Math.max(this.newestId, id);
    if (stick) this._toBottom();
    if (m.sender === "guest") this._hideTyping();
    return true;
  }

  /** 32299: the guest read my messages up to this id. */
  guestRead(gid, lastReadId) {
    if (Number(gid) !== this.gid) return;
    this.lastReadId = Math.max(this.lastReadId, Number(lastReadId) || 0);
    for (const [id, row] of this.rows) {
      if (id <= this.lastReadId && row.classList.contains("cs-msg-mine")) setRead(row, true);
    }
  }

  async loadOlder() {
    if (this.gid == null || !this.hasMore || this.loadingOlder || this.oldestId == null) return;
    const token = this.openToken;
    this.loadingOlder = true;
    this.dom.top.textContent = t("chat.loading");
    let data;
    try {
      data = await this.app.client.request(32100, {
        gid: this.gid, group_id: this.guest.group_id, page_size: PAGE, before_id: this.oldestId,
      });
    } catch (err) {
      if (token === this.openToken) {
        this.loadingOlder = false;
        this.dom.top.textContent = t("chat.more");
      }
      return;
    }
    if (token !== this.openToken) return;
    const s = this.dom.scroller;
    const height = s.scrollHeight;
    const top = s.scrollTop;
    this.atBottom = false;
    for (const m of data.list) this.place(m);
    s.scrollTop = top + (s.scrollHeight - height);
    this.hasMore = data.list.length >= PAGE;
    this.dom.top.textContent = this.hasMore ? t("chat.more") : t("chat.start");
    this.loadingOlder = false;
  }

  /** After a reconnect: everything newer than the last shown message, and fresh read ticks. */
  async catchUp() {
    if (this.gid == null) return;
    if (this.newestId == null) return this.open(this.gid);
    const token = this.openToken;
    const base = { gid: this.gid, group_id: this.guest.group_id };
    try {
      for (let after = this.newestId; ;) {
        const data = await this.app.client.request(32100, { ...base, page_size: CATCH_UP_PAGE, after_id: after });
        if (token !== this.openToken) return;
        for (const m of data.list) {
          this.place(m);
          after = Math.max(after, Number(m.id));
        }
        if (data.list.length < CATCH_UP_PAGE) break;
      }
      const recent = await this.app.client.request(32100, { ...base, page_size: PAGE });
      if (token !== this.openToken) return;
      for (const m of recent.list) this.place(m); // updates read ticks of shown messages
    } catch (err) {
      return;
    }
    this.markRead();
  }

  // ---- reading ---------------------------------------------------------------
  /** Mark the open conversation read if the agent can see it and it has unread messages. */
  markRead(force) {
    if (this.gid == null || !this.app.isVisible()) return;
    const g = this.app.list.get(this.gid);
    if (!force && !(g && Number(g.unread) > 0)) return;
    this.app.list.clearUnread(this.gid);
    this.app.client.request(32200, { gid: this.gid, group_id: this.guest.group_id }).catch(() => {});
  }

  // ---- typing -----------------------------------------------------------------
  _typed() {
    if (this.gid == null || this.readOnly || !this.dom.text.value.trim()) return;
    if (this.app.client.state !== "online") return;
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_SEND_MS) return;
    this.lastTypingSent = now;
    this.app.client.request(32600, { gid: this.gid }).catch(() => {});
  }

  /** 32699: the guest is typing. */
  showTyping(gid) {
    if (Number(gid) !== this.gid) return;
    const d = this.dom;
    d.typing.textContent = t("chat.typing", { name: guestName(this.guest) });
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this._hideTyping(), TYPING_SHOW_MS);
  }

  _hideTyping() {
    clearTimeout(this.typingTimer);
    this.dom.typing.textContent = ""; // the line keeps its height: the messages do not jump
  }

  // ---- sending ---------------------------------------------------------------
  _pendingOf(gid) {
    if (!this.pending.has(gid)) this.pending.set(gid, new Map());
    return this.pending.get(gid);
  }

  _newPending(file_type, msg) {
    const gid = this.gid;
    const entry = {
      gid,
      cid: newMsgId(),
      m: { id: null, gid, sender: "agent", admin_id: this.app.myId(), file_type, msg, created_at: Date.now(), read: false },
      row: null,
      failed: false,
    };
    entry.m.client_msg_id = entry.cid;
    this._pendingOf(gid).set(entry.cid, entry);
    this._showPending(entry);
    return entry;
  }

  _showPending(entry) {
    if (entry.gid !== this.gid) return;
    const row = renderMessage(entry.m, { mine: true, pending: entry.failed ? "failed" : true });
    row.dataset.cid = entry.cid;
    if (entry.row && entry.row.isConnected) entry.row.replaceWith(row);
    else this.dom.list.append(row);
    entry.row = row;
    if (entry.failed) row.title = entry.failed;
    this._toBottom();
  }

  sendText() {
    const text = this.dom.text.value.trim();
    if (!text || this.gid == null || this.readOnly) return;
    this.dom.text.value = "";
    this._autosize();
    this.lastTypingSent = 0;
    const entry = this._newPending(0, text);
    this._dispatch(entry, 0, text);
  }

  _dispatch(entry, fileType, msg) {
    entry.failed = false;
    entry.send = { fileType, msg };
    this.app.onQueued();
    this.app.client.send(32300, { gid: entry.gid, msg, file_type: fileType, client_msg_id: entry.cid }).then(
      (data) => {
        this.app.onSent(entry.gid, data.message_info);
        if (entry.row) entry.row.remove(); // if place() did not replace it (another conversation shown)
        this._pendingOf(entry.gid).delete(entry.cid);
        this.app.onQueued();
      },
      (err) => {
        if (err.code === -32304) {
          this.app.onNotMine(entry.gid);
        }
        this._fail(entry, t("chat.sendFailed", { reason: describeError(err) }));
      },
    );
  }

  _fail(entry, text) {
    entry.failed = text;
    this._showPending(entry);
    if (entry.gid === this.gid) this.setNotice(text, true);
  }

  _retry(cid) {
    const entry = this.gid != null && this._pendingOf(this.gid).get(cid);
    if (!entry || !entry.failed || this.readOnly) return;
    this.setNotice("");
    entry.failed = false;
    this._showPending(entry);
    if (entry.send) this._dispatch(entry, entry.send.fileType, entry.send.msg);
    else this._upload(entry);
  }

  sendFiles(files) {
    if (this.gid == null || this.readOnly) return;
    for (const file of files) {
      const entry = this._newPending(6, { name: file.name || "file", size: file.size });
      entry.file = file;
      this._upload(entry);
    }
  }

  async _upload(entry) {
    const file = entry.file;
    let info;
    try {
      info = await uploadFile(file, this.app.token());
    } catch (err) {
      const reasons = { 0: "login.network", 413: "chat.tooLarge", 415: "chat.badType", 400: "chat.badFile" };
      const reason = reasons[err.status] ? t(reasons[err.status]) : err.message;
      return this._fail(entry, t("chat.uploadFailed", { name: file.name, reason }));
    }
    entry.m.file_type = Number(info.file_type);
    entry.m.msg = info;
    this._showPending(entry);
    this._dispatch(entry, Number(info.file_type), info.file_id);
  }
}
