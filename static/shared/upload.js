// uploadFile(file, token[, fileType]) → the file object + file_type of /api/upload (protocol §7);
// then send {msg: info.file_id, file_type: info.file_type}. Throws {status, code, message}.

export async function uploadFile(file, token, fileType) {
  const body = new FormData();
  if (fileType) body.append("file_type", String(fileType)); // before the file: read first
  body.append("file", file, file.name || "file");
  let res;
  try {
    res = await fetch("/api/upload", { method: "POST", headers: { Authorization: "Bearer " + token }, body });
  } catch (e) {
    throw { status: 0, code: -1, message: "network" };
  }
  const answer = await res.json().catch(() => ({}));
  if (res.ok && answer.code === 200 && answer.data) return answer.data;
  throw { status: res.status, code: answer.code, message: answer.message || "HTTP " + res.status };
}
