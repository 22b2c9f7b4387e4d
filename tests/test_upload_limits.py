"""Upload limits, through the running server (docs/security.md
"Uploads and disk", PROTOCOL §7): image budgets and their own threads, quotas, free disk
and full disks, type limits while streaming, folder and file modes, private caching.

Images are made here with Pillow; a full disk is a real 1 MiB tmpfs (skipped, saying so,
where mounting one is not allowed).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from test_uploads import PDF, fetch, image_bytes, multipart, raw_request, upload, webm_bytes

SECRET = "upload-limits-secret-0123456789abcdef"


# -- samples and requests --------------------------------------------------------------------

def animation(fmt: str, frames: int, size: tuple[int, int]) -> bytes:
    """An animated PNG, WebP or GIF of ``frames`` frames on a ``size`` canvas that compresses
    to a few KB: each frame differs from the first by one pixel."""
    base = Image.new("L", size, 255)
    images = []
    for index in range(frames):
        frame = base.copy()
        frame.putpixel((index, 0), 0)
        images.append(frame)
    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    images[0].save(buffer, fmt, save_all=True, append_images=images[1:], **options)
    return buffer.getvalue()


def text_file(size: int) -> bytes:
    return b"a plain line of text\n" * (size // 21) + b"x" * (size % 21)


def all_files(folder) -> list[str]:
    """Every file under ``folder``, the spool included."""
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]


def uploads_folder(h) -> str:
    return h.server.settings.uploads["dir"]


def assert_refused(status: int, body: dict, expected: int, code: int = -10004) -> None:
    assert status == expected, body
    assert body["code"] == code and body["status"] == "Error" and body["data"] == {}, body
    assert body["message"], body


async def exchange(port: int, token: str, content_type: str, body: bytes, send: int | None = None,
                   chunk_size: str | None = None) -> tuple[int, dict, dict]:
    """One upload over a raw socket: status, headers and JSON body of the answer.

    Sends the first ``send`` bytes of ``body`` only (all by default) and waits for the
    answer without sending the rest; ``chunk_size`` sends it as one chunk declared that
    large (hex), without Content-Length. Raw, because no answer may wait for the rest of
    the body and no name may be looked up in the loop's default threads; read from the
    socket itself, because the server resets a connection whose body it did not read,
    and an asyncio stream would then drop the answer it already received.
    """
    loop = asyncio.get_running_loop()
    framing = (f"Transfer-Encoding: chunked\r\n\r\n{chunk_size}\r\n" if chunk_size
               else f"Content-Length: {len(body)}\r\n\r\n")
    request = (f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Content-Type: {content_type}\r\nAuthorization: Bearer {token}\r\n"
               + framing).encode() + body[:send]
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        try:
            await loop.sock_sendall(sock, request)
        except ConnectionError:
            pass  # answered and closed before taking it all
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < \
                _content_length(answer):
            try:
                piece = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            except ConnectionResetError:
                break
            if not piece:
                break
            answer += piece
    assert answer, "the server closed the connection without an answer"
    head, _, payload = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    return int(lines[0].split()[1]), headers, json.loads(payload) if payload else {}


def _content_length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def setup(make_server, **uploads):
    """A server with these ``[uploads]`` settings, a group, an agent and their tokens."""
    h = await make_server(auth={"secret": SECRET}, uploads=uploads)
    h.group_id = await h.group()
    h.admin_id = await h.agent(h.group_id, "Alice")
    h.agent_token = h.server.tokens.mint_agent(h.admin_id)
    h.guest_token = h.server.tokens.mint_guest("visitor-1", h.group_id)
    return h


# -- images: a budget for all frames, and threads of their own -------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
@pytest.mark.gen_test
async def test_animations_are_budgeted_over_all_their_frames(make_server, fmt):
    # SECURITY uploads: frames × width × height is checked against max_image_pixels before
    # anything is decoded; one frame under the limit no longer lets 8 of them through
    h = await setup(make_server, max_image_pixels=1_000_000)
    bomb = animation(fmt, 8, (400, 400))
    assert len(bomb) < 5000
    status, body = await upload(h, h.guest_token, bomb, "anim." + fmt.lower())
    assert_refused(status, body, 400)
    assert "8 frame(s) of 400×400" in body["message"]
    assert h.db("SELECT COUNT(*) FROM files") == [(0,)]
    assert all_files(uploads_folder(h)) == []
    status, body = await upload(h, h.guest_token, animation(fmt, 4, (400, 400)), "ok.png")
    assert status == 200, body
    assert body["data"]["width"] == 400


@pytest.mark.gen_test
async def test_frames_are_capped(make_server):
    # SECURITY uploads: max_image_frames caps the frames of any animation, GIF included
    h = await setup(make_server, max_image_frames=10)
    status, body = await upload(h, h.guest_token, animation("GIF", 11, (16, 16)), "a.gif")
    assert_refused(status, body, 400)
    assert "11 frames" in body["message"]
    assert h.db("SELECT COUNT(*) FROM files") == [(0,)]
    status, body = await upload(h, h.guest_token, animation("GIF", 10, (16, 16)), "b.gif")
    assert status == 200, body


@pytest.mark.gen_test
async def test_default_budget_refuses_a_known_apng_bomb(make_server):
    # SECURITY uploads: a 6 KB APNG (16 frames on 1500×1500, 36 M pixels in all,
    # +200 MB RSS to decode) is over the default max_image_pixels (24 M)
    h = await setup(make_server)
    bomb = animation("PNG", 16, (1500, 1500))
    assert len(bomb) < 8000
    status, body = await upload(h, h.guest_token, bomb, "apng.png")
    assert_refused(status, body, 400)
    assert "16 frame(s) of 1500×1500" in body["message"]
    assert h.db("SELECT COUNT(*) FROM files") == [(0,)]


@pytest.mark.gen_test
async def test_upload_work_has_threads_of_its_own(make_server):
    # SECURITY uploads: typing, decoding and hashing run in their own pool (image_workers),
    # never in the loop's default pool that password checks use: with the default pool
    # busy, an image upload still completes
    h = await setup(make_server)
    loop = asyncio.get_running_loop()
    default_pool = ThreadPoolExecutor(1)
    loop.set_default_executor(default_pool)
    release = threading.Event()
    busy = loop.run_in_executor(None, release.wait)
    try:
        content_type, body = multipart([("file", "p.png", image_bytes("PNG", (64, 64)))])
        status, _, answer = await exchange(h.port, h.guest_token, content_type, body)
    finally:
        release.set()
        await busy
        default_pool.shutdown()
    assert status == 200, answer
    assert answer["data"]["width"] == 64


# -- quotas ----------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["guest", "agent"])
@pytest.mark.gen_test
async def test_bytes_an_hour_per_uploader(make_server, role):
    # SECURITY uploads: guest_bytes_per_hour / agent_bytes_per_hour → 429 (-10029) with
    # Retry-After; counted in the database, so a restarted server refuses as well
    h = await setup(make_server, **{f"{role}_bytes_per_hour": 30000})
    token = h.guest_token if role == "guest" else h.agent_token
    status, body = await upload(h, token, text_file(20000), "a.txt")
    assert status == 200, body
    content_type, data = multipart([("file", "b.txt", text_file(20000))])
    status, headers, body = await exchange(h.port, token, content_type, data)
    assert_refused(status, body, 429, -10029)
    assert 3590 <= int(headers["retry-after"]) <= 3600
    assert h.db("SELECT COUNT(*) FROM files") == [(1,)]
    assert len(all_files(uploads_folder(h))) == 1
    other = h.server.tokens.mint_guest("visitor-2", h.group_id) if role == "guest" \
        else h.server.tokens.mint_agent(await h.agent(h.group_id, "Bob"))
    status, body = await upload(h, other, text_file(20000), "c.txt")
    assert status == 200, body  # the quota is per uploader

    again = await make_server(auth={"secret": SECRET}, database={"path": h.db_path},
                              uploads={f"{role}_bytes_per_hour": 30000})
    status, body = await upload(again, token, text_file(20000), "d.txt")
    assert_refused(status, body, 429, -10029)
    assert h.db("SELECT COUNT(*) FROM files") == [(2,)]


@pytest.mark.gen_test
async def test_unsent_files_per_guest(make_server):
    # SECURITY uploads: max_guest_unsent_files uploads may wait unsent (used = 0); sending
    # one makes room; agents are not limited this way
    h = await setup(make_server, max_guest_unsent_files=2)
    guest = await h.guest_client("visitor-1", h.group_id)
    ids = []
    for name in ("a.pdf", "b.pdf"):
        status, body = await upload(h, h.guest_token, PDF, name)
        assert status == 200, body
        ids.append(body["data"]["file_id"])
    status, body = await upload(h, h.guest_token, PDF, "c.pdf")
    assert_refused(status, body, 429, -10029)
    assert "2 uploads are waiting" in body["message"]
    await guest.ok(22300, msg=ids[0], file_type=6)
    status, body = await upload(h, h.guest_token, PDF, "c.pdf")
    assert status == 200, body
    for name in ("x.pdf", "y.pdf", "z.pdf"):
        assert (await upload(h, h.agent_token, PDF, name))[0] == 200
    assert h.db("SELECT uploader, COUNT(*) FROM files GROUP BY uploader") == [
        ("agent", 3), ("guest", 3)]


@pytest.mark.gen_test
async def test_bytes_an_hour_per_address(make_server):
    # SECURITY uploads: new guest tokens cost nothing, so address_bytes_per_hour counts all
    # guests at one client address (429 with Retry-After); agents have their own quota
    h = await setup(make_server, address_bytes_per_hour=30000)
    status, body = await upload(h, h.guest_token, text_file(20000), "a.txt")
    assert status == 200, body
    newcomer = h.server.tokens.mint_guest("visitor-2", h.group_id)
    content_type, data = multipart([("file", "b.txt", text_file(20000))])
    status, headers, body = await exchange(h.port, newcomer, content_type, data)
    assert_refused(status, body, 429, -10029)
    assert "one address" in body["message"]
    assert 3590 <= int(headers["retry-after"]) <= 3600
    status, body = await upload(h, newcomer, text_file(9000), "small.txt")
    assert status == 200, body
    status, body = await upload(h, h.agent_token, text_file(20000), "agent.txt")
    assert status == 200, body
    assert h.db("SELECT COUNT(*) FROM files") == [(3,)]


@pytest.mark.gen_test(timeout=15)
async def test_guest_uploads_expire_sooner(make_server):
    # SECURITY uploads: a guest's unsent upload is deleted after guest_orphan_ttl, an
    # agent's only after orphan_ttl
    h = await setup(make_server, guest_orphan_ttl=1)
    _, guest_file = await upload(h, h.guest_token, PDF, "g.pdf")
    _, agent_file = await upload(h, h.agent_token, PDF, "a.pdf")
    for _ in range(50):
        await asyncio.sleep(0.1)
        if h.db("SELECT COUNT(*) FROM files") == [(1,)]:
            break
    assert h.db("SELECT id FROM files") == [(agent_file["data"]["file_id"],)]
    assert (await fetch(h, guest_file["data"]["url"])).code == 404
    assert [os.path.basename(p) for p in all_files(uploads_folder(h))] == [
        agent_file["data"]["file_id"]]


# -- free disk and full disks ----------------------------------------------------------------

@pytest.mark.gen_test
async def test_too_little_free_disk_is_507_before_the_body(make_server):
    # SECURITY uploads: below min_free_bytes of free space, 507 with a JSON error, answered
    # from the headers (the body is never sent here)
    h = await setup(make_server, min_free_bytes=2**50)
    reply = await raw_request(h.port, h.guest_token, declared=5000, body=b"")
    assert reply.startswith(b"HTTP/1.1 507")
    status, body = await upload(h, h.guest_token, PDF, "a.pdf")
    assert_refused(status, body, 507)
    assert "disk" in body["message"]
    assert h.db("SELECT COUNT(*) FROM files") == [(0,)]


@pytest.mark.gen_test
async def test_a_full_disk_is_507_and_leaves_nothing(small_disk, make_server):
    # SECURITY uploads / faults: ENOSPC writing the spool or the stored copy of an image
    # answers 507 with a JSON error (not a reset, not "not a readable image"), removes the
    # partial files and stores no files row
    h = await setup(make_server, dir=str(small_disk / "uploads"), min_free_bytes=0)
    folder = uploads_folder(h)
    content_type, data = multipart([("file", "big.txt", text_file(2 * 1024 * 1024))])
    status, _, body = await exchange(h.port, h.guest_token, content_type, data,
                                     chunk_size=f"{len(data):x}")  # no size declared
    assert_refused(status, body, 507)
    assert "disk is full" in body["message"]
    assert all_files(folder) == []

    # the spooled upload fits, its processed copy does not
    noise = Image.frombytes("RGB", (160, 160), os.urandom(160 * 160 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    photo = buffer.getvalue()
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - len(photo) * 3 // 2))
    status, body = await upload(h, h.guest_token, photo, "photo.png")
    assert_refused(status, body, 507)
    assert all_files(folder) == []
    assert h.db("SELECT COUNT(*) FROM files") == [(0,)]

    filler.unlink()
    status, body = await upload(h, h.guest_token, photo, "photo.png")
    assert status == 200, body


# -- type limits while streaming -------------------------------------------------------------

@pytest.mark.gen_test
async def test_type_limit_applies_while_streaming(make_server):
    # PROTOCOL §7: once the first bytes say PNG, max_image_bytes applies: 413 arrives with
    # 64 KiB of a 300 KiB body sent, not after all of it
    h = await setup(make_server, max_image_bytes=20000)
    png = image_bytes("PNG", (60, 60)) + os.urandom(300 * 1024)
    content_type, data = multipart([("file", "big.png", png)])
    status, _, body = await exchange(h.port, h.guest_token, content_type, data, send=65536)
    assert_refused(status, body, 413)
    assert "20000" in body["message"]
    assert all_files(uploads_folder(h)) == []


@pytest.mark.gen_test
async def test_file_type_sent_first_limits_the_file(make_server):
    # PROTOCOL §7: file_type before the file: WebM sent as a voice note (2) is held to
    # max_voice_bytes while streaming (as a video it could have 50 MiB)
    h = await setup(make_server, max_voice_bytes=20000)
    content_type, data = multipart([("file_type", None, b"2"),
                                    ("file", "note.webm", webm_bytes() + os.urandom(300 * 1024))])
    status, _, body = await exchange(h.port, h.guest_token, content_type, data, send=65536)
    assert_refused(status, body, 413)
    assert "20000" in body["message"]


@pytest.mark.gen_test
async def test_an_oversize_chunked_body_gets_413_json(make_server):
    # PROTOCOL §7: without Content-Length, one chunk declared past every limit is answered
    # 413 with the JSON body (Tornado alone answers a bare 400)
    limits = {f"max_{kind}_bytes": 20000 for kind in ("image", "voice", "video", "file")}
    h = await setup(make_server, **limits)
    content_type, data = multipart([("file", "big.bin", os.urandom(128 * 1024))])
    status, _, body = await exchange(h.port, h.guest_token, content_type, data,
                                     chunk_size=f"{10 * 1024 * 1024:x}")
    assert_refused(status, body, 413)
    assert h.db("SELECT COUNT(*) FROM files") == [(0,)]


# -- modes and caching -----------------------------------------------------------------------

@pytest.mark.gen_test
async def test_folders_are_0700_and_files_0600(make_server):
    # SECURITY uploads: only cschat's user may list or read uploads
    h = await setup(make_server)
    _, image = await upload(h, h.guest_token, image_bytes("PNG", (50, 50)), "p.png")
    _, plain = await upload(h, h.guest_token, PDF, "d.pdf")
    folder = uploads_folder(h)
    path = h.db("SELECT path FROM files WHERE id = ?", (image["data"]["file_id"],))[0][0]
    year, month, _ = path.split("/")
    for sub in ("", "tmp", year, f"{year}/{month}"):
        assert stat.S_IMODE(os.stat(os.path.join(folder, sub)).st_mode) == 0o700, sub
    stored = all_files(folder)
    assert len(stored) == 3  # the image, its thumbnail, the PDF
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in stored} == {0o600}
    assert plain["data"]["file_id"] in {os.path.basename(p) for p in stored}


@pytest.mark.gen_test
async def test_files_are_cached_privately(make_server):
    # SECURITY uploads: a file id is a bearer link; shared caches must not keep the file
    h = await setup(make_server)
    _, body = await upload(h, h.guest_token, image_bytes("PNG"), "p.png")
    for url in (body["data"]["url"], body["data"]["thumb_url"]):
        response = await fetch(h, url)
        assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"
