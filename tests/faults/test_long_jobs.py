"""Long jobs (issue 17): tasks that run longer than the broker's consumer_timeout run once.

The private broker's consumer_timeout is lowered to 60 s (RabbitMQ's default is 30 min). Runs
are counted by the local HTTP server: each run of a task calls /delay/<s>/<key> once.

  control  a bare AMQP consumer that holds one delivery unacked: the broker closes its channel
           (proves the timeout is in force, and that its log line is what we look for)
  A        a 150 s task on `taskd -c 2 --threads 4` with the defaults, short tasks flowing
           beside it: the long one runs once and ends SUCCESS, STARTED shows while it runs
           (Celery's AsyncResult.state, taskctl result), `taskctl wait` waits it out, every
           short one runs once, the broker closes no channel of the worker's
  B        kill -9 the worker during a long task: a second worker runs it again within the
           lease, and it ends SUCCESS once
  C        restart the broker during a long task: nothing lost, one final state
  D        the worker's connection is closed while a task runs, before it is leased: its
           redelivery joins the run still going on the same worker (one run, one SUCCESS)
  E        worker.lease raised 4x by SIGHUP while a task is leased: the task keeps the lease
           its queue was declared with (one run, one SUCCESS)
  F        a 250-byte task id (too long for taskd.lease.<id>) is leased under a hashed name
A and B run at the same time, then D, E and F; C restarts the broker, so it runs last.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "celery"))
from common import BUILD, Checks, Replies, Taskd, amqp_conn, broker, log_has, wait_for  # noqa: E402,E501

url = broker()
import amqp  # noqa: E402
from celery import Celery  # noqa: E402

ROOT = os.environ.get("TASKD_SOURCE_ROOT", ".")
RMQ = f"{ROOT}/tests/harness/rmq-node"
CTL = f"{BUILD}/taskctl/taskctl"
BROKER_LOG = os.environ.get("TASKD_RMQ_LOG_1", "")
PID = os.getpid()
TIMEOUT_MS = 60000
# One line per channel the broker closes for an ack timeout (RabbitMQ 3.10).
ACK_TIMEOUT_LINE = "channel exception precondition_failed: delivery acknowledgement"
t = Checks()
lock = threading.Lock()


def check(name, cond, detail=""):
    with lock:
        t.check(name, cond, detail)


def set_consumer_timeout(ms):
    p = subprocess.run([RMQ, "ctl", "1", "eval",
                        f"application:set_env(rabbit, consumer_timeout, {ms})."],
                       capture_output=True, text=True, timeout=60)
    return p.returncode == 0


def broker_log_count(needle):
    """Lines with `needle` in the broker's log and its rotated copies (rabbit.log.1, ...)."""
    n = 0
    for path in glob.glob(BROKER_LOG + "*"):
        with open(path, errors="replace") as f:
            n += f.read().count(needle)
    return n


class Http:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, f"{ROOT}/tests/harness/httpserver.py"],
                                     stdout=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def hits(self, key):
        with urllib.request.urlopen(f"{self.base}/hits/{key}", timeout=10) as r:
            parts = r.read().decode().split()
        return int(parts[0]), [float(x) for x in parts[1:]]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def control(result):
    """Hold one delivery unacked on a bare consumer and time the broker's channel close."""
    q = f"long_ctl_{PID}"
    c = amqp_conn()
    ch = c.channel()
    ch.queue_declare(q, durable=False, auto_delete=False)
    ch.basic_publish(amqp.Message("x"), exchange="", routing_key=q)
    got = []
    ch.basic_consume(q, callback=got.append, no_ack=False)
    t0 = time.time()
    try:
        while time.time() - t0 < 200:
            try:
                c.drain_events(timeout=1)
            except TimeoutError:
                pass
            except __import__("socket").timeout:
                pass
    except Exception as e:  # the channel (or connection) closed by the broker
        result["closed_after"] = time.time() - t0
        result["error"] = str(e)
    try:
        c.close()
    except Exception:
        pass
    try:
        c = amqp_conn()
        c.channel().queue_delete(q)
        c.close()
    except Exception:
        pass


def scenario_a(http, app, app_plain):
    q = f"long_a_{PID}"
    replies = Replies(f"long_a_replies_{PID}")
    w = Taskd(q, "-c", "2", "--threads", "4")  # worker.lease_after and worker.lease: defaults
    key = f"longa{PID}"
    t0 = time.time()
    long_r = app.send_task("test.http_wait", args=[f"{http.base}/delay/150/{key}", 200], queue=q)
    waiter = subprocess.Popen([CTL, "--broker", url, "wait", long_r.id, "--timeout", "400"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check("A: STARTED shows in AsyncResult.state while the task runs",
          wait_for(lambda: long_r.state == "STARTED", 10), long_r.state)
    p = subprocess.run([CTL, "--broker", url, "result", long_r.id], capture_output=True,
                       text=True, timeout=60)
    check("A: taskctl result says STARTED", "STARTED" in p.stdout, p.stdout + p.stderr)
    shorts = []
    while time.time() - t0 < 155:
        i = len(shorts)
        # Their states go to a queue of ours: Celery's rpc backend is the long one's.
        shorts.append((i, app_plain.send_task(
            "test.http_wait", args=[f"{http.base}/delay/0.2/s{PID}x{i}", 10], queue=q,
            reply_to=replies.name).id))
        time.sleep(1)
    try:
        value = long_r.get(timeout=120)
    except Exception as e:
        value = repr(e)
    took = time.time() - t0
    check("A: the 150 s task ends SUCCESS", value == 200 and long_r.state == "SUCCESS",
          f"{value!r} {long_r.state}")
    print(f"# A: long task done after {took:.1f} s")
    out, err = waiter.communicate(timeout=120)
    check("A: taskctl wait waits it out (exit 0, the result)",
          waiter.returncode == 0 and out.strip() == "200", f"rc={waiter.returncode} {out} {err}")
    ids = [tid for _, tid in shorts]
    wait_for(lambda: replies.drain() or all("SUCCESS" in replies.by_id.get(i, []) for i in ids),
             60, step=0.5)
    time.sleep(2)
    replies.drain()
    bad = [i for i in ids if replies.by_id.get(i, []).count("SUCCESS") != 1 or
           any(s in ("FAILURE", "RETRY") for s in replies.by_id.get(i, []))]
    check(f"A: all {len(shorts)} short tasks beside it end SUCCESS, once each", not bad,
          str([(i, replies.by_id.get(i)) for i in bad[:5]]))
    n, _ = http.hits(key)
    check("A: the long task ran exactly once", n == 1, f"runs={n}")
    twice = [i for i, _ in shorts if http.hits(f"s{PID}x{i}")[0] != 1]
    replies.delete()
    check("A: every short task ran exactly once", not twice, str(twice[:10]))
    w.__exit__(None, None, None)
    log = open(w.log).read()
    check("A: the long task was leased", f"event=task_leased" in log and long_r.id in log)
    check("A: the worker kept its one connection (no channel closed, no reconnect)",
          log.count("event=broker_connected") == 1 and "event=broker_error" not in log,
          f"connected={log.count('event=broker_connected')}")
    check("A: no task was requeued or given back",
          "event=task_requeued" not in log and "event=task_given_back" not in log)


def scenario_b(http, app):
    q = f"long_b_{PID}"
    replies = Replies(f"long_b_replies_{PID}")
    env = {"TASKD_WORKER_LEASE_AFTER": "3", "TASKD_WORKER_LEASE": "15"}
    w1 = Taskd(q, "-c", "1", env=env)
    key = f"longb{PID}"
    r = app.send_task("test.http_wait", args=[f"{http.base}/delay/30/{key}", 60], queue=q,
                      reply_to=replies.name)
    leased = wait_for(lambda: log_has(w1.log, "event=task_leased"), 20)
    check("B: the long task was leased", leased)
    time.sleep(2)
    os.kill(w1.proc.pid, signal.SIGKILL)
    killed_at = time.time()
    w1.proc.wait()
    w2 = Taskd(q, "-c", "1", env=env, tag="-2")
    again = wait_for(lambda: http.hits(key)[0] >= 2, 60)
    n, times = http.hits(key)
    rerun = times[1] - killed_at if len(times) > 1 else -1
    print(f"# B: killed at +{killed_at - times[0]:.1f} s after the first run began; "
          f"run again {rerun:.1f} s after the kill (lease 15 s)")
    check("B: a second worker runs it again within the lease (+3 s)",
          again and 0 < rerun <= 18, f"rerun={rerun:.1f}")
    done = wait_for(lambda: replies.count("SUCCESS") >= 1, 60, step=0.5)
    time.sleep(3)
    replies.drain()
    check("B: it ends SUCCESS once", done and replies.states.count("SUCCESS") == 1,
          str(replies.states))
    check("B: it ran twice, not more", http.hits(key)[0] == 2, str(http.hits(key)[0]))
    w2.__exit__(None, None, None)
    replies.delete()
    _ = r


def scenario_c(http, app):
    q = f"long_c_{PID}"
    replies = Replies(f"long_c_replies_{PID}")
    env = {"TASKD_WORKER_LEASE_AFTER": "3", "TASKD_WORKER_LEASE": "60"}
    w = Taskd(q, "-c", "1", env=env)
    key = f"longc{PID}"
    app.send_task("test.http_wait", args=[f"{http.base}/delay/30/{key}", 60], queue=q,
                  reply_to=replies.name)
    check("C: the long task was leased",
          wait_for(lambda: log_has(w.log, "event=task_leased"), 20))
    t0 = time.time()
    p = subprocess.run([RMQ, "restart-node", "1"], capture_output=True, text=True, timeout=180)
    print(f"# C: broker restarted in {time.time() - t0:.1f} s (rc={p.returncode})")
    check("C: the broker restarted", p.returncode == 0, p.stderr[-300:])
    set_consumer_timeout(TIMEOUT_MS)
    done = wait_for(lambda: replies.count("SUCCESS") >= 1, 90, step=0.5)
    time.sleep(3)
    replies.drain()
    check("C: it ends SUCCESS once", done and replies.states.count("SUCCESS") == 1,
          str(replies.states))
    check("C: it ran once", http.hits(key)[0] == 1, str(http.hits(key)[0]))
    w.__exit__(None, None, None)
    check("C: the worker reconnected", open(w.log).read().count("event=broker_connected") >= 2)
    replies.delete()


def close_connection_of(hostname):
    """Close the broker connection whose client properties name `hostname` (the worker's)."""
    p = subprocess.run([RMQ, "ctl", "1", "list_connections", "pid", "client_properties"],
                       capture_output=True, text=True, timeout=60)
    pids = [line.split("\t")[0] for line in p.stdout.splitlines() if hostname in line]
    for pid in pids:
        subprocess.run([RMQ, "ctl", "1", "close_connection", pid, "test"], capture_output=True,
                       timeout=60)
    return len(pids)


def scenario_d(http, app):
    q = f"long_d_{PID}"
    replies = Replies(f"long_d_replies_{PID}")
    host = f"longd{PID}@test"
    w = Taskd(q, "-c", "1", "--threads", "2", "--hostname", host,
              env={"TASKD_WORKER_LEASE_AFTER": "60"})
    key = f"longd{PID}"
    app.send_task("test.http_wait", args=[f"{http.base}/delay/12/{key}", 60], queue=q,
                  reply_to=replies.name)
    check("D: the task started", wait_for(lambda: http.hits(key)[0] == 1, 20))
    time.sleep(2)
    check("D: the worker's connection was closed", close_connection_of(host) >= 1)
    done = wait_for(lambda: replies.count("SUCCESS") >= 1, 60, step=0.5)
    time.sleep(3)
    replies.drain()
    check("D: it ends SUCCESS once", done and replies.states.count("SUCCESS") == 1,
          str(replies.states))
    check("D: it ran once (the redelivery joined the run)", http.hits(key)[0] == 1,
          str(http.hits(key)[0]))
    w.__exit__(None, None, None)
    log = open(w.log).read()
    check("D: the worker reconnected and adopted it",
          log.count("event=broker_connected") >= 2 and "event=task_adopted" in log)
    replies.delete()


def scenario_e(http, app):
    q = f"long_e_{PID}"
    replies = Replies(f"long_e_replies_{PID}")
    conf = f"/tmp/long_e_{PID}.conf"
    with open(conf, "w") as f:
        f.write("worker: { lease_after = 2; lease = 15; };\n")
    os.chmod(conf, 0o600)
    w = Taskd(q, "-c", "1", "--config", conf)
    key = f"longe{PID}"
    app.send_task("test.http_wait", args=[f"{http.base}/delay/35/{key}", 60], queue=q,
                  reply_to=replies.name)
    check("E: leased", wait_for(lambda: log_has(w.log, "event=task_leased"), 20))
    with open(conf, "w") as f:
        f.write("worker: { lease_after = 2; lease = 60; };\n")  # renewals 20 s apart
    w.proc.send_signal(signal.SIGHUP)
    done = wait_for(lambda: replies.count("SUCCESS") >= 1, 80, step=0.5)
    time.sleep(3)
    replies.drain()
    check("E: it ends SUCCESS once after the reload", done and
          replies.states.count("SUCCESS") == 1, str(replies.states))
    check("E: it ran once", http.hits(key)[0] == 1, str(http.hits(key)[0]))
    w.__exit__(None, None, None)
    log = open(w.log).read()
    check("E: renewals went on with the task's own lease", "event=lease_renew_failed" not in log
          and "event=lease_lapsed" not in log)
    os.unlink(conf)
    replies.delete()


def scenario_f(http, app):
    q = f"long_f_{PID}"
    replies = Replies(f"long_f_replies_{PID}")
    w = Taskd(q, "-c", "1", env={"TASKD_WORKER_LEASE_AFTER": "2", "TASKD_WORKER_LEASE": "15"})
    key = f"longf{PID}"
    tid = f"f{PID}-" + "x" * 240
    app.send_task("test.http_wait", args=[f"{http.base}/delay/25/{key}", 60], queue=q,
                  reply_to=replies.name, task_id=tid)
    check("F: a 250-byte id is leased",
          wait_for(lambda: log_has(w.log, "event=task_leased"), 20))
    done = wait_for(lambda: replies.count("SUCCESS") >= 1, 60, step=0.5)
    check("F: it ends SUCCESS once, having run once", done and
          replies.states.count("SUCCESS") == 1 and http.hits(key)[0] == 1,
          f"{replies.states} runs={http.hits(key)[0]}")
    w.__exit__(None, None, None)
    replies.delete()


def guarded(fn, *args):
    """Run a scenario; an exception is a failed check, not a thread that dies unseen."""
    try:
        fn(*args)
    except Exception:
        import traceback
        check(f"{fn.__name__} ran to its end", False, traceback.format_exc())


def only(names):
    """`test_long_jobs.py d e`: just those scenarios, at once (for working on one)."""
    if not set_consumer_timeout(TIMEOUT_MS):
        print("cannot set consumer_timeout on the test broker", file=sys.stderr)
        sys.exit(1)
    http = Http()
    app = Celery("long_only", broker=url)
    # A's long task reports through Celery's rpc backend; its short ones through a queue.
    app_a = Celery("long_only_a", broker=url, backend="rpc://")
    before = broker_log_count(ACK_TIMEOUT_LINE)
    ths = [threading.Thread(target=guarded, args=(globals()[f"scenario_{n}"], http) +
                            ((app_a, app) if n == "a" else (app,)))
           for n in names]
    try:
        for th in ths:
            th.start()
        for th in ths:
            th.join()
    finally:
        http.stop()
        set_consumer_timeout(1800000)
    if BROKER_LOG:
        after = broker_log_count(ACK_TIMEOUT_LINE)
        check("the broker's log has no ack timeout of taskd's", after == before,
              f"{after - before} lines with '{ACK_TIMEOUT_LINE}'")
    t.finish()


def main():
    if len(sys.argv) > 1:
        only(sys.argv[1:])
    if not set_consumer_timeout(TIMEOUT_MS):
        print("cannot set consumer_timeout on the test broker", file=sys.stderr)
        sys.exit(1)
    http = Http()
    app = Celery("long", broker=url, backend="rpc://")
    app_b = Celery("long_b", broker=url)
    before = broker_log_count(ACK_TIMEOUT_LINE)
    ctl = {}
    threads = [threading.Thread(target=control, args=(ctl,)),
               threading.Thread(target=guarded, args=(scenario_b, http, app_b))]
    try:
        for th in threads:
            th.start()
        guarded(scenario_a, http, app, app_b)
        for th in threads:
            th.join()
        closed = ctl.get("closed_after", -1)
        print(f"# control: channel closed by the broker after {closed:.1f} s: "
              f"{ctl.get('error', '')[:120]}")
        check("control: the broker closes a channel holding a delivery past 60 s",
              60 <= closed <= 150, f"closed_after={closed}")
        after = broker_log_count(ACK_TIMEOUT_LINE)
        check("the broker's log has one ack timeout (the control's), none of taskd's",
              after - before == 1, f"{after - before} lines with '{ACK_TIMEOUT_LINE}'")
        more = [threading.Thread(target=guarded, args=(fn, http, app_b))
                for fn in (scenario_d, scenario_e, scenario_f)]
        for th in more:
            th.start()
        for th in more:
            th.join()
        guarded(scenario_c, http, app_b)
    finally:
        http.stop()
        set_consumer_timeout(1800000)
    t.finish()


main()
