"""One process of a multi-process test run (tests/test_multihost.py): runs an experiment's
command line (``python tests/multihost_worker.py AUDIT_JSON WATCH_DIR -m experiments.vae
--config=... --workdir=...``) while recording, through a Python audit hook, every file or
folder this process creates, writes, renames or deletes under WATCH_DIR; the list goes
to AUDIT_JSON when the process exits. (Writes made outside Python, e.g. by TensorStore
inside an Orbax save, are not seen.)"""

import atexit
import json
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main():
    audit_path, watch = sys.argv[1], os.path.realpath(sys.argv[2])
    if sys.argv[3] != "-m":
        raise SystemExit("usage: multihost_worker.py AUDIT_JSON WATCH_DIR -m MODULE ARGS...")
    module, args = sys.argv[4], sys.argv[5:]
    seen = []

    def under(path) -> bool:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return False
        path = os.path.realpath(os.fspath(path))
        return path == watch or path.startswith(watch + os.sep)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                      else bool(flags & _WRITE_FLAGS))
            if writes and under(path):
                seen.append(["open", os.fspath(path)])
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "os.truncate",
                       "shutil.rmtree", "shutil.copyfile", "shutil.move"):
            paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
            if any(under(p) for p in paths):
                seen.append([event] + [os.fsdecode(os.fspath(p)) for p in paths])

    def dump():
        with open(audit_path, "w") as f:
            json.dump(seen, f, indent=1)

    atexit.register(dump)
    sys.addaudithook(hook)
    sys.argv = [module] + args
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
