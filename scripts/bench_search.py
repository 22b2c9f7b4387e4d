"""Benchmark full-text search (32810) at 1M messages, Chinese and English.

    python scripts/bench_search.py                  # 1M messages
    python scripts/bench_search.py --messages 200000

Builds a year of chats as scripts/bench_reports.py does, with messages drawn
from a shop's everyday Chinese and English phrases, starts ``cschat run`` on
it and times 32810 over a real WebSocket for several kinds of query: a word
found everywhere, a rare one, two and four Chinese characters, a prefix.
Prints p50 and p99 per query; the target is p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

from bench_reports import built_server
from tornado.websocket import websocket_connect

PHRASES = ["我想退货", "请问什么时候发货", "这件衣服有没有大一号", "快递到哪里了", "谢谢你的帮助",
           "where is my parcel", "can I change the size", "the colour is wrong",
           "refund please", "thank you so much", "优惠券怎么用", "delivery was late again"]
QUERIES = ["退货", "发货时间", "parcel", "refund", "colo", "优惠券怎么用", "zebra"]


def sentence(rng: random.Random, gid: int, position: int) -> str:
    return "，".join(rng.sample(PHRASES, 2)) + f" #{gid}"


async def measure(port: int, token: str, rounds: int) -> None:
    socket_ = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
    socket_.write_message(json.dumps({"api_key": 31000, "call_type": 3, "token": token}))
    await socket_.read_message()
    seq = 0
    for query in QUERIES:
        times = []
        for _ in range(rounds):
            seq += 1
            begin = time.perf_counter()
            socket_.write_message(json.dumps({"api_key": 32810, "call_type": 3, "seq": str(seq),
                                              "q": query}))
            while True:
                frame = json.loads(await socket_.read_message())
                if frame.get("seq") == str(seq):
                    break
            times.append(time.perf_counter() - begin)
        found = len(frame["data"]["messages"])
        times.sort()
        print(f"search {query!r:12} {found:2d} hits   p50 {statistics.median(times) * 1000:6.1f} ms"
              f"   p99 {times[int(len(times) * 0.99) - 1] * 1000:6.1f} ms")
    socket_.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    _, port, token, server = built_server(
        "search", args.messages, 10, sentence,
        "[chat]\nrate_limit = 1000\nidentity_rate_limit = 1000\n")
    try:
        asyncio.run(measure(port, token, args.rounds))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
