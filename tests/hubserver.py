"""A local server that speaks the part of the Hugging Face hub's HTTP protocol that huggingface_hub downloads use,
with fault switches for tests. Point huggingface_hub at it with ``HF_ENDPOINT=hub.url``.

Repositories are folders: ``<root>/<org>/<name>/commits/<commit>/<files>`` and ``refs/<branch>`` holding a commit.
Two servers on 127.0.0.1, as on the real hub, where LFS files are redirected to a CDN host:

- hub: ``GET /api/models/<repo>[/revision/<rev>]`` (model info: ``sha`` and ``siblings``);
  ``HEAD|GET /<repo>/resolve/<rev>/<path>``: git files served directly with ``ETag`` = git blob sha1, LFS files
  (weights) answered with a 302 to the CDN carrying ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``;
  ``X-Repo-Commit`` on every answer. Errors carry the hub's ``X-Error-Code`` (RepoNotFound, RevisionNotFound,
  EntryNotFound, GatedRepo) and ``X-Error-Message``.
- CDN: ``HEAD|GET /<repo>/<commit>/<path>``, with HTTP Range requests (206 and Content-Range).

Faults (``hub.faults``, set by the test at any time) act on file bodies and access; ``hub.requests`` records every
request (method, path, Range, whether an Authorization header came along).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

# what the hub's default .gitattributes puts in LFS (weights), and any file of 10 MB or more
LFS_SUFFIXES = {".ckpt", ".safetensors", ".bin", ".pt", ".pth"}
LFS_MIN_SIZE = 10 << 20
CHUNK = 64 << 10


@dataclass
class Faults:
    drops: dict[str, list[int]] = field(default_factory=dict)  # path -> per GET of it: close after this many bytes
    corrupt: set[str] = field(default_factory=set)  # paths served with one byte flipped (same etag and size)
    gated: set[str] = field(default_factory=set)  # repos: 401 GatedRepo without a token, 403 GatedRepo with one
    forbidden: set[str] = field(default_factory=set)  # repos: plain 403 echoing the Authorization header (a bad proxy)
    rate: float | None = None  # bytes per second for file bodies
    move_on_info: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo: files committed to main right
    # after its model info is served (once): the branch moves between the listing and the downloads


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str, size: int) -> bool:
    return Path(path).suffix in LFS_SUFFIXES or size >= LFS_MIN_SIZE


class Hub:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.faults = Faults()
        self.requests: list[dict] = []
        self._servers: list[ThreadingHTTPServer] = []

    # ---------------------------------------------------------------------------------------------- repositories

    def commit(self, repo_id: str, files: dict[str, bytes | Path], branch: str = "main") -> str:
        """A new commit on ``branch``: its current tree with ``files`` added or replaced. Returns the commit id."""
        repo = self.root / repo_id
        parent = self.resolve(repo_id, branch)
        digest = hashlib.sha1(f"{repo_id} {parent}".encode())
        for name, data in sorted(files.items()):
            digest.update(name.encode() + hashlib.sha256(_bytes(data)).digest())
        commit = digest.hexdigest()
        tree = repo / "commits" / commit
        if parent:
            shutil.copytree(repo / "commits" / parent, tree)
        for name, data in files.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(_bytes(data))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
        return commit

    def resolve(self, repo_id: str, revision: str) -> str | None:
        """The commit of a branch or commit id, None when there is none."""
        repo = self.root / repo_id
        ref = repo / "refs" / revision
        if ref.is_file():
            return ref.read_text()
        return revision if re.fullmatch(r"[0-9a-f]{40}", revision) and (repo / "commits" / revision).is_dir() else None

    def files(self, repo_id: str, commit: str) -> list[str]:
        tree = self.root / repo_id / "commits" / commit
        return sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())

    def read(self, repo_id: str, commit: str, path: str) -> bytes:
        return (self.root / repo_id / "commits" / commit / path).read_bytes()

    # ---------------------------------------------------------------------------------------------- serving

    def start(self) -> Hub:
        for kind in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.daemon_threads = True
            server.hub, server.kind = self, kind
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def gets(self, suffix: str) -> list[dict]:
        """The GET requests of file bodies whose path ends with ``suffix``."""
        return [r for r in self.requests if r["method"] == "GET" and r["path"].endswith("/" + suffix)]


def _bytes(data: bytes | Path) -> bytes:
    return data if isinstance(data, bytes) else Path(data).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # requests are recorded in hub.requests, not printed
        pass

    def do_HEAD(self) -> None:
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    def _route(self, body: bool) -> None:
        hub: Hub = self.server.hub
        path = unquote(urlsplit(self.path).path)
        auth = self.headers.get("Authorization")
        hub.requests.append(
            {
                "server": self.server.kind,
                "method": self.command,
                "path": path,
                "range": self.headers.get("Range"),
                "auth": auth is not None,
            }
        )
        if self.server.kind == "cdn":
            match = re.fullmatch(r"/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)", path)
            if not match or not (hub.root / match[1] / "commits" / match[2] / match[3]).is_file():
                return self._error(404, None, "Not found")
            return self._send_file(hub, *match.groups(), body)
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            repo_id, revision = match[1], match[2] or "main"
            if (commit := self._access(hub, repo_id, revision, auth)) is None:
                return
            info = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": commit,
                "private": False,
                "gated": False,
                "siblings": [{"rfilename": f} for f in hub.files(repo_id, commit)],
            }
            self._send_json(info, body)
            if repo_id in hub.faults.move_on_info:
                hub.commit(repo_id, hub.faults.move_on_info.pop(repo_id))
            return
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo_id, revision, name = match.groups()
            if (commit := self._access(hub, repo_id, revision, auth)) is None:
                return
            file = hub.root / repo_id / "commits" / commit / name
            if not file.is_file():
                return self._error(404, "EntryNotFound", f"{name} does not exist at {commit}", commit)
            size = file.stat().st_size
            if not is_lfs(name, size):
                return self._send_file(hub, repo_id, commit, name, body)
            # the hub's answer for an LFS file: a redirect to the CDN, the file's hash and size in X-Linked-*
            self.send_response(302)
            self.send_header("Location", f"{hub.cdn_url}/{repo_id}/{commit}/{name}")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", f'"{hashlib.sha256(file.read_bytes()).hexdigest()}"')
            self.send_header("X-Linked-Size", str(size))
            self.send_header("ETag", '"lfs-pointer"')
            self.send_header("Content-Length", "0")
            return self.end_headers()
        self._error(404, None, "No such endpoint")

    def _access(self, hub: Hub, repo_id: str, revision: str, auth: str | None) -> str | None:
        """The commit of ``revision``, or None after answering with the hub's error."""
        if not (hub.root / repo_id).is_dir():
            return self._error(404, "RepoNotFound", "Repository not found")
        if repo_id in hub.faults.gated:
            return self._error(
                403 if auth else 401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list.",
            )
        if repo_id in hub.faults.forbidden:
            return self._error(403, None, f"Forbidden for {auth}")
        commit = hub.resolve(repo_id, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_json(self, data: dict, body: bool) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _send_file(self, hub: Hub, repo_id: str, commit: str, name: str, body: bool) -> None:
        data = hub.read(repo_id, commit, name)
        etag = hashlib.sha256(data).hexdigest() if is_lfs(name, len(data)) else git_blob_sha1(data)
        start, end, status = 0, len(data) - 1, 200
        if match := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or ""):
            start, end, status = int(match[1]), int(match[2] or end), 206
        self.send_response(status)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if name in hub.faults.corrupt:
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0xFF
            data = bytes(flipped)
        part = data[start : end + 1]
        cuts = hub.faults.drops.get(name)
        cut = cuts.pop(0) if cuts else None
        if cut is not None:
            part = part[:cut]
            self.close_connection = True  # the client sees the connection end before Content-Length bytes
        began, sent = time.monotonic(), 0
        for offset in range(0, len(part), CHUNK):
            self.wfile.write(part[offset : offset + CHUNK])
            sent += min(CHUNK, len(part) - offset)
            if hub.faults.rate:
                time.sleep(max(0.0, sent / hub.faults.rate - (time.monotonic() - began)))
