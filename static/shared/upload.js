// Upload one file to /api/upload with the session's token (protocol §7).
//   const info = await uploadFile(file, token); // {file_id, url, name, size, mime, …, file_type}
//   then send it: {msg: info.file_id, file_type: info.file_type}
// A refusal throws {status, code, message}; status is 0 when the server cannot be reached
// (413 too large, 415 type not allowed, 400 empty or damaged, 401 token).

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
