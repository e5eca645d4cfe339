"""Model weights: pinned hub downloads, offline resolution, checksums, a lockfile, and a manifest per model.

Config per model (``models.<name>``):

- ``source: hub`` with ``repo_id``, ``revision`` (branch, tag or 40-char commit; default ``main``) and exactly one
  of ``filename`` (one file, e.g. the MagVit ``.ckpt``) or ``allow_patterns`` (glob patterns for a transformers
  repo: config, weights, preprocessor files). Where a folder of the selection holds ``*.safetensors``, the
  ``pytorch_model*.bin`` files (and their index) of that folder are dropped, so the weights are never fetched twice.
- ``source: local`` with ``path`` (a file, or a folder: every file below it).
- ``source: none``: no weights (pixels, oracle).

Global: ``weights.cache_dir`` (HF_HUB_CACHE, else HF_HOME/hub, win when set), ``weights.offline`` (HF_HUB_OFFLINE=1
also means offline), ``weights.lockfile``. The gated-repo token is read from the environment (``HF_TOKEN``) and
handed to huggingface_hub only; it is never logged, stored or put in an error message.

Integrity, three ways:

1. the hub's own hash: in the cache, ``snapshots/<commit>/<file>`` links to ``blobs/<etag>`` and the etag is the
   file's sha256 for LFS/Xet files (weights) and its git blob sha1 for small git files (configs), so every cached
   file is checked against what the hub recorded, offline too;
2. the lockfile (JSON, sorted keys): per model the requested source, the resolved commit and every file's sha256
   and size, recorded on the first fetch and verified on every later one. A later fetch downloads the locked commit,
   so a branch moving upstream cannot change the weights silently. To re-pin deliberately, delete the model's entry
   from the lockfile (or the whole file) and rerun download_weights;
3. the manifest written per model, which :func:`verify` re-hashes before any stage loads the model.

Interrupted downloads: huggingface_hub downloads into a temporary ``blobs/<etag>.<id>.incomplete`` file, resumes it
with HTTP Range requests when the connection breaks (a few times), renames it only when complete and links the
snapshot after that, so a broken download never leaves a file under its final name (a rerun starts that file over).
A blob whose content does not match its hub hash is removed from the cache, so a rerun downloads it anew. The
manifest and lockfile are written atomically through :mod:`trajbench.io`. Downloads log bytes and rate to the job log.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Self

import filelock
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub import utils as hf_utils
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    filter_repo_objects,
)

from trajbench import __version__
from trajbench.io import sha256_file, write_json
from trajbench.logs import Progress

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = "resources/hf_cache"
DEFAULT_LOCKFILE = "config/weights.lock"
LOCK_FORMAT = 1
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of boolean env vars
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# torch pickles that transformers only needs when a folder has no safetensors
_BIN_WEIGHTS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
# broken connections of huggingface_hub's HTTP client: requests' (before 1.0) are OSErrors, httpx's are not
_TRANSPORT_ERRORS = (OSError, *((hf_utils.httpx.TransportError,) if hasattr(hf_utils, "httpx") else ()))
DOWNLOAD_LOG_EVERY_S = 3.0


class WeightsError(RuntimeError):
    """Any failure to fetch or verify weights; the message names the file/value and says what to do."""


# ------------------------------------------------------------------------------------------------ settings


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """The hub cache folder: HF_HUB_CACHE, else $HF_HOME/hub, else ``cache_dir`` (default resources/hf_cache)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser().absolute()
    if os.environ.get("HF_HOME"):
        return (Path(os.environ["HF_HOME"]).expanduser() / "hub").absolute()
    return Path(cache_dir or DEFAULT_CACHE_DIR).expanduser().absolute()


def offline_mode(offline: bool) -> bool:
    """True when the config says offline or HF_HUB_OFFLINE is set to a true value."""
    return bool(offline) or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def repo_cache_folder(cache_dir: str | os.PathLike, repo_id: str) -> Path:
    """``<cache>/models--<org>--<name>``: huggingface_hub's documented cache layout for a model repo."""
    return Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))


# ------------------------------------------------------------------------------------------------ fetch


def fetch(
    model_name: str,
    model_cfg: dict,
    cache_dir: str | os.PathLike | None,
    offline: bool,
    lockfile: str | os.PathLike | None,
    token_env: str = "HF_TOKEN",
    logger: logging.Logger | None = None,
) -> dict:
    """Resolve (download unless offline) one model's weights, check every file, and return its manifest.

    The lockfile entry is written on the first fetch of a model and checked on every later one.
    """
    logger = logger or logging.getLogger(__name__)
    lockfile = Path(lockfile or DEFAULT_LOCKFILE)
    source = model_cfg.get("source")
    if source == "none":
        logger.info("%s: source none, no weights", model_name)
        return _manifest(model_name, {"source": "none"}, [])
    if source == "local":
        spec = _local_spec(model_name, model_cfg)
        files = _local_files(model_name, spec["path"])
        extra = {}
    elif source == "hub":
        spec = _hub_spec(model_name, model_cfg)
        locked = _read_lock(lockfile).get(model_name)
        if locked is not None:
            _check_spec(model_name, spec, locked, lockfile)
        commit, files = _resolve_hub(
            model_name, spec, locked, resolve_cache_dir(cache_dir), offline_mode(offline), token_env, logger
        )
        extra = {"commit": commit}
    else:
        raise WeightsError(
            f"models.{model_name}.source is {source!r}; use 'hub' (repo_id, revision, filename or allow_patterns), "
            "'local' (path) or 'none'"
        )

    records = _hash_files(model_name, files, logger)
    entry = {**spec, **extra, "files": {r["path"]: {"sha256": r["sha256"], "size": r["size"]} for r in records}}
    _lock(model_name, entry, lockfile, logger)
    return _manifest(model_name, {**spec, **extra}, records)


def write_manifest(manifest: dict, path: str | os.PathLike) -> None:
    write_json(path, manifest)


def _manifest(model_name: str, fields: dict, records: list[dict]) -> dict:
    return {"model": model_name, **fields, "files": records, "created_by": "trajbench.weights", "version": __version__}


def _hub_spec(model_name: str, cfg: dict) -> dict:
    """The part of the config that the lockfile pins (compared on later fetches)."""
    repo_id, revision = cfg.get("repo_id"), cfg.get("revision", "main")
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise WeightsError(f"models.{model_name}.repo_id is {repo_id!r}; set it to '<org>/<name>' of a hub model repo")
    if not isinstance(revision, str) or not revision:
        raise WeightsError(f"models.{model_name}.revision is {revision!r}; set a branch, tag or 40-char commit")
    has_file, has_patterns = "filename" in cfg, "allow_patterns" in cfg
    if has_file == has_patterns:
        raise WeightsError(
            f"models.{model_name} (source: hub) needs exactly one of 'filename' (one file) or 'allow_patterns' "
            f"(files of a transformers repo); found {'both' if has_file else 'neither'}"
        )
    spec = {"source": "hub", "repo_id": repo_id, "revision": revision}
    if has_file:
        if not isinstance(cfg["filename"], str) or not cfg["filename"]:
            raise WeightsError(f"models.{model_name}.filename is {cfg['filename']!r}; set the file's path in the repo")
        spec["filename"] = cfg["filename"]
    else:
        patterns = [cfg["allow_patterns"]] if isinstance(cfg["allow_patterns"], str) else cfg["allow_patterns"]
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise WeightsError(
                f"models.{model_name}.allow_patterns is {cfg['allow_patterns']!r}; give a list of glob patterns, "
                "e.g. ['*.json', '*.safetensors', '*.bin']"
            )
        spec["allow_patterns"] = sorted(patterns)
    return spec


def _local_spec(model_name: str, cfg: dict) -> dict:
    path = cfg.get("path")
    if not isinstance(path, str) or not Path(path).exists():
        raise WeightsError(
            f"models.{model_name}.path is {path!r}, which does not exist; point it at the checkpoint file or the "
            "model folder (the one holding config.json)"
        )
    return {"source": "local", "path": path}


def _local_files(model_name: str, path: str) -> dict[str, Path]:
    root = Path(path)
    if root.is_file():
        return {root.name: root.absolute()}
    files = {p.relative_to(root).as_posix(): p.absolute() for p in sorted(root.rglob("*")) if p.is_file()}
    if not files:
        raise WeightsError(f"models.{model_name}.path {path!r} is an empty folder; put the model files there")
    return files


def select_files(repo_files: list[str], allow_patterns: list[str]) -> tuple[list[str], list[str]]:
    """(selected, dropped): files matching ``allow_patterns``, minus torch .bin weights shadowed by safetensors."""
    matched = sorted(filter_repo_objects(items=repo_files, allow_patterns=allow_patterns))
    safetensor_dirs = {PurePosixPath(f).parent for f in matched if f.endswith(".safetensors")}
    dropped = [
        f
        for f in matched
        if PurePosixPath(f).parent in safetensor_dirs and any(fnmatch(PurePosixPath(f).name, p) for p in _BIN_WEIGHTS)
    ]
    return [f for f in matched if f not in dropped], dropped


def _resolve_hub(
    model_name: str,
    spec: dict,
    locked: dict | None,
    cache: Path,
    offline: bool,
    token_env: str,
    logger: logging.Logger,
) -> tuple[str, dict[str, Path]]:
    """Resolve the files of a hub model in the cache (downloading them unless offline): (commit, {name: path})."""
    repo_id = spec["repo_id"]
    # False, not None: never fall back to a token stored on disk by `huggingface-cli login`
    token = os.environ.get(token_env) or False
    # a locked model is fetched at its locked commit, so the files cannot change under a moving branch
    revision = locked["commit"] if locked else spec["revision"]
    listed_commit = None
    logger.info(
        "%s: %s@%s (%s) in %s%s",
        model_name,
        repo_id,
        spec["revision"],
        f"locked commit {revision}" if locked else "not locked yet",
        cache,
        ", offline" if offline else "",
    )
    if locked:
        names = sorted(locked["files"])
    elif "filename" in spec:
        names = [spec["filename"]]
    else:
        with _hub_errors(model_name, repo_id, revision, None, cache, offline, token):
            if offline:
                repo_files = _cached_repo_files(repo_id, revision, cache)[1]
            else:
                info = HfApi().model_info(repo_id, revision=revision, token=token)
                listed_commit, repo_files = info.sha, [s.rfilename for s in info.siblings]
        names, dropped = select_files(repo_files, spec["allow_patterns"])
        if not names:
            raise WeightsError(
                f"models.{model_name}.allow_patterns {spec['allow_patterns']} match no file of {repo_id}@{revision} "
                f"(files: {sorted(repo_files)}); fix the patterns"
            )
        if dropped:
            logger.info("%s: safetensors present, not fetching %s", model_name, dropped)
        if offline:
            logger.warning("%s: offline and not locked yet: file list taken from the cache", model_name)

    paths, commits = {}, set()
    for name in names:
        with _hub_errors(model_name, repo_id, revision, name, cache, offline, token):
            path = Path(
                hf_hub_download(
                    repo_id,
                    name,
                    revision=revision,
                    cache_dir=str(cache),
                    local_files_only=offline,
                    token=token,
                    **_progress(logger, model_name, name),
                )
            ).absolute()
        snapshot = path.parents[len(PurePosixPath(name).parts) - 1]
        commits.add(snapshot.name)
        paths[name] = path
    if len(commits | ({listed_commit} if listed_commit else set())) != 1:
        raise WeightsError(
            f"{repo_id}@{revision} moved during the download (listed at {listed_commit}, files from "
            f"{sorted(commits)}); rerun download_weights, or pin models.{model_name}.revision to a 40-char commit"
        )
    return commits.pop(), paths


def _cached_repo_files(repo_id: str, revision: str, cache: Path) -> tuple[str, list[str]]:
    """(commit, files) of ``repo_id`` at ``revision`` present in the cache (refs/<revision> names the snapshot)."""
    folder = repo_cache_folder(cache, repo_id)
    ref = folder / "refs" / revision
    commit = revision if _COMMIT.fullmatch(revision) else (ref.read_text().strip() if ref.is_file() else None)
    snapshot = folder / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        raise LocalEntryNotFoundError(f"no cached snapshot of {repo_id}@{revision} in {cache}")
    return commit, [p.relative_to(snapshot).as_posix() for p in sorted(snapshot.rglob("*")) if p.is_file()]


@contextlib.contextmanager
def _hub_errors(
    model_name: str, repo_id: str, revision: str, name: str | None, cache: Path, offline: bool, token: str | bool
) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into a WeightsError that says what to do (token redacted)."""
    what = f"{repo_id}@{revision}" + (f" file {name!r}" if name else "")
    local_way = f"or download the files yourself and set models.{model_name}: {{source: local, path: <file or folder>}}"
    try:
        yield
    except GatedRepoError as err:
        raise WeightsError(f"{repo_id} (model {model_name}) is gated: {_token_advice(repo_id, token, err)}") from None
    except RepositoryNotFoundError as err:
        raise WeightsError(
            f"repository {repo_id} (model {model_name}) was not found on the hub, or is private "
            f"({_redact(err, token)}): check models.{model_name}.repo_id, or export HF_TOKEN with access to it"
        ) from None
    except RevisionNotFoundError:
        raise WeightsError(
            f"revision {revision!r} of {repo_id} (model {model_name}) does not exist: check "
            f"models.{model_name}.revision (or the commit in the lockfile)"
        ) from None
    except LocalEntryNotFoundError as err:
        cause = err.__cause__
        if not offline and _http_status(cause) in (401, 403):
            raise WeightsError(
                f"{what} (model {model_name}): access refused: {_token_advice(repo_id, token, cause)}"
            ) from None
        why = (
            "offline mode is on (weights.offline or HF_HUB_OFFLINE=1)"
            if offline
            else f"the hub at {constants.ENDPOINT} could not be reached ({_redact(cause or err, token)})"
        )
        raise WeightsError(
            f"{what} (model {model_name}) is not in the cache {cache} and {why}. Either run download_weights once "
            f"with network access (weights.offline: false, HF_HUB_OFFLINE unset), {local_way}"
        ) from None
    except EntryNotFoundError:
        raise WeightsError(
            f"{what} (model {model_name}) does not exist in the repo: check models.{model_name}.filename / "
            "allow_patterns"
        ) from None
    except HfHubHTTPError as err:
        if _http_status(err) in (401, 403):
            raise WeightsError(
                f"{what} (model {model_name}): access refused: {_token_advice(repo_id, token, err)}"
            ) from None
        raise WeightsError(
            f"downloading {what} (model {model_name}) failed: {_redact(err, token)}. Rerun download_weights, "
            f"{local_way}"
        ) from None
    except _TRANSPORT_ERRORS as err:
        cached = _cached_snapshot(repo_id, revision, name, cache)
        way_out = (
            f"The cache {cache} holds {repo_id}@{revision} (commit {cached}): to use it without the hub, set "
            "HF_HUB_OFFLINE=1 (or weights.offline: true)"
            if cached
            else f"Check the network and rerun download_weights (no partial file is kept), {local_way}"
        )
        raise WeightsError(
            f"downloading {what} (model {model_name}) from {constants.ENDPOINT} failed ({_redact(err, token)}). "
            f"{way_out}"
        ) from None


def _token_advice(repo_id: str, token: str | bool, err: BaseException | None) -> str:
    sent = "HF_TOKEN is set, but its account has no access" if token else "HF_TOKEN is not set"
    return (
        f"{sent} ({_redact(err, token)}). Accept the repository's conditions at https://huggingface.co/{repo_id} "
        "and export HF_TOKEN with a read token of that account"
    )


def _http_status(err: BaseException | None) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _cached_snapshot(repo_id: str, revision: str, name: str | None, cache: Path) -> str | None:
    """The commit of ``revision`` when the cache holds its snapshot (and the file ``name`` in it), else None."""
    try:
        commit, files = _cached_repo_files(repo_id, revision, cache)
    except LocalEntryNotFoundError:
        return None
    return commit if name is None or name in files else None


def _redact(err: BaseException | None, token: str | bool) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text.replace(token, "***") if isinstance(token, str) else text


# huggingface_hub 1.x takes a progress class; the 0.x releases that transformers 4.x needs (< 1.0) do not, and
# draw their own bar on stderr: there a download logs nothing while it runs, and the manifest records the files.
HUB_TAKES_PROGRESS = "tqdm_class" in inspect.signature(hf_hub_download).parameters


def _progress(logger: logging.Logger, model_name: str, name: str) -> dict:
    """``hf_hub_download``'s progress argument: the file's bytes and rate into the job log, where it takes one."""
    return {"tqdm_class": functools.partial(_DownloadLog, logger, model_name, name)} if HUB_TAKES_PROGRESS else {}


class _DownloadLog:
    """Takes the place of huggingface_hub's tqdm bar, which draws on stderr only: logs a file's bytes and rate to the
    job log, at most every ``DOWNLOAD_LOG_EVERY_S`` seconds and when done."""

    def __init__(self, logger: logging.Logger, model_name: str, name: str, *, total=None, initial=0, **_):
        self.logger, self.what, self.total = logger, f"{model_name}: downloading {name}", total
        self.start_bytes = self.done = initial
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if time.perf_counter() - self.last >= DOWNLOAD_LOG_EVERY_S:
            self._log()

    def _log(self) -> None:
        now = time.perf_counter()
        rate = (self.done - self.start_bytes) / max(now - self.start, 1e-9)
        total = f"/{self.total / 1e6:.1f}" if self.total else ""
        self.logger.info("%s: %.1f%s MB (%.1f MB/s)", self.what, self.done / 1e6, total, rate / 1e6)
        self.last = now

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self._log()


# ------------------------------------------------------------------------------------------------ hashing


def _hash_files(model_name: str, files: dict[str, Path], logger: logging.Logger) -> list[dict]:
    """sha256 and size of every file, each checked against the hash the hub recorded where the cache has it."""
    progress = Progress(len(files), f"{model_name}: sha256", logger, unit="files")
    records = []
    for name, path in sorted(files.items()):
        size = path.stat().st_size
        logger.info("%s: hashing %s (%.1f MB)", model_name, name, size / 1e6)
        digest = sha256_file(path)
        _check_hub_hash(model_name, name, path, digest, size)
        records.append({"path": name, "local_path": _portable(path), "size": size, "sha256": digest})
        progress.update(1)
    return records


def _portable(path: Path) -> str:
    """Relative to the working directory when inside it, so a moved or copied project folder keeps loading (and
    verifying) its own files rather than those of the folder it came from; absolute otherwise (a shared cache)."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else str(path)


def _check_hub_hash(model_name: str, name: str, path: Path, sha256: str, size: int) -> None:
    """Compare with the blob name of the cache entry: sha256 for LFS files, git blob sha1 otherwise."""
    blob = Path(os.path.realpath(path))
    if not path.is_symlink() or blob.parent.name != "blobs":
        return  # not a symlinked cache entry (local source, or a cache without symlinks): lockfile only
    if _SHA256.fullmatch(blob.name):
        kind, expected, actual = "sha256", blob.name, sha256
    elif _COMMIT.fullmatch(blob.name):
        kind, expected, actual = "git blob sha1", blob.name, git_blob_sha1(path)
    else:
        return
    if actual != expected:
        # a bad blob must not stay in the cache under its hash, where it would pass as valid: the rerun fetches it anew
        try:
            path.unlink()
            blob.unlink()
            remedy = f"Removed {blob} from the cache; rerun download_weights to download it again"
        except OSError:
            remedy = f"Delete {blob} and {path}, then rerun download_weights"
        raise WeightsError(
            f"model {model_name}: {name} ({path}) has {kind} {actual} ({size} bytes) but the hub recorded {expected}: "
            f"the downloaded or cached copy is corrupted or truncated. {remedy}"
        )


def git_blob_sha1(path: str | os.PathLike, chunk_size: int = 8 << 20) -> str:
    """git's object id of a file (the hub's etag for files not in LFS): sha1 of 'blob <size>\\0' + content."""
    digest = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ lockfile


def _read_lock(lockfile: Path) -> dict:
    """The lockfile's models (empty when there is no lockfile yet)."""
    if not lockfile.exists():
        return {}
    try:
        data = json.loads(lockfile.read_text())
        models = data["models"]
        if data.get("format") != LOCK_FORMAT or not isinstance(models, dict):
            raise ValueError(f"format {data.get('format')!r}, expected {LOCK_FORMAT}")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WeightsError(
            f"lockfile {lockfile} is not a trajbench weights lock ({err}); restore it from version control or delete "
            "it to record the weights anew"
        ) from None
    return models


def _relock_hint(model_name: str, lockfile: Path) -> str:
    return (
        f"If the change is deliberate, delete the entry {model_name!r} from {lockfile} (or the whole file) and rerun "
        "download_weights to record the new weights"
    )


def _check_spec(model_name: str, spec: dict, locked: dict, lockfile: Path) -> None:
    pinned = {k: v for k, v in locked.items() if k not in ("commit", "files")}
    if pinned != spec:
        raise WeightsError(
            f"models.{model_name} asks for {spec} but {lockfile} pins {pinned}. {_relock_hint(model_name, lockfile)}"
        )


def _lock(model_name: str, entry: dict, lockfile: Path, logger: logging.Logger) -> None:
    """Check ``entry`` against the lockfile, or record it there if the model is not locked yet."""
    # download jobs of other models may update the lockfile at the same time: read-modify-write under a file lock
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(lockfile.parent / f".{lockfile.name}.flock")):
        models = _read_lock(lockfile)
        if model_name in models:
            _compare_with_lock(model_name, entry, models[model_name], lockfile)
            logger.info("%s: matches %s", model_name, lockfile)
            return
        write_json(lockfile, {"format": LOCK_FORMAT, "models": {**models, model_name: entry}})
        logger.info("%s: recorded in %s", model_name, lockfile)


def _compare_with_lock(model_name: str, entry: dict, locked: dict, lockfile: Path) -> None:
    hint = _relock_hint(model_name, lockfile)
    _check_spec(model_name, {k: v for k, v in entry.items() if k not in ("commit", "files")}, locked, lockfile)
    if entry.get("commit") != locked.get("commit"):
        raise WeightsError(
            f"model {model_name}: resolved commit {entry.get('commit')} but {lockfile} pins {locked.get('commit')}. "
            f"{hint}"
        )
    if set(entry["files"]) != set(locked["files"]):
        raise WeightsError(
            f"model {model_name}: files {sorted(entry['files'])} differ from those in {lockfile} "
            f"({sorted(locked['files'])}). {hint}"
        )
    for name, want in sorted(locked["files"].items()):
        got = entry["files"][name]
        if got != want:
            raise WeightsError(
                f"model {model_name}: {name} has sha256 {got['sha256']} ({got['size']} bytes) but {lockfile} expects "
                f"{want['sha256']} ({want['size']} bytes). If the file is damaged, delete it (for a hub model: its "
                f"cache entry) and rerun download_weights. {hint}"
            )


# ------------------------------------------------------------------------------------------------ consumers


def verify(manifest_path: str | os.PathLike) -> dict:
    """Re-hash every file of a manifest before a stage loads the model; return the manifest."""
    manifest_path = Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
        name, files = manifest["model"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise WeightsError(
            f"cannot read the weights manifest {manifest_path} ({type(err).__name__}: {err}); rerun download_weights"
        ) from None
    progress = Progress(len(files), f"{name}: verify sha256", logger, unit="files")
    for record in files:
        path = Path(record["local_path"])
        if not path.is_file():
            raise WeightsError(
                f"model {name}: {record['path']} is missing at {path} (manifest {manifest_path}); rerun "
                "download_weights"
            )
        size = path.stat().st_size
        digest = sha256_file(path) if size == record["size"] else "not computed (size differs)"
        if digest != record["sha256"]:
            raise WeightsError(
                f"model {name}: {record['path']} ({path}) has sha256 {digest} ({size} bytes) but manifest "
                f"{manifest_path} expects {record['sha256']} ({record['size']} bytes); {_verify_remedy(manifest, path)}"
            )
        progress.update(1)
    return manifest


def _verify_remedy(manifest: dict, path: Path) -> str:
    if manifest.get("source") == "hub":
        return (
            f"delete {path} and the cache blob it links to ({os.path.realpath(path)}), then rerun download_weights "
            f"for model {manifest['model']}"
        )
    return (
        f"restore the file, or if the change is deliberate delete the entry {manifest['model']!r} from the weights "
        "lockfile and rerun download_weights to record it"
    )


def local_path(manifest: dict, filename: str | None = None) -> Path:
    """Where to load a model from: the file ``filename`` (repo-relative name) of the manifest, or with None the
    only file (a checkpoint) or else the folder holding config.json (a transformers model)."""
    name, files = manifest["model"], manifest["files"]
    if not files:
        raise WeightsError(f"model {name} has source {manifest.get('source')!r}: it has no weights to load")
    by_name = {f["path"]: Path(f["local_path"]) for f in files}
    if filename is not None:
        if filename not in by_name:
            raise WeightsError(f"model {name}: the manifest has no file {filename!r}; it has {sorted(by_name)}")
        return by_name[filename]
    if len(by_name) == 1:
        return next(iter(by_name.values()))
    if "config.json" in by_name:
        return by_name["config.json"].parent
    raise WeightsError(f"model {name}: several files {sorted(by_name)} and no config.json; pass the filename to load")
