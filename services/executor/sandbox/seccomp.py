"""The syscall filter: deny process creation and exec, tracing, mounts, namespace
changes, kernel keyrings, bpf, uid changes and the like. Threads stay allowed.

It also keeps widget code off the network: no ``socket()`` of any domain (IP,
``AF_UNIX``, ``AF_NETLINK``, ``AF_PACKET``...), no ``connect()``, no io_uring
(which could create and connect sockets out of seccomp's sight), no TCP Fast
Open (a connect hidden in ``sendto``/``sendmsg``), and ``socketpair()`` only for
connected ``AF_UNIX`` stream or seqpacket pairs. A widget gets its TCP
connections already connected, from the executor (see executor/egress).

It comes in two parts so that no child pays for compiling or loading a large program:

- the *common* filter (``DENIED``), built with libseccomp and loaded once into the
  zygote itself, which every child inherits through fork. The zygote needs two
  things it denies its children, so those are left to the second part;
- the *child* filter, a few hand-written BPF instructions each child loads after
  switching to its uid: no uid/gid changes, ``clone`` for threads only, signals
  (``kill``, ``tgkill``, ``rt_sigqueueinfo``, ``rt_tgsigqueueinfo``) to nobody but
  itself, and the calls that change another process's limits, priority, CPUs or
  memory placement (``prlimit64``, ``setpriority``, ``sched_set*``, ``ioprio_set``,
  ``migrate_pages``, ``move_pages``...) for itself only: pid 0 or its own (its pid is
  only known after the fork). Without root every widget has the executor's uid, so
  the kernel would let it lower another worker's or the executor's limits;
- the *thread counter*, six instructions loaded once into the zygote after the common
  filter, whose listener goes to the executor: each new thread of any child waits for
  the executor's word (user notification, see executor/thread_cap.py), which counts that
  process's threads: a per-job limit that, unlike ``RLIMIT_NPROC``, does not count every
  task of the uid on the node. Of two filters' verdicts the stricter wins, so the child
  filter's refusal of a non-thread ``clone`` stands.

Syscalls of another ABI (x32, i386) are killed by the common filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

import pyseccomp as sc

CLONE_THREAD = 0x00010000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_EPERM, _RET_USER_NOTIF = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x7FC00000
_SET_MODE_FILTER, _FILTER_FLAG_NEW_LISTENER = 1, 1 << 3
_LD_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0, _OFFSET_ARG1 = 0, 4, 16, 24  # args' low 32 bits (little-endian)
_X32_SYSCALL_BIT = 0x40000000

DENIED = (
    "execve", "execveat", "fork", "vfork",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "pidfd_open", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fspick",
    "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "iopl", "ioperm", "acct", "quotactl",
    "personality", "syslog", "mknod", "mknodat", "tkill", "pidfd_send_signal",
    "socket", "connect", "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip
_AF_UNIX, _SOCK_DGRAM, _SOCK_TYPE_MASK, _MSG_FASTOPEN = 1, 2, 0xF, 0x20000000
# (syscall, argument index of its flags): a set MSG_FASTOPEN makes the call a connect.
_SEND_FLAGS = (("sendto", 3), ("sendmsg", 2), ("sendmmsg", 3))
# Allowed to the zygote (it forks children, which switch to their slot's uid); denied to each child.
CHILD_DENIED = (
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
)  # fmt: skip
# Every call that sends a signal names its target process in arg0; a child may only target itself.
SIGNALLING = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
# Calls that act on the process named in arg0, 0 meaning the caller: a child may only name itself.
# (process_vm_*, pidfd_open and kcmp are in DENIED; reading calls such as sched_getaffinity are left.)
OWN_PROCESS = (
    "prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
    "migrate_pages", "move_pages",
)  # fmt: skip
# Calls that name (which, who) in arg0 and arg1: a child may only name one process, itself (who 0
# or its pid), never a process group or a uid (every process of the executor's uid, without root).
_PRIO_PROCESS, _IOPRIO_WHO_PROCESS = 0, 1
OWN_PROCESS_BY_WHICH = (
    ("setpriority", _PRIO_PROCESS),
    ("getpriority", _PRIO_PROCESS),
    ("ioprio_set", _IOPRIO_WHO_PROCESS),
)

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


@dataclass(frozen=True)
class CompiledFilter:
    common: bytes
    arch: int
    child_denied: tuple[int, ...]
    clone: int
    signal_numbers: tuple[int, ...]
    seccomp: int
    own_process: tuple[int, ...]
    own_process_by_which: tuple[tuple[int, int], ...]


def available() -> bool:
    try:
        sc.SyscallFilter(sc.ALLOW)
    except Exception:  # noqa: BLE001 - libseccomp missing or unusable: report the layer as absent
        return False
    return True


def compile_filter() -> CompiledFilter:
    """Build the common filter with libseccomp and export its BPF program (zygote start-up)."""
    deny = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(deny, name)
        except (RuntimeError, ValueError, OSError):
            continue  # not a syscall on this architecture
    # A connected pair only: an AF_UNIX datagram socket could sendto() any socket path.
    rules.add_rule(deny, "socketpair", sc.Arg(0, sc.NE, _AF_UNIX))
    rules.add_rule(deny, "socketpair", sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, _SOCK_DGRAM))
    for name, flags in _SEND_FLAGS:
        rules.add_rule(deny, name, sc.Arg(flags, sc.MASKED_EQ, _MSG_FASTOPEN, _MSG_FASTOPEN))
    # clone3 hides its flags in memory, so make libc fall back to clone, whose flags the child filter sees.
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    read_fd, write_fd = os.pipe()
    try:
        with os.fdopen(write_fd, "wb") as sink:
            rules.export_bpf(sink)
        with os.fdopen(read_fd, "rb") as source:
            program = source.read()
    except BaseException:
        os.close(read_fd)
        raise
    arch = sc.system_arch()
    return CompiledFilter(
        common=program,
        arch=int(arch),
        child_denied=tuple(_numbers(arch, CHILD_DENIED)),
        clone=sc.resolve_syscall(arch, "clone"),
        signal_numbers=tuple(_numbers(arch, SIGNALLING)),
        seccomp=sc.resolve_syscall(arch, "seccomp"),
        own_process=tuple(_numbers(arch, OWN_PROCESS)),
        own_process_by_which=tuple(
            (number, which) for name, which in OWN_PROCESS_BY_WHICH if (number := sc.resolve_syscall(arch, name)) >= 0
        ),
    )


def _numbers(arch: object, names: tuple[str, ...]) -> list[int]:
    numbers = []
    for name in names:
        number = sc.resolve_syscall(arch, name)
        if number >= 0:  # negative: not a syscall on this architecture
            numbers.append(number)
    return numbers


def _instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


class _Assembler:
    """BPF with named jump targets (BPF only jumps forward): ``at(label)`` marks where the
    next instruction goes; jumps name a label, or None to fall through."""

    def __init__(self) -> None:
        self._code: list[tuple[int, str | None, str | None, int]] = []
        self._labels: dict[str, int] = {}

    def at(self, label: str) -> None:
        self._labels[label] = len(self._code)

    def load(self, offset: int) -> None:
        self._code.append((_LD_ABS, None, None, offset))

    def jump(self, code: int, k: int, then: str | None = None, otherwise: str | None = None) -> None:
        self._code.append((code, then, otherwise, k))

    def ret(self, verdict: int) -> None:
        self._code.append((_RET, None, None, verdict))

    def program(self) -> bytes:
        def offset(at: int, label: str | None) -> int:
            return 0 if label is None else self._labels[label] - at - 1

        return b"".join(
            _instruction(code, offset(at, then), offset(at, otherwise), k)
            for at, (code, then, otherwise, k) in enumerate(self._code)
        )


def child_program(compiled: CompiledFilter, pid: int) -> bytes:
    """The per-child filter: a few dozen instructions, loaded in microseconds."""
    bpf = _Assembler()
    bpf.load(_OFFSET_ARCH)
    bpf.jump(_JEQ, compiled.arch, otherwise="allow")  # another ABI: already judged by the common filter
    bpf.load(_OFFSET_NR)
    bpf.jump(_JGE, _X32_SYSCALL_BIT, then="eperm")
    for number in compiled.child_denied:
        bpf.jump(_JEQ, number, then="eperm")
    bpf.jump(_JEQ, compiled.clone, then="clone")
    for number in compiled.signal_numbers:
        bpf.jump(_JEQ, number, then="arg0 is this process")
    for number in compiled.own_process:
        bpf.jump(_JEQ, number, then="arg0 is 0 or this process")
    for number, which in compiled.own_process_by_which:
        bpf.jump(_JEQ, number, then=f"arg0 is {which}")
    bpf.ret(_RET_ALLOW)
    bpf.at("clone")  # threads only (the thread counter holds them for the executor)
    bpf.load(_OFFSET_ARG0)
    bpf.jump(_JSET, CLONE_THREAD, then="allow", otherwise="eperm")
    bpf.at("arg0 is this process")  # signals: to this process only (0 would be its process group)
    bpf.load(_OFFSET_ARG0)
    bpf.jump(_JEQ, pid, then="allow", otherwise="eperm")
    bpf.at("arg0 is 0 or this process")
    bpf.load(_OFFSET_ARG0)
    bpf.jump(_JEQ, 0, then="allow")
    bpf.jump(_JEQ, pid, then="allow", otherwise="eperm")
    for which in sorted({which for _, which in compiled.own_process_by_which}):
        bpf.at(f"arg0 is {which}")
        bpf.load(_OFFSET_ARG0)
        bpf.jump(_JEQ, which, then="arg1 is 0 or this process", otherwise="eperm")
    bpf.at("arg1 is 0 or this process")
    bpf.load(_OFFSET_ARG1)
    bpf.jump(_JEQ, 0, then="allow")
    bpf.jump(_JEQ, pid, then="allow", otherwise="eperm")
    bpf.at("allow")
    bpf.ret(_RET_ALLOW)
    bpf.at("eperm")
    bpf.ret(_RET_EPERM)
    return bpf.program()


def _load(program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"seccomp: {os.strerror(number)}")


def install_common(compiled: CompiledFilter) -> None:
    """Load the common filter into the zygote; every child it forks inherits it."""
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _load(compiled.common)


def thread_counter(compiled: CompiledFilter) -> bytes:
    """Every ``clone`` with CLONE_THREAD waits for the listener's answer; the rest is left to the other filters."""
    return b"".join(
        _instruction(*instruction)
        for instruction in (
            (_LD_ABS, 0, 0, _OFFSET_NR),
            (_JEQ, 0, 3, compiled.clone),  # the common filter already killed other ABIs
            (_LD_ABS, 0, 0, _OFFSET_ARG0),
            (_JSET, 0, 1, CLONE_THREAD),
            (_RET, 0, 0, _RET_USER_NOTIF),
            (_RET, 0, 0, _RET_ALLOW),
        )
    )


def install_thread_counter(compiled: CompiledFilter) -> int:
    """Load ``thread_counter`` into the zygote (children inherit it) and return its listener
    fd, which the executor must serve: until it answers, every new thread waits."""
    program = thread_counter(compiled)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    listener = int(_libc.syscall(compiled.seccomp, _SET_MODE_FILTER, _FILTER_FLAG_NEW_LISTENER, ctypes.byref(fprog)))
    if listener < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"seccomp listener: {os.strerror(number)}")
    return listener


def install_child(program: bytes) -> None:
    """Load a ``child_program`` (after no_new_privs and the uid switch); it cannot be undone."""
    _load(program)
