#!/usr/bin/env python3
"""A fleet producer in Python, using only nats-py and the JSON of PROTOCOL.md.

Submits --count echo jobs (each a JetStream publish with Nats-Msg-Id = the
job id, so a retried publish is stored once), then waits for each job's
result on fleet.results.<job_id> (stream FLEET_RESULTS keeps it, so waiting
late still finds it). Prints one JSON line per result and exits 0 when
every job succeeded.

    pip install nats-py
    python3 examples/python/producer.py --nats-url nats://127.0.0.1:4222 --count 5
"""
import argparse
import asyncio
import json
import sys
import uuid

import nats


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    opts = parser.parse_args()

    nc = await nats.connect(opts.nats_url)
    js = nc.jetstream()
    ids = []
    for i in range(opts.count):
        job_id = f"py-{uuid.uuid4().hex[:12]}"
        job = {"id": job_id, "kind": "echo", "args": {"from": "python", "n": i}, "priority": "high"}
        await js.publish("fleet.jobs.submit", json.dumps(job).encode(), headers={"Nats-Msg-Id": job_id})
        ids.append(job_id)

    ok = True
    for job_id in ids:
        sub = await js.subscribe(f"fleet.results.{job_id}", stream="FLEET_RESULTS", ordered_consumer=True)
        msg = await sub.next_msg(timeout=opts.timeout)
        result = json.loads(msg.data)
        await sub.unsubscribe()
        print(json.dumps({"job_id": job_id, "state": result["state"], "result": result.get("result")}))
        ok = ok and result["state"] == "succeeded"
    await nc.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
