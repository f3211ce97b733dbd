"""Where the broker's CPU goes: `benchmarks/run.py --broker-profile FILE`.

Each time the lab's broker starts, a Java Flight Recorder recording starts in it (`jcmd PID JFR.start`,
the JDK's `profile` settings: a stack sample of each running Java thread every 10 ms or so), and the
JVM writes it to FILE when the broker stops (`FILE.2`, `FILE.3`, ... after a restart). After the run,
`summary` reads the samples back (`jfr print`) and gives the share of samples by thread (numbers in
thread names folded), by the method a sample was in (self), and by every method on a sample's stack
(inclusive): what the broker's request threads, network threads and coordinators spend their CPU on.
Needs the JDK's `jcmd` and `jfr` next to `java`. Sampling costs the broker little (about 1 % of a core).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

RECORDING = "aiflow-bench"
FRAME = re.compile(r"^\s+([\w$.<>]+)\(", re.M)
THREAD = re.compile(r'sampledThread = "([^"]*)"')


def recording_file(base: Path) -> Path:
    """FILE, or FILE.N for the Nth recording of a run."""
    if not base.exists():
        return base
    n = 2
    while base.with_name(f"{base.name}.{n}").exists():
        n += 1
    return base.with_name(f"{base.name}.{n}")


def start(pid: int, base: Path) -> Path:
    """Start recording in the JVM `pid`; the file it will write when the JVM exits."""
    tool = shutil.which("jcmd")
    if tool is None:
        raise SystemExit("--broker-profile needs the JDK's jcmd on PATH")
    path = recording_file(base.resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()  # taken: a second start in this run picks the next name
    subprocess.run([tool, str(pid), "JFR.start", f"name={RECORDING}", "settings=profile", "dumponexit=true",
                    f"filename={path}"], check=True, capture_output=True, timeout=60)
    return path


def summary(paths: list[Path], top: int = 15) -> list[str]:
    """Lines: the share of samples by thread, by method (self) and by method on the stack (inclusive)."""
    tool = shutil.which("jfr")
    if tool is None:
        return ["no broker profile: the JDK's jfr tool is not on PATH"]
    threads: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    stacks: Counter[str] = Counter()
    samples = 0
    for path in paths:
        if not path.exists() or path.stat().st_size == 0:
            continue  # the broker did not stop cleanly, so the JVM wrote nothing
        out = subprocess.run([tool, "print", "--events", "jdk.ExecutionSample", "--stack-depth", "64", str(path)],
                             check=True, capture_output=True, text=True, timeout=600).stdout
        for event in out.split("jdk.ExecutionSample {")[1:]:
            samples += 1
            thread = THREAD.search(event)
            threads[re.sub(r"\d+", "N", thread.group(1)) if thread else "?"] += 1
            frames = FRAME.findall(event.split("stackTrace = [", 1)[-1])
            if frames:
                methods[frames[0]] += 1
            stacks.update(set(frames))
    if not samples:
        return ["no broker profile: no samples recorded"]
    lines = [f"broker CPU samples: {samples} ({', '.join(str(p) for p in paths)})"]
    for title, counts, n in (("by thread", threads, top), ("by method (self)", methods, top),
                             ("by method on the stack (inclusive)", stacks, 2 * top)):
        lines.append(f"  {title}:")
        lines.extend(f"    {count / samples * 100:5.1f} %  {name}" for name, count in counts.most_common(n))
    return lines
