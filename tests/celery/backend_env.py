"""The environment a Python process needs to load taskd_celery from the source tree against the
built libtask (test_backend.py, test_seed_scenario.py). In a sanitizer build libtask needs the
sanitizer runtimes loaded first: a plain python3 cannot load it otherwise."""
import os
import subprocess

from common import BUILD

ROOT = os.environ.get("TASKD_SOURCE_ROOT", ".")


def _sanitizer_preload(lib):
    out = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    pre = [line.split("=>")[1].split("(")[0].strip() for line in out.splitlines()
           if ("libasan" in line or "libubsan" in line) and "=>" in line]
    return ":".join(pre)


def backend_env(**extra):
    lib = os.path.abspath(f"{BUILD}/libtask/libtask.so.0")
    env = dict(os.environ, TASKD_LIBTASK=lib,
               PYTHONPATH=os.pathsep.join(filter(None, [os.path.abspath(f"{ROOT}/python"),
                                                        os.environ.get("PYTHONPATH")])))
    pre = _sanitizer_preload(lib)
    if pre:
        # Python itself leaks by design at exit: only libtask's errors count here.
        env.update(LD_PRELOAD=pre, ASAN_OPTIONS="detect_leaks=0")
    env.update(extra)
    return env
