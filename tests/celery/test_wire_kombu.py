"""What libtask puts on the wire, read back with Celery's and kombu's own code: headers with the
AMQP types Celery writes (task_plain.json), a body kombu decodes to [args, kwargs, embed], and
what a Python worker's Request makes of it. Also a mixed fleet: a chain that crosses from a taskd
worker to a Python worker and back."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import BUILD, Checks, Taskd, broker  # noqa: E402

url = broker()
import amqp  # noqa: E402
from kombu.serialization import loads  # noqa: E402
from celery import Celery  # noqa: E402

t = Checks()
fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
golden = json.load(open(os.path.join(fixtures, "celery-golden", "task_plain.json")))
Q = f"t_wire_{os.getpid()}"
ctl = [f"{BUILD}/taskctl/taskctl", "--broker", url]

# 1. libtask -> raw AMQP -> kombu/Celery
args = ["héllo ☃", {"n": [1, 2.5, None]}]
tid = subprocess.run(ctl + ["send", "test.echo", "--args", json.dumps(args), "--kwargs",
                            '{"k": true}', "--queue", Q, "--countdown", "30", "--expires", "60"],
                     capture_output=True, text=True).stdout.strip()
conn = amqp.Connection(url.split("//", 1)[1].split("@", 1)[1].split("/", 1)[0],
                       userid="guest", password="guest")
conn.connect()
ch = conn.channel()
msg = None
for _ in range(50):
    msg = ch.basic_get(Q, no_ack=True)
    if msg:
        break
    time.sleep(0.1)
t.check("the message reached the queue", msg is not None)
props = msg.properties
hdr = props["application_headers"]
t.check("all 16 Celery headers present", set(hdr) == set(golden["headers"]), sorted(hdr))
t.check("header id/root_id/correlation_id agree",
        hdr["id"] == tid == hdr["root_id"] == props["correlation_id"], repr(hdr))
t.check("strings decode as str (AMQP S), not bytes",
        all(isinstance(hdr[k], str) for k in ("lang", "task", "id", "root_id", "argsrepr",
                                              "kwargsrepr", "origin", "eta", "expires")))
t.check("retries an int, timelimit [None, None], ignore_result bool",
        hdr["retries"] == 0 and hdr["timelimit"] == [None, None] and hdr["ignore_result"] is False)
t.check("properties as Celery sends them",
        props["content_type"] == "application/json" and props["content_encoding"] == "utf-8"
        and props["delivery_mode"] == 2 and props.get("reply_to") and
        int(props["expiration"]) in range(58000, 60001), repr(props))
body = loads(msg.body, props["content_type"], props["content_encoding"])
t.check("kombu decodes the body to [args, kwargs, embed]",
        body[0] == args and body[1] == {"k": True} and
        set(body[2]) == {"callbacks", "errbacks", "chain", "chord"}, repr(body))
from celery.utils.time import maybe_iso8601  # noqa: E402
eta = maybe_iso8601(hdr["eta"])
t.check("eta parses with Celery's parser, about 30 s ahead",
        eta.tzinfo is not None and 25 < eta.timestamp() - time.time() < 31, hdr["eta"])

# 1b. Every shape libtask produces, next to the Celery capture of the same shape.
QV = f"t_wire_variants_{os.getpid()}"
out = subprocess.run([f"{BUILD}/tests/celery/encode_variants", QV], capture_output=True,
                     text=True, env=dict(os.environ, TASKD_BROKER_URL=url))
t.check("encode_variants sent every shape", out.returncode == 0, out.stderr)
GOLDEN = {"plain": "task_plain", "countdown": "task_countdown", "expires": "task_expires",
          "link": "task_link", "link_error": "task_link_error", "chain": "task_chain",
          "ignore_result": "task_ignore_result", "priority": "task_options",
          "group": "task_group_member0", "child": "task_from_worker"}
PYTYPE = {"S": str, "I": int, "l": int, "t": bool, "V": type(None), "d": float}


def kind_ok(value, kind):
    if isinstance(kind, dict):
        return isinstance(value, list) and len(value) == len(kind["A"]) and all(
            kind_ok(v, k) for v, k in zip(value, kind["A"]))
    return isinstance(value, PYTYPE[kind]) and not (kind == "I" and isinstance(value, bool))


for line in out.stdout.split("\n"):
    if not line:
        continue
    shape, tid = line.split()
    g = json.load(open(os.path.join(fixtures, "celery-golden", GOLDEN[shape] + ".json")))
    m = ch.basic_get(QV, no_ack=True)
    if m is None:
        t.check(f"{shape}: message arrived", False)
        continue
    h = m.properties["application_headers"]
    bad = [k for k, kind in g["header_amqp_types"].items()
           if k not in ("timelimit",) and not kind_ok(h.get(k, "MISSING"), kind)
           and k not in ("origin",)
           # the capture also set a shadow name, which these variants do not ask for
           and not (shape == "priority" and k == "shadow")]
    t.check(f"{shape}: same headers and AMQP types as Celery's capture ({GOLDEN[shape]})",
            set(h) == set(g["headers"]) and not bad and h["id"] == tid,
            f"differ: {bad} {sorted(set(h) ^ set(g['headers']))}")
    b = loads(m.body, m.properties["content_type"], m.properties["content_encoding"])
    ge = g["body"][2]
    same_embed = all((b[2][k] is None) == (ge[k] is None) for k in ge)
    if shape in ("link", "link_error", "chain"):
        key = {"link": "callbacks", "link_error": "errbacks", "chain": "chain"}[shape]
        same_embed = same_embed and [s["task"] for s in b[2][key]] and all(
            set(s) == set(ge[key][0]) for s in b[2][key])
    t.check(f"{shape}: kombu decodes the body; embed shaped as Celery's", b[0] == [2, 3] and
            same_embed, json.dumps(b)[:300])
    has_exp = "expiration" in m.properties
    t.check(f"{shape}: AMQP expiration only with expires", has_exp == (shape == "expires"))
    if shape == "priority":
        t.check("priority: priority property 7", m.properties.get("priority") == 7)
conn.close()

# 2. A mixed fleet: taskd runs test.add on one queue, Python runs py.add on another.
QP = f"t_wire_py_{os.getpid()}"
here = os.path.dirname(os.path.abspath(__file__))
env = dict(os.environ, PYTASKS_QUEUE=QP)
pyw = subprocess.Popen(["/usr/bin/python3", "-m", "celery", "-A", "pytasks", "worker", "-Q", QP,
                        "-c", "1", "-P", "solo", "--without-gossip", "--without-mingle",
                        "--without-heartbeat", "-l", "info"], cwd=here, env=env,
                       stdout=open(f"/tmp/wire-pyworker-{os.getpid()}.log", "w"),
                       stderr=subprocess.STDOUT)
app = Celery("mixed", broker=url, backend="rpc://")
try:
    with Taskd(Q, "--loglevel", "debug"):
        c = (app.signature("test.add", (1, 2), queue=Q) | app.signature("py.add", (10,), queue=QP)
             | app.signature("test.add", (100,), queue=Q))
        v = c.apply_async().get(timeout=30)
        t.check("a chain crossing taskd -> Python -> taskd gives 113", v == 113, repr(v))
finally:
    pyw.terminate()
    pyw.wait(timeout=30)
t.finish()
