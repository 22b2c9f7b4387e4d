"""The bare baseline for ``bench.py``: a minimal Tornado WebSocket relay.

It speaks just enough of the cschat frames for the same load generator to
drive it: a login (21000 / 31000) is answered 200 without looking at the
token; a guest send (22300) is decoded, answered with an ack-shaped 200
response carrying a ``message_info``, and forwarded as a 32399 push of the
same shape cschat sends to the agent connection the guest's URL names. No
auth, no routing, no storage, no rate limit: what is left is the cost of
Tornado's WebSocket and one JSON decode and two encodes per message, the
floor any Tornado chat server stands on.

    python scripts/relay.py [--port 0]

Agents connect to ``/ws?agent=ADMIN_ID``, guests to ``/ws?to=ADMIN_ID&gid=N``.
Prints ``relay listening on http://127.0.0.1:PORT`` on stderr once bound;
stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import signal
import sys
import time

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

_agents: dict[int, RelaySocket] = {}
_ids = itertools.count(1)


def _encode(frame: dict) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


class RelaySocket(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        agent = self.get_query_argument("agent", None)
        self.admin_id = int(agent) if agent is not None else None
        to = self.get_query_argument("to", None)
        self.to = int(to) if to is not None else None
        self.gid = int(self.get_query_argument("gid", "0"))
        if self.admin_id is not None:
            _agents[self.admin_id] = self

    def on_close(self) -> None:
        if self.admin_id is not None and _agents.get(self.admin_id) is self:
            del _agents[self.admin_id]

    def on_message(self, message: str | bytes) -> None:
        frame = json.loads(message)
        api_key = frame.get("api_key")
        seq = frame.get("seq")
        if api_key == 22300:
            info = {"id": next(_ids), "gid": self.gid, "group_id": 1, "sender": "guest",
                    "admin_id": None, "file_type": 0, "msg": frame.get("msg"),
                    "client_msg_id": frame.get("client_msg_id"),
                    "created_at": int(time.time() * 1000), "read": False}
            self._answer(22300, seq, {"message_info": info})
            agent = _agents.get(self.to)
            if agent is not None:
                agent.write_message(_encode(
                    {"api_key": 32300, "code": 32399, "status": "Success", "message": "",
                     "data": {"gid": self.gid, "group_id": 1, "message_info": info}}))
        elif api_key == 21000:
            self._answer(21000, seq, {"gid": self.gid, "group_id": 1,
                                      "agent": {"admin_id": self.to}})
        elif api_key == 31000:
            self._answer(31000, seq, {"admin_list": [], "guest_list": []})
        else:
            self._answer(api_key if isinstance(api_key, int) else 0, seq, {})

    def _answer(self, api_key: int, seq, data: dict) -> None:
        frame = {"api_key": api_key, "code": 200, "status": "Success", "message": "",
                 "data": data}
        if seq is not None:
            frame["seq"] = seq
        self.write_message(_encode(frame))


async def serve(port: int) -> None:
    app = tornado.web.Application([(r"/ws", RelaySocket)], websocket_ping_interval=0)
    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    print(f"relay listening on http://127.0.0.1:{sockets[0].getsockname()[1]}", file=sys.stderr,
          flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    server.stop()
    for socket in list(_agents.values()):
        socket.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: a free one)")
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
