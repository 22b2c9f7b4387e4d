// The visitor's chat page, shown in an iframe by /embed.js (or opened as /widget/#group=N).
import { ChatClient, newMsgId } from "/static/shared/chat-client.js";
import { addCatalog, t, bindLanguageSelect, onLanguageChange, translatePage } from "/static/shared/i18n.js";
import { el, renderMessage, renderAvatar, setRead } from "/static/shared/render.js";
import { uploadFile } from "/static/shared/upload.js";

addCatalog({
  en: {
    title: "Customer service", language: "Language", close: "Close", attach: "Send a picture or file",
    emoji: "Emoji", placeholder: "Write a message…", send: "Send", loading: "Loading…",
    welcome: "Hello! Send us a message and we will answer here.", newer: "New messages ↓",
    online: "Online", connecting: "Connecting…", reconnecting: "Connection lost, reconnecting…",
    queue: "Waiting for an agent — you are number {n} in line",
    waiting: "An agent will be with you shortly", ended: "The conversation has ended. Write again any time.",
    typing: "{name} is typing…", uploading: "Uploading {name}…", drop: "Drop files to send them",
    tooLarge: "{name} is too large.", badType: "This kind of file cannot be sent.", uploadFailed: "Upload failed.",
    tooLong: "The message is too long.", notSent: "Not sent: {reason}", retry: "Click to try again",
    unavailable: "Chat is not available right now.",
    blocked: "You cannot send messages here for now. What you write is kept until you can.",
    busy: "All agents are busy", busyWait: "All agents are busy — about {n} min wait",
    position: "you are number {n} in line", away: "We are away",
    leftNote: "We'll answer by e-mail at {email}", transcript: "Send me the transcript",
  },
  "zh-CN": {
    title: "在线客服", language: "语言", close: "关闭", attach: "发送图片或文件",
    emoji: "表情", placeholder: "输入消息…", send: "发送", loading: "加载中…",
    welcome: "您好！请留言，客服会在这里回复您。", newer: "有新消息 ↓",
    online: "在线", connecting: "正在连接…", reconnecting: "连接已断开，正在重连…",
    queue: "正在等待客服，您前面排在第 {n} 位",
    waiting: "客服马上就来", ended: "会话已结束，您可以随时再次留言。",
    typing: "{name} 正在输入…", uploading: "正在上传 {name}…", drop: "松开即可发送文件",
    tooLarge: "{name} 太大了。", badType: "不支持发送这种文件。", uploadFailed: "上传失败。",
    tooLong: "消息太长了。", notSent: "发送失败：{reason}", retry: "点击重试",
    unavailable: "在线客服暂时不可用。",
    blocked: "您暂时无法在此发送消息，已输入的内容会为您保留。",
    busy: "客服都在忙", busyWait: "客服都在忙，预计等待约 {n} 分钟",
    position: "您排在第 {n} 位", away: "客服暂时不在",
    leftNote: "我们会通过邮件回复到 {email}", transcript: "把聊天记录发到我的邮箱",
  },
});

const $ = (id) => document.getElementById(id);
const log = $("log");
const list = $("list");
const input = $("input");
const pill = $("pill");
const framed = window.parent !== window;

let group = 0, client = null, shopToken = false;
let token = ""; // the shop's token, or our anonymous one
let agent = null; // agent_info of the assigned agent
const agents = new Map(); // admin_id -> agent_info seen
const msgs = new Map(); // id -> message_info
const rows = new Map(); // id or client_msg_id -> row element
const pending = new Map(); // client_msg_id -> {m, params, failed}
let initialDone = false, hasMore = false, loadingOlder = false, panelOpen = true;
let unread = 0, typingTimer = 0, lastTyping = 0, blocked = false, audio = null;
let note = ""; // "queue" (22098) | "ended" (22701) | ""
// The group's availability (PROTOCOL §4 21000, 22095): "online" | "busy" | "away"
let avail = "online", wait = null, greeting = null, queuePos = 0, endedId = -1;
let rx = null, rxMod = null; // the reception screens (reception.js), loaded on first use
let context = null, contextSent = ""; // the host page (PROTOCOL §4 21000 context, 22800)

// Storage (may be blocked in a third-party iframe)
const store = (fn, ...a) => { try { return localStorage[fn](...a); } catch (e) { return null; } };
const tokenKey = () => "cschat.guest." + group;

async function getToken() {
  if (token) return token;
  token = store("getItem", tokenKey()) || "";
  if (token) return token;
  const body = JSON.stringify({ group_id: group });
  const r = await fetch("/api/visitor", { method: "POST", headers: { "Content-Type": "application/json" }, body });
  const j = await r.json().catch(() => ({}));
  if ([400, 403, 404].includes(r.status)) {
    client.close(); // anonymous chat is off, or no such group
    fatal();
  }
  if (!r.ok || !j.data || !j.data.token) throw new Error("no visitor token");
  token = j.data.token;
  store("setItem", tokenKey(), token);
  return token;
}

// The host page's address, title and referrer (strings bounded), with our language and zone.
function setContext(c) {
  const cut = (s, n) => (typeof s === "string" && s ? s.slice(0, n) : null);
  context = {
    url: cut(c.url, 2048), title: cut(c.title, 256), referrer: cut(c.referrer, 2048),
    language: navigator.language || null, timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || null,
  };
}
const contextKey = () => context.url + "\n" + context.title;

function sendContext() {
  if (!client || client.state !== "online" || contextKey() === contextSent) return;
  contextSent = contextKey();
  client.request(22800, { context }).catch(() => {}); // -10002 from a server without it
}

// Start
function start(cfg) {
  if (client) return;
  group = parseInt(cfg.group, 10) || 0;
  if (typeof cfg.token === "string" && cfg.token) {
    token = cfg.token;
    shopToken = true;
  }
  setContext(Object(cfg.context || { referrer: document.referrer }));
  if (!group && !shopToken) return fatal();
  const loginParams = () => { contextSent = contextKey(); return { context }; };
  client = new ChatClient({ role: "guest", getToken, loginParams });
  client.on("state", showState);
  client.on("refresh", (tok) => {
    token = tok;
    if (!shopToken) store("setItem", tokenKey(), tok);
  });
  client.on("login", onLogin);
  client.on("signed-out", onSignedOut);
  client.on(22399, (d) => {
    const m = d.message_info, near = atBottom();
    if (!add(m)) return;
    follow(near || m.sender === "guest");
    if (m.sender !== "guest") onIncoming(m);
  });
  client.on(22299, (d) => markMineRead(d.last_read_id));
  client.on(22401, (d) => { setAgent(d.agent); note = ""; queuePos = 0; showState(); });
  client.on(22098, (d) => { queuePos = Number(d.queue_position) || 0; note = "queue"; showState(); });
  client.on(22699, () => showTyping(true));
  client.on(22701, () => { // the agent ended the chat: ask for a rating (PROTOCOL §4 22950)
    setAgent(null);
    note = "ended";
    queuePos = 0;
    endedId = Math.max(0, ...msgs.keys());
    showState();
    reception("rating", true);
  });
  client.on(22097, (d) => setBlocked(d.blocked));
  client.on(22095, setAvailability);
  client.connect();
}

let freshTried = false;
function onSignedOut(err) {
  if (!shopToken && err.code === -21001 && !freshTried) {
    // Our stored visitor token expired or is unknown: start as a new visitor.
    freshTried = true;
    store("removeItem", tokenKey());
    token = "";
    client.connect();
    return;
  }
  fatal();
}

function banner(text, error) {
  const b = $("banner");
  b.textContent = text;
  b.classList.toggle("error", !!error);
  b.hidden = !text;
}

function fatal() {
  banner(t("unavailable"), true);
  $("composer").classList.add("disabled");
}

// Connection state, header
function showState() {
  const s = client ? client.state : "connecting";
  if (s !== "offline") banner(s === "online" ? "" : t(s));
  $("status").textContent = agent ? t("online") : s === "online" ? statusText() : "";
  updateEmpty();
}

function statusText() {
  const pos = queuePos ? t("position", { n: queuePos }) : "";
  if (avail === "away") return t("away");
  if (avail === "busy") {
    const busy = wait > 0 ? t("busyWait", { n: Math.max(1, Math.round(wait / 60)) }) : t("busy");
    return busy + (pos ? " · " + pos : "");
  }
  return note === "ended" ? t("ended") : note === "queue" && pos ? t("queue", { n: queuePos }) : t("waiting");
}

function setAvailability(d) {
  avail = ["online", "busy", "away"].includes(d.availability) ? d.availability : "online";
  wait = Number(d.expected_wait) || null;
  showState();
}

function setAgent(a) {
  agent = a || null;
  if (a) agents.set(a.admin_id, a);
  const name = agent ? agent.name : t("title");
  $("agent-name").textContent = name;
  $("avatar").replaceChildren(renderAvatar(name, agent && agent.avatar, "avatar"));
}

function showTyping(on) {
  const box = $("typing");
  box.textContent = t("typing", { name: agent ? agent.name : t("title") });
  box.hidden = !on;
  clearTimeout(typingTimer);
  if (on) typingTimer = setTimeout(showTyping, 4000);
}

// Blocked (PROTOCOL §3 "blocked"): say so, keep the draft, no sending until lifted.
function setBlocked(on) {
  blocked = !!on;
  $("blocked").hidden = !blocked;
  $("send").disabled = $("attach").disabled = blocked;
  updateEmpty();
}

// History
function onLogin(data) {
  setAgent(data.agent);
  setBlocked(data.blocked);
  note = "";
  greeting = typeof data.greeting === "string" && data.greeting.trim() ? data.greeting : null;
  setAvailability(data);
  unread = Number(data.unread) || 0;
  reportUnread();
  if (initialDone) catchUp();
  else loadInitial();
  sendContext(); // the page changed while we were connecting
}

const history = (params) => client.request(22100, params).catch(() => null);

async function loadInitial() {
  const d = await history({ page_size: 20 });
  if (!d) return;
  initialDone = true;
  hasMore = d.list.length >= 20;
  d.list.forEach(add);
  follow(true);
  updateEmpty();
  markRead();
  if (hasMore && log.scrollHeight <= log.clientHeight) loadOlder();
  // Ended by the agent within the hour, neither rated nor dismissed: ask again after a reload.
  const last = lastMessage();
  if (isEnd(last) && Date.now() - last.created_at < 3600e3 && store("getItem", rateKey()) !== String(last.id)) {
    reception("rating", true);
  }
}

async function catchUp() {
  let after = Math.max(0, ...msgs.keys());
  if (!after) return loadInitial();
  const near = atBottom();
  let added = false;
  for (;;) {
    const d = await history({ after_id: after, page_size: 50 });
    if (!d) break;
    for (const m of d.list) added = add(m) || added;
    if (d.list.length < 50) break;
    after = d.list[d.list.length - 1].id;
  }
  if (added) follow(near);
  markRead();
}

async function loadOlder() {
  if (!hasMore || loadingOlder || !client || client.state !== "online") return;
  const first = Math.min(...msgs.keys());
  if (!msgs.size) return;
  loadingOlder = true;
  $("older").hidden = false;
  const before = log.scrollHeight - log.scrollTop;
  const d = await history({ before_id: first, page_size: 20 });
  loadingOlder = false;
  $("older").hidden = true;
  if (!d) return;
  hasMore = d.list.length >= 20;
  d.list.forEach(add);
  log.scrollTop = log.scrollHeight - before;
}

// Messages
function render(m, state) {
  const mine = m.sender === "guest";
  const who = agents.get(m.admin_id);
  const name = mine ? "" : who ? who.name : t("title");
  const row = renderMessage(m, { mine, showRead: mine, pending: state, name, avatar: who && who.avatar });
  const left = leftMessage();
  if (left && left.id === m.id) row.querySelector(".cs-col").append(el("div", "cs-left-note", t("leftNote", left)));
  if (state === "failed") {
    row.title = t("retry");
    row.addEventListener("click", () => retry(m.client_msg_id));
  }
  return row;
}

/** Insert or update a confirmed message, in id order, once. */
function add(m) {
  if (!m || !m.id) return;
  const old = rows.get(m.id);
  if (old) return m.read && setRead(old, true);
  const cid = m.client_msg_id;
  if (cid && pending.has(cid) && m.sender === "guest") {
    rows.get(cid).remove();
    rows.delete(cid);
    pending.delete(cid);
  }
  msgs.set(m.id, m);
  if (m.sender !== "system" && m.id > endedId) note = note === "ended" ? "" : note;
  const row = render(m);
  rows.set(m.id, row);
  const next = [...list.children].find((r) => !r.dataset.id || Number(r.dataset.id) > m.id);
  list.insertBefore(row, next || null);
  updateEmpty();
  return true;
}

function updateEmpty() {
  const none = list.children.length === 0;
  const away = avail === "away" && initialDone && !blocked && !going();
  $("transcript").hidden = none;
  $("empty").textContent = greeting || t("welcome");
  $("empty").hidden = !initialDone || !none || away;
  if (away || rx) reception("away", away);
}

// -- Reception: the away form, the rating, the transcript (reception.js, loaded on first use) --
const lastMessage = () => msgs.get(Math.max(0, ...msgs.keys()));
const isEnd = (m) => !!m && m.sender === "system" && !!m.event && m.event.event === "end";
const rateKey = () => "cschat.rated." + group;
const leftKey = () => "cschat.left." + group;
function leftMessage() {
  try { return JSON.parse(store("getItem", leftKey())); } catch (e) { return null; }
}

/** A conversation is going: an agent holds it, or it has messages, did not end and the last
 *  is recent (PROTOCOL R24: a silent one is released after release_after, 10 minutes). */
function going() {
  const last = lastMessage();
  if (agent || pending.size) return true;
  if (!last || note === "ended" || isEnd(last)) return false;
  return Date.now() - last.created_at < 600e3;
}

/** Show (on) or take away one of the reception screens: "away", "rating", "transcript". */
function reception(what, on) {
  rx = rx || import("/static/widget/reception.js").then((mod) => mod.setup({
    client: () => client, box: $("extra"), store, group: () => group, input, blocked: setBlocked, follow,
    availability: () => avail, greeting: () => greeting, opener: $("transcript"),
    leftEmail: () => (leftMessage() || {}).email,
    left(m, email) { // PROTOCOL §4 22900: shown with the address we will answer to
      store("setItem", leftKey(), JSON.stringify({ id: m.id, email }));
      add(m);
      follow(true);
    },
    rated() { // asked no more about the chat the agent ended last
      const ends = [...msgs.values()].filter(isEnd).map((m) => m.id);
      if (ends.length) store("setItem", rateKey(), String(Math.max(...ends)));
    },
  })).then((mod) => (rxMod = mod), () => { rx = null; }); // not loaded: tried again next time
  return rx.then((mod) => mod && mod.show(what, on));
}

function markMineRead(lastId) {
  for (const [id, m] of msgs) {
    if (m.sender === "guest" && id <= lastId && !m.read) {
      m.read = true;
      setRead(rows.get(id), true);
    }
  }
}

// Never hide a reply: follow the bottom when the visitor is there, else offer the pill.
const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 80;

function follow(down) {
  if (!down) return (pill.hidden = false);
  pill.hidden = true;
  requestAnimationFrame(() => { log.scrollTop = log.scrollHeight; });
}

function onIncoming(m) {
  showTyping(false);
  unread++;
  markRead();
  reportUnread();
  if (m.sender === "agent" && !visible()) chime();
}

/** A soft two-note chime (WebAudio), once the visitor has interacted with the widget. */
function chime() {
  const ua = navigator.userActivation;
  if (ua && !ua.hasBeenActive) return;
  try {
    audio = audio || new AudioContext();
    audio.resume();
    const now = audio.currentTime, osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.setValueAtTime(880, now);
    osc.frequency.setValueAtTime(660, now + 0.12);
    gain.gain.setValueAtTime(0.0001, now);
    gain.gain.exponentialRampToValueAtTime(0.12, now + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.4);
    osc.connect(gain).connect(audio.destination);
    osc.start(now);
    osc.stop(now + 0.42);
  } catch (e) { /* no sound, no harm */ }
}

// Unread, read
function visible() {
  return panelOpen && document.visibilityState === "visible";
}

function reportUnread() {
  if (framed) parent.postMessage({ type: "cschat-unread", count: unread }, "*");
}

function markRead() {
  if (!unread || !visible() || !client || client.state !== "online") return;
  unread = 0;
  reportUnread();
  client.request(22200, {}).catch(() => {});
}

// Sending
/** Show my message at the bottom as "sending" until it is acknowledged. */
function showPending(m, params) {
  const cid = m.client_msg_id || newMsgId();
  m.client_msg_id = cid;
  m.sender = "guest";
  m.created_at = m.created_at || Date.now();
  const old = rows.get(cid);
  const row = render(m, true);
  if (old) old.replaceWith(row);
  else list.append(row);
  rows.set(cid, row);
  pending.set(cid, { m, params });
  if (rxMod) rxMod.show("rating", false); // a new conversation: the last one is no more rated
  updateEmpty();
  follow(true);
  return cid;
}

function sendMessage(params, m) {
  const cid = showPending(m, params);
  client.send(22300, { ...params, client_msg_id: cid }).then(
    (d) => { add(d.message_info); follow(true); },
    (err) => {
      if (err.code === -22307) setBlocked(true);
      if (err.code === -22307 && !params.file_type) return unsend(cid);
      fail(cid, err.code === -22305 ? t("tooLong") : err.code === -22307 ? t("blocked") : err.message || String(err.code));
    },
  );
}

/** Refused because blocked: the text goes back into the composer, nothing lost. */
function unsend(cid) {
  const { m } = pending.get(cid);
  rows.get(cid).remove();
  rows.delete(cid);
  pending.delete(cid);
  input.value = m.msg + (input.value ? "\n" + input.value : "");
  grow();
  updateEmpty();
}

function fail(cid, reason) {
  const p = pending.get(cid);
  if (!p) return;
  p.failed = true;
  const row = render(p.m, "failed");
  row.title = t("notSent", { reason }) + " — " + t("retry");
  rows.get(cid).replaceWith(row);
  rows.set(cid, row);
}

function retry(cid) {
  const p = pending.get(cid);
  if (p && p.failed && p.params && !blocked) sendMessage(p.params, p.m);
}

function sendText() {
  const text = input.value;
  if (!text.trim() || !client || blocked) return;
  input.value = "";
  grow();
  sendMessage({ msg: text, file_type: 0 }, { file_type: 0, msg: text });
}

async function upload(file) {
  if (!file || !client || blocked) return;
  const cid = newMsgId();
  const m = { client_msg_id: cid, file_type: 0, msg: t("uploading", { name: file.name }) };
  showPending(m, null);
  let reason = t("uploadFailed");
  try {
    const f = await uploadFile(file, await getToken());
    const ft = Number(f.file_type);
    const p = pending.get(cid);
    p.m = { client_msg_id: cid, file_type: ft, msg: f, created_at: Date.now() };
    sendMessage({ msg: f.file_id, file_type: ft }, p.m);
    return;
  } catch (e) {
    if (e.status === 413) reason = t("tooLarge", { name: file.name });
    else if (e.status === 415) reason = t("badType");
  }
  pending.get(cid).m.msg = file.name;
  fail(cid, reason);
}

function grow() {
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 120) + "px";
}

function typing() {
  const now = Date.now();
  if (input.value.trim() && client && client.state === "online" && now - lastTyping > 3000) {
    lastTyping = now;
    client.request(22600, {}).catch(() => {});
  }
}

// Wiring
$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  sendText();
  input.focus();
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    sendText();
  }
});
input.addEventListener("input", () => { grow(); typing(); });
input.addEventListener("paste", (e) => {
  const files = [...e.clipboardData.files];
  if (files.length) e.preventDefault();
  files.forEach(upload);
});
$("attach").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (e) => {
  [...e.target.files].forEach(upload);
  e.target.value = "";
});
// The emoji picker and the lightbox load on first use (shared with the console).
$("emoji").addEventListener("click", async () => {
  (await import("/static/shared/emoji.js")).toggleEmojiPicker($("emoji"), input, t("emoji"));
});
list.addEventListener("click", async (e) => {
  const a = e.target.closest(".cs-image-link");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey) return;
  e.preventDefault();
  (await import("/static/shared/lightbox.js")).openLightbox(a.href, a.querySelector("img").alt);
});
// Files dropped anywhere on the widget are sent.
const hasFiles = (e) => !!e.dataTransfer && [...e.dataTransfer.types].includes("Files");
const drop = $("drop");
addEventListener("dragover", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  drop.hidden = blocked || !client;
});
addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.hidden = true; });
addEventListener("drop", (e) => {
  drop.hidden = true;
  if (!hasFiles(e)) return;
  e.preventDefault();
  [...e.dataTransfer.files].forEach(upload);
});
pill.addEventListener("click", (e) => {
  follow(true);
  if (!e.detail) input.focus(); // from the keyboard: where to go on (no phone keyboard popping up)
});
log.addEventListener("scroll", () => {
  if (log.scrollTop < 60) loadOlder();
  if (atBottom()) pill.hidden = true;
});
document.addEventListener("visibilitychange", () => { reportUnread(); markRead(); });
$("close").addEventListener("click", () => parent.postMessage({ type: "cschat-close" }, "*"));
$("transcript").addEventListener("click", () => reception("transcript", true));

window.addEventListener("message", (e) => {
  const d = e.data;
  if (!framed || e.source !== parent || !d || typeof d !== "object") return;
  if (d.type === "cschat-init") start(d);
  else if (d.type === "cschat-page" && context) {
    setContext(Object(d.context));
    sendContext();
  } else if (d.type === "cschat-visibility") {
    panelOpen = !!d.open;
    reportUnread();
    if (panelOpen && unread) follow(true);
    markRead();
  }
});

bindLanguageSelect($("lang"));
function relabel() {
  translatePage();
  setAgent(agent);
  showState();
  for (const [key, row] of rows) {
    const p = pending.get(key);
    const m = p ? p.m : msgs.get(key);
    const fresh = render(m, p ? (p.failed ? "failed" : true) : undefined);
    row.replaceWith(fresh);
    rows.set(key, fresh);
  }
}
onLanguageChange(relabel);
relabel();

const hashGroup = new URLSearchParams(location.hash.slice(1)).get("group");
if (framed) {
  $("close").hidden = false;
  parent.postMessage({ type: "cschat-ready" }, "*");
  // Opened in a frame without the embed script: fall back to the fragment.
  if (hashGroup) setTimeout(() => start({ group: hashGroup }), 1500);
} else {
  start({ group: hashGroup });
}
