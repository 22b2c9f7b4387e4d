// DOM helpers to show a message_info, shared by the console and the widget.
// All user text goes through textContent; links only to http(s) or this server's /files/.
//   renderMessage(m, {mine, name, avatar, showRead, pending}) → <div class="cs-msg …" data-id>
//   renderContent(m) → the bubble's content; setRead(row, read, pending); summary(m) → text

import { addCatalog, t, getLanguage } from "./i18n.js";

addCatalog({
  en: {
    "render.image": "Image", "render.voice": "Voice message", "render.video": "Video", "render.file": "File",
    "render.product": "Product", "render.order": "Order", "render.orderNo": "Order no. {no}",
    "render.amount": "Amount", "render.status": "Status", "render.open": "Open",
    "render.read": "Read", "render.sent": "Sent", "render.sending": "Sending…", "render.failed": "Not sent",
    "render.unsupported": "[unsupported message]",
    "system.transfer": "{from_name} transferred the conversation to {to_name}",
    "system.end": "{by_name} ended the conversation",
    "system.busy": "All our agents are busy. We will answer as soon as we can.",
    "system.busyQueue": "All our agents are busy. You are number {queue_position} in line.",
    "system.away": "We are away right now. We will answer as soon as we are back.",
  },
  "zh-CN": {
    "render.image": "图片", "render.voice": "语音消息", "render.video": "视频", "render.file": "文件",
    "render.product": "商品", "render.order": "订单", "render.orderNo": "订单号 {no}",
    "render.amount": "金额", "render.status": "状态", "render.open": "查看",
    "render.read": "已读", "render.sent": "已发送", "render.sending": "发送中…", "render.failed": "发送失败",
    "render.unsupported": "[不支持的消息]",
    "system.transfer": "{from_name} 将会话转接给了 {to_name}", "system.end": "{by_name} 结束了会话",
    "system.busy": "客服正忙，我们会尽快回复您。", "system.busyQueue": "客服正忙，您排在第 {queue_position} 位。",
    "system.away": "我们现在不在线，回来后会尽快回复您。",
  },
});

/** url if it is an absolute http(s) address, else "". */
export function safeUrl(url) {
  if (typeof url !== "string" || !/^https?:\/\//i.test(url)) return "";
  try {
    return new URL(url).href;
  } catch (e) {
    return "";
  }
}

/** A file address from the server: a path on this origin ("/files/…") or http(s). */
export function safeFileUrl(url) {
  return typeof url === "string" && /^\/(?![/\\])/.test(url) ? url : safeUrl(url);
}

/** An element with a class, optional text, and children. */
export function el(tag, className, text, ...children) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = String(text);
  e.append(...children);
  return e;
}

function link(href, className) {
  const a = el("a", className);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

function image(src, className) {
  const img = el("img", className);
  img.src = src;
  img.alt = "";
  img.loading = "lazy";
  img.referrerPolicy = "no-referrer";
  return img;
}

/** "12:05" today, else a short date and the time. */
export function formatTime(ms) {
  if (!ms) return "";
  const d = new Date(Number(ms));
  const now = new Date();
  const opts = { hour: "2-digit", minute: "2-digit" };
  if (d.toDateString() !== now.toDateString()) Object.assign(opts, { month: "short", day: "numeric" });
  if (d.getFullYear() !== now.getFullYear()) opts.year = "numeric";
  return d.toLocaleString(getLanguage(), opts);
}

/** 1536 → "1.5 KB". */
export function formatSize(bytes) {
  let v = Number(bytes) || 0;
  let i = 0;
  for (; v >= 1024 && i < 3; i++) v /= 1024;
  return (i && v < 10 ? v.toFixed(1) : Math.round(v)) + " " + ["B", "KB", "MB", "GB"][i];
}

/** Text with its line breaks, and http(s) addresses as links. */
export function renderText(text) {
  const box = el("div", "cs-text");
  String(text).split("\n").forEach((line, i) => {
    if (i) box.append(el("br"));
    const re = /https?:\/\/[^\s<>"'\u3000-\u303f\uff00-\uffef]+/gi;
    let last = 0;
    for (let m; (m = re.exec(line)); ) {
      const raw = m[0].replace(/[.,;:!?)\]]+$/, "");
      const href = safeUrl(raw);
      if (!href) continue;
      const a = link(href);
      a.textContent = raw;
      box.append(line.slice(last, m.index), a);
      last = m.index + raw.length;
    }
    box.append(line.slice(last));
  });
  return box;
}

function renderImage(f) {
  const full = safeFileUrl(f.url);
  const img = el("img", "cs-image");
  img.src = safeFileUrl(f.thumb_url) || full;
  img.alt = f.name || t("render.image");
  img.loading = "lazy";
  const w = Number(f.width);
  const h = Number(f.height);
  if (w > 0 && h > 0) { // reserve the space, so loading history does not jump
    const scale = Math.min(1, 240 / Math.max(w, h));
    img.width = Math.max(1, Math.round(w * scale));
    img.height = Math.max(1, Math.round(h * scale));
  }
  if (!full) return img;
  const a = link(full, "cs-image-link");
  a.title = t("render.open");
  a.append(img);
  return a;
}

function renderMedia(tag, f) {
  const media = el(tag, "cs-" + tag);
  media.controls = true;
  media.preload = "metadata";
  const src = safeFileUrl(f.url);
  if (src) media.src = src;
  media.setAttribute("aria-label", f.name || t(tag === "audio" ? "render.voice" : "render.video"));
  return media;
}

function renderFile(f) {
  const href = safeFileUrl(f.url);
  const box = href ? link(href, "cs-file") : el("div", "cs-file");
  if (href) box.download = f.name || "";
  const ext = /\.([a-z0-9]{1,4})$/i.exec(f.name || "");
  box.append(el("span", "cs-file-icon", ext ? ext[1].toUpperCase() : "FILE"), el("span", "cs-file-info", null,
    el("span", "cs-file-name", f.name || t("render.file")),
    el("span", "cs-file-size", formatSize(f.size))));
  return box;
}

function renderCard(c, kind, lines) {
  const href = safeUrl(c.url);
  const box = href ? link(href, "cs-card") : el("div", "cs-card");
  // A card is drawn on its bubble's light background: it takes the bubble's text colour,
  // never a page's link colour (white in my own bubbles: white on white, 1:1).
  box.style.color = "inherit";
  const src = safeUrl(c.image);
  if (src) box.append(image(src, "cs-card-image"));
  const body = el("div", "cs-card-body", null, el("div", "cs-card-kind", t("render." + kind)));
  for (const [cls, text] of lines) if (text != null) body.append(el("div", "cs-card-" + cls, text));
  box.append(body);
  return box;
}

const RENDER = {
  1: renderImage,
  2: (f) => renderMedia("audio", f),
  5: (f) => renderMedia("video", f),
  6: renderFile,
  3: (p) => renderCard(p, "product", [["title", p.title], ["price", p.price]]),
  4: (o) => renderCard(o, "order", [
    ["title", o.title],
    ["line", t("render.orderNo", { no: o.order_no })],
    ["price", t("render.amount") + ": " + o.amount],
    ["line", o.status == null ? null : t("render.status") + ": " + o.status],
  ]),
};

/** The content of one message (text, media, file or card). */
export function renderContent(m) {
  const obj = m.msg && typeof m.msg === "object" ? m.msg : null;
  if (Number(m.file_type) === 0) return renderText(obj ? JSON.stringify(obj) : m.msg ?? "");
  const show = obj && RENDER[m.file_type];
  return show ? show(obj) : el("div", "cs-text", t("render.unsupported"));
}

/** A short plain-text summary of a message, for lists and notifications. */
export function summary(m) {
  if (!m) return "";
  const o = m.msg || {};
  const ft = Number(m.file_type);
  if (ft === 0) return typeof o === "string" ? o : "";
  const kind = { 1: "image", 2: "voice", 5: "video", 6: "file", 3: "product", 4: "order" }[ft];
  if (!kind) return t("render.unsupported");
  const extra = { 6: o.name, 3: o.title, 4: o.order_no }[ft];
  return "[" + t("render." + kind) + "]" + (extra ? " " + extra : "");
}

/** A round avatar: the picture if its address is http(s), else the name's first letter. */
export function renderAvatar(name, url, className = "cs-avatar") {
  const src = safeUrl(url);
  if (src) return el("div", className, null, image(src));
  return el("div", className, String(name || "?").trim().charAt(0).toUpperCase());
}

/** A system message's event in the reader's language, or null (show its English msg).
 *  "busy" / "away" (automatic replies): the group's own text in that language, else ours. */
function systemText(e) {
  if (!e || typeof e !== "object") return null;
  const key = "system." + e.event;
  if (e.event === "busy" || e.event === "away") {
    const own = e.text && typeof e.text === "object" && e.text[/^zh/.test(getLanguage()) ? "zh" : "en"];
    if (typeof own === "string" && own.trim()) return own;
    return t(e.event === "busy" && e.queue_position > 0 ? "system.busyQueue" : key, e);
  }
  return t(key) !== key ? t(key, e) : null;
}

// One message row: <div class="cs-msg cs-msg-mine|cs-msg-theirs|cs-msg-system" data-id>.
// opts: mine, name, avatar, showRead (a tick on my messages), pending (true | "failed").
export function renderMessage(m, opts = {}) {
  const system = m.sender === "system";
  const row = el("div", "cs-msg cs-msg-" + (system ? "system" : opts.mine ? "mine" : "theirs"));
  if (m.id) row.dataset.id = m.id;
  if (m.client_msg_id) row.dataset.cid = m.client_msg_id;
  if (system) {
    // The event in the reader's language (else the English msg)
    const text = systemText(m.event);
    const box = el("div", "cs-system", null, renderContent(text == null ? m : { ...m, msg: text }));
    box.title = formatTime(m.created_at);
    row.append(box);
    return row;
  }
  const theirs = !opts.mine && (opts.avatar || opts.name);
  if (theirs) row.append(renderAvatar(opts.name, opts.avatar));
  const meta = el("div", "cs-meta", null, el("span", "cs-time", formatTime(m.created_at)));
  if (opts.mine && (opts.showRead || opts.pending)) meta.append(el("span", "cs-tick"));
  row.append(el("div", "cs-col", null,
    ...(theirs && opts.name ? [el("div", "cs-name", opts.name)] : []),
    el("div", "cs-bubble cs-type-" + Number(m.file_type), null, renderContent(m)),
    meta));
  setRead(row, !!m.read, opts.pending);
  return row;
}

/** Update a row's tick: read, or pending (true while sending, "failed"). */
export function setRead(row, read, pending) {
  const tick = row.querySelector(".cs-tick");
  if (!tick) return;
  const failed = pending === "failed";
  const key = failed ? "failed" : pending ? "sending" : read ? "read" : "sent";
  tick.textContent = { failed: "!", sending: "…", read: "✓✓", sent: "✓" }[key];
  tick.title = t("render." + key);
  tick.setAttribute("aria-label", tick.title);
  row.classList.toggle("cs-read", key === "read");
  row.classList.toggle("cs-pending", key === "sending");
  row.classList.toggle("cs-failed", failed);
}
