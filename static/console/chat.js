// The chat pane: history with paging, sending text, files and cards, read ticks, typing
// indicators, catching up after a reconnect; private notes in the history (protocol §3
// "The desk": 32820/32830), read-only views of other conversations (32800), opening at a
// found message (32810), and the "New messages" pill that never hides a reply.
import { t } from "/static/shared/i18n.js";
import { el, formatTime, renderMessage, renderText, setRead } from "/static/shared/render.js";
import { newMsgId } from "/static/shared/chat-client.js";
import { uploadFile } from "/static/shared/upload.js";
import { guestName, avatar } from "./list.js";
import { describeError } from "./errors.js";
import { CannedPicker } from "./canned.js";
import { markOf, markChips, latestOf } from "./marks.js";

const PAGE = 30;
const CATCH_UP_PAGE = 100;
const AROUND_PAGES = 10; // at most this many pages of newer messages after a found one
const TYPING_SEND_MS = 3000;
const TYPING_SHOW_MS = 4000;
const NEAR_BOTTOM_PX = 80; // "at the bottom" for new messages: they scroll into view
const $ = (id) => document.getElementById(id);

/** [sort, sub] of a row: messages by id, a note after its after_message_id (by note id). */
function keyOf(node) {
  if (!node.dataset || node.dataset.sort == null) return null;
  return [Number(node.dataset.sort), Number(node.dataset.sub || 0)];
}
const before = (a, b) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

export class ChatPane {
  /**
   * app: {client, list, token(), myId(), myName(), agentName(aix), isVisible(), onSent(gid, m),
   *       onQueued(), onNotMine(gid), onShow(gid|null), onTransfer(gid), onEnd(gid),
   *       onBlock(gid), isBlocked(gid), onViewChanged(), loadCanned()}
   */
  constructor(app) {
    this.app = app;
    this.gid = null;
    this.guest = null;
    this.readOnly = false;
    this.view = { past: false, conversation: null, lower: null, upper: null };
    this.notesAllowed = false;
    this.noteMode = false;
    this.rows = new Map(); // message id -> row
    this.noteRows = new Map(); // note id -> row
    this.pending = new Map(); // gid -> Map(client_msg_id -> entry)
    this.oldestId = null;
    this.newestId = null;
    this.lastReadId = 0;
    this.hasMore = false;
    this.loadingOlder = false;
    this.bulk = false; // placing history: no pill
    this.openToken = 0;
    this.openOpts = {};
    this.atBottom = true;
    this.lastTypingSent = 0;
    this.typingTimer = null;
    this.dom = {
      empty: $("chat-empty"), main: $("chat-main"), avatar: $("chat-avatar"), name: $("chat-name"),
      presence: $("chat-presence"), blocked: $("chat-blocked"), scroller: $("messages"), top: $("history-top"),
      list: $("message-list"), typing: $("typing"), notice: $("chat-notice"), pill: $("new-pill"),
      composer: $("composer"), text: $("composer-text"), label: $("composer-label"), send: $("send-btn"),
      attach: $("attach-btn"), emoji: $("emoji-btn"), card: $("card-btn"), note: $("note-btn"),
      mode: $("composer-mode"), file: $("file-input"), drop: $("drop-hint"),
      transfer: $("transfer-btn"), end: $("end-btn"), back: $("back-btn"), block: $("block-btn"),
      marks: $("chat-marks"),
    };
    this.canned = new CannedPicker({
      textarea: this.dom.text,
      popup: $("canned-popup"),
      load: () => this.app.loadCanned(),
      fill: (text) => text
        .replace(/\{visitor_name\}/g, this.guest ? guestName(this.guest) : "")
        .replace(/\{agent_name\}/g, this.app.myName()),
      enabled: () => !this.noteMode && !this.readOnly,
    });
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
      if (this.canned.handleKey(ev)) return;
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        this.sendText();
      } else if (ev.key === "Escape" && this.noteMode && !this.readOnly) {
        this.setNoteMode(false);
      }
    });
    d.text.addEventListener("input", () => {
      this._autosize();
      this._typed();
    });
    d.text.addEventListener("paste", (ev) => {
      const files = ev.clipboardData ? [...ev.clipboardData.files] : [];
      if (files.length && !this.noteMode) {
        ev.preventDefault();
        this.sendFiles(files);
      }
    });
    d.attach.addEventListener("click", () => d.file.click());
    d.file.addEventListener("change", () => {
      this.sendFiles([...d.file.files]);
      d.file.value = "";
    });
    d.note.addEventListener("click", () => {
      this.setNoteMode(!this.noteMode);
      if (!d.text.disabled) d.text.focus();
    });
    d.transfer.addEventListener("click", () => this.gid && this.app.onTransfer(this.gid));
    d.end.addEventListener("click", () => this.gid && this.app.onEnd(this.gid));
    d.block.addEventListener("click", () => this.gid && this.app.onBlock(this.gid));
    d.back.addEventListener("click", () => this.close());
    d.pill.addEventListener("click", () => {
      this._toBottom();
      d.scroller.focus({ preventScroll: true });
    });
    d.scroller.addEventListener("scroll", () => {
      const s = d.scroller;
      this.atBottom = s.scrollHeight - s.scrollTop - s.clientHeight <= NEAR_BOTTOM_PX;
      if (this.atBottom) d.pill.hidden = true;
      if (s.scrollTop < 80) this.loadOlder();
    });
    // A picture that finishes loading, a notice or a taller composer must not push
    // the newest message out of view.
    d.scroller.addEventListener("load", () => { if (this.atBottom) this._toBottom(); }, true);
    new ResizeObserver(() => { if (this.atBottom) this._toBottom(); }).observe(d.scroller);
    new ResizeObserver(() => { if (this.atBottom) this._toBottom(); }).observe(d.list);
    d.list.addEventListener("click", (ev) => {
      const row = ev.target.closest(".cs-failed");
      if (row && row.dataset.cid) return this._retry(row.dataset.cid);
      // A photo opens in the lightbox (shared/lightbox.js); with a modifier key, a new tab.
      const link = ev.target.closest(".cs-image-link");
      if (!link || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
      ev.preventDefault();
      const img = link.querySelector("img");
      import("/static/shared/lightbox.js").then(
        ({ openLightbox }) => openLightbox(link.href, img ? img.alt : ""),
        () => window.open(link.href, "_blank", "noopener,noreferrer"),
      );
    });
    // The emoji picker (shared/emoji.js), loaded on first use.
    d.emoji.hidden = false;
    d.emoji.addEventListener("click", async () => {
      if (d.text.disabled) return;
      try {
        const { toggleEmojiPicker } = await import("/static/shared/emoji.js");
        toggleEmojiPicker(d.emoji, d.text, t("chat.emoji"));
      } catch (e) { /* not available: the button does nothing */ }
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
      if (!hasFiles(ev) || this.readOnly || this.noteMode) return;
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
      if (!this.readOnly && !this.noteMode) this.sendFiles([...ev.dataTransfer.files]);
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
    this.dom.pill.hidden = true;
  }

  /** Insert text at the cursor (emoji picker). */
  insertText(text) {
    const ta = this.dom.text;
    if (ta.disabled) return;
    const start = ta.selectionStart ?? ta.value.length;
    const end = ta.selectionEnd ?? ta.value.length;
    ta.setRangeText(text, start, end, "end");
    ta.dispatchEvent(new Event("input", { bubbles: true }));
    ta.focus();
  }

  // ---- opening and closing ------------------------------------------------
  /**
   * Show a conversation and load its messages.
   * opts: {conversation (conversation_info of a read-only view), guest ({gid, group_id, name,
   * avatar} when the visitor is not in my list), readOnly, notice (text, or a function giving
   * it in the current language), anchor (a message id to open at)}. Without opts: my conversation with a guest of my list, writable.
   */
  async open(gid, opts = {}) {
    gid = Number(gid);
    const g = this.app.list.get(gid);
    const readOnly = !!opts.readOnly || !g;
    if (!g && !opts.guest && !opts.conversation) return;
    const token = ++this.openToken;
    this.openOpts = opts;
    this.gid = gid;
    const conv = opts.conversation || null;
    this.guest = { ...(opts.guest || {}), ...(g || {}) };
    if (!this.guest.gid) this.guest.gid = gid;
    if (this.guest.group_id == null && conv) this.guest.group_id = conv.group_id;
    if (!this.guest.name && conv) this.guest.name = conv.name;
    const past = readOnly && !!conv && conv.state === "ended";
    this.view = {
      past: readOnly && !!conv && (past || !(g && Number(g.conversation_id) === Number(conv.conversation_id))),
      conversation: conv,
      lower: readOnly && conv && conv.first_message_id ? Number(conv.first_message_id) : null,
      upper: past && conv.last_message_id ? Number(conv.last_message_id) : null,
    };
    this.readOnly = readOnly;
    this.rows.clear();
    this.noteRows.clear();
    this.oldestId = this.newestId = null;
    this.lastReadId = 0;
    this.hasMore = false;
    this.loadingOlder = true;
    this.lastTypingSent = 0;
    this.noteMode = false;
    this.notesAllowed = !this.view.past;
    const d = this.dom;
    d.list.replaceChildren();
    d.pill.hidden = true;
    d.top.textContent = t(opts.anchor ? "chat.loadingAround" : "chat.loading");
    d.empty.hidden = true;
    d.main.hidden = false;
    this.canned.close();
    this._hideTyping();
    const notice = typeof opts.notice === "function" ? opts.notice() : opts.notice;
    this.setNotice(readOnly ? notice || t("chat.readOnly") : "", false);
    this._syncComposer();
    this.refreshHeader();
    this.app.onShow(this.gid);
    if (!readOnly && matchMedia("(min-width: 721px)").matches && !opts.anchor) d.text.focus();
    const base = { gid: this.gid, group_id: this.guest.group_id };
    this.bulk = true;
    try {
      if (opts.anchor) await this._loadAround(token, base, Number(opts.anchor));
      else {
        const params = { ...base, page_size: PAGE };
        if (this.view.upper != null) params.before_id = this.view.upper + 1;
        const data = await this.app.client.request(32100, params);
        if (token !== this.openToken) return;
        for (const m of data.list) this.place(m);
        this.hasMore = data.list.length >= PAGE && (params.before_id != null || data.total > data.list.length);
      }
    } catch (err) {
      if (token !== this.openToken) return;
      this.bulk = false;
      this.loadingOlder = false;
      d.top.textContent = "";
      this.setNotice(t("chat.loadFailed", { reason: describeError(err) }), true);
      return;
    } finally {
      if (token === this.openToken) this.bulk = false;
    }
    if (token !== this.openToken) return;
    if (this.view.lower != null && this.oldestId != null && this.oldestId <= this.view.lower) this.hasMore = false;
    if (!readOnly) for (const entry of this._pendingOf(this.gid).values()) this._showPending(entry);
    this.loadingOlder = false;
    d.top.textContent = this.hasMore ? t("chat.more") : t("chat.start");
    if (opts.anchor) this._showAnchor(Number(opts.anchor));
    else this._toBottom();
    this.markRead();
    this._loadNotes(token);
    if (!opts.anchor && this.hasMore && d.scroller.scrollHeight <= d.scroller.clientHeight) this.loadOlder();
  }

  /** Open again with the same view (a language change, a lost history). */
  reopen() {
    if (this.gid != null) return this.open(this.gid, this.openOpts);
  }

  /** The found message and the page before it, then everything newer (32100 before_id / after_id). */
  async _loadAround(token, base, anchor) {
    const older = await this.app.client.request(32100, { ...base, page_size: PAGE, before_id: anchor + 1 });
    if (token !== this.openToken) return;
    for (const m of older.list) this.place(m);
    this.hasMore = older.list.length >= PAGE;
    const after = older.list.length ? Math.max(...older.list.map((m) => Number(m.id))) : anchor;
    await this._placeAfter(token, base, after, AROUND_PAGES);
  }

  /**
   * Place the messages newer than `after`, a page at a time (at most `pages` pages), up to
   * the view's upper end. False when another conversation was opened meanwhile.
   */
  async _placeAfter(token, base, after, pages = Infinity) {
    for (let i = 0; i < pages; i++) {
      if (this.view.upper != null && after >= this.view.upper) break;
      const data = await this.app.client.request(32100, { ...base, page_size: CATCH_UP_PAGE, after_id: after });
      if (token !== this.openToken) return false;
      for (const m of data.list) {
        this.place(m);
        after = Math.max(after, Number(m.id));
      }
      if (data.list.length < CATCH_UP_PAGE) break;
    }
    return true;
  }

  _showAnchor(id) {
    const row = this.rows.get(id);
    if (!row) return this._toBottom();
    for (const old of this.dom.list.querySelectorAll(".cs-hit")) old.classList.remove("cs-hit");
    row.classList.add("cs-hit");
    row.tabIndex = -1;
    const s = this.dom.scroller;
    s.scrollTop = Math.max(0, row.offsetTop - s.offsetTop - (s.clientHeight - row.offsetHeight) / 2);
    const st = s.scrollHeight - s.scrollTop - s.clientHeight;
    this.atBottom = st <= NEAR_BOTTOM_PX;
    row.focus({ preventScroll: true });
  }

  /** Back to "no conversation" (and to the list on a phone). */
  close() {
    this.openToken++;
    this.gid = null;
    this.guest = null;
    this.openOpts = {};
    this.view = { past: false, conversation: null, lower: null, upper: null };
    this.rows.clear();
    this.noteRows.clear();
    this.noteMode = false;
    this.canned.close();
    this.dom.list.replaceChildren();
    this.dom.main.hidden = true;
    this.dom.empty.hidden = false;
    this.dom.marks.replaceChildren();
    this.dom.marks.hidden = true;
    this.dom.pill.hidden = true;
    this._hideTyping();
    this.app.onShow(null);
  }

  /** The shown conversation is the guest's current one (not an earlier, read-only one). */
  isLive(gid) {
    return this.gid != null && this.gid === Number(gid) && !this.view.past;
  }

  /** The conversation_id the view is about (for tags and notes), or null when unknown. */
  get conversationId() {
    if (this.view.conversation) return Number(this.view.conversation.conversation_id);
    const id = this.guest && this.guest.conversation_id;
    return id == null ? null : Number(id);
  }

  /** Header and composer after a change of the list (name, presence, assignment, tags, block). */
  refreshHeader() {
    if (this.gid == null) return;
    const g = this.app.list.get(this.gid);
    if (g) Object.assign(this.guest, g);
    const name = guestName(this.guest);
    this.dom.avatar.replaceChildren(avatar(name, this.guest.avatar));
    this.dom.name.textContent = name;
    if (g || this.guest.online != null) {
      this.dom.presence.textContent = t(this.guest.online ? "chat.online" : "chat.offline");
    } else this.dom.presence.textContent = "";
    this.dom.presence.classList.toggle("on", !!this.guest.online);
    const blocked = this.app.isBlocked(this.gid);
    this.dom.blocked.hidden = !blocked;
    this.dom.block.textContent = t(blocked ? "block.unblock" : "block.block");
    this.dom.block.classList.toggle("danger", !blocked);
    this.renderMarks();
    this.app.onViewChanged();
  }

  /** The conversation whose marks the pane shows: the one viewed, else the visitor's open
   * one, else (none open: it ended) the visitor's latest, the one at the bottom of the chat. */
  get marksConversationId() {
    if (this.gid == null) return null;
    const cid = this.conversationId;
    return cid != null ? cid : latestOf(this.gid);
  }

  /** The shown conversation's marks (marks.js): left with the away form, the visitor's rating. */
  renderMarks() {
    const box = this.dom.marks;
    const cid = this.marksConversationId;
    const conv = this.view.conversation;
    const mark = markOf(cid) || (conv && Number(conv.conversation_id) === cid ? conv : null);
    const chips = cid == null ? [] : markChips(mark, { comment: true });
    box.replaceChildren(...chips);
    box.hidden = !chips.length;
  }

  /** The conversation is no longer mine (ended, transferred, released): read only. */
  setReadOnly(text) {
    this.readOnly = true;
    if (this.noteMode && !this.notesAllowed) this.noteMode = false;
    this.canned.close();
    this._syncComposer();
    this._hideTyping();
    if (text) this.setNotice(text, false);
  }

  /** It is mine again (assigned back while open). An earlier conversation stays read only. */
  setWritable() {
    if (!this.readOnly || this.view.past || !this.app.list.has(this.gid)) return;
    this.readOnly = false;
    this.view.conversation = null;
    this.view.lower = null;
    this.openOpts = {};
    this._syncComposer();
    this.setNotice("");
  }

  /** Notes may be written on this view (its conversation is the visitor's latest). */
  setNotesAllowed(on) {
    this.notesAllowed = !!on;
    if (!on) this.noteMode = false;
    this._syncComposer();
  }

  setNoteMode(on) {
    this.noteMode = !!on && this.notesAllowed;
    this.canned.close();
    this._syncComposer();
  }

  _syncComposer() {
    const d = this.dom;
    const write = !this.readOnly && this.gid != null;
    if (!write && !this.notesAllowed) this.noteMode = false;
    const text = write || this.noteMode;
    d.text.disabled = !text;
    d.send.disabled = !text;
    d.emoji.disabled = !text;
    for (const b of [d.attach, d.card, d.transfer, d.end]) b.disabled = !write;
    d.attach.disabled = d.card.disabled = !write || this.noteMode;
    d.note.disabled = !this.notesAllowed || this.gid == null;
    d.note.setAttribute("aria-pressed", this.noteMode ? "true" : "false");
    d.composer.classList.toggle("disabled", !text);
    d.composer.classList.toggle("note-mode", this.noteMode);
    d.text.placeholder = t(this.noteMode ? "note.placeholder" : "chat.placeholder");
    d.label.textContent = t(this.noteMode ? "note.label" : "chat.label");
    d.send.textContent = t(this.noteMode ? "note.send" : "chat.send");
    d.mode.textContent = this.noteMode ? t("note.mode") : "";
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

  /** Put a row in sort order (after the last row that sorts before it). */
  _insert(row) {
    const key = keyOf(row);
    const list = this.dom.list;
    let after = null;
    for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
      const k = keyOf(node);
      if (k && before(k, key)) {
        after = node;
        break;
      }
    }
    // After the last row before it (rows still waiting for the server stay below).
    if (after) after.after(row);
    else list.prepend(row);
  }

  /** A new row at the end: keep it in view at the bottom, else offer the pill. */
  _arrived(stick, isNewest) {
    if (stick) this._toBottom();
    else if (isNewest && !this.bulk) this.dom.pill.hidden = false;
  }

  /** Insert a message of the open conversation in id order; a repeat is ignored. */
  place(m) {
    if (this.gid == null || Number(m.gid) !== this.gid) return false;
    const id = Number(m.id);
    const { lower, upper } = this.view;
    if ((lower != null && id < lower) || (upper != null && id > upper)) return false;
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
    row.dataset.sort = id;
    row.dataset.sub = 0;
    const stick = this.atBottom;
    const isNewest = this.newestId == null || id > this.newestId;
    this._insert(row);
    this.rows.set(id, row);
    this.oldestId = this.oldestId == null ? id : Math.min(this.oldestId, id);
    this.newestId = this.newestId == null ? id : Math.max(this.newestId, id);
    this._arrived(stick, isNewest);
    if (m.sender === "guest") this._hideTyping();
    return true;
  }

  // ---- private notes (32820, 32830, push 32821) --------------------------------
  async _loadNotes(token) {
    const params = { gid: this.gid };
    const cid = this.conversationId;
    if (cid != null) params.conversation_id = cid;
    let data;
    try {
      data = await this.app.client.request(32830, params);
    } catch (err) {
      return; // a server without notes, or none readable: the chat works without
    }
    if (token !== this.openToken) return;
    const stick = this.atBottom;
    this.bulk = true;
    for (const n of data.notes || []) this.placeNote(n);
    this.bulk = false;
    if (stick) this._toBottom();
  }

  /** Show a note where it belongs (after its after_message_id); a repeat is ignored. */
  placeNote(note) {
    if (this.gid == null || Number(note.gid) !== this.gid) return false;
    const cid = this.view.conversation ? Number(this.view.conversation.conversation_id) : null;
    if (cid != null && note.conversation_id != null && Number(note.conversation_id) !== cid) return false;
    const id = Number(note.id);
    if (this.noteRows.has(id)) return false;
    const after = Number(note.after_message_id) || 0;
    if (this.view.upper != null && after > this.view.upper) return false;
    const name = note.admin_name || this.app.agentName(note.admin_id);
    const label = t("note.by", { name });
    const row = el("div", "cs-note-row", null, el("div", "cs-note", null,
      el("div", "cs-note-label", label),
      renderText(note.msg == null ? "" : note.msg),
      el("div", "cs-meta", null, el("span", "cs-time", formatTime(note.created_at)))));
    row.setAttribute("role", "note");
    row.setAttribute("aria-label", label);
    row.dataset.noteId = id;
    row.dataset.sort = after;
    row.dataset.sub = 1; // after its message; among notes after the same one, by id (below)
    row.dataset.nid = id;
    const stick = this.atBottom;
    const list = this.dom.list;
    // Among notes after the same message, in id order.
    let placed = false;
    for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
      const k = keyOf(node);
      if (!k) continue;
      if (k[0] < after || (k[0] === after && (k[1] === 0 || Number(node.dataset.nid) < id))) {
        node.after(row);
        placed = true;
        break;
      }
    }
    if (!placed) list.prepend(row);
    this.noteRows.set(id, row);
    this._arrived(stick, after >= (this.newestId || 0));
    return true;
  }

  async sendNote() {
    const text = this.dom.text.value.trim();
    if (!text || this.gid == null || !this.notesAllowed) return;
    const gid = this.gid;
    const token = this.openToken;
    this.dom.text.value = "";
    this._autosize();
    this.dom.send.disabled = true;
    let data;
    try {
      data = await this.app.client.request(32820, { gid, msg: text });
    } catch (err) {
      if (token === this.openToken) {
        if (!this.dom.text.value) this.dom.text.value = text;
        this._autosize();
        this.setNotice(t("note.failed", { reason: describeError(err) }), true);
        this._syncComposer();
      }
      return;
    }
    if (token !== this.openToken) return;
    if (!this.readOnly) this.noteMode = false; // the next send is a message again
    this._syncComposer();
    if (data.note) {
      this.placeNote(data.note);
      this._toBottom();
    }
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
    this.bulk = true;
    for (const m of data.list) this.place(m);
    this.bulk = false;
    s.scrollTop = top + (s.scrollHeight - height);
    this.hasMore = data.list.length >= PAGE;
    if (this.view.lower != null && data.list.some((m) => Number(m.id) <= this.view.lower)) this.hasMore = false;
    this.dom.top.textContent = this.hasMore ? t("chat.more") : t("chat.start");
    this.loadingOlder = false;
  }

  /** After a reconnect: everything newer than the last shown message, and fresh read ticks. */
  async catchUp() {
    if (this.gid == null) return;
    if (this.newestId == null) return this.reopen();
    const token = this.openToken;
    const base = { gid: this.gid, group_id: this.guest.group_id };
    try {
      if (!(await this._placeAfter(token, base, this.newestId))) return;
      const params = { ...base, page_size: PAGE };
      if (this.view.upper != null) params.before_id = this.view.upper + 1;
      const recent = await this.app.client.request(32100, params);
      if (token !== this.openToken) return;
      for (const m of recent.list) this.place(m); // updates read ticks of shown messages
    } catch (err) {
      return;
    }
    this._loadNotes(token);
    this.markRead();
  }

  // ---- reading ---------------------------------------------------------------
  /** Mark the open conversation read if the agent can see it and it has unread messages. */
  markRead(force) {
    if (this.gid == null || this.view.past || !this.app.isVisible()) return;
    const g = this.app.list.get(this.gid);
    if (!g) return;
    if (!force && !(Number(g.unread) > 0)) return;
    this.app.list.clearUnread(this.gid);
    this.app.client.request(32200, { gid: this.gid, group_id: this.guest.group_id }).catch(() => {});
  }

  // ---- typing -----------------------------------------------------------------
  _typed() {
    if (this.gid == null || this.readOnly || this.noteMode || !this.dom.text.value.trim()) return;
    if (this.app.client.state !== "online") return;
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_SEND_MS) return;
    this.lastTypingSent = now;
    this.app.client.request(32600, { gid: this.gid }).catch(() => {});
  }

  /** 32699: the guest is typing. */
  showTyping(gid) {
    if (!this.isLive(gid)) return;
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
    if (entry.gid !== this.gid || this.readOnly) return;
    const row = renderMessage(entry.m, { mine: true, pending: entry.failed ? "failed" : true });
    row.dataset.cid = entry.cid;
    if (entry.row && entry.row.isConnected) entry.row.replaceWith(row);
    else this.dom.list.append(row);
    entry.row = row;
    if (entry.failed) row.title = entry.failed;
    this._toBottom();
  }

  sendText() {
    if (this.canned.isOpen) return;
    if (this.noteMode) return this.sendNote();
    const text = this.dom.text.value.trim();
    if (!text || this.gid == null || this.readOnly) return;
    this.dom.text.value = "";
    this._autosize();
    this.lastTypingSent = 0;
    const entry = this._newPending(0, text);
    this._dispatch(entry, 0, text);
  }

  /** A product (3) or order (4) card (R26): msg is the card object. */
  sendCard(fileType, card) {
    if (this.gid == null || this.readOnly) return false;
    const entry = this._newPending(fileType, card);
    this._dispatch(entry, fileType, card);
    return true;
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
