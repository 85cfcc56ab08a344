"""The syscall filter: deny process creation and exec, tracing, mounts, namespace
changes, kernel keyrings, bpf and the like. Threads stay allowed.

libseccomp compiles the common filter once, in the zygote; each child loads the
compiled program with one prctl, plus a few hand-written instructions that let
it signal nobody but itself (its pid is only known after the fork).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

import pyseccomp as sc

CLONE_THREAD = 0x00010000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM
_LD_ABS, _JEQ, _RET = 0x20, 0x15, 0x06
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16

DENIED = (
    "execve", "execveat", "fork", "vfork",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "pidfd_open", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fspick",
    "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "iopl", "ioperm", "acct", "quotactl",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
    "personality", "syslog", "mknod", "mknodat", "tkill",
)  # fmt: skip

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


@dataclass(frozen=True)
class CompiledFilter:
    program: bytes
    arch: int
    kill_numbers: tuple[int, ...]


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
    # clone for threads only; clone3 hides its flags in memory, so make libc fall back to clone.
    rules.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
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
    kill_numbers = tuple(sc.resolve_syscall(sc.system_arch(), name) for name in ("kill", "tgkill"))
    return CompiledFilter(program, int(sc.system_arch()), kill_numbers)


def _instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _signal_only_self(compiled: CompiledFilter, pid: int) -> bytes:
    kill, tgkill = compiled.kill_numbers
    return b"".join(
        (
            _instruction(_LD_ABS, 0, 0, _OFFSET_ARCH),
            _instruction(_JEQ, 1, 0, compiled.arch),
            _instruction(_RET, 0, 0, _RET_ALLOW),
            _instruction(_LD_ABS, 0, 0, _OFFSET_NR),
            _instruction(_JEQ, 2, 0, kill),
            _instruction(_JEQ, 1, 0, tgkill),
            _instruction(_RET, 0, 0, _RET_ALLOW),
            _instruction(_LD_ABS, 0, 0, _OFFSET_ARG0),
            _instruction(_JEQ, 1, 0, pid),
            _instruction(_RET, 0, 0, _RET_EPERM),
            _instruction(_RET, 0, 0, _RET_ALLOW),
        )
    )


def _load(program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"seccomp: {os.strerror(number)}")


def install(compiled: CompiledFilter, own_pid: int) -> None:
    """Load both filters into this process (after no_new_privs); they cannot be undone."""
    _load(compiled.program)
    _load(_signal_only_self(compiled, own_pid))
