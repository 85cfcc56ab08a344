"""Landlock through raw syscalls: read-only access to the Python runtime and a few
system files, no writes anywhere, (ABI 4+) TCP connect only to allowed ports, and
(ABI 6+) no abstract AF_UNIX connections or signals beyond the child's own domain."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
# Every filesystem right up to ABI 5 (refer, truncate, ioctl_dev come with later ABIs).
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_SCOPE_ABI = 6

_libc = ctypes.CDLL(None, use_errno=True)


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _NetPort(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


class LandlockError(OSError):
    pass


def abi_version() -> int:
    """The kernel's Landlock ABI, or 0 when Landlock is unavailable or disabled."""
    version = int(
        _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    )
    return max(version, 0)


def _fs_rights(abi: int) -> int:
    return next(rights for version, rights in sorted(_FS_BY_ABI.items(), reverse=True) if abi >= version)


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise LandlockError(errno, f"landlock {what}: {os.strerror(errno)}")
    return result


def build_ruleset(read_only: Iterable[str], connect_ports: Iterable[int] | None) -> int:
    """Create the ruleset once (zygote start-up); children inherit the fd and only enforce it."""
    abi = abi_version()
    if abi == 0:
        raise LandlockError(0, "landlock is not available")
    handled_net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 and connect_ports is not None else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= _SCOPE_ABI else 0
    attr = _RulesetAttr(_fs_rights(abi), handled_net, scoped)
    # The kernel takes the struct as long as this ABI knows it: 8, 16 or 24 bytes.
    size = ctypes.sizeof(ctypes.c_uint64) * (3 if scoped else 2 if handled_net else 1)
    ruleset = _check(_libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0), "create")
    try:
        for path in read_only:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path this system does not have
            try:
                rights = _READ_FILE | _EXECUTE | (_READ_DIR if os.path.isdir(path) else 0)
                rule = _PathBeneath(rights, fd)
                _check(_libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0), "path rule")
            finally:
                os.close(fd)
        for port in connect_ports or () if handled_net else ():
            net = _NetPort(_NET_CONNECT_TCP, port)
            _check(_libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(net), 0), "port rule")
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


def enforce(ruleset: int) -> None:
    """Restrict this process for good (needs no_new_privs)."""
    _check(_libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0), "restrict")
