"""What every daemon shares: a child forked without exec does not carry the daemon's signals."""

import subprocess
import sys
import textwrap

DAEMON = textwrap.dedent(
    """
    import asyncio, os, signal, time
    from semnet.daemons.service import run

    async def main(stop):
        pid = os.fork()  # as OpenVINO's converter forks its telemetry helper
        if pid == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # the helper is told to go
            time.sleep(5)
            os._exit(0)
        os.waitpid(pid, 0)
        await asyncio.sleep(0.5)  # the loop would have read a forwarded signal by now
        print("stopped" if stop.is_set() else "running", flush=True)

    run(main)
    """
)


def test_a_signal_to_a_forked_helper_does_not_stop_the_daemon():
    out = subprocess.run([sys.executable, "-c", DAEMON], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "running", out.stdout + out.stderr
