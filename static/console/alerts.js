// New-message alerts: a short chime (Web Audio), the unread count in the
// title and, once the agent allows it, a desktop notification.
import { t } from "/static/shared/i18n.js";

const BASE_TITLE = "cschat";
let audio = null;

function audioContext() {
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return null;
  if (!audio) audio = new AC();
  return audio;
}

// Browsers start audio only after a user gesture: prepare it on the first one.
function unlock() {
  const ctx = audioContext();
  if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
  removeEventListener("pointerdown", unlock);
  removeEventListener("keydown", unlock);
}
addEventListener("pointerdown", unlock);
addEventListener("keydown", unlock);

/** Two soft rising notes, about a third of a second. */
export function chime() {
  const ctx = audioContext();
  if (!ctx) return;
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  const start = ctx.currentTime + 0.01;
  [[660, 0], [990, 0.13]].forEach(([freq, offset]) => {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    const t0 = start + offset;
    gain.gain.setValueAtTime(0.0001, t0);
    gain.gain.exponentialRampToValueAtTime(0.18, t0 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.22);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0);
    osc.stop(t0 + 0.25);
  });
}

/** "(3) cschat" while there are unread messages, else "cschat". */
export function setTitleCount(n) {
  document.title = n > 0 ? "(" + (n > 99 ? "99+" : n) + ") " + BASE_TITLE : BASE_TITLE;
}

export function notificationsSupported() {
  return typeof Notification !== "undefined";
}

/** True when the "enable notifications" button should be offered. */
export function canAskPermission() {
  return notificationsSupported() && Notification.permission === "default";
}

export function askPermission() {
  if (!notificationsSupported()) return Promise.resolve("denied");
  try {
    const r = Notification.requestPermission();
    return r && r.then ? r : Promise.resolve(Notification.permission);
  } catch (e) {
    return Promise.resolve("denied");
  }
}

/**
 * Alert about a message or a new conversation. Only when the page is hidden:
 * chime and, if allowed, a notification (plain text: title and a short preview).
 * onClick runs when the agent clicks the notification.
 */
export function alertNew({ title, body, tag, onClick }) {
  if (document.visibilityState !== "hidden") return;
  chime();
  if (!notificationsSupported() || Notification.permission !== "granted") return;
  const text = String(body || "").replace(/\s+/g, " ");
  try {
    const n = new Notification(String(title || t("notify.newChat")), {
      body: text.length > 80 ? text.slice(0, 79) + "…" : text,
      tag: tag || undefined,
      renotify: !!tag,
      silent: true, // the chime already played
    });
    n.onclick = () => {
      window.focus();
      if (onClick) onClick();
      n.close();
    };
  } catch (e) {
    // Some browsers (Android Chrome) allow notifications only from a service worker.
  }
}
