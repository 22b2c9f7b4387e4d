"""Uploads and served files through the running server (PROTOCOL R25, §7 /api/upload, /files).

Sample media are made here: images with Pillow, WAV with ``wave``, and the
other formats as the few header bytes libmagic recognises them by.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import time
import wave
import zlib

import jwt
import pytest
import tornado.httpclient
from PIL import Image

SECRET = "upload-tests-secret-0123456789abcdef"


# -- sample files ------------------------------------------------------------------------

def image_bytes(fmt: str, size=(40, 30), **options) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 20), color) for color in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)
    return buffer.getvalue()


def mp4_family(brand: bytes) -> bytes:
    box = b"ftyp" + brand + b"\x00\x00\x02\x00" + b"isom" + brand
    return (struct.pack(">I", len(box) + 4) + box + struct.pack(">I", 8) + b"free"
            + struct.pack(">I", 16) + b"mdat" + b"\x00" * 8)


def webm_bytes() -> bytes:
    def element(tag: str, value: bytes) -> bytes:
        return bytes.fromhex(tag) + bytes([0x80 | len(value)]) + value
    header = b"".join([element("4286", b"\x01"), element("42F7", b"\x01"),
                       element("42F2", b"\x04"), element("42F3", b"\x08"),
                       element("4282", b"webm"), element("4287", b"\x04"),
                       element("4285", b"\x02")])
    return bytes.fromhex("1A45DFA3") + bytes([0x80 | len(header)]) + header + b"\x00" * 64


OPUS = (b"OggS\x00\x02" + b"\x00" * 8 + b"\x01\x00\x00\x00" + b"\x00" * 8 + b"\x01\x13"
        + b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00")
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 400
AAC = bytes([0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC]) + b"\x00" * 200
AMR = b"#!AMR\n" + b"\x00" * 100
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">'
       b"<script>alert(document.cookie)</script></svg>")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares a huge size, with one tiny compressed row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def jpeg_with_exif() -> bytes:
    """A 60×20 JPEG with GPS data and orientation 6 (shown rotated by 90°)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x010F] = "SpyCam"
    return image_bytes("JPEG", (60, 20), exif=exif.tobytes())


# -- requests ----------------------------------------------------------------------------

def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZzY0123"
              ) -> tuple[str, bytes]:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


async def upload(h, token: str | None, data: bytes, filename: str = "x.bin",
                 file_type: int | None = None, extra_parts=()) -> tuple[int, dict]:
    parts = [("file", filename, data), *extra_parts]
    if file_type is not None:
        parts.append(("file_type", None, str(file_type).encode()))
    content_type, body = multipart(parts)
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await h.http("POST", "/api/upload", body, headers)


async def fetch(h, path: str, headers=None) -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        h.url + path, headers=headers, raise_error=False)


@pytest.fixture
def server(io_loop, make_server):
    async def start():
        h = await make_server(auth={"secret": SECRET})
        h.group_id = await h.group()
        h.admin_id = await h.agent(h.group_id, "Alice")
        h.agent_token = h.server.tokens.mint_agent(h.admin_id)
        h.guest_token = h.server.tokens.mint_guest("visitor-1", h.group_id)
        return h
    return io_loop.run_sync(start)


# -- accepted formats --------------------------------------------------------------------

ACCEPTED = [
    ("photo.jpg", lambda: image_bytes("JPEG"), None, 1, "image/jpeg"),
    ("shot.png", lambda: image_bytes("PNG"), None, 1, "image/png"),
    ("anim.gif", animated_gif, None, 1, "image/gif"),
    ("pic.webp", lambda: image_bytes("WEBP"), None, 1, "image/webp"),
    ("note.mp3", lambda: MP3, None, 2, "audio/mpeg"),
    ("note.opus", lambda: OPUS, None, 2, "audio/ogg"),
    ("note.wav", wav_bytes, None, 2, "audio/x-wav"),
    ("note.aac", lambda: AAC, None, 2, "audio/x-hx-aac-adts"),
    ("note.m4a", lambda: mp4_family(b"M4A "), None, 2, "audio/x-m4a"),
    ("note.amr", lambda: AMR, None, 2, "audio/amr"),
    ("note.webm", webm_bytes, 2, 2, "video/webm"),
    ("clip.mp4", lambda: mp4_family(b"mp42"), None, 5, "video/mp4"),
    ("clip.webm", webm_bytes, None, 5, "video/webm"),
    ("clip.mov", lambda: mp4_family(b"qt  "), None, 5, "video/quicktime"),
    ("manual.pdf", lambda: PDF, None, 6, "application/pdf"),
    ("notes.txt", lambda: b"hello\n", None, 6, "text/plain"),
    ("photo-as-file.png", lambda: image_bytes("PNG"), 6, 6, "image/png"),
]


@pytest.mark.parametrize("name, make, requested, file_type, mime", ACCEPTED,
                         ids=[case[0] for case in ACCEPTED])
@pytest.mark.gen_test
async def test_allowed_formats_are_typed_by_their_bytes(server, name, make, requested,
                                                        file_type, mime):
    # PROTOCOL R25, §7: the type comes from the bytes; the file object describes it
    h = server
    data = make()
    status, body = await upload(h, h.guest_token, data, name, requested)
    assert status == 200, body
    info = body["data"]
    assert info["file_type"] == file_type and info["mime"] == mime
    assert info["name"] == name
    assert info["url"] == f"/files/{info['file_id']}"
    assert len(info["file_id"]) >= 22  # 128 random bits, URL-safe base64
    row = h.db("SELECT file_type, mime, uploader, used, path FROM files WHERE id = ?",
               (info["file_id"],))[0]
    assert row[:4] == (file_type, mime, "guest", 0)
    assert row[4].count("/") == 2 and row[4].endswith(info["file_id"])
    served = await fetch(h, info["url"])
    assert served.code == 200 and served.headers["Content-Type"] == mime
    if file_type != 1:
        assert served.body == data and info["size"] == len(data)
    else:
        assert (info["width"], info["height"]) == Image.open(io.BytesIO(served.body)).size
        assert info["thumb_url"] == info["url"] + "/thumb"


@pytest.mark.gen_test
async def test_agent_upload_and_animated_gif_keeps_its_frames(server):
    # PROTOCOL §7: agents upload with their token; animation survives
    h = server
    status, body = await upload(h, h.agent_token, animated_gif(), "anim.gif")
    assert status == 200
    served = await fetch(h, body["data"]["url"])
    assert Image.open(io.BytesIO(served.body)).n_frames == 3
    assert h.db("SELECT uploader, uploader_id FROM files")[0] == ("agent", h.admin_id)


# -- refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, data, requested, status", [
    ("cat.png", HTML, None, 415),                     # HTML named .png
    ("logo.svg", SVG, None, 415),                     # SVG with a script
    ("feed.xml", b'<?xml version="1.0"?><a>b</a>', None, 415),
    ("run.js", b"#!/usr/bin/env node\nconsole.log(1)\n", None, 415),
    ("page.html", HTML, 6, 415),                      # not even as a plain file
    ("bomb.png", png_claiming(50000, 50000), None, 400),
    ("cut.jpg", image_bytes("JPEG", (200, 200))[:300], None, 400),
    ("photo.png", image_bytes("PNG"), 2, 415),        # file_type mismatch
    ("doc.pdf", PDF, 1, 415),
    ("x.png", image_bytes("PNG"), 3, 415),            # not a file type
    ("x.png", image_bytes("PNG"), "abc", 415),
    ("empty.txt", b"", None, 400),
])
@pytest.mark.gen_test
async def test_refused_uploads_store_nothing(server, name, data, requested, status):
    # PROTOCOL §7: 415 type not allowed or not matching, 400 corrupt or bomb
    h = server
    got, body = await upload(h, h.guest_token, data, name, requested)
    assert got == status, body
    assert body["status"] == "Error" and body["data"] == {}
    assert h.db("SELECT COUNT(*) FROM files") == [(0,)]
    assert stored_files(h) == []


def stored_files(h) -> list[str]:
    folder = h.server.uploads.policy.folder
    return [os.path.join(root, name) for root, _, names in os.walk(folder)
            for name in names if not root.endswith("tmp")]


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer garbage", "Basic abc"])
@pytest.mark.gen_test
async def test_upload_needs_a_valid_token(server, authorization):
    # PROTOCOL §7: 401 no/bad token
    h = server
    content_type, body = multipart([("file", "a.png", image_bytes("PNG"))])
    headers = {"Content-Type": content_type}
    if authorization:
        headers["Authorization"] = authorization
    status, answer = await h.http("POST", "/api/upload", body, headers)
    assert status == 401 and answer["status"] == "Error"


@pytest.mark.gen_test
async def test_expired_token_is_refused(server):
    # PROTOCOL §7 + R10: an expired token is a bad token
    h = server
    token = jwt.encode({"typ": "guest", "uid": "v", "group_id": h.group_id,
                        "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")
    status, _ = await upload(h, token, image_bytes("PNG"))
    assert status == 401


@pytest.mark.gen_test
async def test_thousands_of_parts_are_refused(server):
    # Issue limits: the number of multipart parts is capped
    h = server
    parts = [(f"f{i}", None, b"x") for i in range(10000)]
    content_type, body = multipart([("file", "a.png", image_bytes("PNG")), *parts])
    status, answer = await h.http("POST", "/api/upload", body,
                                  {"Content-Type": content_type,
                                   "Authorization": f"Bearer {h.guest_token}"})
    assert status == 400 and "parts" in answer["message"]


@pytest.mark.gen_test
async def test_not_multipart_is_refused(server):
    h = server
    status, _ = await h.http("POST", "/api/upload", b"raw bytes",
                             {"Content-Type": "application/octet-stream",
                              "Authorization": f"Bearer {h.guest_token}"})
    assert status == 400


@pytest.mark.gen_test
async def test_oversize_declared_and_streamed(make_server):
    # PROTOCOL §7: 413 over the size limit of the type, refused before the body is read
    limits = {f"max_{kind}_bytes": 20000 for kind in ("image", "voice", "video", "file")}
    h = await make_server(uploads={**limits, "max_image_bytes": 5000})
    group = await h.group()
    token = h.server.tokens.mint_guest("g", group)
    # declared: Content-Length far over the limit, answered before any body is sent
    reply = await raw_request(h.port, token, declared=10_000_000, body=b"")
    assert reply.startswith(b"HTTP/1.1 413")
    # streamed: chunked, no Content-Length; refused once the file passes the limit
    content_type, body = multipart([("file", "big.bin", os.urandom(60000))])
    reply = await raw_request(h.port, token, chunked=body, content_type=content_type)
    assert reply.startswith(b"HTTP/1.1 413")
    # the limit of the sniffed type applies: 8000 bytes is over max_image_bytes for a PNG,
    # and within max_file_bytes for a BMP (not an allowed image type, so a plain file)
    status, _ = await upload(h, token, image_bytes("PNG", (60, 60)) + os.urandom(8000))
    assert status == 413
    status, _ = await upload(h, token, image_bytes("BMP", (50, 50))[:54] + os.urandom(7946))
    assert status == 200
    assert h.db("SELECT COUNT(*) FROM files") == [(1,)]


async def raw_request(port: int, token: str, declared: int | None = None, body: bytes = b"",
                      chunked: bytes | None = None,
                      content_type: str = "multipart/form-data; boundary=b") -> bytes:
    """Send an upload over a raw socket and return the first bytes of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Authorization: Bearer {token}\r\n")
    if chunked is None:
        writer.write((head + f"Content-Length: {declared}\r\n\r\n").encode() + body)
    else:
        writer.write((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
        for start in range(0, len(chunked), 4096):
            piece = chunked[start:start + 4096]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            try:
                await writer.drain()
            except ConnectionError:
                break
        else:
            writer.write(b"0\r\n\r\n")
    try:
        return await asyncio.wait_for(reader.read(200), 5)
    finally:
        writer.close()


@pytest.mark.gen_test
async def test_file_names_are_for_display_only(server):
    # Issue: no part of a stored path comes from the user
    h = server
    for name in ("../../../etc/passwd", "..\\..\\boot.ini", "<img src=x onerror=alert(1)>.txt",
                 "a\x00b\x07c.txt"):
        status, body = await upload(h, h.guest_token, b"plain text\n", name)
        assert status == 200, body
        shown = body["data"]["name"]
        assert "/" not in shown and "\\" not in shown and "\x00" not in shown
    assert [n for (n,) in h.db("SELECT name FROM files ORDER BY rowid")] == [
        "passwd", "boot.ini", "<img src=x onerror=alert(1)>.txt", "abc.txt"]
    folder = h.server.uploads.policy.folder
    for path in stored_files(h):
        relative = os.path.relpath(path, folder)
        assert relative.split(os.sep)[0].isdigit() and ".." not in relative


# -- images ------------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_exif_is_stripped_and_orientation_applied(server):
    # Issue: EXIF/GPS metadata removed from the stored copy, rotated by orientation first
    h = server
    original = jpeg_with_exif()
    assert Image.open(io.BytesIO(original)).getexif()[0x0112] == 6
    status, body = await upload(h, h.guest_token, original, "gps.jpg")
    assert status == 200
    info = body["data"]
    assert (info["width"], info["height"]) == (20, 60)
    stored = (await fetch(h, info["url"])).body
    assert b"SpyCam" not in stored and b"Exif" not in stored
    image = Image.open(io.BytesIO(stored))
    assert image.size == (20, 60) and not image.getexif()


@pytest.mark.gen_test
async def test_thumbnail_longest_side_is_320(server):
    # Issue: thumbnail with longest side 320 px
    h = server
    status, body = await upload(h, h.guest_token, image_bytes("PNG", (1000, 500)), "wide.png")
    assert status == 200
    thumb = await fetch(h, body["data"]["thumb_url"])
    assert thumb.code == 200
    assert Image.open(io.BytesIO(thumb.body)).size == (320, 160)
    assert thumb.headers["Content-Type"] in ("image/jpeg", "image/png")


# -- serving -----------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_served_headers_and_ranges(server):
    # PROTOCOL §7 /files: sniffed type, nosniff, attachment for 6, Range for seeking
    h = server
    data = bytes(range(256)) * 40
    status, body = await upload(h, h.agent_token, PDF + data, "manual.pdf")
    assert status == 200
    url = body["data"]["url"]
    response = await fetch(h, url)
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''manual.pdf"
    assert "max-age" in response.headers["Cache-Control"]
    etag = response.headers["Etag"]
    partial = await fetch(h, url, {"Range": "bytes=10-19"})
    assert partial.code == 206 and partial.body == (PDF + data)[10:20]
    assert partial.headers["Content-Range"] == f"bytes 10-19/{len(PDF + data)}"
    cached = await fetch(h, url, {"If-None-Match": etag})
    assert cached.code == 304

    status, body = await upload(h, h.agent_token, MP3, "note.mp3")
    voice = await fetch(h, body["data"]["url"])
    assert voice.headers["Content-Disposition"].startswith("inline")
    assert voice.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize("path", ["/files/AAAAAAAAAAAAAAAAAAAAAA", "/files/nope",
                                  "/files/..%2f..%2fcschat.ini",
                                  "/files/AAAAAAAAAAAAAAAAAAAAAA/thumb"])
@pytest.mark.gen_test
async def test_unknown_files_are_404(server, path):
    # PROTOCOL §7: unknown id → 404
    response = await fetch(server, path)
    assert response.code == 404


@pytest.mark.gen_test
async def test_no_thumbnail_for_other_files(server):
    h = server
    _, body = await upload(h, h.guest_token, PDF, "a.pdf")
    assert (await fetch(h, body["data"]["url"] + "/thumb")).code == 404


# -- messages with files -----------------------------------------------------------------

@pytest.mark.gen_test
async def test_file_messages_carry_the_file_object(server):
    # PROTOCOL R25: msg = file_id in, file object out (stored, pushed, in history)
    h = server
    agent = await h.agent_client(h.admin_id)
    guest = await h.guest_client("visitor-1", h.group_id)
    _, body = await upload(h, h.guest_token, image_bytes("PNG", (64, 32)), "parcel.png")
    file_id = body["data"]["file_id"]
    sent = await guest.ok(22300, msg=file_id, file_type=1)
    obj = sent["message_info"]["msg"]
    assert obj == {key: body["data"][key] for key in
                   ("file_id", "url", "name", "size", "mime", "width", "height", "thumb_url")}
    assert (await agent.push(32399))["data"]["message_info"]["msg"] == obj
    history = await agent.ok(32100, gid=guest.login_data["gid"], group_id=h.group_id)
    assert history["list"][-1]["msg"] == obj
    assert h.db("SELECT used FROM files WHERE id = ?", (file_id,)) == [(1,)]
    stored = json.loads(h.db("SELECT body FROM messages")[0][0])
    assert stored["file_id"] == file_id

    _, body = await upload(h, h.agent_token, PDF, "manual.pdf")
    reply = await agent.ok(32300, gid=guest.login_data["gid"], msg=body["data"]["file_id"],
                           file_type=6)
    assert reply["message_info"]["msg"]["name"] == "manual.pdf"
    assert (await guest.push(22399))["data"]["message_info"]["msg"]["mime"] == "application/pdf"


@pytest.mark.gen_test
async def test_who_may_send_which_file(server):
    # PROTOCOL 22300/32300 -x306: a guest sends only its own uploads, an agent only its
    # group's; -x303 when the message's file_type is not the file's
    h = server
    other_group = await h.group("Other")
    stranger = await h.agent(other_group, "Mallory")
    agent = await h.agent_client(h.admin_id)
    guest = await h.guest_client("visitor-1", h.group_id)
    await h.guest_client("visitor-2", h.group_id)
    _, theirs = await upload(h, h.server.tokens.mint_guest("visitor-2", h.group_id),
                             image_bytes("PNG"), "theirs.png")
    _, mine = await upload(h, h.guest_token, image_bytes("PNG"), "mine.png")
    _, foreign = await upload(h, h.server.tokens.mint_agent(stranger), PDF, "x.pdf")

    assert (await guest.call(22300, msg=theirs["data"]["file_id"], file_type=1))["code"] \
        == -22306
    assert (await guest.call(22300, msg="A" * 22, file_type=1))["code"] == -22306
    assert (await guest.call(22300, msg=mine["data"]["file_id"], file_type=2))["code"] == -22303
    gid = guest.login_data["gid"]
    assert (await agent.call(32300, gid=gid, msg=foreign["data"]["file_id"], file_type=6)
            )["code"] == -32306
    assert (await agent.call(32300, gid=gid, msg=mine["data"]["file_id"], file_type=1)
            )["code"] == 200  # a file of my group
    assert h.db("SELECT COUNT(*) FROM messages") == [(1,)]


@pytest.mark.gen_test(timeout=15)
async def test_unused_uploads_are_removed(make_server):
    # Issue: files no message uses after orphan_ttl are removed by a periodic task
    h = await make_server(uploads={"orphan_ttl": 1})
    group = await h.group()
    guest = await h.guest_client("v", group)
    token = h.server.tokens.mint_guest("v", group)
    _, used = await upload(h, token, image_bytes("PNG"), "used.png")
    _, unused = await upload(h, token, image_bytes("PNG"), "unused.png")
    await guest.ok(22300, msg=used["data"]["file_id"], file_type=1)
    for _ in range(40):
        await asyncio.sleep(0.1)
        if h.db("SELECT COUNT(*) FROM files") == [(1,)]:
            break
    assert [i for (i,) in h.db("SELECT id FROM files")] == [used["data"]["file_id"]]
    assert (await fetch(h, unused["data"]["url"])).code == 404
    assert (await fetch(h, used["data"]["url"])).code == 200
    names = {os.path.basename(p) for p in stored_files(h)}
    assert not any(n.startswith(unused["data"]["file_id"]) for n in names)
    assert used["data"]["file_id"] in names


@pytest.mark.gen_test
async def test_a_refused_file_still_announces_the_routing_it_caused(server):
    # PROTOCOL R24: routing on a guest's message is pushed (32401/22401) even when that
    # message is then refused (-22306)
    h = server
    agent = await h.agent_client(h.admin_id)
    guest = await h.guest_client("visitor-1", h.group_id)
    await agent.push(32401)
    await agent.ok(32700, gid=guest.login_data["gid"])
    assert (await guest.call(22300, msg="A" * 22, file_type=1))["code"] == -22306
    assigned = (await agent.push(32401))["data"]
    assert assigned["guest_info"]["gid"] == guest.login_data["gid"]
    assert (await guest.push(22401))["data"]["agent"]["aix"] == h.admin_id
