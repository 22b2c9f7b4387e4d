// The widget's reception screens, loaded on first use (docs/protocol.md §4 "Availability",
// "E-mail", "Ratings"): the away form (22900) when nobody can answer, the rating after the
// agent ended the chat (22950) and the transcript by e-mail (22960). Each is a card in the
// widget's #extra box, below the messages; all text goes in as textContent.
//   setup(host) → a promise of {show(what, on)}, once reception.css is in;
//   what: "away" | "rating" | "transcript". host: see reception() in widget.js.

import { newMsgId } from "/static/shared/chat-client.js";
import { addCatalog, onLanguageChange, t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";

addCatalog({
  en: {
    "rx.away.title": "We are away right now",
    "rx.away.text": "Leave your message and e-mail address, and we will answer by e-mail.",
    "rx.away.send": "Send message", "rx.away.back": "We are back online.", "rx.away.chat": "Chat now",
    "rx.away.or": "Or write in the chat below: we will answer there when we are back.",
    "rx.name": "Name (optional)", "rx.email": "E-mail", "rx.message": "Message", "rx.sending": "Sending…",
    "rx.rate.title": "How was this chat?", "rx.rate.star": "{n} star", "rx.rate.stars": "{n} stars",
    "rx.rate.comment": "Comment (optional)", "rx.rate.send": "Send rating", "rx.rate.later": "Not now",
    "rx.rate.thanks": "Thank you for your rating!",
    "rx.tx.title": "Send me the transcript", "rx.tx.text": "We will e-mail you this conversation.",
    "rx.tx.send": "Send transcript", "rx.tx.cancel": "Cancel", "rx.tx.done": "Done",
    "rx.tx.sent": "The transcript is on its way to {email}.",
    "rx.err.email": "Please enter a valid e-mail address.", "rx.err.msg": "Please write a message.",
    "rx.err.name": "The name is too long (64 characters at most).", "rx.err.tooLong": "The message is too long.",
    "rx.err.blocked": "You cannot send messages here for now.",
    "rx.err.rating": "Please choose from 1 to 5 stars.",
    "rx.err.comment": "The comment is too long (1000 characters at most).",
    "rx.err.noConversation": "There is no conversation to rate yet.",
    "rx.err.nothing": "There is no conversation to send yet.",
    "rx.err.noMail": "This shop does not send e-mail, so we cannot send the transcript.",
    "rx.err.again": "A transcript was already sent a few minutes ago. Please try again later.",
    "rx.err.slow": "Too many attempts. Please wait a moment.",
    "rx.err.other": "Something went wrong ({code}). Please try again.",
  },
  "zh-CN": {
    "rx.away.title": "我们现在不在线",
    "rx.away.text": "请留下您的留言和邮箱地址，我们会通过邮件回复您。",
    "rx.away.send": "发送留言", "rx.away.back": "客服已上线。", "rx.away.chat": "立即对话",
    "rx.away.or": "您也可以在下方直接输入，我们回来后会在这里回复。",
    "rx.name": "姓名（选填）", "rx.email": "邮箱", "rx.message": "留言", "rx.sending": "发送中…",
    "rx.rate.title": "这次服务您满意吗？", "rx.rate.star": "{n} 星", "rx.rate.stars": "{n} 星",
    "rx.rate.comment": "评价（选填）", "rx.rate.send": "提交评价", "rx.rate.later": "暂不评价",
    "rx.rate.thanks": "感谢您的评价！",
    "rx.tx.title": "把聊天记录发到我的邮箱", "rx.tx.text": "我们会把本次对话发送到您的邮箱。",
    "rx.tx.send": "发送聊天记录", "rx.tx.cancel": "取消", "rx.tx.done": "完成",
    "rx.tx.sent": "聊天记录正在发送到 {email}。",
    "rx.err.email": "请输入有效的邮箱地址。", "rx.err.msg": "请填写留言内容。",
    "rx.err.name": "姓名太长了（最多 64 个字符）。", "rx.err.tooLong": "留言太长了。",
    "rx.err.blocked": "您暂时无法在此发送消息。",
    "rx.err.rating": "请选择 1 到 5 星。",
    "rx.err.comment": "评价太长了（最多 1000 个字符）。",
    "rx.err.noConversation": "还没有可以评价的对话。",
    "rx.err.nothing": "还没有可以发送的对话。",
    "rx.err.noMail": "本店未开通邮件服务，无法发送聊天记录。",
    "rx.err.again": "几分钟前已经发送过聊天记录，请稍后再试。",
    "rx.err.slow": "操作太频繁，请稍候再试。",
    "rx.err.other": "出错了（{code}），请重试。",
  },
});

// The server's codes (PROTOCOL §4 22900, 22950, 22960), as the visitor reads them.
const ERRORS = {
  "-22901": "name", "-22902": "email", "-22302": "msg", "-22303": "msg", "-22305": "tooLong",
  "-22307": "blocked", "-22951": "rating", "-22952": "comment", "-22953": "noConversation",
  "-22961": "nothing", "-22962": "noMail", "-22963": "again", "-10029": "slow",
};
// As the server checks it (cschat.availability.is_address)
const EMAIL = /^[^@\s<>"]{1,64}@[^@\s<>"]{1,255}\.[^@\s<>".]{2,63}$/;
const ORDER = ["away", "rating", "transcript"];

let host = null, uid = 0;
const cards = {}; // what → its card (a <section>)
const texts = new Map(); // element → [key, vars, attribute]: put again on a language change

/** node's text (or attribute) in the visitor's language, now and after each change. */
function say(node, key, vars, attr) {
  texts.set(node, [key, vars, attr]);
  paint(node);
  return node;
}

function paint(node) {
  const [key, vars, attr] = texts.get(node);
  if (attr) node.setAttribute(attr, t(key, vars));
  else node.textContent = t(key, vars);
}

onLanguageChange(() => {
  for (const node of texts.keys()) {
    if (node.isConnected) paint(node);
    else texts.delete(node);
  }
});

const emailKey = () => "cschat.email." + host.group();

/** The address the visitor gave last (away form, transcript), for the next form. */
function knownEmail() {
  return host.store("getItem", emailKey()) || "";
}

function button(key, className = "rx-btn", type = "button") {
  const b = say(el("button", className), key);
  b.type = type;
  return b;
}

/** [label, control] with a fresh id; kind "text", "email" or "textarea". */
function field(kind, key, props) {
  const input = el(kind === "textarea" ? "textarea" : "input", "rx-input");
  input.id = "rx-" + ++uid;
  if (kind !== "textarea") input.type = kind;
  Object.assign(input, props);
  input.addEventListener("input", () => input.removeAttribute("aria-invalid"));
  const label = say(el("label", "rx-label"), key);
  label.htmlFor = input.id;
  return [label, input];
}

/** A card: <section> named by its title. */
function card(what, title) {
  const box = el("section", "rx-card rx-" + what);
  title.id = "rx-title-" + what;
  box.setAttribute("aria-labelledby", title.id);
  return box;
}

function errorLine() {
  const line = el("p", "rx-error");
  line.id = "rx-" + ++uid;
  line.setAttribute("role", "alert");
  line.hidden = true;
  return line;
}

/** Say what is wrong (key "rx.err.*", or a server error {code}) next to control, focused. */
function fail(line, reason, control) {
  const key = typeof reason === "string" ? reason : ERRORS[reason.code] || "other";
  say(line, "rx.err." + key, { code: reason.code });
  line.hidden = false;
  if (control) {
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", line.id);
    control.focus();
  }
}

/** While a request is under way: the button says so (keeping the focus) and does not send
 *  twice; true if one already is. */
function busy(form, submit, on, key) {
  if (on && form.getAttribute("aria-busy") === "true") return true;
  form.setAttribute("aria-busy", String(on));
  submit.setAttribute("aria-disabled", String(on));
  say(submit, on ? "rx.sending" : key);
}

// -- the away form: PROTOCOL §4 22900 ------------------------------------------------------
function away() {
  const title = say(el("h2", "rx-title"), "rx.away.title");
  const box = card("away", title);
  box.append(title);
  const greeting = host.greeting();
  if (greeting) box.append(el("p", "rx-text", greeting)); // the shop's, in the visitor's language
  box.append(say(el("p", "rx-text"), "rx.away.text"));
  const form = el("form", "rx-form");
  form.noValidate = true; // checked here, with messages in the widget's language
  const [nameLabel, name] = field("text", "rx.name", { maxLength: 64, autocomplete: "name" });
  const [emailLabel, email] = field("email", "rx.email", { required: true, autocomplete: "email", maxLength: 320 });
  const [msgLabel, msg] = field("textarea", "rx.message", { required: true, rows: 3, maxLength: 5000 });
  email.value = knownEmail();
  const error = errorLine();
  const send = button("rx.away.send", "rx-btn", "submit");
  form.append(nameLabel, name, emailLabel, email, msgLabel, msg, error, el("div", "rx-actions", null, send));
  const chat = button("rx.away.chat", "rx-link");
  const back = el("p", "rx-back", null, say(el("span"), "rx.away.back"), " ", chat);
  back.setAttribute("role", "status");
  back.hidden = true;
  box.append(form, back, say(el("p", "rx-note"), "rx.away.or"));
  const cid = newMsgId(); // one message, however often it is tried (R21)

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    const address = email.value.trim();
    if (!EMAIL.test(address)) return fail(error, "email", email);
    if (!msg.value.trim()) return fail(error, "msg", msg);
    if (busy(form, send, true)) return;
    try {
      const d = await host.client().send(22900, { name: name.value.trim(), email: address, msg: msg.value, client_msg_id: cid });
      host.store("setItem", emailKey(), address);
      drop("away");
      host.left(d.message_info, address);
      host.input.focus();
    } catch (err) {
      busy(form, send, false, "rx.away.send");
      if (err.code === -22307) host.blocked(true);
      fail(error, err, { "-22901": name, "-22902": email }[err.code] || (ERRORS[err.code] === "msg" ? msg : null));
    }
  });
  // Back online (22095): the visitor may go on in the chat with what it wrote.
  chat.addEventListener("click", () => {
    const text = msg.value.trim();
    drop("away");
    if (text) host.input.value = text + (host.input.value ? "\n" + host.input.value : "");
    host.input.dispatchEvent(new Event("input"));
    host.input.focus();
  });
  box.dirty = () => !!msg.value.trim();
  box.update = () => { back.hidden = host.availability() === "away"; };
  return box;
}

// -- rating: PROTOCOL §4 22950, after 22701 ----------------------------------------------------
function rating() {
  const legend = say(el("legend", "rx-title"), "rx.rate.title");
  const box = card("rating", legend);
  const form = el("form", "rx-form");
  form.noValidate = true;
  const stars = el("fieldset", "rx-stars", null, legend);
  stars.setAttribute("role", "radiogroup");
  stars.setAttribute("aria-labelledby", legend.id);
  const radios = [];
  for (let n = 1; n <= 5; n++) {
    const radio = el("input", "rx-radio");
    radio.type = "radio";
    radio.name = "rx-rating";
    radio.value = String(n);
    const icon = el("span", "rx-star-icon", "★");
    icon.setAttribute("aria-hidden", "true");
    radios.push(radio);
    stars.append(el("label", "rx-star", null, radio, icon, say(el("span", "rx-sr"), n > 1 ? "rx.rate.stars" : "rx.rate.star", { n })));
  }
  const paintStars = () => {
    const chosen = radios.findIndex((r) => r.checked) + 1;
    radios.forEach((r, i) => r.parentElement.classList.toggle("rx-on", i < chosen));
  };
  stars.addEventListener("change", paintStars);
  const [commentLabel, comment] = field("textarea", "rx.rate.comment", { rows: 2, maxLength: 1000 });
  const error = errorLine();
  const send = button("rx.rate.send", "rx-btn", "submit");
  const later = button("rx.rate.later", "rx-link");
  form.append(stars, commentLabel, comment, error, el("div", "rx-actions", null, send, later));
  box.append(form);

  later.addEventListener("click", () => {
    host.rated();
    drop("rating");
    host.input.focus();
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    const chosen = radios.find((r) => r.checked);
    if (!chosen) return fail(error, "rating", radios[0]);
    if (busy(form, send, true)) return;
    try {
      await host.client().request(22950, { rating: Number(chosen.value), comment: comment.value.trim() });
    } catch (err) {
      busy(form, send, false, "rx.rate.send");
      return fail(error, err, err.code === -22952 ? comment : null);
    }
    host.rated();
    box.done = true;
    const thanks = say(el("p", "rx-thanks"), "rx.rate.thanks");
    thanks.setAttribute("role", "status");
    thanks.tabIndex = -1;
    const title = say(el("h2", "rx-title"), "rx.rate.title"); // the card keeps its name
    form.replaceWith(title, thanks);
    title.id = legend.id;
    thanks.focus();
  });
  return box;
}

// -- the transcript: PROTOCOL §4 22960 ---------------------------------------------------------
function transcript() {
  const title = say(el("h2", "rx-title"), "rx.tx.title");
  const box = card("transcript", title);
  const form = el("form", "rx-form");
  form.noValidate = true;
  const [emailLabel, email] = field("email", "rx.email", { required: true, autocomplete: "email", maxLength: 320 });
  email.value = knownEmail() || (host.leftEmail() || "");
  const error = errorLine();
  const send = button("rx.tx.send", "rx-btn", "submit");
  const cancel = button("rx.tx.cancel", "rx-link");
  form.append(emailLabel, email, error, el("div", "rx-actions", null, send, cancel));
  box.append(title, say(el("p", "rx-text"), "rx.tx.text"), form);
  const close = () => {
    drop("transcript");
    host.opener.focus();
  };
  cancel.addEventListener("click", close);
  box.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    const address = email.value.trim();
    if (!EMAIL.test(address)) return fail(error, "email", email);
    if (busy(form, send, true)) return;
    let d;
    try {
      d = await host.client().request(22960, { email: address });
    } catch (err) {
      busy(form, send, false, "rx.tx.send");
      return fail(error, err, err.code === -22902 ? email : null);
    }
    host.store("setItem", emailKey(), d.email || address);
    box.done = true;
    const done = button("rx.tx.done");
    done.addEventListener("click", close);
    const sent = say(el("p", "rx-thanks"), "rx.tx.sent", { email: d.email || address });
    sent.setAttribute("role", "status");
    form.replaceWith(sent, el("div", "rx-actions", null, done));
    done.focus();
  });
  box.focusFirst = () => email.focus();
  return box;
}

// -- the cards in #extra -------------------------------------------------------------------------
const BUILD = { away, rating, transcript };

function put(what) {
  const box = BUILD[what]();
  const next = ORDER.slice(ORDER.indexOf(what) + 1).map((w) => cards[w]).find(Boolean);
  host.box.insertBefore(box, next || null);
  cards[what] = box;
  return box;
}

function drop(what) {
  if (cards[what]) cards[what].remove();
  delete cards[what];
}

/** Show (on) or take away a card; a half-written away form stays (it may go on in the chat). */
function show(what, on) {
  const old = cards[what];
  if (!on) {
    if (old && old.dirty && old.dirty()) old.update();
    else drop(what);
    return;
  }
  if (what === "away") {
    (old || put(what)).update();
    // Below earlier messages (#list, just before #extra): scrolled into view.
    if (!old && host.box.previousElementSibling.childElementCount) host.follow(true);
    return;
  }
  if (old && !old.done) {
    if (old.focusFirst) old.focusFirst();
    return;
  }
  drop(what);
  const box = put(what);
  host.follow(true);
  if (box.focusFirst) box.focusFirst();
}

export function setup(h) {
  host = h;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/widget/reception.css";
  return new Promise((resolve) => {
    link.onload = link.onerror = resolve;
    document.head.append(link);
  }).then(() => ({ show }));
}
