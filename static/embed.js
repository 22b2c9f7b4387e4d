/* cschat chat bubble: <script async src="https://CHAT/embed.js" data-group="1"></script>
   and/or cschat('init', {group: 1, token: '<guest JWT>'}) */
(function () {
  "use strict";
  var w = window, d = document;
  if (w.cschat && w.cschat.loaded) return;
  var me = d.currentScript || d.querySelector('script[src$="/embed.js"]');
  if (!me) return;
  var origin = new URL(me.src, location.href).origin;
  var cfg = { group: me.getAttribute("data-group"), token: "" };
  var zh = /^zh/i.test(navigator.language || "");
  var bubble, badge, panel, frame, open = false;
  var phone = w.matchMedia("(max-width: 600px)");

  function css(el, s) { for (var k in s) el.style[k] = s[k]; return el; }

  function post(msg) {
    if (frame && frame.contentWindow) frame.contentWindow.postMessage(msg, origin);
  }
  function init() {
    post({ type: "cschat-init", group: cfg.group, token: cfg.token });
  }

  function layout() {
    if (!panel) return;
    var p = phone.matches;
    css(panel, p
      ? { top: "0", left: "0", right: "0", bottom: "0", width: "100%", height: "100%", borderRadius: "0" }
      : { top: "auto", left: "auto", right: "20px", bottom: "88px", width: "370px",
          height: "min(600px, calc(100vh - 110px))", borderRadius: "14px" });
    panel.style.display = open ? "block" : "none";
    if (bubble) bubble.style.display = open && p ? "none" : "flex";
  }

  function svg(tag, attrs) {
    var e = d.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function icon() {
    var s = svg("svg", { viewBox: "0 0 24 24", width: 28, height: 28, "aria-hidden": "true" });
    s.appendChild(svg("path", { fill: "currentColor", d: "M6 3h12a3 3 0 0 1 3 3v8a3 3 0 0 1-3 3h-7l-5 4v-4a3 3 0 0 1-3-3V6a3 3 0 0 1 3-3z" }));
    return s;
  }

  function draw() {
    if (bubble || !d.body) return;
    bubble = css(d.createElement("button"), {
      position: "fixed", right: "20px", bottom: "20px", width: "56px", height: "56px",
      borderRadius: "50%", border: "0", padding: "0", cursor: "pointer", zIndex: "2147483646",
      background: "#2563eb", color: "#fff", boxShadow: "0 4px 14px rgba(0,0,0,.25)",
      display: "flex", alignItems: "center", justifyContent: "center"
    });
    bubble.type = "button";
    bubble.setAttribute("aria-label", zh ? "在线客服" : "Chat with us");
    bubble.setAttribute("aria-expanded", "false");
    bubble.appendChild(icon());
    badge = css(d.createElement("span"), {
      position: "absolute", top: "-4px", right: "-4px", minWidth: "20px", height: "20px",
      padding: "0 5px", borderRadius: "10px", background: "#dc2626", color: "#fff",
      font: "600 12px/20px system-ui, sans-serif", textAlign: "center", display: "none"
    });
    bubble.appendChild(badge);
    bubble.addEventListener("click", function () { show(!open); });
    d.body.appendChild(bubble);
  }

  function build() {
    panel = css(d.createElement("div"), {
      position: "fixed", zIndex: "2147483647", overflow: "hidden", background: "#fff",
      boxShadow: "0 10px 40px rgba(0,0,0,.25)"
    });
    frame = css(d.createElement("iframe"), { width: "100%", height: "100%", border: "0", display: "block" });
    frame.title = zh ? "在线客服" : "Customer service chat";
    frame.setAttribute("allow", "clipboard-write");
    frame.addEventListener("load", init);
    frame.src = origin + "/widget/";
    panel.appendChild(frame);
    d.body.appendChild(panel);
    phone.addEventListener ? phone.addEventListener("change", layout) : phone.addListener(layout);
  }

  function show(on) {
    if (on && !panel) build();
    open = !!on;
    if (bubble) bubble.setAttribute("aria-expanded", String(open));
    layout();
    post({ type: "cschat-visibility", open: open });
  }

  function setBadge(n) {
    n = Math.max(0, n | 0);
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.style.display = n ? "block" : "none";
  }

  w.addEventListener("message", function (e) {
    if (e.origin !== origin || !frame || e.source !== frame.contentWindow) return;
    var m = e.data || {};
    if (m.type === "cschat-ready") init();
    else if (m.type === "cschat-unread") setBadge(m.count);
    else if (m.type === "cschat-close") show(false);
  });

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

  function ready(fn) {
    if (d.body) fn();
    else d.addEventListener("DOMContentLoaded", fn);
  }

  var queued = (w.cschat && w.cschat.q) || [];
  w.cschat = api;
  for (var i = 0; i < queued.length; i++) api.apply(null, queued[i]);
  if (cfg.group) ready(draw);
})();
