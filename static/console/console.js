// The agent console: sign-in, the connection, and the pushes that drive the
// conversation list (list.js), the chat pane (chat.js) and the dialogs; the desk
// (protocol §3 "The desk"): the visitor panel (visitor.js), all conversations
// (conversations.js), search (search.js), tags (tags.js), notes, blocks, cards (cards.js);
// reception (protocol §4): conversations left with the away form and the visitors' ratings
// (marks.js, push 32951), the Settings tab "Hours & messages" (admin-hours.js).
import "./strings.js";
import { t, translatePage, setLanguage, getLanguage, onLanguageChange, LANGUAGES } from "/static/shared/i18n.js";
import { ChatClient } from "/static/shared/chat-client.js";
import { summary } from "/static/shared/render.js";
import { ConversationList, guestName } from "./list.js";
import { ChatPane } from "./chat.js";
import { TransferDialog, StatusToggle, confirmDialog } from "./dialogs.js";
import { describeError } from "./errors.js";
import * as alerts from "./alerts.js";
import { AdminArea } from "./admin.js";
import { VisitorPanel } from "./visitor.js";
import { ConversationsView } from "./conversations.js";
import { SearchBox } from "./search.js";
import { TagBar } from "./tags.js";
import { CardDialog } from "./cards.js";
import { learn, rated, onMarksChange, clearMarks } from "./marks.js";

const TOKEN_KEY = "cschat.console.token";
const $ = (id) => document.getElementById(id);

let token = null;
let myId = null;
let myGroup = null;
let client = null;
let firstLogin = true;
const agents = new Map(); // admin_id -> agent_info of my group
const blocked = new Map(); // gid -> blocked (32851, guest_info.blocked, 32850 answers)
const tagsSeen = new Set(); // every tag seen, for the tag inputs' suggestions
let refreshTimer = null;
let marksTimer = null;
let toastTimer = null;
let toastAction = null;
const MARKS_DELAY_MS = 800;
const TOAST_MS = 12_000;

// ---- the token: kept in sessionStorage only ------------------------------------
function storeToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) { /* storage blocked: the token lives in memory only */ }
}

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch (e) {
    return null;
  }
}

/** Single sign-on: /console/#token=…; the fragment leaves the address bar at once. */
function takeFragmentToken() {
  if (!location.hash) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  const value = params.get("token");
  history.replaceState(history.state, "", location.pathname + location.search);
  return value || null;
}

function agentName(aix) {
  const a = agents.get(Number(aix));
  return a && a.name ? a.name : "#" + aix;
}

const isWide = () => matchMedia("(min-width: 721px)").matches;

// ---- the parts of the page ---------------------------------------------------
const app = {
  get client() { return client; },
  get list() { return list; },
  token: () => token,
  myId: () => myId,
  myName: () => agentName(myId).replace(/^#\d+$/, ""),
  agentName,
  isVisible: () => document.visibilityState === "visible" && !document.body.classList.contains("show-admin") &&
    (isWide() || document.body.classList.contains("show-chat")),
  onSent(gid, m) {
    list.addMessage(gid, m, false);
    chat.place(m);
    refreshSoon(gid);
    visitor.refreshSoon(gid);
  },
  onNotMine(gid) {
    list.remove(gid);
    if (chat.gid === gid) chat.setReadOnly(t("chat.notMine"));
    refreshList();
  },
  onQueued: () => showState(),
  onShow(gid) {
    list.setActive(gid);
    document.body.classList.toggle("show-chat", gid != null);
    if (gid == null) {
      visitor.clear();
      conversations.setActive(null);
    }
  },
  onTransfer: (gid) => transfer.open(gid),
  onEnd: endConversation,
  onTransferred: transferredAway,
  onBlock: toggleBlock,
  isBlocked,
  onViewChanged: viewChanged,
  loadCanned: () => client.request(32860).then((data) => data.list || []),
};

const admin = new AdminArea({
  token: () => token,
  myId: () => myId,
  groupId: () => myGroup,
  onSignedOut: (message) => signOut(message),
  onLeave: () => chat.markRead(),
  onCannedChanged: () => chat.canned.reset(),
  onBlockLifted: (gid) => setBlocked(gid, false),
});
const list = new ConversationList($("conv-list"), $("list-empty"), {
  onSelect: (gid) => chat.open(gid),
  onChange: () => {
    alerts.setTitleCount(list.totalUnread());
    admin.setUnread(list.totalUnread());
    chat.refreshHeader();
  },
  myId: () => myId,
});
const chat = new ChatPane(app);
const transfer = new TransferDialog(app);
const status = new StatusToggle(app);
const cards = new CardDialog(chat);
const visitor = new VisitorPanel({
  get client() { return client; },
  agentName,
  myId: () => myId,
  openConversation: (conv) => openConversation(conv),
  onToggle: () => {},
  onConversations(gid, convs) {
    for (const c of convs) rememberTags(c.tags);
    // Notes go to the visitor's open (else latest) conversation: allowed on an earlier
    // conversation's view only when it is that one.
    if (chat.gid === Number(gid) && chat.view.past) {
      const latest = convs[0];
      chat.setNotesAllowed(!!latest && Number(latest.conversation_id) === chat.conversationId);
    }
  },
});
const conversations = new ConversationsView({
  get client() { return client; },
  agentName,
  myId: () => myId,
  openConversation: (conv) => openConversation(conv),
  knownTags: rememberTags,
  onView: () => {},
});
const search = new SearchBox({
  get client() { return client; },
  openMessage,
  openVisitor,
});
const tags = new TagBar({
  get client() { return client; },
  conversationId: () => chat.conversationId,
  resolveConversation,
  onTags: applyTags,
  gid: () => chat.gid,
});

// ---- the desk ------------------------------------------------------------------
function isBlocked(gid) {
  const g = list.get(gid);
  if (g && g.blocked != null && !blocked.has(Number(gid))) return !!g.blocked;
  return !!blocked.get(Number(gid));
}

function setBlocked(gid, on) {
  gid = Number(gid);
  blocked.set(gid, !!on);
  list.patch(gid, { blocked: !!on });
  if (chat.gid !== gid) return;
  chat.refreshHeader();
  // The notice of my own conversation says it too (a read-only view keeps its own).
  const notice = t("block.blocked", { name: guestName(chat.guest) });
  if (on && !chat.readOnly) chat.setNotice(notice, false);
  else if (!on && chat.dom.notice.textContent === notice) chat.setNotice("");
}

async function toggleBlock(gid) {
  const g = list.get(gid) || chat.guest || { gid };
  const name = guestName(g);
  const on = !isBlocked(gid);
  if (!(await confirmDialog(t(on ? "block.confirm" : "block.confirmLift", { name })))) return;
  try {
    const data = await client.request(32850, { gid, blocked: on ? 1 : 0 });
    setBlocked(gid, data.blocked != null ? !!Number(data.blocked) : on);
  } catch (err) {
    if (chat.gid === Number(gid)) chat.setNotice(t("block.failed", { reason: describeError(err) }), true);
  }
}

function rememberTags(list) {
  let added = false;
  for (const tag of list || []) {
    if (!tagsSeen.has(tag)) {
      tagsSeen.add(tag);
      added = true;
    }
  }
  if (!added) return;
  const box = $("tag-suggestions");
  box.replaceChildren(...[...tagsSeen].sort().map((tag) => new Option(tag)));
}

/** Tags of a conversation changed (push 32841 or my 32840): everywhere they are shown. */
function applyTags(conversationId, gid, list_) {
  const cid = Number(conversationId);
  rememberTags(list_);
  const g = gid != null ? list.get(gid) : null;
  if (g && (g.conversation_id == null || Number(g.conversation_id) === cid)) {
    list.patch(gid, { tags: [...list_], conversation_id: cid });
  }
  if (chat.view.conversation && Number(chat.view.conversation.conversation_id) === cid) {
    chat.view.conversation.tags = [...list_];
  }
  tags.update(cid, list_);
  visitor.setTags(cid, list_);
  conversations.setTags(cid, list_);
}

/** The open conversation's id, learned from the server when guest_info has none yet. */
async function resolveConversation() {
  const gid = chat.gid;
  if (gid == null) return null;
  if (chat.conversationId != null) return chat.conversationId;
  try {
    const data = await client.request(32800, { gid, filter: "all", limit: 5 });
    const open = (data.list || []).find((c) => c.state === "open");
    if (!open || chat.gid !== gid) return null;
    if (list.has(gid)) list.patch(gid, { conversation_id: open.conversation_id, tags: open.tags || [] });
    return Number(open.conversation_id);
  } catch (err) {
    return null;
  }
}

/** After every change of the chat pane's view: tags, visitor panel, highlighted rows. */
let shownOpen = -1; // the chat pane's openToken the panels were last shown for
function viewChanged() {
  if (chat.gid == null) return;
  const conv = chat.view.conversation;
  const fresh = chat.openToken !== shownOpen;
  shownOpen = chat.openToken;
  tags.show(chat.conversationId, conv ? conv.tags : chat.guest.tags);
  visitor.show(chat.guest, conv ? conv.conversation_id : null, fresh);
  conversations.setActive(chat.conversationId);
  rememberTags(conv ? conv.tags : chat.guest.tags);
}

/** A conversation_info (32800): mine and open → my chat; else read only. */
function openConversation(conv, anchor) {
  learn([conv]);
  const gid = Number(conv.gid);
  const g = list.get(gid);
  const opts = anchor ? { anchor } : {};
  if (g && conv.state === "open" && (g.conversation_id == null || Number(g.conversation_id) === Number(conv.conversation_id))) {
    return chat.open(gid, opts);
  }
  const notice = () => { // in the language of the moment (a switch opens the view again)
    if (conv.state === "ended") return t(g ? "chat.readOnlyPast" : "chat.readOnlyEnded");
    if (conv.waiting) return t("chat.readOnlyWaiting");
    if (conv.admin_id != null && Number(conv.admin_id) !== myId) return t("chat.readOnlyOther", { name: agentName(conv.admin_id) });
    return t("chat.readOnly");
  };
  return chat.open(gid, {
    ...opts, conversation: conv, readOnly: true, notice,
    guest: { gid, group_id: conv.group_id, name: conv.name },
  });
}

async function findConversation(gid, conversationId) {
  try {
    const data = await client.request(32800, { gid, filter: "all", limit: 100 });
    const convs = data.list || [];
    if (conversationId == null) return convs[0] || null;
    return convs.find((c) => Number(c.conversation_id) === Number(conversationId)) || null;
  } catch (err) {
    return null;
  }
}

/** A search result (32810 messages[]): its conversation, scrolled to the message. */
async function openMessage(hit) {
  const gid = Number(hit.gid);
  const g = list.get(gid);
  const anchor = Number(hit.message_id);
  if (g && (g.conversation_id == null || Number(g.conversation_id) === Number(hit.conversation_id))) {
    return chat.open(gid, { anchor });
  }
  const conv = await findConversation(gid, hit.conversation_id);
  if (conv) return openConversation(conv, anchor);
  return chat.open(gid, { anchor, readOnly: true, guest: { gid, group_id: myGroup, name: hit.name } });
}

/** A visitor found by name (32810 visitors[]). */
async function openVisitor(v) {
  const gid = Number(v.gid);
  if (list.has(gid)) return chat.open(gid);
  const conv = await findConversation(gid, v.last_conversation_id);
  if (conv) return openConversation(conv);
  return chat.open(gid, { readOnly: true, guest: { gid, group_id: myGroup, name: v.name } });
}

/** guest_info without a conversation_id got a message: learn the new one (32000). */
function refreshSoon(gid) {
  const g = list.get(gid);
  if (!g || g.conversation_id != null || !("conversation_id" in g)) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshList, 400);
}

// ---- marks: left messages and ratings (marks.js) ------------------------------------
// guest_info tells neither, and no push tells of a message left with the away form (22900):
// my open conversations (32800 "mine") are read again a little after each guest message
// or assignment, and at login.
function marksSoon() {
  clearTimeout(marksTimer);
  marksTimer = setTimeout(loadMarks, MARKS_DELAY_MS);
}

async function loadMarks() {
  if (!client) return;
  let data;
  try {
    data = await client.request(32800, { filter: "mine", limit: 100 });
  } catch (err) {
    return; // a server without the desk: no marks
  }
  const convs = data.list || [];
  learn(convs);
  // The away form also left the visitor's e-mail in its context (no 32097 tells it): the
  // list again (32000) brings it to the visitor panel.
  const noEmail = convs.some((c) => {
    const g = c.left_message && list.get(c.gid);
    return g && Number(g.conversation_id) === Number(c.conversation_id) && !(g.context && g.context.email);
  });
  if (noEmail) refreshList();
}

function marksChanged() {
  list.render();
  conversations.render();
  visitor.renderConversations();
  chat.renderMarks();
}

/** Push 32951: a visitor rated a conversation I held. */
function onRated({ gid, conversation_id: cid, rating, comment }) {
  gid = Number(gid);
  rated(cid, rating, comment, gid);
  visitor.refreshSoon(gid);
  const g = list.get(gid) || (chat.gid === gid ? chat.guest : null) || { gid };
  const name = guestName(g);
  const text = comment
    ? t("toast.ratedComment", { name, rating, comment: String(comment).replace(/\s+/g, " ").slice(0, 140) })
    : t("toast.rated", { name, rating });
  const shown = chat.gid === gid && chat.marksConversationId === Number(cid);
  showToast(text, shown ? null : async () => {
    const conv = await findConversation(gid, cid);
    if (conv) openConversation(conv);
    else if (list.has(gid)) chat.open(gid);
  });
}

// ---- the toast: a short notice for the agent (a rating came) -----------------------------
function showToast(text, onOpen) {
  const box = $("toast");
  $("toast-text").textContent = text;
  toastAction = onOpen || null;
  $("toast-open").hidden = !onOpen;
  box.hidden = false;
  // Emptied first, so that the same sentence twice is announced twice.
  const live = $("toast-live");
  live.textContent = "";
  setTimeout(() => { live.textContent = text; }, 30);
  armToast();
}

function armToast() {
  clearTimeout(toastTimer);
  toastTimer = setTimeout(hideToast, TOAST_MS);
}

function hideToast() {
  clearTimeout(toastTimer);
  const box = $("toast");
  const hadFocus = box.contains(document.activeElement);
  box.hidden = true;
  toastAction = null;
  if (hadFocus) (chat.gid != null ? $("messages") : $("conv-list")).focus({ preventScroll: true });
}

function wireToast() {
  const box = $("toast");
  // Not while the agent reads it or is about to click it.
  box.addEventListener("mouseenter", () => clearTimeout(toastTimer));
  box.addEventListener("focusin", () => clearTimeout(toastTimer));
  box.addEventListener("mouseleave", () => { if (!box.contains(document.activeElement)) armToast(); });
  box.addEventListener("focusout", (ev) => { if (!box.contains(ev.relatedTarget)) armToast(); });
  box.addEventListener("keydown", (ev) => { if (ev.key === "Escape") hideToast(); });
  $("toast-close").addEventListener("click", hideToast);
  $("toast-open").addEventListener("click", () => {
    const action = toastAction;
    hideToast();
    if (action) action();
  });
}

// ---- conversation actions ----------------------------------------------------
async function refreshList() {
  if (!client) return;
  try {
    const data = await client.request(32000);
    list.setAll(data.guest_list);
    for (const g of data.guest_list || []) rememberTags(g.tags);
  } catch (e) {
    return;
  }
  // The answer may predate my reading of the open conversation: its unread count is stale.
  chat.markRead();
  if (chat.gid != null) {
    if (list.has(chat.gid)) chat.setWritable();
    else if (!chat.readOnly) chat.setReadOnly(t("chat.notMine"));
  }
}

async function endConversation(gid) {
  const g = list.get(gid) || { gid };
  if (!(await confirmDialog(t("chat.endConfirm", { name: guestName(g) })))) return;
  try {
    await client.request(32700, { gid });
  } catch (err) {
    if (err.code === -32702) return app.onNotMine(gid);
    if (chat.gid === gid) chat.setNotice(describeError(err), true);
    return;
  }
  list.remove(gid);
  if (chat.gid === gid) {
    chat.setReadOnly(t("chat.ended"));
    chat.catchUp(); // shows the "ended" system message
  }
  visitor.refreshSoon(gid); // its conversation is "ended" now
}

function transferredAway(gid, aix) {
  gid = Number(gid);
  list.remove(gid);
  if (chat.gid === gid && !chat.readOnly) {
    chat.setReadOnly(t("chat.transferredTo", { name: agentName(aix) }));
    chat.catchUp();
  }
}

// ---- pushes ------------------------------------------------------------------------
function onLogin(data) {
  myId = Number(data.admin_id);
  myGroup = Number(data.group_id);
  agents.clear();
  for (const a of data.admin_list || []) agents.set(Number(a.admin_id), a);
  const me = agents.get(myId);
  $("me-name").textContent = me ? me.name : "";
  status.set(me ? me.status : "online");
  admin.setRole(data.role);
  if (firstLogin) {
    firstLogin = false;
    list.setAll(data.guest_list);
    for (const g of data.guest_list || []) rememberTags(g.tags);
  }
  marksSoon();
}

async function onReconnected() {
  tags.forget();
  await refreshList();
  marksSoon();
  chat.catchUp();
  if (conversations.view === "all") conversations.reload();
}

function wirePushes(c) {
  c.on(32399, ({ gid, message_info: m }) => {
    gid = Number(gid);
    const seen = chat.isLive(gid) && app.isVisible();
    if (list.has(gid)) list.addMessage(gid, m, !seen);
    else refreshList();
    if (chat.gid === gid) {
      chat.place(m);
      if (seen) chat.markRead(true);
    }
    refreshSoon(gid);
    visitor.refreshSoon(gid);
    marksSoon();
    const g = list.get(gid) || { gid };
    alerts.alertNew({ title: guestName(g), body: summary(m), tag: "cschat-" + gid, onClick: () => chat.open(gid) });
  });
  c.on(32398, ({ gid, message_info: m }) => app.onSent(Number(gid), m));
  c.on(32401, ({ guest_info: g, recs, from_aix: from }) => {
    const gid = Number(g.gid);
    list.upsert(g);
    rememberTags(g.tags);
    if (g.blocked != null) blocked.set(gid, !!g.blocked);
    if (chat.gid === gid) {
      chat.setWritable();
      for (const m of recs || []) chat.place(m);
    }
    marksSoon();
    const body = from != null ? t("notify.transferred", { name: agentName(from) }) : t("notify.newChat");
    alerts.alertNew({ title: guestName(g), body, tag: "cschat-" + gid, onClick: () => chat.open(gid) });
  });
  c.on(32402, ({ gid, aix }) => transferredAway(gid, aix));
  c.on(32098, ({ gid, online }) => list.setOnline(gid, online));
  c.on(32699, ({ gid }) => chat.showTyping(gid));
  c.on(32299, ({ gid, last_read_id: id }) => chat.guestRead(gid, id));
  // The desk (protocol §6): the visitor's page, notes, tags, blocks.
  c.on(32097, ({ gid, context }) => {
    gid = Number(gid);
    list.patch(gid, { context });
    if (chat.gid === gid && chat.guest) chat.guest.context = context;
    visitor.setContext(gid, context);
  });
  c.on(32821, ({ note }) => { if (note) chat.placeNote(note); });
  c.on(32841, ({ conversation_id: cid, gid, tags: list_ }) => applyTags(cid, gid, list_ || []));
  c.on(32851, ({ gid, blocked: on }) => setBlocked(gid, !!Number(on)));
  c.on(32951, onRated);
  c.on(33099, (info) => {
    agents.set(Number(info.admin_id), info);
    if (Number(info.admin_id) === myId) status.set(info.status);
    transfer.agentChanged(info);
  });
}

// ---- connection state -------------------------------------------------------
function showState() {
  const box = $("conn-state");
  const s = client ? client.state : "offline";
  box.hidden = s === "online" || s === "offline";
  box.classList.toggle("offline", s === "reconnecting");
  if (s === "reconnecting" && chat.waiting) box.textContent = t("conn.pending", { n: chat.waiting });
  else box.textContent = t(s === "reconnecting" ? "conn.reconnecting" : "conn.connecting");
}

// ---- session -----------------------------------------------------------------------
const SIGNED_OUT = {
  "-9999": "login.ended",
  "-31001": "login.expired",
  "-31002": "login.unknown",
  "-31003": "login.disabled",
  "-31004": "login.groupDisabled",
};

function startSession(value) {
  token = value;
  blocked.clear();
  storeToken(value);
  firstLogin = true;
  $("signin").hidden = true;
  $("app").hidden = false;
  document.body.classList.replace("signed-out", "signed-in");
  client = new ChatClient({ role: "agent", getToken: () => token });
  client.on("state", showState);
  client.on("login", onLogin);
  client.on("reconnected", onReconnected);
  client.on("refresh", (fresh) => {
    token = fresh;
    storeToken(fresh);
  });
  client.on("signed-out", (err) => signOut(t(SIGNED_OUT[String(err.code)] || "login.ended")));
  wirePushes(client);
  client.connect();
  showState();
  updateNotifyButton();
}

function signOut(message) {
  const old = client;
  client = null;
  if (old) old.close();
  token = null;
  myId = null;
  storeToken(null);
  agents.clear();
  chat.pending.clear();
  chat.close();
  chat.canned.reset();
  list.setAll([]);
  if (transfer.dialog.open) transfer.dialog.close();
  if (cards.dialog.open) cards.dialog.close();
  admin.reset();
  conversations.reset();
  search.reset();
  visitor.clear();
  blocked.clear();
  tagsSeen.clear();
  tags.forget();
  clearTimeout(marksTimer);
  clearMarks();
  hideToast();
  $("toast-live").textContent = "";
  $("tag-suggestions").replaceChildren();
  $("app").hidden = true;
  $("signin").hidden = false;
  document.body.classList.replace("signed-in", "signed-out");
  showSigninError(message || "");
  $("signin-pass").value = "";
  $("signin-user").focus();
}

function showSigninError(text) {
  const box = $("signin-error");
  box.textContent = text;
  box.hidden = !text;
}

async function submitSignin(ev) {
  ev.preventDefault();
  const button = $("signin-submit");
  const username = $("signin-user").value.trim();
  const password = $("signin-pass").value;
  if (!username || !password) return;
  button.disabled = true;
  button.textContent = t("login.busy");
  showSigninError("");
  try {
    const res = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = await res.json().catch(() => ({}));
    if (res.ok && body.code === 200 && body.data && body.data.token) {
      $("signin-pass").value = "";
      startSession(body.data.token);
    } else {
      const keys = { "-31002": "login.wrong", "-31003": "login.disabled", "-31004": "login.groupDisabled" };
      const key = keys[String(body.code)];
      showSigninError(key ? t(key) : t("login.failed", { status: res.status }));
    }
  } catch (e) {
    showSigninError(t("login.network"));
  } finally {
    button.disabled = false;
    button.textContent = t("login.submit");
  }
}

// ---- notifications, language, visibility -------------------------------------
function updateNotifyButton() {
  $("notify-btn").hidden = !alerts.canAskPermission();
}

function updateLanguageButtons() {
  const other = LANGUAGES.find((l) => l.code !== getLanguage()) || LANGUAGES[0];
  for (const b of document.querySelectorAll(".lang-switch")) {
    b.textContent = other.label;
    b.dataset.lang = other.code;
  }
}

function boot() {
  translatePage();
  updateLanguageButtons();
  for (const b of document.querySelectorAll(".lang-switch")) {
    b.addEventListener("click", () => setLanguage(b.dataset.lang));
  }
  onLanguageChange(() => {
    translatePage();
    updateLanguageButtons();
    list.render();
    status.render();
    transfer.render();
    showState();
    conversations.render();
    visitor.renderFacts();
    visitor.renderConversations();
    tags.render();
    if (chat.gid != null) chat.reopen();
  });
  onMarksChange(marksChanged);
  wireToast();
  $("signin-form").addEventListener("submit", submitSignin);
  $("signout-btn").addEventListener("click", () => signOut(""));
  $("notify-btn").addEventListener("click", () => alerts.askPermission().then(updateNotifyButton));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") chat.markRead();
  });
  matchMedia("(min-width: 721px)").addEventListener("change", () => chat.markRead());

  const value = takeFragmentToken() || storedToken();
  if (value) startSession(value);
  else $("signin-user").focus();
}

boot();
