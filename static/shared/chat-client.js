// ChatClient over /ws: login, requests by seq, pushes by code, heartbeats, backoff, outbox.
// Events: "state" (and each state), push codes, "login", "reconnected" (catch up with
// after_id there), "refresh" (new token, R12), "signed-out".
// Dead sockets: a heartbeat goes out after IDLE_MS without a frame (and at least every
// heartbeat_interval, R6); no frame within ANSWER_MS of it, or no login within
// CONNECT_MS of opening, and the socket is dropped: "reconnecting", outbox kept.

const ROLES = { agent: [31000, 3], guest: [21000, 1] }; // login api_key, call_type
const HEARTBEAT_MS = 20000, IDLE_MS = 6000, ANSWER_MS = 5000, CONNECT_MS = 10000;
// Login refusals that a new attempt with the same token cannot fix.
const FATAL_LOGIN = new Set([-31001, -31002, -31003, -31004, -21001, -21004]);

/** A random id for client_msg_id (R21), generated once per message. */
export function newMsgId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export class ChatClient {
  // role "agent" | "guest"; getToken() returns the token (or a promise of it) for each login;
  // loginParams() (optional) more login parameters, e.g. the guest's {context}.
  constructor({ role, getToken, url, loginParams }) {
    if (!ROLES[role]) throw new Error("role must be agent or guest");
    this.role = role;
    this.getToken = getToken;
    this.loginParams = loginParams;
    this.url = url || (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    this.state = "offline";
    this.loginData = this._ws = this._timer = this._beat = null;
    this._handlers = new Map();
    this._pending = new Map(); // seq -> {resolve, reject, entry?}
    this._waiting = []; // requests made before the login: {api_key, params, resolve, reject}
    this._outbox = []; // sends not yet acknowledged: {api_key, params, resolve, reject, inFlight}
    this._seq = this._attempt = this._lastHeard = this._lastSent = this._probe = 0;
    this._every = HEARTBEAT_MS;
    this._everOnline = false;
    this._stopped = true;
    this._wake = () => {
      if (this.state === "reconnecting" && this._timer) {
        clearTimeout(this._timer);
        this._open();
      }
    };
  }

  on(name, fn) {
    const key = String(name);
    if (!this._handlers.has(key)) this._handlers.set(key, new Set());
    this._handlers.get(key).add(fn);
    return () => this.off(name, fn);
  }

  off(name, fn) {
    const set = this._handlers.get(String(name));
    if (set) set.delete(fn);
  }

  _emit(name, arg) {
    const set = this._handlers.get(String(name));
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (e) {
        setTimeout(() => { throw e; }); // report, keep the other handlers
      }
    }
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit(s);
    this._emit("state", s);
  }

  /** Start (or restart after "signed-out") connecting. */
  connect() {
    if (!this._stopped) return;
    this._stopped = false;
    this._attempt = 0;
    this._everOnline = false;
    addEventListener("online", this._wake);
    this._setState("connecting");
    this._open();
  }

  /** Stop for good: close the socket, fail what is waiting. */
  close() {
    this._stop();
    const err = { code: -1, message: "closed" };
    for (const e of this._outbox.splice(0)) e.reject(err);
    this._setState("offline");
  }

  _stop() {
    this._stopped = true;
    removeEventListener("online", this._wake);
    clearTimeout(this._timer);
    this._timer = null;
    this._drop({ code: -1, message: "closed" });
    for (const w of this._waiting.splice(0)) w.reject({ code: -1, message: "closed" });
  }

  _drop(err) {
    clearInterval(this._beat);
    this._beat = null;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (e) { /* already closed */ }
    }
    for (const [, p] of this._pending) {
      if (p.entry) p.entry.inFlight = false; // stays in the outbox
      else p.reject(err);
    }
    this._pending.clear();
  }

  _open() {
    this._timer = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this._retry();
      return;
    }
    this._ws = ws;
    this._lastHeard = this._lastSent = Date.now();
    this._probe = 0;
    this._every = HEARTBEAT_MS;
    this._beat = setInterval(() => this._tick(), 1000);
    ws.onopen = () => this._login();
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onclose = () => { if (this._ws === ws) this._retry(); };
    ws.onerror = () => {};
  }

  _retry() {
    this._drop({ code: -1, message: "disconnected" });
    if (this._stopped) return;
    this._setState(this._everOnline || this._attempt > 0 ? "reconnecting" : "connecting");
    const base = Math.min(30000, 500 * 2 ** this._attempt++); // 0.5 s doubling to 30 s, ±30 %
    this._timer = setTimeout(() => this._open(), base * (0.7 + Math.random() * 0.6));
  }

  async _login() {
    const ws = this._ws;
    let token;
    try {
      token = await this.getToken();
    } catch (e) {
      if (this._ws === ws) this._retry();
      return;
    }
    if (this._ws !== ws) return;
    let data;
    try {
      data = await this._call(ROLES[this.role][0], { ...(this.loginParams && this.loginParams()), token });
    } catch (err) {
      if (this._ws !== ws) return;
      if (FATAL_LOGIN.has(err.code)) return this._signedOut(err);
      return this._retry();
    }
    if (this._ws !== ws) return;
    const again = this._everOnline;
    this._attempt = 0;
    this._everOnline = true;
    this.loginData = data;
    this._every = Math.min(HEARTBEAT_MS, (data.heartbeat_interval || Infinity) * 1000); // R6
    if (data.is_refresh && data.refresh_token) this._emit("refresh", data.refresh_token);
    this._setState("online");
    this._emit("login", data);
    // The page reads history after its last message id before resends arrive.
    if (again) this._emit("reconnected", data);
    for (const w of this._waiting.splice(0)) this._call(w.api_key, w.params).then(w.resolve, w.reject);
    this._flush();
  }

  _signedOut(err) {
    this._stop();
    this.loginData = null;
    this._setState("offline");
    this._emit("signed-out", err);
  }

  // Each second: a socket that is not logged in after CONNECT_MS, or that left a heartbeat
  // unanswered for ANSWER_MS, is dead; else beat when idle or due.
  _tick() {
    const now = Date.now();
    if (this.state !== "online" && now - this._lastHeard > CONNECT_MS) return this._retry();
    if (this._probe) {
      if (now - this._probe > ANSWER_MS) this._retry();
    } else if (now - this._lastHeard >= IDLE_MS || now - this._lastSent >= this._every) {
      if (this._raw({ call_type: 0 })) this._probe = now;
    }
  }

  _raw(obj) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(obj));
    this._lastSent = Date.now();
    return true;
  }

  _call(api_key, params, entry) {
    return new Promise((resolve, reject) => {
      const seq = ++this._seq;
      const frame = { ...params, api_key, call_type: ROLES[this.role][1], seq };
      this._pending.set(seq, { resolve, reject, entry });
      if (!this._raw(frame)) {
        this._pending.delete(seq);
        reject({ code: -1, message: "disconnected" });
      }
    });
  }

  _onFrame(text) {
    this._lastHeard = Date.now();
    this._probe = 0;
    let f;
    try {
      f = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (!f || typeof f !== "object") return;
    if (f.seq != null && this._pending.has(f.seq)) {
      const p = this._pending.get(f.seq);
      this._pending.delete(f.seq);
      if (f.code === 200) p.resolve(f.data || {});
      else p.reject({ code: f.code, message: f.message || f.status || "error" });
      return;
    }
    if (f.code === -9999) this._signedOut({ code: -9999, message: f.message || "signed out" });
    else if (typeof f.code === "number" && f.code > 200) {
      this._emit(f.code, f.data || {});
      this._emit("push", f);
    }
  }

  /** One request; waits for the login if not yet online. Rejects with {code, message}. */
  request(api_key, params = {}) {
    if (this.state === "online") return this._call(api_key, params);
    if (this._stopped) return Promise.reject({ code: -1, message: "offline" });
    return new Promise((resolve, reject) => this._waiting.push({ api_key, params, resolve, reject }));
  }

  /** A message (22300/32300): one client_msg_id, kept and resent until acknowledged. */
  send(api_key, params = {}) {
    const p = { ...params };
    if (!p.client_msg_id) p.client_msg_id = newMsgId();
    return new Promise((resolve, reject) => {
      this._outbox.push({ api_key, params: p, resolve, reject, inFlight: false });
      this._flush();
    });
  }

  _flush() {
    if (this.state !== "online") return;
    for (const e of this._outbox) {
      if (e.inFlight) continue;
      e.inFlight = true;
      this._call(e.api_key, e.params, e).then(
        (data) => this._settle(e, () => e.resolve(data)),
        (err) => {
          // Rate limited: again shortly. Disconnected: again after the next login.
          if (err.code === -10029) setTimeout(() => this._flush(), 1000);
          if ([-10029, -1, -9999].includes(err.code)) e.inFlight = false;
          else this._settle(e, () => e.reject(err));
        },
      );
    }
  }

  _settle(entry, fn) {
    const i = this._outbox.indexOf(entry);
    if (i >= 0) this._outbox.splice(i, 1);
    fn();
  }
}
