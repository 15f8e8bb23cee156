"""Console log -> kernel splats, each with a kind and a stable syzkaller-style title.

A table of report patterns (cf. syzkaller's pkg/report): each entry says how a
report starts, what kind it is and how to build its title from the report's
own lines. Titles name the culprit: the first function that is not report
machinery (KASAN, lockdep, WARN), a locking, scheduling or wait primitive,
allocator internals or a delay loop, so one bug gives one title across runs,
kernels and configs, and two drivers' bugs met in __mutex_lock get two.

The parser is a pure function of the log text; scenario boundaries come from
the kmsg markers the guest runner writes (``harness: scenario-start NAME``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# "[   12.345678] " and optionally "[    T123] " / "[    C1] " (PRINTK_CALLER)
_PREFIX = re.compile(r"^\s*(?:<\d+>)?\[\s*(\d+\.\d+)\](?:\[\s*[TC]\d+\])?\s?")
# kmemleak's console reports (kmemleak.verbose=1) prefix every line with "kmemleak: ",
# and 6.1's print each address as "[<(____ptrval____)>]" until pointer hashing is ready
_FRAME = re.compile(
    r"^(?:kmemleak:)?\s*(?:\[<(?:[0-9a-f]+|\(____ptrval____\))>\]\s*)?(\?\s+)?([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[(\w+)\])?"
)
_RIP = re.compile(r"^\s*RIP:\s*[0-9a-f]{4}:([A-Za-z_.$][\w.$]*)\+0x")
_END_MARKERS = (
    re.compile(r"^---\[ end trace [0-9a-f]+ \]---"),
    re.compile(r"^---\[ end Kernel panic"),
)
_KASAN_RULE = re.compile(r"^={40,}$")
_MARKER = re.compile(r"^harness: scenario-(start|end) (\S+)")

# Report machinery, locking/waiting/scheduling, allocator and delay code: never the culprit.
SKIP_FRAMES = re.compile(
    r"^(?:"
    r"dump_stack\w*|show_stack|print_\w+|printk\w*|_printk|vprintk\w*|__warn\w*|warn_\w+|"
    r"report_bug|handle_bug|__schedule_bug|exc_invalid_op|asm_exc_\w+|do_error_trap|do_trap|"
    r"_*kasan_\w+|__asan_\w+|asan_\w+|check_memory_region\w*|kasan|"
    r"ubsan_\w+|__ubsan_\w+|refcount_warn_saturate|refcount_\w+|__refcount_\w+|"
    r"lock_acquire\w*|lock_release|lock_\w+|__lock_\w+|lockdep_\w+|__lockdep_\w+|"
    r"check_\w+|validate_chain|mark_lock\w*|print_circular_bug|check_noncircular|"
    r"_raw_\w+|__raw_\w+|do_raw_\w+|queued_\w+|native_queued_\w+|"
    r"mutex_lock\w*|__mutex_\w+|mutex_unlock|down_\w+|down|__down\w*|up_\w+|rwsem_\w+|"
    r"rt_mutex_\w+|__rt_mutex_\w+|"
    r"schedule\w*|__schedule|preempt_schedule\w*|io_schedule\w*|_*cond_resched\w*|"
    r"wait_for_completion\w*|__wait_for_common|wait_for_common\w*|do_wait_for_common|"
    r"__synchronize_srcu|synchronize_srcu\w*|synchronize_rcu\w*|__synchronize\w*|"
    r"wait_rcu_gp|__wait_rcu_gp|flush_work|__flush_work\w*|msleep|usleep\w*|"
    r"__might_\w+|might_\w+|__cant_\w+|debug_\w+|__debug_\w+|"
    r"kfree|kvfree|kmem_cache_free|__kmem_cache_free\w*|slab_free\w*|__slab_free|do_slab_free|"
    r"kmalloc\w*|__kmalloc\w*|kmem_cache_alloc\w*|__kmem_cache_alloc\w*|kzalloc\w*|"
    r"kvmalloc\w*|slab_alloc\w*|__slab_alloc\w*|___slab_alloc|alloc_pages\w*|"
    r"memcpy\w*|memset\w*|memmove\w*|__memcpy\w*|__memset\w*|strlen|strcmp|strcpy|"
    r"__list_\w+_valid\w*|__list_add\w*|__list_del\w*|list_add\w*|list_del\w*|"
    r"kmemleak_\w+|slab_post_alloc_hook|__alloc_pages\w*|__free_pages\w*|free_pages\w*|"
    r"__free_page|free_unref_\w+|free_pages_prepare|bad_page|__folio_put|folio_put|put_page|"
    r"delay_tsc|delay_halt\w*|delay_loop|__delay|__const_udelay|__udelay|__ndelay|"
    r"panic|nmi_\w+|watchdog\w*|rcu_dump_\w+|rcu_\w*stall\w*|print_cpu_stall\w*|"
    r"sysvec_\w+|asm_sysvec_\w+|__sysvec_\w+|irq_exit\w*|__irq_exit\w*|"
    r"entry_SYSCALL\w*|do_syscall_\w+|x64_sys_call|__x64_sys_\w+|__do_sys_\w+|"
    r"ret_from_fork\w*|kthread|worker_thread|rescuer_thread|process_one_work|"
    r"process_scheduled_works"
    r")$"
)


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line number in the log
    time: float | None  # printk timestamp, if the line has one
    text: str  # without the timestamp prefix


@dataclass
class Splat:
    kind: str
    title: str
    first_line: int
    time: float | None
    excerpt: str
    scenario: str | None
    count: int = 1
    frames: list[str] = field(default_factory=list)
    outside: str = ""  # where a report outside its item's markers fell (set by the runner)

    def to_json(self) -> dict:
        return asdict(self)


def split_lines(log: str) -> list[Line]:
    out = []
    for number, raw in enumerate(log.splitlines(), 1):
        raw = raw.replace("\r", "")
        m = _PREFIX.match(raw)
        if m:
            out.append(Line(number, float(m.group(1)), raw[m.end() :]))
        else:
            out.append(Line(number, None, raw))
    return out


def frames_of(lines: list[Line], guesses: bool = False) -> list[str]:
    """Call-trace function names, in order; ``? func`` guesses only if asked for.

    Frames between <NMI> and </NMI> are the backtrace's own NMI handler (a stall
    report's "NMI backtrace for cpu N"), never the stalled code.
    """
    out = []
    in_nmi = False
    for line in lines:
        marker = line.text.strip()
        if marker in ("<NMI>", "</NMI>"):
            in_nmi = marker == "<NMI>"
            continue
        m = _FRAME.match(line.text)
        if m and not in_nmi and (guesses or not m.group(1)):
            out.append(m.group(2))
    return out


def first_frames(candidates: list[str], count: int) -> list[str]:
    """The first ``count`` frames that are not report, locking, waiting or allocator code."""
    names = (re.sub(r"\.(?:cold|isra|constprop|part|llvm)(?:\.\d+)*$", "", n) for n in candidates)
    return [n for n in names if not SKIP_FRAMES.match(n)][:count]


def first_useful(candidates: list[str]) -> str | None:
    """The culprit: the first frame that is not report, locking, waiting or allocator code."""
    found = first_frames(candidates, 1)
    return found[0] if found else None


_TOP_DIRS = (
    "arch|block|certs|crypto|drivers|fs|include|init|io_uring|ipc|kernel|lib|mm|net|rust|"
    "samples|security|sound|tools|virt"
)


def source_path(path: str) -> str:
    """'../../trees/linux-6.12/include/linux/x.h:34' -> 'include/linux/x.h:34' (O= builds)."""
    m = re.search(rf"(?:^|/)((?:{_TOP_DIRS})/.*)$", path)
    return m.group(1) if m else path


def _suspicious_site(lines: list[Line]) -> str:
    """RCU-lockdep reports name the source line: 'include/linux/rcu_sync.h:34 suspicious ...'."""
    for line in lines[1:6]:
        if m := re.match(r"^(\S+:\d+) ", line.text):
            return source_path(m.group(1))
    return "unknown"


def _rip(lines: list[Line]) -> str | None:
    for line in lines:
        if m := _RIP.match(line.text):
            return m.group(1)
    return None


def _at_function(lines: list[Line], after: str) -> str | None:
    """The lock site lockdep names right after the line containing ``after``.

    It is either on the next line ('... (lock){+.+.}, at: func+0x..') or, for
    release reports, on the line after an 'at:' ('[<addr>] func+0x..').
    """
    for index, line in enumerate(lines):
        if after not in line.text:
            continue
        for follow in lines[index : index + 3]:
            if m := re.search(r"at: ([A-Za-z_.$][\w.$]*)\+0x", follow.text):
                return m.group(1)
            if follow is not line and (m := _FRAME.match(follow.text)):
                return m.group(2)
        return None
    return None


def _func(lines: list[Line], *preferred: str | None) -> str:
    """The title function: the preferred names (if not machinery), else the trace."""
    name = first_useful([p for p in preferred if p])
    if name:
        return name
    return (
        first_useful(frames_of(lines))
        # a kworker caught between work items (cond_resched) shows only the workqueue's
        # machinery: the work function on its "Workqueue:" line is what was running
        or _work_function(lines)
        # a jump into freed memory leaves RIP a bare address and only guessed frames
        or first_useful(frames_of(lines, guesses=True))
        # lockdep's reports of a lock still held (returning to user space, at exit) have no
        # trace: the lock list's "at:" names where the first one was taken
        or _held_lock_site(lines)
        or "unknown"
    )


_HELD_LOCK = re.compile(r"^#\d+: .*, at: ([A-Za-z_]\w*)\+0x")


def _held_lock_site(lines: list[Line]) -> str | None:
    """Where the first lock of a lockdep held-locks list was taken."""
    return _first_name(_HELD_LOCK, lines)


def _first_name(pattern: re.Pattern[str], lines: list[Line]) -> str | None:
    """The name the first line matching ``pattern`` captures."""
    for line in lines:
        if found := pattern.match(line.text.strip()):
            return found.group(1)
    return None


_WORKQUEUE = re.compile(r"^Workqueue: \S+ ([A-Za-z_]\w*)")


def _work_function(lines: list[Line]) -> str | None:
    """The work function a kworker's task dump names (Workqueue: <queue> <function>)."""
    return _first_name(_WORKQUEUE, lines)


# A title function returns the title, or (kind, title) when the report's own
# lines refine the pattern's kind (a WARN that is really a refcount bug), or
# None when the lines hold no report after all (a stack dump with no blocked task).
TitleFn = Callable[[re.Match, list[Line]], str | tuple[str, str] | None]


@dataclass(frozen=True)
class Pattern:
    kind: str
    start: re.Pattern
    title: TitleFn


def _kasan(m: re.Match, lines: list[Line]) -> str:
    bug, where = m.group(1), m.group(2)
    if bug == "use-after-free" and any(_SLAB_OBJECT.search(line.text) for line in lines):
        # older trees (6.1) call a freed slab object "use-after-free"; newer ones say
        # "slab-use-after-free" and keep the plain name for freed pages: one bug, one title
        bug = "slab-use-after-free"
    access = ""
    for line in lines[1:8]:
        if a := re.match(r"^(Read|Write) of size \d+", line.text):
            access = f" {a.group(1)}"
            break
    return f"KASAN: {bug}{access} in {_func(lines, where)}"


_SLAB_OBJECT = re.compile(r"\bwhich belongs to the cache ")  # after "...belongs to the object at"


def _warning(m: re.Match, lines: list[Line]) -> str | tuple[str, str]:
    """WARN reports; message lines above the header mark refcount, ODEBUG and list bugs."""
    source, func = m.group(1), m.group(2)
    text = "\n".join(line.text for line in lines[:8])
    if "refcount_t:" in text or "refcount" in source:
        return "refcount", f"refcount bug in {_func(lines, func)}"
    if "lib/debugobjects.c" in source or "ODEBUG:" in text:
        return "debugobjects", f"WARNING: ODEBUG bug in {_func(lines)}"
    if "list_debug.c" in source or re.search(r"list_(add|del) corruption", text):
        return "list-corruption", f"BUG: corrupted list in {_func(lines)}"
    return f"WARNING in {_func(lines, func)}"


# sysrq w's task lines, and the guest runner's for a thread it waited on (harness-stack:
# its /proc stack, in any state: guest/runner.py dump_blocked)
_TASK = re.compile(r"^(?:harness-stack: )?task:(\S+)\s+state:(\w)\b.*?\bpid:\s*(\d+)")


def _blocked(m: re.Match, lines: list[Line]) -> str | None:
    """A sysrq-w dump the harness asked for when something hung: titled where the stuck
    task sleeps (the task the harness names, else the first blocked one)."""
    stuck = m.groupdict().get("pid")
    harness_clock = m.group(0).startswith("harness") and m.groupdict().get("how") != "stuck"
    tasks: list[tuple[str, list[Line]]] = []
    for line in lines:
        if t := _TASK.match(line.text):
            tasks.append((t.group(3), []))
        elif tasks:
            tasks[-1][1].append(line)
    chosen = next((body for pid, body in tasks if pid == stuck), None)
    for body in [chosen] if chosen is not None else [b for _, b in tasks]:
        if where := first_useful(frames_of(body)):
            if harness_clock:
                return HARNESS_DUMP, f"INFO: task hung in {where}"  # see _timeouts
            return f"INFO: task hung in {where}"
    return None


# A dump the harness asked for on its own clock (the runner's deadline, the host
# finding no result in time), not because a call into the kernel never returned.
HARNESS_DUMP = "harness-dump"
TIMEOUT = "timeout"


def _timeouts(found: list[Splat]) -> list[Splat]:
    """The harness's own stack dumps: the kernel hang they show when the kernel's hung-task
    detector saw one in that scenario too, else a timeout of the scenario, not a kernel bug
    (a slow machine or a stuck user-space emulator leaves tasks blocked as well)."""
    hung = {(s.scenario, s.title): s for s in found if s.kind == "hung-task"}
    detected = {scenario for scenario, _ in hung}
    out = []
    for splat in found:
        if splat.kind != HARNESS_DUMP:
            out.append(splat)
        elif (same := hung.get((splat.scenario, splat.title))) is not None:
            same.count += splat.count
        elif splat.scenario in detected:
            splat.kind = "hung-task"
            out.append(splat)
        else:
            splat.kind = TIMEOUT
            splat.title = splat.title.replace("INFO: task hung in ", "timeout: tasks blocked in ")
            out.append(splat)
    return out


# where an interrupt (or exception) entered: the frames above it are the handler's
_IRQ_ENTRY = re.compile(r"^(?:asm_sysvec_\w+|asm_common_interrupt|asm_exc_\w+)$")


def _holdout(m: re.Match, lines: list[Line]) -> str:
    """RCU Tasks names a task that never switched voluntarily. Running on another CPU,
    its stack is all guesses: what the last interrupt left above the code it interrupted
    (lapic_next_event, irqentry_exit), so the frames below the last interrupt entry count."""
    guessed = frames_of(lines, guesses=True)
    entries = [i for i, name in enumerate(guessed) if _IRQ_ENTRY.match(name)]
    interrupted = guessed[entries[-1] + 1 :] if entries else guessed
    where = first_useful(frames_of(lines)) or first_useful(interrupted) or "unknown"
    return f"INFO: {m.group(1)} detected stall in {where}"


# the sysfs/kobject/driver-core path from the registering call down to sysfs_warn_dup()
_REGISTRATION = re.compile(
    r"^(?:sysfs_\w+|kernfs_\w+|kobject_\w+|device_add\w*|device_register|device_create\w*|"
    r"cdev_device_add|driver_sysfs_add|bus_add_\w+|platform_device_(?:add|register\w*))$"
)


def _duplicate_name(m: re.Match, lines: list[Line]) -> str:
    """A name left behind by a removal: titled by the code that registers it again."""
    frames = [f for f in frames_of(lines) if not _REGISTRATION.match(f)]
    return f"sysfs: cannot create duplicate filename in {_func(lines[:1], first_useful(frames))}"


def _bug_at(m: re.Match, lines: list[Line]) -> str | tuple[str, str]:
    if "list_debug.c" in m.group(1):
        return "list-corruption", f"BUG: corrupted list in {_func(lines)}"
    return f"kernel BUG in {_func(lines, _rip(lines))}"


def _in(prefix: str, rip: bool = False) -> TitleFn:
    """Title '<prefix> in <function>'; with ``rip`` the faulting RIP is preferred."""
    return lambda m, ls: f"{prefix} in {_func(ls, _rip(ls) if rip else None)}"


def _locked_at(prefix: str, after: str) -> TitleFn:
    """Lockdep titles name the lock site printed after the line containing ``after``."""
    return lambda m, ls: f"{prefix} in {_func(ls, _at_function(ls, after))}"


PATTERNS: tuple[Pattern, ...] = (
    Pattern("kasan", re.compile(r"^BUG: KASAN: ([\w-]+) in ([A-Za-z_.$][\w.$]*)"), _kasan),
    Pattern("kasan", re.compile(r"^BUG: KASAN: ([\w-]+) (?:on address|in range)()"), _kasan),
    Pattern(
        "lockdep",
        re.compile(r"^WARNING: possible circular locking dependency detected"),
        _locked_at("possible deadlock", "is trying to acquire"),
    ),
    Pattern(
        "lockdep",
        re.compile(r"^WARNING: possible recursive locking detected"),
        _locked_at("possible deadlock", "is trying to acquire"),
    ),
    Pattern(
        "lockdep",
        re.compile(r"^WARNING: inconsistent lock state"),
        _locked_at("inconsistent lock state", "takes:"),
    ),
    Pattern(
        "lockdep",
        re.compile(r"^WARNING: bad unlock balance detected!"),
        _locked_at("bad unlock balance", "is trying to release"),
    ),
    Pattern(
        "lockdep",
        re.compile(r"^WARNING: suspicious RCU usage"),
        lambda m, ls: f"suspicious RCU usage at {_suspicious_site(ls)}",
    ),
    Pattern(
        "lockdep",
        re.compile(
            r"^WARNING: (lock held when returning to user space|held lock freed|"
            r"possible irq lock inversion dependency detected|"
            r"lock held at task exit time|"
            r"[\w -]+-safe -> [\w -]+-unsafe lock order detected)"
        ),
        lambda m, ls: f"{m.group(1).rstrip('!')} in {_func(ls)}",
    ),
    Pattern(
        "warning",
        re.compile(r"^WARNING: CPU: \d+ PID: \d+ at (\S+) ([A-Za-z_.$][\w.$]*)\+0x"),
        _warning,
    ),
    Pattern(
        "warning",
        re.compile(r"^WARNING: CPU: \d+ PID: \d+ at (\S+)()"),
        _warning,
    ),
    # newer trees' __warn() (kernel/panic.c): "WARNING: drivers/x.c:123 at f+0x2a/0x60,
    # CPU#0: comm/44", or "WARNING: at f+0x2a/0x60, CPU#0: ..." when no file is known
    Pattern(
        "warning",
        re.compile(r"^WARNING: (\S+:\d+|) ?at ([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+, CPU#"),
        _warning,
    ),
    Pattern(
        "hung-task",
        # " in I/O wait" stands between in trees that say why the task is blocked
        re.compile(r"^INFO: task (\S+):\d+ blocked(?: in I/O wait)? for more than \d+ seconds"),
        lambda m, ls: f"INFO: task hung in {_func(ls)}",
    ),
    # the guest runner's or the host's note, then the dump (guest/runner.py dump_blocked,
    # harness/boot.py request_stacks); a bare dump is titled the same way
    Pattern(
        "hung-task",
        re.compile(
            r"^harness(?:-host)?: .*stacks of blocked tasks follow(?: \(sysrq w; "
            r"(?P<how>stuck|waiting): pid (?P<pid>\d+)\))?"
        ),
        _blocked,
    ),
    Pattern("hung-task", re.compile(r"^sysrq: Show Blocked State"), _blocked),
    Pattern(
        "rcu-stall",
        re.compile(
            r"^rcu: INFO: (\w+) (?:detected stalls on CPUs/tasks|self-detected stall on CPU)"
        ),
        _in("INFO: rcu detected stall", rip=True),
    ),
    # an expedited grace period held up by the same kind of reader: one bug, one title
    Pattern(
        "rcu-stall",
        re.compile(r"^(?:rcu: )?INFO: \w+ detected expedited stalls(?: on CPUs/tasks|, but)"),
        _in("INFO: rcu detected stall", rip=True),
    ),
    Pattern(
        "rcu-stall",
        re.compile(r"^(?:rcu: )?INFO: (rcu_tasks\w*) detected stalls on tasks"),
        _holdout,
    ),
    Pattern(
        "lockup",
        re.compile(r"^watchdog: BUG: soft lockup - CPU#\d+ stuck for"),
        _in("BUG: soft lockup", rip=True),
    ),
    Pattern(
        "lockup",
        re.compile(r"^(?:watchdog: )?Watchdog detected hard LOCKUP on cpu"),
        _in("BUG: hard lockup", rip=True),
    ),
    Pattern(
        "lockup",
        re.compile(r"^BUG: workqueue lockup"),
        lambda m, ls: "BUG: workqueue lockup",
    ),
    Pattern(
        "atomic-sleep",
        re.compile(r"^BUG: sleeping function called from invalid context"),
        _in("BUG: sleeping function called from invalid context"),
    ),
    Pattern(
        "atomic-sleep",
        re.compile(r"^BUG: scheduling while atomic"),
        _in("BUG: scheduling while atomic"),
    ),
    Pattern(
        "list-corruption",
        re.compile(r"^(list_add|list_del) corruption"),
        _in("BUG: corrupted list"),
    ),
    Pattern("bug", re.compile(r"^kernel BUG at (\S+)!"), _bug_at),
    Pattern(
        "oops",
        re.compile(r"^BUG: kernel NULL pointer dereference"),
        _in("BUG: unable to handle kernel NULL pointer dereference", rip=True),
    ),
    Pattern(
        "oops",
        re.compile(r"^BUG: unable to handle (?:page fault|kernel paging request)"),
        _in("BUG: unable to handle kernel paging request", rip=True),
    ),
    Pattern(
        "oops",
        re.compile(r"^(?:Oops: )?general protection fault"),
        _in("general protection fault", rip=True),
    ),
    Pattern(
        "ubsan",
        re.compile(r"^UBSAN: ([\w-]+) in (\S+)"),
        lambda m, ls: f"UBSAN: {m.group(1)} in {_func(ls)}",
    ),
    # the debugfs file's report, or the console's (kmemleak.verbose=1) with its prefix
    Pattern(
        "kmemleak",
        re.compile(r"^(?:kmemleak: )?unreferenced object 0x[0-9a-f]+ \(size \d+\)"),
        _in("memory leak"),
    ),
    # "BUG: Bad page state in process sh  pfn:0a1b2": the process and pfn vary by run
    Pattern(
        "bad-page",
        re.compile(r"^BUG: Bad page (state|map) in process"),
        lambda m, ls: f"BUG: Bad page {m.group(1)} in {_func(ls)}",
    ),
    # sysfs_warn_dup(): a file or directory a removal left behind met again on re-probe
    Pattern(
        "sysfs-duplicate",
        re.compile(r"^sysfs: cannot create duplicate filename '"),
        _duplicate_name,
    ),
    Pattern("oops", re.compile(r"^Oops: "), _in("Oops", rip=True)),
    Pattern("bug", re.compile(r"^BUG: (.+?)\s*$"), lambda m, ls: f"BUG: {m.group(1)}"),
    Pattern(
        "panic",
        re.compile(r"^Kernel panic - not syncing: (.*?)\s*$"),
        lambda m, ls: f"kernel panic: {m.group(1)}",
    ),
)

# Lines that continue the current report instead of starting a new one.
_CONTINUES = (
    re.compile(r"^Oops: "),
    re.compile(r"^(?:Oops: )?general protection fault"),
    re.compile(r"^KASAN: (?:null-ptr-deref|maybe wild-memory-access)"),
    re.compile(
        r"^Kernel panic - not syncing: (?:Fatal exception|softlockup|hung_task|"
        r"panic_on_warn|KASAN|Attempted to kill)"
    ),
    re.compile(r"^BUG: (?:kernel NULL pointer|unable to handle)"),
    re.compile(r"^sysrq: Show Blocked State"),
)
EVENT_PREFIX = "harness-event "  # guest progress lines (boot.EVENT), not kernel output
_CUT_HERE = re.compile(r"^-+\[ cut here \]-+$")
_CUT_HEADER = re.compile(
    r"^(?:WARNING: CPU: \d+ PID: \d+ at |WARNING: (?:\S+:\d+ )?at \S+, CPU#|kernel BUG at )"
)
_CUT_LOOKAHEAD = 6
_MAX_LINES = 160
_GAP_SECONDS = 1.0


# CONFIG_BUG_ON_DATA_CORRUPTION: CHECK_DATA_CORRUPTION() prints its message, then BUG()s
_MESSAGE_BEFORE_BUG = re.compile(r"^(?:list_add|list_del) corruption")
_BUG_HEADER = re.compile(r"^kernel BUG at ")


def _bug_below(lines: list[Line], index: int) -> int | None:
    """The index of the BUG header right below a message line (past its cut-here banner)."""
    for j in range(index + 1, min(len(lines), index + 1 + _CUT_LOOKAHEAD)):
        if _BUG_HEADER.match(lines[j].text):
            return j
        if not _CUT_HERE.match(lines[j].text):
            return None
    return None


def _start(line: Line) -> tuple[Pattern, re.Match] | None:
    for pattern in PATTERNS:
        if m := pattern.start.match(line.text):
            return pattern, m
    return None


def _report_end(lines: list[Line], begin: int, kasan_rule: bool) -> int:
    """Index one past the last line of the report that starts at ``begin``."""
    start_time = lines[begin].time
    previous_time = start_time
    for i in range(begin + 1, min(len(lines), begin + _MAX_LINES)):
        line = lines[i]
        if any(m.match(line.text) for m in _END_MARKERS):
            return i + 1
        if kasan_rule and _KASAN_RULE.match(line.text):
            return i + 1
        if _MARKER.match(line.text):
            return i
        if line.time is not None and previous_time is not None:
            if line.time - previous_time > _GAP_SECONDS:
                return i
        if line.time is not None:
            previous_time = line.time
        if _start(line) and not any(c.match(line.text) for c in _CONTINUES):
            return i
    return min(len(lines), begin + _MAX_LINES)


def _without_events(lines: list[Line]) -> list[Line]:
    return [line for line in lines if not line.text.startswith(EVENT_PREFIX)]


def parse(log: str) -> list[Splat]:
    """All splats in a console log, deduplicated by (title, scenario)."""
    lines = split_lines(log)
    splats: list[Splat] = []
    seen: dict[tuple[str, str | None], Splat] = {}
    scenario: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _MARKER.match(line.text):
            scenario = m.group(2) if m.group(1) == "start" else None
            i += 1
            continue
        begin = header = i
        if _CUT_HERE.match(line.text):
            # WARN/BUG: message lines (refcount_t:, list_add corruption, ODEBUG:)
            # come between the banner and the header; they belong to the report.
            window = range(i + 1, min(len(lines), i + 1 + _CUT_LOOKAHEAD))
            header = next((j for j in window if _CUT_HEADER.match(lines[j].text)), i)
            if header == i:
                i += 1
                continue
        found = _start(lines[header])
        if not found:
            i += 1
            continue
        if _MESSAGE_BEFORE_BUG.match(lines[header].text) and (bug := _bug_below(lines, header)):
            header, found = bug, _start(lines[bug])  # one report: the message, then its BUG()
        pattern, match = found
        if begin == header and begin > 0 and _KASAN_RULE.match(lines[begin - 1].text):
            begin -= 1  # the "=====" banner above a KASAN report, for the excerpt
        is_kasan = bool(_KASAN_RULE.match(lines[begin].text))
        end = _report_end(lines, header, kasan_rule=is_kasan)
        # the guest's own kmsg writes can land inside a report; they are not part of it
        body = _without_events(lines[begin + 1 if begin < header else header : end])
        titled = pattern.title(match, body)
        if titled is None:
            i = max(end, i + 1)
            continue
        kind, title = titled if isinstance(titled, tuple) else (pattern.kind, titled)
        key = (title, scenario)
        if key in seen:
            seen[key].count += 1
        else:
            splat = Splat(
                kind=kind,
                title=title,
                first_line=lines[header].number,
                time=lines[header].time,
                excerpt="\n".join(raw.text for raw in _without_events(lines[begin:end])),
                scenario=scenario,
                frames=frames_of(body)[:20],
            )
            seen[key] = splat
            splats.append(splat)
        i = max(end, i + 1)
    return _timeouts(splats)


def scenario_spans(log: str) -> dict[str, tuple[int, int | None]]:
    """Scenario id -> (start line, end line or None if it never ended)."""
    spans: dict[str, tuple[int, int | None]] = {}
    for line in split_lines(log):
        if m := _MARKER.match(line.text):
            name = m.group(2)
            if m.group(1) == "start":
                spans[name] = (line.number, None)
            elif name in spans:
                spans[name] = (spans[name][0], line.number)
    return spans


def scenario_start_times(log: str) -> dict[str, float]:
    """Scenario id -> printk time of its start marker (for "first splat N s in")."""
    return {
        m.group(2): line.time
        for line in split_lines(log)
        if line.time is not None and (m := _MARKER.match(line.text)) and m.group(1) == "start"
    }


def normalized_title(title: str) -> str:
    """A title without what varies between runs and trees of one bug.

    Line numbers (a series shifts them), offsets, addresses, access sizes and
    compiler clone suffixes go; the bug type, the access kind and the function stay.
    """
    title = re.sub(r"\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?", "", title)
    title = re.sub(r"\b0x[0-9a-f]+\b", "ADDR", title)
    title = re.sub(r"(\.[ch]):\d+", r"\1", title)
    title = re.sub(r" of size \d+", "", title)
    title = re.sub(r"\.(?:cold|isra|constprop|part|llvm)(?:\.\d+)*\b", "", title)
    return title


# How many useful frames of each access stack say where the access came from:
# the access function, its caller and the caller's caller. Two runs of one race
# meet the freed memory on one path (spi_mem_dirmap_read called from
# spi_nor_read); two bugs of one driver come in by different entry points.
ACCESS_PATH_DEPTH = 3


def _access_path(splat: Splat) -> set[str]:
    """The top useful frames of the access stack (KASAN's, above its "Allocated by" stack)."""
    lines = []
    for text in splat.excerpt.splitlines():
        if re.match(r"^(?:Allocated|Freed) by task", text):
            break
        lines.append(Line(0, None, text))
    return set(first_frames(frames_of(lines), ACCESS_PATH_DEPTH))


# Frames of KASAN's "Allocated by" / "Freed by" stacks that every object shares:
# the allocator, devres and kobject release machinery, KASAN's own bookkeeping.
_OBJECT_MACHINERY = re.compile(
    r"^(?:_*kasan_\w+|\w*kmalloc\w*|\w*kzalloc\w*|\w*kcalloc\w*|kvmalloc\w*|"
    r"krealloc\w*|kmem_cache_\w+|slab_\w+|__slab_\w+|\w*_noprof|devm_\w*alloc\w*|"
    r"kfree\w*|kvfree\w*|rcu_\w+|__rcu_\w+|release_nodes|devres_release\w*|"
    r"device_release|device_unbind_cleanup|kobject_put|kobject_release|kref_put|put_device|"
    r"klist_\w+|"
    r"__kmem_\w+|alloc_\w+|kstrdup\w*|kmemdup\w*)$"
)


def _free_stacks(splat: Splat) -> dict[str, list[str]]:
    """The reliable frames of a KASAN report's "Allocated by" and "Freed by" stacks."""
    stacks: dict[str, list[str]] = {}
    section = None
    for text in splat.excerpt.splitlines():
        if m := re.match(r"^(Allocated|Freed) by task", text):
            section = m.group(1)
            stacks[section] = []
            continue
        if section is None:
            continue
        if not text.strip():
            section = None
        elif (m := _FRAME.match(text)) and not m.group(1):
            name = re.sub(r"\.(?:cold|isra|constprop|part|llvm)(?:\.\d+)*$", "", m.group(2))
            stacks[section].append(name)
    return stacks


def kasan_object(splat: Splat) -> tuple[str, str] | None:
    """Where a KASAN report's object was allocated and freed (first non-machinery frames)."""
    stacks = _free_stacks(splat)
    sites = []
    for section in ("Allocated", "Freed"):
        useful = [f for f in stacks.get(section, []) if not _OBJECT_MACHINERY.match(f)]
        if not useful:
            return None
        sites.append(useful[0])
    return sites[0], sites[1]


_CACHE = re.compile(r"\bwhich belongs to the cache (\S+) of size \d+")


def kasan_cache(splat: Splat) -> str | None:
    """The slab cache of a KASAN report's object, without the per-build random/cgroup copy
    ('kmalloc-rnd-05-2k' and 'kmalloc-cg-2k' are 'kmalloc-2k'): its size class."""
    m = _CACHE.search(splat.excerpt)
    return re.sub(r"^kmalloc-(?:rnd-\d+-|cg-)", "kmalloc-", m.group(1)) if m else None


_BUS_REMOVE = re.compile(
    r"^(?:i2c_device_remove|platform_remove|platform_drv_remove|spi_remove|spi_drv_remove|"
    r"usb_unbind_interface|usb_unbind_device|hid_device_remove|serio_driver_remove|"
    r"virtio_dev_remove|pci_device_remove|auxiliary_bus_remove|device_remove)$"
)


def kasan_remover(splat: Splat) -> str | None:
    """The driver remove callback that freed the object, if a driver's own code did.

    The frame the driver core called on unbind (right above
    device_release_driver_internal), unless that is devres freeing what probe
    allocated (then the allocation site, in kasan_object, names the bug).
    """
    freed = _free_stacks(splat).get("Freed", [])
    if "device_release_driver_internal" not in freed:
        return None
    index = freed.index("device_release_driver_internal")
    for caller in reversed(freed[:index]):
        if not _BUS_REMOVE.match(caller):  # the bus's wrapper calls the driver's remove
            devres = r"^(?:devres_\w+|release_nodes|device_unbind_cleanup)$"
            return None if re.match(devres, caller) else caller
    return None


def _freed_on_unbind(splat: Splat) -> bool:
    return "device_release_driver_internal" in _free_stacks(splat).get("Freed", [])


def _one_object(a: Splat, b: Splat) -> bool:
    """One object: allocated at one site, of one size class, freed at one site.

    A free on a device's unbind is one site whether the driver's remove callback
    or devres did it (6.12's dln2 frees its controller in dln2_spi_remove, 7.3's
    through devm). Two devm objects of one probe share both sites: their size
    classes tell them apart, unless they are of one.
    """
    life_a, life_b = kasan_object(a), kasan_object(b)
    if life_a is None or life_b is None or life_a[0] != life_b[0]:
        return False
    if kasan_cache(a) != kasan_cache(b):
        return False
    unbind_a, unbind_b = _freed_on_unbind(a), _freed_on_unbind(b)
    if unbind_a or unbind_b:
        return unbind_a and unbind_b
    return life_a[1] == life_b[1]


def _teardown(splat: Splat) -> str | None:
    """What freed the object: the driver's remove callback, else the first useful free frame."""
    life = kasan_object(splat)
    return kasan_remover(splat) or (life[1] if life else None)


def _kasan_bug_type(title: str) -> str:
    m = re.match(r"^KASAN: ([\w-]+)", title)
    return m.group(1) if m else ""


# Reports of one bad memory access, whichever detector got there first.
_BAD_ACCESS = {"kasan", "oops"}


def same_bug(a: Splat, b: Splat) -> bool:
    """Whether two reports are one bug, as a kernel developer reads them.

    Same kind and same normalised title; for KASAN, the same bug type on one
    object (its allocation site, free site and size class: the object's life is
    the bug, whichever function met it), or on objects one teardown freed,
    met on one path (the caller of one access is near the other's); a KASAN
    report and a GPF or paging fault in the same function. Two objects of one
    driver used after unbind by unrelated functions are two bugs
    (tests/data/same-bug-pairs.json holds the labelled pairs).
    """
    ta, tb = normalized_title(a.title), normalized_title(b.title)
    if {a.kind, b.kind} <= _BAD_ACCESS and a.kind != b.kind:
        # KASAN caught it in one run, the MMU (GPF, paging fault) in another
        return ta.rpartition(" in ")[2] == tb.rpartition(" in ")[2]
    if a.kind != b.kind:
        return False
    if ta == tb:
        return True
    if a.kind != "kasan" or _kasan_bug_type(ta) != _kasan_bug_type(tb):
        return False
    if _one_object(a, b):
        return True
    freed = _teardown(a)
    return freed is not None and freed == _teardown(b) and bool(_access_path(a) & _access_path(b))


def echoes(first: Splat, later: Splat) -> bool:
    """Whether a later KASAN report of one run follows from its first: the same bug, or
    an access on the first one's path (the stale pointer used again, or the freed
    memory's next owner read out of bounds: kasan_multi_shot reports each)."""
    if later.kind != "kasan" or first.kind != "kasan":
        return False
    return same_bug(first, later) or bool(_access_path(first) & _access_path(later))
