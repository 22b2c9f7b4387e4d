/* cschat bubble: <script async src="https://CHAT/embed.js" data-group="1"></script>
   and/or cschat('init', {group: 1, token: '<guest JWT>'}) */
(function () {
var w = window, d = document, L = location;
if (w.cschat && w.cschat.loaded) return;
var me = d.currentScript || d.querySelector('script[src$="/embed.js"]');
if (!me) return;
var origin = new URL(me.src).origin;
var cfg = { group: me.dataset.group, token: "" };
var zh = /^zh/i.test(navigator.language);
var bubble, badge, panel, frame, note, timer, open, seen;
var phone = w.matchMedia("(max-width: 600px)");

function el(tag, css) { var e = d.createElement(tag); e.style.cssText = css; return e; }

function post(msg) {
  if (frame) frame.contentWindow.postMessage(msg, origin);
}
// Where the visitor is, at start and on each change.
function page() {
  seen = L.href + "\n" + d.title;
  return { url: L.href, title: d.title, referrer: d.referrer };
}
function init() {
  post({ type: "cschat-init", group: cfg.group, token: cfg.token, context: page() });
}
function moved() {
  if (L.href + "\n" + d.title !== seen) post({ type: "cschat-page", context: page() });
}
["pushState", "replaceState"].forEach(function (k) {
  var f = history[k];
  history[k] = function () { f.apply(this, arguments); moved(); };
});
addEventListener("popstate", moved);
addEventListener("hashchange", moved);
new MutationObserver(moved).observe(d.head, { subtree: 1, childList: 1, characterData: 1 });

function layout() {
  var p = phone.matches;
  panel.style.cssText = "position:fixed;z-index:2147483647;overflow:hidden;background:#fff;box-shadow:0 10px 40px #0004;" +
    (p ? "inset:0" : "right:20px;bottom:88px;width:370px;height:min(600px,calc(100vh - 110px));border-radius:14px") +
    (open ? "" : ";display:none");
  bubble.style.display = open && p ? "none" : "grid";
}

function svg(tag, attrs) {
  var e = d.createElementNS("http://www.w3.org/2000/svg", tag);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}

function draw() {
  if (bubble) return;
  bubble = el("button", "position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;" +
    "cursor:pointer;z-index:2147483646;background:#2563eb;color:#fff;box-shadow:0 4px 14px #0004;display:grid;place-items:center");
  bubble.setAttribute("aria-label", zh ? "在线客服" : "Chat with us");
  bubble.setAttribute("aria-expanded", "false");
  var icon = svg("svg", { viewBox: "0 0 24 24", width: 28, height: 28, "aria-hidden": "true" });
  icon.appendChild(svg("path", { fill: "currentColor", d: "M6 3h12a3 3 0 0 1 3 3v8a3 3 0 0 1-3 3h-7l-5 4v-4a3 3 0 0 1-3-3V6a3 3 0 0 1 3-3z" }));
  badge = el("span", "position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;" +
    "background:#dc2626;color:#fff;font:600 12px/20px sans-serif;text-align:center;display:none");
  bubble.append(icon, badge);
  bubble.addEventListener("click", function () { show(!open); });
  d.body.appendChild(bubble);
}

function build() {
  panel = d.createElement("div");
  frame = el("iframe", "width:100%;height:100%;border:0;display:block");
  frame.title = bubble.getAttribute("aria-label");
  frame.allow = "autoplay; clipboard-write";
  frame.src = origin + "/widget/";
  // No word from the widget in 10 s (frame-ancestors?): say so.
  note = el("p", "margin:0;padding:16px;color:#222;font:14px sans-serif");
  note.setAttribute("role", "alert");
  timer = setTimeout(function () {
    note.textContent = zh ? "本网站无法显示在线客服。站长请检查 cschat 的 [server] widget_frame_ancestors 设置。"
      : "This site cannot show the chat. Site owner: check cschat's [server] widget_frame_ancestors.";
    panel.prepend(note);
    console.error("cschat: " + note.textContent);
  }, 10000);
  panel.appendChild(frame);
  d.body.appendChild(panel);
  phone.addEventListener("change", layout);
}

function show(on) {
  if (!panel) build();
  open = on;
  bubble.setAttribute("aria-expanded", on);
  layout();
  post({ type: "cschat-visibility", open: on });
}

w.addEventListener("message", function (e) {
  if (e.origin !== origin || !frame || e.source !== frame.contentWindow) return;
  var m = e.data || {}, n = m.count | 0;
  if (m.type === "cschat-ready") {
    clearTimeout(timer);
    note.remove();
    init();
  } else if (m.type === "cschat-unread") {
    badge.textContent = n > 99 ? "99+" : n;
    badge.style.display = n > 0 ? "block" : "none";
  } else if (m.type === "cschat-close") show(false);
});

function ready(fn) {
  if (d.body) fn();
  else d.addEventListener("DOMContentLoaded", fn);
}

function api(cmd, opts) {
  opts = opts || {};
  if (cmd === "init") {
    if (opts.group != null) cfg.group = String(opts.group);
    if (opts.token) cfg.token = String(opts.token);
    ready(draw);
    init();
  } else if (cmd === "open" || cmd === "close") {
    ready(function () { draw(); show(cmd === "open"); });
  }
}
api.loaded = true;

var queued = (w.cschat && w.cschat.q) || [];
w.cschat = api;
for (var i = 0; i < queued.length; i++) api.apply(null, queued[i]);
if (cfg.group) ready(draw);
})();
