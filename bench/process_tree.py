"""The CPU time and memory of a process and its descendants (worker pools, forkservers), from /proc, for the
benchmarks whose work runs in more than one process (bench/scale.py, bench/ingest.py)."""
import os
import resource
import threading

CLOCK_TICKS, PAGE_SIZE = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state first), or None if the process has ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def process_stat(pid):
    """(parent pid, RSS bytes, CPU seconds) of a process, or None if it has ended."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    return int(fields[1]), int(fields[21]) * PAGE_SIZE, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu(pid):
    """{child pid: CPU seconds of the child and of every descendant it has waited for} for the direct children of
    ``pid`` (utime + stime + cutime + cstime of /proc/PID/stat: a forkserver's count includes the pool workers it
    reaped, so nothing needs to be sampled while they run)."""
    cpu = {}
    for child, (ppid, _, _) in process_table().items():
        fields = stat_fields(child) if ppid == pid else None
        if fields is not None:
            cpu[child] = sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS
    return cpu


def reaped_children_cpu():
    """CPU seconds of the children this process has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_table():
    """{pid: (parent pid, RSS bytes, CPU seconds)} of every process, from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = process_stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def tree_of(pid, table):
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, (ppid, _, _) in table.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier += children
    return tree


class TreeSampler(threading.Thread):
    """Samples a process tree every ``interval`` s: the largest summed RSS, the last CPU time of each descendant
    (``descendant_cpu``), and the CPU time descendants spent while sampled (``descendant_cpu_since_start``:
    for those that existed when sampling began, e.g. a forkserver kept from an earlier run, only the increase).
    The tree is found by a scan of /proc every ``rescan`` samples; in between only its known processes are read,
    so that sampling often costs little."""

    def __init__(self, pid, interval=0.2, rescan=5):
        super().__init__(daemon=True)
        self.pid, self.interval, self.rescan, self.stopped = pid, interval, rescan, threading.Event()
        self.peak_rss, self.descendant_cpu, self.initial_cpu = 0, {}, None

    def run(self):
        tree, samples = {self.pid}, 0
        while not self.stopped.is_set():
            if samples % self.rescan == 0:
                table = process_table()
                tree = tree_of(self.pid, table)
            else:
                table = {pid: stat for pid in tree if (stat := process_stat(pid)) is not None}
            samples += 1
            self.peak_rss = max(self.peak_rss, sum(table[pid][1] for pid in tree if pid in table))
            for pid in tree - {self.pid}:
                if pid in table:
                    self.descendant_cpu[pid] = table[pid][2]
            if self.initial_cpu is None:
                self.initial_cpu = dict(self.descendant_cpu)
            self.stopped.wait(self.interval)

    def descendant_cpu_since_start(self):
        initial = self.initial_cpu or {}
        return sum(cpu - initial.get(pid, 0.0) for pid, cpu in self.descendant_cpu.items())
