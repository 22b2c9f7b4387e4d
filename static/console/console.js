// The agent console: sign-in, the connection, and the pushes that drive the
// conversation list (list.js), the chat pane (chat.js) and the dialogs.
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

const TOKEN_KEY = "cschat.console.token";
const $ = (id) => document.getElementById(id);

let token = null;
let myId = null;
let client = null;
let firstLogin = true;
const agents = new Map(); // admin_id -> agent_info of my group

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
  agentName,
  isVisible: () => document.visibilityState === "visible" && !document.body.classList.contains("show-admin") &&
    (isWide() || document.body.classList.contains("show-chat")),
  onSent(gid, m) {
    list.addMessage(gid, m, false);
    chat.place(m);
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
  },
  onTransfer: (gid) => transfer.open(gid),
  onEnd: endConversation,
  onTransferred: transferredAway,
};

const admin = new AdminArea({
  token: () => token,
  myId: () => myId,
  onSignedOut: (message) => signOut(message),
  onLeave: () => chat.markRead(),
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

// ---- conversation actions ----------------------------------------------------
async function refreshList() {
  if (!client) return;
  try {
    const data = await client.request(32000);
    list.setAll(data.guest_list);
  } catch (e) {
    return;
  }
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
  agents.clear();
  for (const a of data.admin_list || []) agents.set(Number(a.admin_id), a);
  const me = agents.get(myId);
  $("me-name").textContent = me ? me.name : "";
  status.set(me ? me.status : "online");
  admin.setRole(data.role);
  if (firstLogin) {
    firstLogin = false;
    list.setAll(data.guest_list);
  }
}

async function onReconnected() {
  await refreshList();
  chat.catchUp();
}

function wirePushes(c) {
  c.on(32399, ({ gid, message_info: m }) => {
    gid = Number(gid);
    const seen = chat.gid === gid && app.isVisible();
    if (list.has(gid)) list.addMessage(gid, m, !seen);
    else refreshList();
    if (chat.gid === gid) {
      chat.place(m);
      if (seen) chat.markRead(true);
    }
    const g = list.get(gid) || { gid };
    alerts.alertNew({ title: guestName(g), body: summary(m), tag: "cschat-" + gid, onClick: () => chat.open(gid) });
  });
  c.on(32398, ({ gid, message_info: m }) => app.onSent(Number(gid), m));
  c.on(32401, ({ guest_info: g, recs, from_aix: from }) => {
    const gid = Number(g.gid);
    list.upsert(g);
    if (chat.gid === gid) {
      chat.setWritable();
      for (const m of recs || []) chat.place(m);
    }
    const body = from != null ? t("notify.transferred", { name: agentName(from) }) : t("notify.newChat");
    alerts.alertNew({ title: guestName(g), body, tag: "cschat-" + gid, onClick: () => chat.open(gid) });
  });
  c.on(32402, ({ gid, aix }) => transferredAway(gid, aix));
  c.on(32098, ({ gid, online }) => list.setOnline(gid, online));
  c.on(32699, ({ gid }) => chat.showTyping(gid));
  c.on(32299, ({ gid, last_read_id: id }) => chat.guestRead(gid, id));
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
  list.setAll([]);
  if (transfer.dialog.open) transfer.dialog.close();
  admin.reset();
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
    if (chat.gid != null) chat.open(chat.gid);
  });
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
