// Readable reasons for the server's error codes.
import { addCatalog, t } from "/static/shared/i18n.js";

addCatalog({
  en: {
    "err.offline": "no connection to the server",
    "err.notMine": "this conversation is no longer assigned to you",
    "err.tooLong": "the message is too long",
    "err.badMessage": "the message was refused",
    "err.unknownFile": "the file is not available any more",
    "err.target": "that colleague is no longer available",
    "err.rate": "too many requests, please wait a moment",
    "err.noConversation": "no such conversation",
  },
  "zh-CN": {
    "err.offline": "与服务器的连接已断开",
    "err.notMine": "该会话已不再分配给您",
    "err.tooLong": "消息太长",
    "err.badMessage": "消息被拒绝",
    "err.unknownFile": "文件已不可用",
    "err.target": "该同事已不可接待",
    "err.rate": "请求过于频繁，请稍候",
    "err.noConversation": "会话不存在",
  },
});

const KEYS = {
  "-1": "err.offline",
  "-32304": "err.notMine",
  "-32407": "err.notMine",
  "-32702": "err.notMine",
  "-32305": "err.tooLong",
  "-32303": "err.badMessage",
  "-32302": "err.badMessage",
  "-32306": "err.unknownFile",
  "-32405": "err.target",
  "-32404": "err.target",
  "-10029": "err.rate",
  "-32103": "err.noConversation",
  "-10002": "err.noDesk", // an api_key this server does not have yet
  "-32821": "err.noVisitor",
  "-32822": "err.badNote",
  "-32841": "err.noConversation",
  "-32842": "err.badTag",
  "-32851": "err.noVisitor",
  "-22307": "err.blocked",
};

/** A short reason for an error {code, message} from ChatClient. */
export function describeError(err) {
  const code = err && err.code;
  const key = KEYS[String(code)];
  if (key) return t(key);
  return (err && err.message) || t("error.generic", { code });
}
