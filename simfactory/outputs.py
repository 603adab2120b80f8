"""Where simfactory writes, and the one rule it follows there: replace or delete only what it can prove it wrote.

An output *folder* (run, compare, plan, sweep, regress report, calibration) carries a marker file,
`.simfactory-output.json`, written by simfactory with the command, the version and the list of every file and
subfolder it put there. A folder may be replaced only when it carries that marker and holds nothing else than
what the marker lists (subfolders checked the same way); anything else — hidden files, unknown files, a symlink,
a folder without a marker (including those written by simfactory versions before the marker existed), the home
folder, the working directory or a folder above it, a filesystem root — is refused with one line naming the
first foreign entry, and left exactly as it was.

A folder is built in a hidden temporary sibling and renamed into place, so a reader never sees half an output
and an interrupted run leaves the earlier output untouched. A lock per target makes two processes writing the
same --out at once fail cleanly (the second is refused) instead of mixing. Temporaries left behind by a process
killed with `kill -9` are removed by the next write into the same parent, once their marker shows that the
process that made them is gone: every temporary, a single file's included, is a hidden folder carrying that marker,
so nothing that merely looks like one (a user's file named alike) is ever removed. The lock file beside a target is
removed only when it holds simfactory's lock record.

An output *file* named by a flag (`--json`, `-o`, `--trace`, ...) replaces an existing file only when simfactory
can prove it wrote that file as it is now, or when the user passes `--force`. The proof is a stamp the file carries:
the sha256 of its own content (`stamp_text`: a `generator: simfactory VERSION sha256:HEX` line in a comment or meta
element; `stamp_json`: `generator` and `content_sha256` keys of a JSON object). A file without a stamp, or one edited
since (its content no longer hashes to its stamp), is the user's: a mention of simfactory in it proves nothing.
A folder output's files are held to the same standard by their size and modification time in the marker: a file the
user changed makes the folder the user's too.

Everything is created with ordinary permissions: folders and files follow the umask (0755 / 0644 under 022).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simfactory.version import __version__
from simfactory.errors import InputError
from simfactory.processes import alive, this_process

MARKER = ".simfactory-output.json"
GENERATOR = f"simfactory {__version__}"
GENERATOR_TAG = "generator: simfactory"  # in text outputs (YAML/Markdown comments, HTML meta); JSON: "generator"
_TEMP_INFIX = ".simfactory-"  # hidden siblings: .NAME.simfactory-tmp-PID-START-RAND / -old- / .NAME.simfactory-lock
_NAME_KEEP = 80  # of NAME in a sibling's name: keeps it under the 255-byte limit of common filesystems
_STAMP_LINES = 64  # a text output's stamp line is among its first lines
_MAX_PROOF_BYTES = 256 << 20  # a file larger than this is not read to prove it (it must be named with --force)
# a text output's stamp: the sha256 of the file without this line (stamp_text)
_STAMP = re.compile(rb"(?:# |<!-- )generator: simfactory [^\s\"'<>]+ sha256:([0-9a-f]{64})(?: -->)?")
_STAMP_STYLES = (("# ", ""), ("<!-- ", " -->"))
_EMPTY_STALE_S = 60.0  # an empty marker draft or lock file this old was left by a kill, not being written now
_LOCK_RECORD_BYTES = 4096  # a lock record is one short JSON line (_lock_record)
_MARKER_DRAFT = re.compile(re.escape(MARKER) + r"\.[0-9a-f]{8}\.tmp")  # a marker being written (_write_marker)
_RANDOM = re.compile(r"[0-9a-f]{8}")  # the random tail of a temporary's name (_sibling)  # the comment forms a stamp line may take (stamp_text's callers)


# ---------------------------------------------------------------------------------------------------- markers


def _marker_doc(command: str, files: list[str], folders: list[str], state: str,
                stamps: dict[str, list[int]] | None = None) -> dict[str, Any]:
    pid, ticks = this_process()
    return {"generator": GENERATOR, "command": command, "state": state, "pid": pid, "pid_start_ticks": ticks,
            "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": sorted(files),
            "folders": sorted(folders), "stamps": dict(sorted((stamps or {}).items()))}


def _file_stamp(path: Path | str) -> list[int] | None:
    """A written file's [size, modification time in ns], which the marker keeps so an edit shows."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _content_state(path: Path | str) -> list[Any] | None:
    """A streamed file's [size, sha256 of its bytes]: what the marker holds it to while the file grows (its
    modification time says nothing then)."""
    digest, size = hashlib.sha256(), 0
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as f:  # in chunks, however large it grew (a sweep of 100,000 points: ~330 MB)
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return [size, digest.hexdigest()]


def _is_content_state(x: Any) -> bool:
    return (isinstance(x, list) and len(x) == 2 and type(x[0]) is int and isinstance(x[1], str)
            and re.fullmatch(r"[0-9a-f]{64}", x[1]) is not None)


def _plain_name(name: str) -> bool:
    """A marker may list only entries directly inside its folder: no path, no parent, nothing absolute."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def _write_marker(folder: Path, doc: dict[str, Any]) -> None:
    tmp = folder / f"{MARKER}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, folder / MARKER)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or an interrupt: no draft left to block the folder
        raise


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, or None when it has none simfactory could have written."""
    path = folder / MARKER
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > 1 << 20:
            return None
        doc = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or not str(doc.get("generator", "")).startswith("simfactory"):
        return None
    if not all(isinstance(doc.get(k), list) and all(isinstance(x, str) and _plain_name(x) for x in doc[k])
               for k in ("files", "folders")):
        return None  # a marker naming anything outside its folder is none simfactory wrote
    streamed = doc.get("streamed", {})
    if isinstance(streamed, list):  # before streamed files were proven by their content: none is provable
        doc["streamed"] = streamed = {}
    if not isinstance(streamed, dict) or not all(
            _plain_name(k) and isinstance(v, list) and 1 <= len(v) <= 2 and all(_is_content_state(x) for x in v)
            for k, v in streamed.items()):
        return None
    for key in ("stamps", "pending"):
        stamps = doc.get(key, {})
        if not isinstance(stamps, dict) or not all(
                isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v) for v in stamps.values()):
            return None
    return doc


def foreign_entry(folder: Path) -> str | None:
    """The first entry of `folder` (sorted, its subfolders included) that simfactory cannot prove it wrote, or
    None when every entry is listed in the folder's marker as what it is (a plain file, or a subfolder that is
    itself an output). An empty folder holds nothing foreign."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        return f"{folder.name} (unreadable: {exc.strerror})"
    if not names:
        return None
    doc = read_marker(folder)
    if doc is None:
        return names[0] if MARKER not in names else MARKER
    files, folders = set(doc["files"]), set(doc["folders"])
    for name in names:
        if name == MARKER:
            continue
        p = folder / name
        try:
            mode = p.lstat().st_mode
        except OSError:
            return name
        if name in files and stat.S_ISREG(mode):
            stamps = doc.get("stamps")
            if stamps is None:
                return f"{name} (written before simfactory kept its files' stamps: it cannot tell whether it changed)"
            if name in doc["streamed"]:
                if _content_state(p) not in doc["streamed"][name]:
                    return f"{name} (changed since simfactory last appended to it)"
            elif _file_stamp(p) not in (stamps.get(name), doc.get("pending", {}).get(name)):
                return f"{name} (changed since simfactory wrote it)"
            continue
        if name in folders and stat.S_ISDIR(mode):
            inner = foreign_entry(p)
            if inner is None and read_marker(p) is not None:
                continue
            return f"{name}/{inner or MARKER}"
        owner = _owner(name)
        if (owner is not None and alive(*owner)) or (name.endswith(f"{_TEMP_INFIX}lock") and _live_lock(p)):
            return f"{name} ({_LIVE_WRITER})"
        return name
    return None


# ---------------------------------------------------------------------------------------------------- stamps


def stamp_text(text: str, prefix: str = "# ", suffix: str = "", at_line: int = 0) -> str:
    """`text` with a stamp line inserted before its line `at_line`: `{prefix}generator: simfactory VERSION
    sha256:HEX{suffix}`, HEX the sha256 of the text without that line (UTF-8), so a later run can prove it wrote the
    file as it is (prefix/suffix: the format's comment, e.g. "<!-- " and " -->")."""
    if (prefix, suffix) not in _STAMP_STYLES:
        raise ValueError(f"a stamp line is a '# ' or '<!-- ' comment, not {prefix!r}...{suffix!r}")
    lines = text.splitlines(keepends=True)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    lines.insert(at_line, f"{prefix}generator: {GENERATOR} sha256:{digest}{suffix}\n")
    return "".join(lines)


_UNSET_DIGEST = "0" * 64  # the digest's place while the file's bytes are hashed (stamp_json)
_JSON_DIGEST = re.compile(rb'\A\{\s*"generator"\s*:\s*"simfactory [^"]*"\s*,\s*"content_sha256"\s*:\s*"([0-9a-f]{64})"')


def stamp_json(doc: dict[str, Any], indent: int | None = 1, default: Callable[[Any], Any] | None = None) -> str:
    """A JSON output (one object): `generator` first, then `content_sha256`, the sha256 of the file's exact bytes with
    that digest written as 64 zeros, so a later run can prove it wrote the file byte for byte (a reformatted file, or
    one with a key added twice, is no longer the one it wrote). Strict JSON: a non-finite number is an error here
    (json_finite first)."""
    body = json.loads(json.dumps({k: v for k, v in doc.items() if k not in ("generator", "content_sha256")},
                                 allow_nan=False, default=default))
    text = json.dumps({"generator": GENERATOR, "content_sha256": _UNSET_DIGEST, **body}, indent=indent,
                      allow_nan=False) + "\n"
    m = _JSON_DIGEST.match(text.encode("utf-8"))
    assert m is not None, "stamp_json's own output carries its digest where _proven_json looks"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text[:m.start(1)] + digest + text[m.end(1):]  # ensure_ascii: byte offsets are character offsets


def _proven_json(data: bytes) -> bool:
    m = _JSON_DIGEST.match(data)
    if m is None:
        return False
    unset = data[:m.start(1)] + _UNSET_DIGEST.encode() + data[m.end(1):]
    return hashlib.sha256(unset).hexdigest() == m.group(1).decode()


def _proven_text(data: bytes) -> bool:
    start = 0
    for _ in range(_STAMP_LINES):
        end = data.find(b"\n", start)
        if end < 0:
            return False
        m = _STAMP.fullmatch(data, start, end)  # the whole line, nothing added to it (that would escape the hash)
        if m is not None:
            return hashlib.sha256(data[:start] + data[end + 1:]).hexdigest() == m.group(1).decode()
        start = end + 1
    return False


def written_by_simfactory(path: Path) -> bool:
    """Whether an existing file is, byte for byte, what simfactory wrote: it carries a stamp (stamp_text or
    stamp_json) that its content still matches. A tag or a mention of simfactory alone proves nothing."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_PROOF_BYTES:
            return False
        with open(path, "rb") as f:
            data = f.read(_MAX_PROOF_BYTES + 1)
    except OSError:
        return False
    return _proven_text(data) or _proven_json(data)


# ---------------------------------------------------------------------------------------------------- checks


def _protected(resolved: Path) -> str | None:
    """Why a folder may never be replaced whatever it holds, or None."""
    if resolved.parent == resolved:
        return "is a filesystem root"
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        return "holds the working directory"
    home = Path.home().resolve()
    if resolved == home or resolved in home.parents:
        return "is the home folder or holds it"
    return None


_LIVE_WRITER = "a temporary or lock of a simfactory process writing here now"


def _live_writer(foreign: str, name: str, flag: str) -> None:
    if foreign.endswith(f"({_LIVE_WRITER})"):
        raise InputError(name, flag, "another simfactory process is writing this output now; wait for it to finish "
                                     "or name another folder")


def _holds(foreign: str) -> str:
    """'holds X, which simfactory did not write', or, for a file it wrote that changed since (foreign_entry's
    "NAME (why)"), 'holds NAME (why)'."""
    name, sep, why = foreign.partition(" (")
    if sep and why.endswith(")") and not why.startswith("unreadable"):
        return f"holds {name} ({why}"
    return f"holds {foreign!r}, which simfactory did not write"


def _not_in_an_output_folder(path: Path, flag: str) -> None:
    """A single file is never written into a finished output folder (one carrying a complete marker, at any depth):
    it would replace one of that folder's files without its lock, or make the folder foreign to the command that
    wrote it. Inside a temporary of ours (a folder being built) it is part of that build."""
    folder = Path(os.path.abspath(path)).parent
    for anc in (folder, *folder.parents):
        if reserved_name(anc.name):
            return
    for anc in (folder, *folder.parents):
        doc = read_marker(anc)
        if doc is not None and doc.get("state") == "complete":
            raise InputError(str(path), flag, f"is inside {anc}, the output of `simfactory {doc.get('command')}`, "
                                              "which keeps only the files its marker lists: name a path outside it")


def _not_reserved(path: Path, flag: str) -> None:
    if reserved_name(path.name):
        raise InputError(str(path), flag, f"is named like simfactory's own temporaries and locks (a hidden name with "
                                          f"'{_TEMP_INFIX}' in it), which a later run may clean up: name it otherwise")


def check_output_dir(path: Path, flag: str = "--out", command: str | None = None) -> Path:
    """Refuse (InputError) an output folder simfactory may not replace; returns the path unchanged. Absent, empty,
    or an earlier simfactory output holding only what its marker lists, unchanged: accepted, but only as the output
    of the same `command` (a run is not replaced by a compare, nor a `calibrate serve` measurement, which cannot be
    made again, by a validation)."""
    path = Path(path)
    name = str(path)
    _not_reserved(path, flag)
    try:
        lst = path.lstat()
    except FileNotFoundError:
        lst = None
    except OSError as exc:
        raise InputError(name, flag, f"cannot be used as an output folder ({exc.strerror})") from None
    if lst is not None and stat.S_ISLNK(lst.st_mode):
        raise InputError(name, flag, f"is a symbolic link (to {os.readlink(path)}); simfactory writes only into real "
                                     "folders it made: name a new folder")
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links above it
        raise InputError(name, flag, f"cannot be used as an output folder ({exc})") from None
    why = _protected(resolved)
    if why:
        raise InputError(name, flag, f"{why}; simfactory replaces only folders it wrote: name a new folder")
    _not_in_an_output_folder(path, flag)  # a folder inside another output would make that one foreign
    if lst is None:
        return path
    if not stat.S_ISDIR(lst.st_mode):
        raise InputError(name, flag, "is a file, not a folder; name a new folder for the outputs")
    foreign = foreign_entry(path)
    if foreign is not None:
        _live_writer(foreign, name, flag)
        if read_marker(path) is None:
            raise InputError(name, flag, f"holds {foreign!r} and no {MARKER} marker, so simfactory did not write it "
                                         "(outputs of simfactory before 0.2 carry none either): it is left as it is; "
                                         "name a new folder, or delete this one yourself")
        raise InputError(name, flag, f"{_holds(foreign)}: the folder is left as it is; "
                                     "name a new folder, or move that entry out")
    doc = read_marker(path)
    if command is not None and doc is not None and doc.get("command", command) != command:
        raise InputError(name, flag, f"holds the output of `simfactory {doc['command']}`, which `simfactory {command}` "
                                     "does not replace: name a new folder, or delete this one yourself")
    return path


def check_output_file(path: Path, flag: str, force: bool = False, force_flag: bool = True) -> Path:
    """Refuse (InputError) an output file path simfactory may not write: a folder, a special file or a symlink
    always; an existing file it cannot prove it wrote as it is (written_by_simfactory) unless `force`.
    force_flag: whether the command has a --force to offer in the message."""
    path = Path(path)
    name = str(path)
    _not_reserved(path, flag)
    try:
        lst = path.lstat()
    except FileNotFoundError:
        _not_in_an_output_folder(path, flag)
        return path
    except OSError as exc:
        raise InputError(name, flag, f"cannot be used as an output file ({exc.strerror})") from None
    if stat.S_ISDIR(lst.st_mode):
        raise InputError(name, flag, "is a directory; name a file")
    if stat.S_ISLNK(lst.st_mode):
        raise InputError(name, flag, f"is a symbolic link (to {os.readlink(path)}); name the file itself or a new one")
    if not stat.S_ISREG(lst.st_mode):
        raise InputError(name, flag, "is not a regular file (a device, pipe or socket); name a new file")
    _not_in_an_output_folder(path, flag)
    if not force and not written_by_simfactory(path):
        how = "name a new file, or pass --force to replace it" if force_flag else "name a new file"
        raise InputError(name, flag, f"exists and was not written by simfactory, as far as it can prove (no stamp "
                                     f"of simfactory's, or changed since it was written): {how}")
    return path


# ---------------------------------------------------------------------------------------------------- writing


def _sibling(target: Path, kind: str) -> Path:
    pid, ticks = this_process()
    return target.parent / f".{_short_name(target.name)}{_TEMP_INFIX}{kind}-{pid}-{ticks or 0}-{secrets.token_hex(4)}"


def _short_name(name: str) -> str:
    """`name` as a temporary's or lock's name holds it: whole up to _NAME_KEEP characters, else cut and ended by a
    hash of the whole, so two long names that begin alike do not share a lock."""
    if len(name) <= _NAME_KEEP:
        return name
    return f"{name[:_NAME_KEEP - 13]}~{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}"


def _owner(entry_name: str) -> tuple[int, int | None] | None:
    """(pid, start ticks) encoded in a temporary sibling's name, or None if it is not one of ours."""
    if _TEMP_INFIX not in entry_name:
        return None
    tail = entry_name.rsplit(_TEMP_INFIX, 1)[1].split("-")
    if len(tail) != 4 or tail[0] not in ("tmp", "old") or not _RANDOM.fullmatch(tail[3]):
        return None
    try:
        return int(tail[1]), int(tail[2]) or None
    except ValueError:
        return None


def reserved_name(name: str) -> bool:
    """Whether `name` is one simfactory keeps for its own temporaries and locks (hidden, with `.simfactory-` in
    it): no output may take it, so a folder the user named cannot be taken for a killed run's leftover."""
    return name.startswith(".") and (_TEMP_INFIX in name or name.startswith(f"{MARKER}."))


def _marker_owner(folder: Path) -> tuple[int, int | None] | None:
    doc = read_marker(folder)
    if doc is None or not isinstance(doc.get("pid"), int):
        return None
    ticks = doc.get("pid_start_ticks")
    return doc["pid"], ticks if isinstance(ticks, int) else None


def clean_stale_temporaries(parent: Path, inside: bool = False) -> list[Path]:
    """Remove what a killed simfactory process left in `parent`: its hidden temporary folders (named by us, carrying
    our marker, their making process gone), its marker drafts and lock files (holding our record, or nothing), and
    a temporary folder killed before its marker was written (empty). Returns what was removed. An earlier output that
    a swap set aside (`-old-`) goes back to its name when the swap was cut before the new one took it (the promise: an
    interrupted run leaves the earlier output as it was); it is removed only once the output now at its name is the
    one that swap wrote, and then only what its marker lists. A folder whose marker says it was finished loses only
    what its marker lists. A file, or a folder without our marker, is never touched, whatever its name.
    inside: also clean the output subfolders `parent`'s marker lists (a report added to a compare's run)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    set_aside_first = sorted(entries, key=lambda e: f"{_TEMP_INFIX}old-" not in e.name)  # before their swap's tmp
    for e in set_aside_first:
        if e.name.startswith(".") and _stale_leftover(Path(parent), e):
            removed.append(Path(e.path))
    doc = read_marker(Path(parent)) if inside else None
    for name in doc["folders"] if doc else []:
        sub = Path(parent) / name
        if sub.is_dir() and not sub.is_symlink():
            removed += clean_stale_temporaries(sub, inside=True)
    return removed


def _swap_cut(parent: Path, old_name: str, owner: tuple[int, int | None]) -> bool:
    """Whether the swap that set `old_name` aside was cut before its new output took the name: that output's
    temporary, made by the same process, is still there."""
    tmp_prefix = f"{old_name.rsplit(_TEMP_INFIX, 1)[0]}{_TEMP_INFIX}tmp-{owner[0]}-{owner[1] or 0}-"
    try:
        return any(n.startswith(tmp_prefix) for n in os.listdir(parent))
    except OSError:
        return False


def restore_set_aside(target: Path) -> bool:
    """Put back under its name an earlier output that a swap cut by a kill set aside (`-old-`, its process gone),
    so a command reading `target` finds it; whether `target` exists now. Nothing else is touched."""
    target = Path(target)
    if os.path.lexists(target):
        return True
    prefix = f".{_short_name(target.name)}{_TEMP_INFIX}old-"  # a long name's is cut: the caller knows it whole
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except OSError:
        return False
    for e in entries:
        _stale_leftover(target.parent, e, target.name)  # with the name free, a dead process's set-aside goes back
    return os.path.lexists(target)


def _stale_leftover(parent: Path, e: os.DirEntry[str], whole_name: str | None = None) -> bool:
    """Remove `e` if it is a leftover of a killed simfactory process (see clean_stale_temporaries); whether it was."""
    if e.name.startswith(f"{MARKER}.") or e.name.endswith(f"{_TEMP_INFIX}lock"):
        return _stale_file(Path(e.path), marker=e.name.startswith(f"{MARKER}."))
    owner = _owner(e.name)
    if owner is None or alive(*owner) or not e.is_dir(follow_symlinks=False):
        return False
    folder = Path(e.path)
    doc = read_marker(folder)
    if doc is None:  # killed before its marker was in place: empty, or holding only that marker's draft
        try:
            drafts = [p for p in folder.iterdir() if _MARKER_DRAFT.fullmatch(p.name) and p.is_file()
                      and not p.is_symlink()]
            if len(drafts) == len(os.listdir(folder)):
                for p in drafts:
                    p.unlink()
            folder.rmdir()  # anything else in it stays, and the folder with it
            return True
        except OSError:
            return False
    if e.name.rsplit(_TEMP_INFIX, 1)[1].startswith("old-"):
        name = whole_name or e.name[1:].rsplit(_TEMP_INFIX, 1)[0]  # the earlier output a swap set aside
        target = parent / name
        if not os.path.lexists(target):  # the swap was cut between its renames: the earlier output goes back
            if not _swap_cut(parent, e.name, owner):
                return False  # the new output took the name and is gone since (deleted): the earlier one stays aside
            if whole_name is not None or len(name) < _NAME_KEEP:  # a cut name cannot say where it goes back
                try:
                    os.rename(folder, target)
                except OSError:
                    pass  # something took the name meanwhile: the earlier output stays aside, as it is
            return False
        if _marker_owner(target) != owner:
            return False  # not the output that swap wrote (the user made the name again): the earlier one is kept
        _remove_owned(folder)
        return not folder.exists()
    if doc.get("state") == "complete":
        _remove_owned(folder)  # finished but never renamed into place: only what it lists
        return not folder.exists()
    shutil.rmtree(folder, ignore_errors=True)  # partial: a build of ours cut off
    return True


def _stale_file(path: Path, marker: bool) -> bool:
    """Remove a marker draft (`.simfactory-output.json.HEX.tmp`) or a lock file left by a killed process: only when
    it holds our record (a marker, or a lock record) whose process is gone, or nothing at all (killed between
    creating it and writing it, a minute ago or more); a lock someone holds stays."""
    if marker and not _MARKER_DRAFT.fullmatch(path.name):
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        if time.time() - st.st_mtime < _EMPTY_STALE_S:
            return False  # empty, but maybe being written this instant by a live process
    else:
        owner = _record_owner(path, lock=not marker, max_bytes=1 << 20)
        if owner is None or alive(*owner):
            return False
    if not marker and not _lock_is_free(path):
        return False
    path.unlink(missing_ok=True)
    return True


def _record_owner(path: Path, lock: bool, max_bytes: int = _LOCK_RECORD_BYTES) -> tuple[int, int | None] | None:
    """The process (pid, start ticks) that a record of ours at `path` (at most max_bytes) names: a lock record
    (lock), else a marker; None for any other file."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not (isinstance(doc, dict) and str(doc.get("generator", "")).startswith("simfactory")
            and isinstance(doc.get("pid"), int) and (doc.get("lock") is True or not lock)):
        return None
    ticks = doc.get("pid_start_ticks")
    return doc["pid"], ticks if isinstance(ticks, int) else None


def _live_lock(path: Path) -> bool:
    """Whether `path` is simfactory's lock record of a live process (one writing beside it now)."""
    owner = _record_owner(path, lock=True)
    return owner is not None and alive(*owner)


def _lock_is_free(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _remove_owned(folder: Path) -> None:
    """Delete what the marker lists (recursively), then the marker and the folder if nothing else is left."""
    doc = read_marker(folder)
    if doc is None:
        return
    for name in doc["files"]:
        p = folder / name
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
    for name in doc["folders"]:
        p = folder / name
        if p.is_dir() and not p.is_symlink():
            _remove_owned(p)
    (folder / MARKER).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # something was put there meanwhile: it stays


_parent_only_fds: set[int] = set()  # this process's output locks (_target_lock) and growing files (stream_file)


def _let_go_of_locks_in_child() -> None:
    """In a forked child (a sweep's worker): close its copies of the parent's lock and growing-file descriptors. A
    flock belongs to the open file, which a fork shares: a worker outliving a parent killed with kill -9 held the
    output locked (and the rows file open)."""
    for fd in list(_parent_only_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _parent_only_fds.clear()


os.register_at_fork(after_in_child=_let_go_of_locks_in_child)


def _lock_record() -> bytes:
    pid, ticks = this_process()
    return json.dumps({"generator": GENERATOR, "lock": True, "pid": pid, "pid_start_ticks": ticks}).encode()


def _is_lock_record(path: Path) -> bool:
    """Whether the file at `path` is a lock simfactory made (its record, as _lock_record writes it)."""
    return _record_owner(path, lock=True) is not None


def _open_lock(lock: Path, target: Path, flag: str) -> int:
    """The lock file's descriptor: created (exclusively, holding our record), or an existing lock simfactory made;
    anything else at that name is the user's and refuses the write."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        pass
    except OSError as exc:
        raise InputError(str(target), flag, f"cannot lock the output ({exc.strerror})") from None
    else:
        os.write(fd, _lock_record())
        return fd
    if not _is_lock_record(lock):
        raise InputError(str(target), flag, f"{lock.name} beside it is not simfactory's lock file (or another simfactory "
                                            "is creating it this instant): it is left as it is; move it away if it is "
                                            "yours, or try again")
    try:
        return os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    except OSError as exc:
        raise InputError(str(target), flag, f"cannot lock the output ({exc.strerror})") from None


@contextmanager
def _target_lock(target: Path, flag: str) -> Iterator[None]:
    """Exclusive per-target lock (flock on a hidden lock file beside the target, holding simfactory's lock record,
    removed afterwards). A file at the lock's name that is not such a record is never opened for writing, nor
    removed."""
    lock = target.parent / f".{_short_name(target.name)}{_TEMP_INFIX}lock"
    while True:
        fd = _open_lock(lock, target, flag)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(str(target), flag, "another simfactory process is writing this output now; wait for it "
                                                "to finish or name another folder") from None
        try:  # the file we locked must still be the one at the path (a finishing writer may have just removed it)
            same = os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _lock_record(), 0)  # ours now: a killed holder's record is replaced
            break
        os.close(fd)
    _parent_only_fds.add(fd)
    try:
        yield
    finally:
        _parent_only_fds.discard(fd)
        try:
            if os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino:
                os.unlink(lock)  # ours still (someone may have removed it, or put a file there since)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends (each then takes effect as it would have): for the few renames of
    a swap. Python runs signal handlers in the main thread only, so elsewhere the block runs as it is."""
    held: list[int] = []
    try:
        before = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                  for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):
            if sig == signal.SIGINT and before[sig] is signal.default_int_handler:
                raise KeyboardInterrupt
            os.kill(os.getpid(), sig)  # as it would have been handled


@dataclass
class OutputFolder:
    """A folder simfactory is about to write, checked and locked (see `output_folder`)."""

    path: Path
    flag: str
    command: str
    swapped: bool = False  # whether replace() has put the new output in place (what an interruption after it left)

    def replace(self, build: Callable[[Path], Any], streamed: tuple[str, ...] = ()) -> list[Path]:
        """Build the new contents in a hidden temporary sibling (`build(tmp)` writes files and output subfolders
        into it), then swap it into place atomically; the earlier output, if any, is removed file by file.
        streamed: files the command goes on appending to after this (a sweep's rows; see `stream_file`): held to
        their bytes, not a stamp."""
        with draft_folder(self.path, self.flag, clean=False) as tmp:  # output_folder cleaned beside it
            try:
                build(tmp)
                self._finish_marker(tmp, self.command, streamed)
                check_output_dir(self.path, self.flag, self.command)  # again: the user may have added a file since
                self._swap_in(tmp)
            except OSError as exc:
                raise InputError(str(self.path), self.flag, f"could not be written ({exc.strerror or exc})") from None
        return sorted(self.path.iterdir())

    def _swap_in(self, tmp: Path) -> None:
        """Rename the built folder into place; the earlier output, if any, set aside and removed file by file."""
        with _uninterrupted():  # Ctrl-C here waits until the swap is done (it left half a swap and wrong words)
            if self.path.exists() and any(os.scandir(self.path)):
                old = _sibling(self.path, "old")
                os.rename(self.path, old)
                try:
                    os.rename(tmp, self.path)
                except BaseException:
                    os.rename(old, self.path)
                    raise
                self.swapped = True
                _remove_owned(old)
            else:
                os.rename(tmp, self.path)  # over an empty folder too (POSIX rename replaces one)
                self.swapped = True

    def add(self, build: Callable[[Path], Any]) -> list[Path]:
        """Write more files into this simfactory-written folder: `build(tmp)` writes them into a hidden temporary
        folder inside it, then each is renamed into place and listed in the marker. For outputs that grow, such
        as a sweep's results or a report beside a run. Only files simfactory wrote there are replaced. Each file is
        listed (its stamp as `pending`) before it moves in, so an interruption at any point leaves a folder whose
        every file the marker accounts for."""
        clean_stale_temporaries(self.path)  # what a killed earlier add left
        check_owned_dir(self.path, self.flag)
        written = []
        with draft_folder(self.path / "add", self.flag, clean=False) as tmp:
            build(tmp)
            for e in sorted(os.scandir(tmp), key=lambda e: e.name):
                if e.name == MARKER or not e.is_file(follow_symlinks=False):
                    continue
                final = self.path / e.name
                if final.is_symlink() or (final.exists() and not final.is_file()):
                    raise InputError(str(final), self.flag, "is not a file simfactory wrote; move it out first")
                if os.path.lexists(final) and not self._unchanged(e.name):  # again: edited while this was built
                    raise InputError(str(final), self.flag, "changed since simfactory wrote it (or is not listed in "
                                                            "its folder's marker): left as it is, and nothing more "
                                                            "is written; move it out, or write to a new folder")
                self._list(e.name, _file_stamp(e.path), pending=True)  # a rename keeps size and time
                os.replace(e.path, final)
                self._list(e.name, _file_stamp(final), pending=False)
                written.append(final)
        return written

    def _unchanged(self, name: str, content: list[Any] | None = None) -> bool:
        """Whether the file `name` of this folder is as its marker holds it (its stamp, or a pending one; a growing
        file's bytes: `content`, its [size, sha256] when the caller has just hashed it)."""
        doc = read_marker(self.path)
        if doc is None or name not in doc["files"]:
            return False
        if name in doc["streamed"]:
            return (content or _content_state(self.path / name)) in doc["streamed"][name]
        return _file_stamp(self.path / name) in (doc.get("stamps", {}).get(name), doc.get("pending", {}).get(name))

    @contextmanager
    def stream_file(self, name: str) -> Iterator[Callable[[bytes], None]]:
        """Append to a file of this folder that the command grows as it goes (a sweep's rows), each append provable:
        the marker holds the file to its bytes (size and sha256, `streamed`), the state before an append and the
        one after it while it is written, so an edit, a replacement or a truncation by anyone shows whether this
        process is alive or was killed (a kill within an append leaves one of the two). The file is first copied and
        the copy renamed over it, so appends never reach a hard link of the user's; a file moved, replaced or
        linked while it grows stops the command, left as it is. Once the block ends normally the file is stamped
        as finished (an edit from then on shows as one to any other file)."""
        final = self.path / name
        with draft_folder(self.path / "add", self.flag, clean=False) as tmp:  # output_folder cleaned inside
            digest = _copy_hashing(final, tmp / name)
            state = [os.stat(tmp / name).st_size, digest.hexdigest()]
            # what was copied is what it wrote, and still what is there
            if not self._unchanged(name, state) or _content_state(final) != state:
                raise InputError(str(final), self.flag, "is not a file simfactory can prove it wrote as it is now "
                                                        "(changed since): left as it is")
            self._rewrite_marker(lambda doc: _set_streamed(doc, name, [state]))
            os.replace(tmp / name, final)
        fd = os.open(final, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        _parent_only_fds.add(fd)  # a forked worker does not keep it open
        try:
            ino = os.fstat(fd).st_ino
            left = _size_and_time(fd)  # as this process left the file: anyone else's write changes it

            def append(line: bytes) -> None:
                nonlocal digest, state, left
                _same_file(fd, final, ino, self.flag)
                if _size_and_time(fd) != left:
                    raise InputError(str(final), self.flag, "was changed by someone else while simfactory appended to "
                                                            "it: the command stops, and leaves it as it is")
                after = digest.copy()
                after.update(line)
                new_state = [state[0] + len(line), after.hexdigest()]
                self._rewrite_marker(lambda doc: _set_streamed(doc, name, [state, new_state]))
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
                left = _size_and_time(fd)
                self._rewrite_marker(lambda doc: _set_streamed(doc, name, [new_state]))
                digest, state = after, new_state

            yield append
            _same_file(fd, final, ino, self.flag)
            if _size_and_time(fd) != left or _content_state(final) != state:
                raise InputError(str(final), self.flag, "was changed by someone else while simfactory appended to it: "
                                                        "left as it is")
            self._rewrite_marker(lambda doc: _set_stamp(doc, name, _file_stamp(final)))
        finally:
            _parent_only_fds.discard(fd)
            os.close(fd)

    def _rewrite_marker(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Rewrite this folder's marker (this process's now), `change` applied to a copy of what it lists."""
        doc = read_marker(self.path) or _marker_doc(self.command, [], [], "complete")
        new = _marker_doc(doc.get("command", self.command), doc["files"], doc["folders"], "complete",
                          doc.get("stamps", {}))
        new["pending"], new["streamed"] = dict(doc.get("pending", {})), dict(doc.get("streamed", {}))
        change(new)
        new["files"] = sorted(set(new["files"]))
        _write_marker(self.path, new)

    def _list(self, name: str, stamp: list[int] | None, pending: bool) -> None:
        """List `name` in this folder's marker: its stamp as pending (about to move in; the file it replaces still
        passes) or as its own (moved in)."""
        def change(doc: dict[str, Any]) -> None:
            doc["files"].append(name)
            if pending and stamp is not None:
                doc["pending"][name] = stamp
            else:
                _set_stamp(doc, name, stamp)

        self._rewrite_marker(change)

    @staticmethod
    def _finish_marker(folder: Path, command: str, streamed: tuple[str, ...] = ()) -> None:
        files, folders = [], []
        for e in os.scandir(folder):
            if e.name == MARKER or e.name.startswith(f"{MARKER}."):
                continue
            if e.is_dir(follow_symlinks=False):
                folders.append(e.name)
            elif e.is_file(follow_symlinks=False):
                files.append(e.name)
        stamps = {n: st for n in files if n not in streamed and (st := _file_stamp(folder / n)) is not None}
        doc = _marker_doc(command, files, folders, "complete", stamps)
        doc["streamed"] = {n: [state] for n in streamed if n in files and (state := _content_state(folder / n))}
        _write_marker(folder, doc)


def _set_streamed(doc: dict[str, Any], name: str, states: list[list[Any]]) -> None:
    doc["stamps"].pop(name, None)
    doc["pending"].pop(name, None)
    doc["streamed"][name] = states


def _set_stamp(doc: dict[str, Any], name: str, stamp: list[int] | None) -> None:
    doc["pending"].pop(name, None)
    doc["streamed"].pop(name, None)
    if stamp is not None:
        doc["stamps"][name] = stamp


def _copy_hashing(src: Path, dst: Path) -> Any:
    """Copy a regular file (never through a link), in chunks; the sha256 object of what was copied."""
    digest = hashlib.sha256()
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f, open(dst, "wb") as out:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InputError(str(src), "--out", "is not a regular file: left as it is")
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest


def _size_and_time(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_size, st.st_mtime_ns


def _same_file(fd: int, path: Path, ino: int, flag: str) -> None:
    """The file at `path` is still the one open as `fd`, and has no other name (a hard link would see the appends)."""
    try:
        same = os.stat(path, follow_symlinks=False).st_ino == ino and os.fstat(fd).st_nlink == 1
    except FileNotFoundError:
        same = False
    if not same:
        raise InputError(str(path), flag, "was moved, replaced or linked to another name while simfactory appended to "
                                          "it: the command stops, and leaves it as it is")


def build_subfolder(parent: Path, name: str, build: Callable[[Path], Any], command: str) -> Path:
    """Inside a folder being built (see `OutputFolder.replace`), make an output subfolder `name` with its own
    marker; the parent's marker then lists it as a folder."""
    sub = parent / name
    os.mkdir(sub)
    _write_marker(sub, _marker_doc(command, [], [], "partial"))
    build(sub)
    OutputFolder._finish_marker(sub, command)
    return sub


def check_owned_dir(path: Path, flag: str) -> Path:
    """Refuse (InputError) a folder to add files to unless simfactory wrote it: a real folder carrying the
    marker and nothing the marker does not list."""
    path = Path(path)
    if path.is_symlink():
        raise InputError(str(path), flag, f"is a symbolic link (to {os.readlink(path)}); name the folder itself")
    if not path.is_dir():
        raise InputError(str(path), flag, "is not a folder simfactory wrote (not found, or a file)")
    if read_marker(path) is None:
        raise InputError(str(path), flag, f"has no {MARKER} marker, so simfactory did not write it (or an earlier "
                                          "version did): nothing is written there; run the command that makes it "
                                          "again into a new folder")
    foreign = foreign_entry(path)
    if foreign is not None:
        _live_writer(foreign, str(path), flag)
        raise InputError(str(path), flag, f"{_holds(foreign)}: nothing is written "
                                          "there; move that entry out or use a new folder")
    return path


@contextmanager
def output_folder(path: Path, command: str, flag: str = "--out", *, existing: bool = False) -> Iterator[OutputFolder]:
    """Check that `path` may be written, clean stale temporaries beside it, and hold the target's lock until the
    block ends: do the work inside, then `.replace(build)` or `.add(write)`. `existing`: the folder must already
    be a simfactory output (files are added to it; see `check_owned_dir`); otherwise it is replaced whole and
    must pass `check_output_dir`."""
    path = Path(path)
    restore_set_aside(path)  # an earlier output a killed swap set aside is the one this write replaces
    if path.is_dir() and not path.is_symlink():
        clean_stale_temporaries(path, inside=True)  # a killed add's folder in it is ours (marker, dead owner)
    if existing:
        check_owned_dir(path, flag)
    else:
        check_output_dir(path, flag, command)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(path), flag, f"its parent folder cannot be created ({exc.strerror})") from None
    clean_stale_temporaries(path.parent)
    with _target_lock(path, flag):
        yield OutputFolder(path, flag, command)


@contextmanager
def draft_folder(target: Path, flag: str, clean: bool = True) -> Iterator[Path]:
    """A hidden temporary folder of ours beside `target` (carrying our marker, so a killed run's leftover is
    provably ours and the next write cleans it), for drafts checked before they are renamed into place (or itself
    renamed into place: OutputFolder.replace); removed at the end of the block, whatever happens inside it.
    clean: first clean stale temporaries beside it (False: the caller just did)."""
    target = Path(target)
    if clean:
        clean_stale_temporaries(target.parent)
    folder = _sibling(target, "tmp")
    try:
        os.mkdir(folder)
        _write_marker(folder, _marker_doc("draft", [target.name[:_NAME_KEEP]], [], "partial"))
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError):
            raise InputError(str(target), flag, f"could not be written ({exc.strerror or exc})") from None
        raise
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_output_file(path: Path, write: Callable[[Path], Any], flag: str, force: bool = False,
                      force_flag: bool = True) -> Path:
    """Write one output file atomically after `check_output_file`: `write(tmp_path)` writes the content into a
    hidden temporary folder beside it (carrying our marker, so a killed run's leftover is provably ours), then it is
    renamed over the target. Permissions follow the umask."""
    path = Path(path)
    check_output_file(path, flag, force, force_flag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(path), flag, f"its folder cannot be created ({exc.strerror})") from None
    with draft_folder(path, flag) as folder:
        tmp = folder / path.name[:_NAME_KEEP]
        try:
            write(tmp)
            check_output_file(path, flag, force, force_flag)  # again: the user may have put a file there meanwhile
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(str(path), flag, f"could not be written ({exc.strerror or exc})") from None
    return path


def write_text_output(path: Path, text: str, flag: str, force: bool = False, force_flag: bool = True) -> Path:
    """Write `text` (UTF-8) as one output file (write_output_file); stamp it first (stamp_text / stamp_json) so a
    later run can prove it wrote it."""
    return write_output_file(path, lambda p: p.write_text(text, encoding="utf-8"), flag, force, force_flag)


def distinct_outputs(files: dict[str, Any], folders: dict[str, Any] | None = None) -> None:
    """Refuse (InputError) one command's outputs that would land on each other: two file flags naming one file (the
    second would silently replace the first), or a file flag naming a path inside a folder the command writes (an
    output folder it replaces whole) or reads its own files from (regress's baselines). None and '-' (stdout) are
    no files."""
    def key(p: Any) -> Path:
        return Path(os.path.realpath(os.path.expanduser(str(p))))

    seen: dict[Path, str] = {}
    for flag, p in files.items():
        if p is None or str(p) == "-":
            continue
        k = key(p)
        if k in seen:
            raise InputError(str(p), flag, f"is also {seen[k]}'s file: one command's outputs must be different files")
        seen[k] = flag
    for flag, d in (folders or {}).items():
        if d is None:
            continue
        top = key(d)
        for k, file_flag in seen.items():
            if top == k or top in k.parents:
                raise InputError(str(k), file_flag, f"is inside the {flag} folder {d}, which holds this command's own "
                                                    "files (what it reads or writes there): name a file outside it")


def not_an_input(path: Any, flag: str, inputs: list[Any]) -> None:
    """Refuse (InputError) an output file that is one of the command's inputs (what is made from it would replace
    it), --force or not."""
    if path is None or str(path) == "-":
        return
    for source in inputs:
        try:
            same = os.path.samefile(path, source)
        except OSError:
            same = os.path.abspath(str(path)) == os.path.abspath(str(source))
        if same:
            raise InputError(str(path), flag, f"is the input {source}: name another file for the output")


def json_finite(x: Any) -> Any:
    """JSON has no inf or NaN: a statistic that has none (a percentile with requests lost, a latency with no
    successful request) is written as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_finite(v) for v in x]
    return x


def json_with_generator(doc: dict[str, Any]) -> dict[str, Any]:
    """A JSON output document with `generator` first, so a later run can prove it wrote the file."""
    return {"generator": GENERATOR, **{k: v for k, v in doc.items() if k != "generator"}}


__all__ = [
    "MARKER", "GENERATOR", "GENERATOR_TAG", "OutputFolder", "output_folder", "check_output_dir", "check_output_file",
    "write_output_file", "write_text_output", "json_finite", "json_with_generator", "clean_stale_temporaries", "foreign_entry",
    "reserved_name", "restore_set_aside",
    "read_marker", "written_by_simfactory", "stamp_text", "stamp_json", "distinct_outputs",
    "not_an_input", "draft_folder",
]
