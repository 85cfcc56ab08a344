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
  switching to its uid: no uid/gid changes, ``clone`` for threads only, and
  signals (``kill``, ``tgkill``, ``rt_sigqueueinfo``, ``rt_tgsigqueueinfo``) to
  nobody but itself (its pid is only known after the fork);
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
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16  # arg0's low 32 bits (little-endian)
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


def child_program(compiled: CompiledFilter, pid: int) -> bytes:
    """The per-child filter: about twenty instructions, loaded in microseconds."""
    denied, signalling = compiled.child_denied, compiled.signal_numbers
    # Layout: checks, then the two argument checks, then the two returns (BPF only jumps forward).
    head: list[tuple[int, int, int, int] | None] = [
        (_LD_ABS, 0, 0, _OFFSET_ARCH),
        None,  # another ABI: already judged by the common filter
        (_LD_ABS, 0, 0, _OFFSET_NR),
        None,  # x32 numbers: deny
        *([None] * len(denied)),
        None,  # clone
        *([None] * len(signalling)),
    ]
    n = len(head)
    clone_check, pid_check, allow, eperm = n, n + 2, n + 4, n + 5

    def jump(at: int, target: int) -> int:
        return target - at - 1

    head[1] = (_JEQ, 0, jump(1, allow), compiled.arch)
    head[3] = (_JGE, jump(3, eperm), 0, _X32_SYSCALL_BIT)
    at = 4
    for number in denied:
        head[at] = (_JEQ, jump(at, eperm), 0, number)
        at += 1
    head[at] = (_JEQ, jump(at, clone_check), 0, compiled.clone)
    for index, number in enumerate(signalling, start=at + 1):
        last = index == n - 1
        head[index] = (_JEQ, jump(index, pid_check), jump(index, allow) if last else 0, number)
    tail = [
        (_LD_ABS, 0, 0, _OFFSET_ARG0),  # clone: threads only (the thread counter holds them for the executor)
        (_JSET, jump(clone_check + 1, allow), jump(clone_check + 1, eperm), CLONE_THREAD),
        (_LD_ABS, 0, 0, _OFFSET_ARG0),  # signals: to this process only
        (_JEQ, jump(pid_check + 1, allow), jump(pid_check + 1, eperm), pid),
        (_RET, 0, 0, _RET_ALLOW),
        (_RET, 0, 0, _RET_EPERM),
    ]
    instructions = [*head, *tail]
    assert all(instruction is not None for instruction in instructions)
    return b"".join(_instruction(*instruction) for instruction in instructions if instruction is not None)


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
