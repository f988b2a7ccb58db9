"""Runs one command as N jax processes on this machine (CPU devices, gloo collectives).

    python scripts/launch_local.py --processes 2 --devices_per_process 1 -- \\
        python -m mlrpl_jax.train --config configs/tiny.py --workdir runs/tiny_2x1

What a multi-host launch does, on one machine: every process gets `JAX_COORDINATOR_ADDRESS`
(127.0.0.1 and a free port), `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`, `JAX_PLATFORMS=cpu`,
`JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo` and `--xla_force_host_platform_device_count` in
`XLA_FLAGS`, and `mlrpl_jax.launch` initialises `jax.distributed` from them. For trying and testing
multi-process behaviour (layouts, resume under another process count, preemption) without a
cluster; on a cluster use its launcher (README "Several hosts").

Each process's stdout and stderr are passed through, prefixed with `[p<id>]` (process 0's stdout
alone carries the run's lines). The exit status is the first non-zero status of the processes, or 0.
SIGTERM and SIGINT sent to this script are forwarded to every process.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(process_id: int, processes: int, devices: int, port: int, base=None) -> dict:
    """The environment of process `process_id` of a local launch."""
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env.update(
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES=str(processes),
        JAX_PROCESS_ID=str(process_id),
        JAX_PLATFORMS="cpu",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
        XLA_FLAGS=" ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]),
    )
    return env


def _pump(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"{prefix}{line}")
        out.flush()
    stream.close()


def launch(command: list[str], processes: int, devices: int) -> int:
    port = free_port()
    procs = []
    for pid in range(processes):
        procs.append(subprocess.Popen(
            command, env=process_env(pid, processes, devices, port), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))  # fmt: skip

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pumps = []
    for pid, p in enumerate(procs):
        for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr)):
            t = threading.Thread(target=_pump, args=(stream, f"[p{pid}] ", out), daemon=True)
            t.start()
            pumps.append(t)
    codes = [p.wait() for p in procs]
    for t in pumps:
        t.join()
    return next((c for c in codes if c != 0), 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s [--processes N] [--devices_per_process D] -- COMMAND ...",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=1)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        fail("no command: give the command every process runs after --, e.g. -- python -m "
             "mlrpl_jax.train --config configs/tiny.py --workdir /tmp/tiny_2x1")  # fmt: skip
    if args.processes < 1 or args.devices_per_process < 1:
        fail("--processes and --devices_per_process must be at least 1")
    try:
        sys.exit(launch(command, args.processes, args.devices_per_process))
    except FileNotFoundError as e:
        fail(f"cannot run {command[0]!r}: {e.strerror}")


def fail(message: str) -> None:
    """A user error: one line on stderr, status 2 (as every command of the project)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
