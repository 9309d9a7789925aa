"""The one rule for locations: every input and output of every job is a local path or an fsspec
URL (s3://, gs://, az://, memory://, ...), and this module is the only place that tells them apart.

- `is_local(path)`, `local_path(path)`, `absolute(path)`: local paths and `file://` URLs.
- `filesystem(url)`: the fsspec filesystem and its path for a URL, with the storage options of
  this process (`--storage-options` / `EERCF_STORAGE_OPTIONS`) applied.
- `list_dir(url)`: a directory listing that is never served from fsspec's listing cache, so a
  completeness check sees what other processes (Beam workers, Dask workers) wrote.
- `check_bucket(url)`: an output's bucket or container must exist; eercf never creates one.
- `fetch(url)`: a local copy of a remote file (a checkpoint, open_clip weights) in the local
  cache (`cache_dir()`: `$EERCF_CACHE_DIR`, else `$XDG_CACHE_HOME/eercf` or `~/.cache/eercf`),
  keyed by the URL and the object's size and version tag, so each machine downloads it once.
- `storage_errors(url, operation)`: store failures as one-line errors naming the URL and the
  operation: `StorageAccessError` (exit 2: credentials, permissions, a missing bucket) or
  `StorageUnavailableError` (exit 1: an unreachable endpoint, an outage).

Storage options are a JSON object, either keyed by protocol (`{"s3": {"endpoint_url": ...}}`)
or flat (`{"endpoint_url": ...}`), which applies to every remote protocol. They come from the
environment variable `EERCF_STORAGE_OPTIONS` and from the `--storage-options` flag of every
command (the flag wins key by key). `configure` exports the result to the environment, so worker
processes started by this one (Beam's multi-processing workers) see the same options; workers of
a cluster started elsewhere read the same variable from their own environment. fsspec's and the
cloud SDKs' own environment (`AWS_ENDPOINT_URL`, `AWS_PROFILE`, `FSSPEC_S3_*`, ...) still applies.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec

from eercf_core.errors import RunFailedError, UserInputError

log = logging.getLogger(__name__)

STORAGE_OPTIONS_ENV = "EERCF_STORAGE_OPTIONS"
CACHE_DIR_ENV = "EERCF_CACHE_DIR"
# Object stores whose first path component is a bucket/container that eercf must never create.
BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})
LOCAL_PROTOCOLS = frozenset({"file", "local"})

_options: dict[str, Any] | None = None  # parsed options of this process (None: not read yet)


class StorageAccessError(UserInputError):
    """The store refused an operation the user can fix: credentials, permissions, a missing
    bucket or container (exit 2). The message names the URL and the operation."""


class StorageUnavailableError(RunFailedError):
    """The store could not be reached or failed mid-operation (endpoint down, outage, timeouts);
    the run failed (exit 1). The message names the URL and the operation."""


def protocol(url: str | os.PathLike[str]) -> str:
    """The URL's protocol (`s3`, `gs`, ...); `file` for local paths and `file://` URLs."""
    text = os.fspath(url)
    if "://" not in text:
        return "file"
    scheme = text.split("://", 1)[0].lower()
    return "file" if scheme in LOCAL_PROTOCOLS else scheme


def is_local(url: str | os.PathLike[str]) -> bool:
    """True for a local path or a `file://` URL."""
    return protocol(url) == "file"


def is_url(url: str | os.PathLike[str]) -> bool:
    """True for a remote fsspec URL (anything but a local path or `file://`)."""
    return not is_local(url)


def local_path(url: str | os.PathLike[str]) -> str | None:
    """The local filesystem path of a local path or `file://` URL (absolute when given
    absolute, otherwise as given), None for a remote URL."""
    text = os.fspath(url)
    if not is_local(text):
        return None
    return text.split("://", 1)[1] if "://" in text else text


def require_local(url: str | os.PathLike[str], why: str) -> str:
    """The absolute local path of `url`; UserInputError naming `url` and `why` for a URL."""
    path = local_path(url)
    if path is None:
        raise UserInputError(f"{os.fspath(url)}: must be a local path ({why})")
    return os.path.abspath(os.path.expanduser(path))


def absolute(url: str | os.PathLike[str]) -> str:
    """A local path made absolute against this process's working directory (`~` expanded), so
    workers that run elsewhere see the same file; URLs are returned unchanged."""
    text = os.fspath(url)
    if is_url(text) or text.startswith("file://"):
        return text
    return os.path.abspath(os.path.expanduser(text))


def join(base: str, *parts: str) -> str:
    """`base` joined with `parts` by `/` (local paths and URLs alike)."""
    return posixpath.join(base.rstrip("/") if base not in ("/", "") else base, *parts)


def parse_storage_options(text: str, source: str = "--storage-options") -> dict[str, Any]:
    """The JSON object `text`; UserInputError naming `source` when it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{source}: not valid JSON ({exc.msg} at column {exc.colno}): "
                             f"{text!r}") from None
    if not isinstance(value, dict):
        raise UserInputError(f"{source}: must be a JSON object like "
                             f"'{{\"s3\": {{\"endpoint_url\": \"http://host:9000\"}}}}', "
                             f"got {type(value).__name__}")
    return value


def configure(flag_value: str | None = None) -> dict[str, Any]:
    """Read `EERCF_STORAGE_OPTIONS` and merge the `--storage-options` value over it; the result
    applies to every later `filesystem` call in this process and is exported to the environment
    for the processes it starts. Returns the merged options."""
    global _options
    merged: dict[str, Any] = {}
    env = os.environ.get(STORAGE_OPTIONS_ENV)
    if env:
        merged.update(parse_storage_options(env, f"environment variable {STORAGE_OPTIONS_ENV}"))
    if flag_value:
        for key, value in parse_storage_options(flag_value).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    _options = merged
    if merged:
        os.environ[STORAGE_OPTIONS_ENV] = json.dumps(merged)
    return merged


def storage_options(proto: str) -> dict[str, Any]:
    """The options for filesystems of protocol `proto` (none for local files)."""
    global _options
    if proto in LOCAL_PROTOCOLS:
        return {}
    if _options is None:
        env = os.environ.get(STORAGE_OPTIONS_ENV)
        _options = parse_storage_options(env, STORAGE_OPTIONS_ENV) if env else {}
    registered = set(fsspec.available_protocols())
    flat = {k: v for k, v in _options.items() if not (k in registered and isinstance(v, dict))}
    keyed = _options.get(proto)
    return {**flat, **(keyed if isinstance(keyed, dict) else {})}


def filesystem(url: str | os.PathLike[str]) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a local path or URL, with this process's storage
    options."""
    text = os.fspath(url)
    proto = protocol(text)
    if proto == "file":
        return fsspec.core.url_to_fs(text)
    return fsspec.core.url_to_fs(text, **storage_options(proto))


def open_file(url: str | os.PathLike[str], mode: str = "rb", **kwargs: Any) -> Any:
    """`fsspec.open` with this process's storage options (a context manager yielding a file)."""
    text = os.fspath(url)
    return fsspec.open(text, mode, **storage_options(protocol(text)), **kwargs)


def full_url(url: str, fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A path listed by `fs` as a URL of the same kind as `url` (local paths stay plain)."""
    return path if is_local(url) and "://" not in url else fs.unstrip_protocol(path)


def invalidate(url: str | os.PathLike[str]) -> None:
    """Forget fsspec's cached listings of `url` and its parents in this process."""
    fs, path = filesystem(url)
    with contextlib.suppress(Exception):
        fs.invalidate_cache(path)


def list_dir(url: str | os.PathLike[str]) -> list[str]:
    """Full paths (as the filesystem names them) directly under directory `url`, read from the
    store itself, never from a cached listing: other processes' writes are seen. A missing
    directory gives []."""
    fs, path = filesystem(url)
    with contextlib.suppress(Exception):
        fs.invalidate_cache(path)
    try:
        if is_local(url):
            return list(fs.ls(path, detail=False))
        try:  # s3fs and gcsfs also take refresh=True: skip any listing cache
            return list(fs.ls(path, detail=False, refresh=True))
        except TypeError:  # a filesystem without that keyword (the cache is invalidated above)
            return list(fs.ls(path, detail=False))
    except FileNotFoundError:
        return []


def bucket_of(url: str | os.PathLike[str]) -> str | None:
    """The bucket/container name of an object-store URL, None for other locations."""
    text = os.fspath(url)
    if protocol(text) not in BUCKET_PROTOCOLS:
        return None
    rest = text.split("://", 1)[1]
    return rest.split("/", 1)[0] or None


def check_bucket(url: str | os.PathLike[str], flag: str = "--output") -> None:
    """Fail up front when the bucket/container of output `url` does not exist (eercf never
    creates buckets: a typo in its name must not create a new one). No-op for other stores."""
    text = os.fspath(url)
    bucket = bucket_of(text)
    if bucket is None:
        return
    fs, _ = filesystem(text)
    with storage_errors(text, f"check that bucket {bucket!r} exists"):
        with contextlib.suppress(Exception):
            fs.invalidate_cache(bucket)
        exists = _bucket_exists(fs, bucket)
    if not exists:
        raise StorageAccessError(
            f"{text}: {flag} bucket {bucket!r} does not exist (or these credentials cannot see "
            f"it); eercf never creates buckets: create it first or fix the name")


def _bucket_exists(fs: fsspec.AbstractFileSystem, bucket: str) -> bool:
    """True when `bucket` exists. On S3 one HeadBucket, whose refusal (wrong credentials, no
    permission) raises instead of reading as "missing" (s3fs's `exists` says False for both)."""
    call = getattr(fs, "call_s3", None)
    if call is None:
        return bool(fs.exists(bucket))
    try:
        call("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        return False
    return True


# Error codes / exception names that mean "fix your credentials or permissions".
_ACCESS_WORDS = ("accessdenied", "forbidden", "invalidaccesskeyid", "signaturedoesnotmatch",
                 "expiredtoken", "invalidtoken", "unauthorized", "nocredentials",
                 "credentials", "permission", "nosuchbucket", "401", "403")
# Exception type names of unreachable endpoints and transport failures.
_UNAVAILABLE_TYPES = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                      "ConnectionClosedError", "ClientConnectorError", "ServerDisconnectedError",
                      "ClientOSError", "ProxyConnectionError", "ConnectionError",
                      "ConnectionRefusedError", "ConnectionResetError", "TimeoutError",
                      "ServiceUnavailable", "SlowDown", "InternalError")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify(exc: BaseException) -> str | None:
    """'access', 'unavailable' or None (not a store failure) for an exception raised by a store
    operation, looking through its cause chain."""
    for item in _chain(exc):
        names = {cls.__name__ for cls in type(item).__mro__}
        if names & set(_UNAVAILABLE_TYPES) or (
                isinstance(item, OSError) and item.errno in (
                    errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH,
                    errno.ENETUNREACH, errno.ETIMEDOUT)):
            return "unavailable"
        if isinstance(item, PermissionError) or "NoCredentialsError" in names:
            return "access"
        code = ""
        response = getattr(item, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
        lowered = (code + " " + str(item)).lower()
        if code and any(word in lowered for word in _ACCESS_WORDS):
            return "access"
        if code.startswith("5") or code in ("ServiceUnavailable", "SlowDown", "InternalError"):
            return "unavailable"
    return None


# Words that identify a store failure inside the text of an exception a runner re-raised from a
# worker (Beam sends a worker's traceback as text): (kind, word).
_TEXT_MARKERS = (*(("unavailable", name) for name in _UNAVAILABLE_TYPES[:8]),
                 ("unavailable", "Could not connect to the endpoint URL"),
                 ("access", "InvalidAccessKeyId"), ("access", "SignatureDoesNotMatch"),
                 ("access", "AccessDenied"), ("access", "NoSuchBucket"),
                 ("access", "NoCredentialsError"))


def _from_text(exc: BaseException) -> tuple[str, str] | None:
    """(kind, the worker's error line) when the text of `exc` carries a store failure."""
    lines = str(exc).splitlines()
    for kind, word in _TEXT_MARKERS:
        for line in reversed(lines):
            if word in line:
                return kind, " ".join(line.split())[:300]
    return None


def storage_error(exc: BaseException, url: str, operation: str
                  ) -> StorageAccessError | StorageUnavailableError | None:
    """The one-line error for a store failure `exc` while doing `operation` on `url`, or None
    when `exc` is not a store failure (a bug or an expected local error keeps its own form).
    A failure re-raised by a runner from a worker is recognised by its text."""
    if isinstance(exc, (StorageAccessError, StorageUnavailableError)):
        return exc
    if is_local(url):
        return None
    kind = classify(exc)
    if kind is not None:
        root = next((e for e in _chain(exc) if classify_one(e) == kind), exc)
        reason = _reason(root)
    else:
        found = _from_text(exc)
        if found is None:
            return None
        kind, reason = found
    if kind == "access":
        return StorageAccessError(
            f"{url}: {operation} was refused ({reason}); check the credentials, the "
            f"permissions and the bucket name")
    return StorageUnavailableError(
        f"{url}: {operation} failed: the store could not be reached or failed "
        f"({reason}); check the endpoint and retry (finished work is kept)")


def classify_one(exc: BaseException) -> str | None:
    """`classify` of `exc` alone, without its cause chain."""
    cause, context = exc.__cause__, exc.__context__
    try:
        exc.__cause__ = exc.__context__ = None
        return classify(exc)
    finally:
        exc.__cause__, exc.__context__ = cause, context


@contextlib.contextmanager
def storage_errors(url: str | os.PathLike[str], operation: str) -> Iterator[None]:
    """Turn a store failure inside the block into StorageAccessError / StorageUnavailableError
    naming `url` and `operation`; other exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        mapped = storage_error(exc, os.fspath(url), operation)
        if mapped is None or mapped is exc:
            raise
        raise mapped from None


def cache_dir() -> str:
    """The local cache of remote files and indexes: `$EERCF_CACHE_DIR`, else
    `$XDG_CACHE_HOME/eercf`, else `~/.cache/eercf`."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "eercf")


def _version_tag(info: dict[str, Any]) -> str:
    """What changes when a remote object is replaced: its size plus an ETag/generation/mtime."""
    parts = [str(info.get("size"))]
    parts += [f"{key}={info[key]}" for key in ("ETag", "etag", "generation", "md5Hash",
                                               "LastModified", "last_modified", "mtime", "updated")
              if info.get(key) is not None]
    return "|".join(parts)


def fetch(url: str | os.PathLike[str]) -> str:
    """A local path holding the file `url`: the path itself for local files, else a copy in
    `cache_dir()/files/<key>/<name>` keyed by the URL and the object's size and version tag
    (downloaded once per machine, to a temp name renamed into place, so concurrent workers
    never see half a file). FileNotFoundError names a missing URL; store failures are
    StorageAccessError / StorageUnavailableError."""
    text = os.fspath(url)
    local = local_path(text)
    if local is not None:
        return local
    fs, path = filesystem(text)
    with storage_errors(text, "read"):
        try:
            info = fs.info(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"not found: {text}") from None
        key = hashlib.sha256(f"{text}\n{_version_tag(info)}".encode()).hexdigest()[:32]
        target_dir = os.path.join(cache_dir(), "files", key)
        target = os.path.join(target_dir, posixpath.basename(path.rstrip("/")) or "file")
        if os.path.isfile(target):
            return target
        os.makedirs(target_dir, exist_ok=True)
        temp = os.path.join(target_dir, f".download-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            fs.get_file(path, temp)
            os.replace(temp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
    log.info("fetched %s into the local cache %s", text, target)
    return target


def remove_tree(path: str) -> None:
    """Remove a local directory tree, ignoring a missing one."""
    shutil.rmtree(path, ignore_errors=True)
