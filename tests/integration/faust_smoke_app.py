"""The smallest real Faust app: one agent, one changelog-backed table, one page.

Started as a subprocess by the smoke test to prove that tables survive a restart by
recovery from the changelog topic on the real broker.
"""

import os

import faust

app = faust.App(
    os.environ["SMOKE_APP_ID"],
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    store="memory://",
    web_port=int(os.environ["SMOKE_WEB_PORT"]),
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
    topic_partitions=2,
    topic_replication_factor=1,
)
words = app.topic(os.environ["SMOKE_TOPIC"], key_type=str, value_type=str, partitions=2)
counts = app.Table("counts", default=int, partitions=2)


@app.agent(words)
async def count(stream: faust.StreamT[str]) -> None:
    async for word in stream:
        counts[word] += 1


@app.page("/counts/")
async def show_counts(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
    return web.json(dict(counts.items()))


if __name__ == "__main__":
    app.main()
