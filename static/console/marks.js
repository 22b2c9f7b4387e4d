// What an agent should notice about a conversation beyond its messages (protocol §4 "E-mail",
// "Ratings"): the visitor left it with the away form (conversation_info.left_message), and
// the visitor's rating (conversation_info.rating, rating_comment; push 32951). Learned from
// every conversation_info the console reads (32800) and from the pushes, by conversation_id;
// shown by the lists (list.js, conversations.js), the chat pane and the visitor panel.
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";

const marks = new Map(); // conversation_id -> {left_message, rating, rating_comment}
const latest = new Map(); // gid -> the newest conversation_id seen of the visitor
const listeners = new Set();
let notifyQueued = false;

function notify() {
  // Many conversations learned at once re-render the views once.
  if (notifyQueued) return;
  notifyQueued = true;
  queueMicrotask(() => {
    notifyQueued = false;
    for (const fn of [...listeners]) fn();
  });
}

function sameMark(a, b) {
  return a && b && a.left_message === b.left_message && a.rating === b.rating &&
    a.rating_comment === b.rating_comment;
}

function validRating(r) {
  const n = Number(r);
  return r != null && r !== "" && Number.isInteger(n) && n >= 1 && n <= 5 ? n : null;
}

/** conversation_info objects (32800): remember their marks. Returns the ids that changed. */
function seen(gid, cid) {
  if (gid == null) return;
  const g = Number(gid);
  if (!(latest.get(g) >= cid)) latest.set(g, cid);
}

export function learn(convs) {
  const changed = [];
  for (const c of convs || []) {
    if (!c || c.conversation_id == null) continue;
    const cid = Number(c.conversation_id);
    seen(c.gid, cid);
    const mark = {
      left_message: !!c.left_message,
      rating: validRating(c.rating),
      rating_comment: typeof c.rating_comment === "string" && c.rating_comment ? c.rating_comment : null,
    };
    if (sameMark(marks.get(cid), mark)) continue;
    marks.set(cid, mark);
    changed.push(cid);
  }
  if (changed.length) notify();
  return changed;
}

/** Push 32951: a visitor rated a conversation (a new rating replaces the previous one). */
export function rated(conversationId, rating, comment, gid) {
  const cid = Number(conversationId);
  seen(gid, cid);
  const old = marks.get(cid) || { left_message: false };
  marks.set(cid, {
    left_message: !!old.left_message,
    rating: validRating(rating),
    rating_comment: typeof comment === "string" && comment ? comment : null,
  });
  notify();
}

/**
 * The newest conversation_id seen of a visitor, or null: the one a chat shows at its
 * bottom while the visitor has none open (guest_info.conversation_id null after an end).
 */
export function latestOf(gid) {
  return gid == null ? null : latest.get(Number(gid)) ?? null;
}

/** The marks of a conversation, or null when none was learned. */
export function markOf(conversationId) {
  if (conversationId == null) return null;
  return marks.get(Number(conversationId)) || null;
}

export function hasMarks(mark) {
  return !!mark && (mark.left_message || mark.rating != null);
}

/** Call fn() after marks changed; returns a function that stops it. */
export function onMarksChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Signed out: forget everything. */
export function clearMarks() {
  marks.clear();
  latest.clear();
}

/** "4 / 5" */
export function ratingText(rating) {
  return t("marks.ratingOf", { n: rating });
}

/** A small chip "Left a message". */
export function leftChip() {
  return el("span", "mark-chip mark-left", t("marks.left"));
}

/** A small chip "★ 4 / 5" whose text for screen readers is "Rating: 4 / 5". */
export function ratingChip(rating) {
  const star = el("span", "mark-star", "★");
  star.setAttribute("aria-hidden", "true");
  return el("span", "mark-chip mark-rating rating-" + rating, null,
    star, el("span", "visually-hidden", t("marks.ratingLabel")), el("span", null, ratingText(rating)));
}

/** The chips of a mark (none when it has none); `comment`: the rating's comment as well. */
export function markChips(mark, { comment = false } = {}) {
  const nodes = [];
  if (!mark) return nodes;
  if (mark.left_message) nodes.push(leftChip());
  if (mark.rating != null) {
    nodes.push(ratingChip(mark.rating));
    if (comment && mark.rating_comment) nodes.push(el("q", "mark-comment", mark.rating_comment));
  }
  return nodes;
}
