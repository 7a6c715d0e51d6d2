"""A small filesystem that runs out of space, for a server's data dir.

    try:
        fs = FullFS(8 << 20).mount()
    except FullFSUnavailable as exc:
        pytest.skip(str(exc))
    with fs:
        emulator = start_emulator(data_dir=fs.path)    # writes past 8 MiB fail with ENOSPC
        fs.fill(leave=1 << 20)                         # or: only 1 MiB left from now on

``FullFS(size, path=None, method="auto")`` mounts, at ``path`` (default: a new temporary directory),
a tmpfs of ``size`` bytes (``mount -t tmpfs -o size=N``), or, if that is refused or ``method="ext4"``,
an ext4 image of ``size`` bytes (no journal, no reserved blocks, at least 256 KiB) through a loop
device (``mount -o loop``). Needs root and a sandbox that allows mounts; when neither way works,
``mount()`` raises FullFSUnavailable saying why (turn it into a skip). On exit the filesystem is
unmounted (lazily if the server still holds files open), the image and the directory it made removed.
Usable space is about ``size`` for tmpfs (rounded up to pages) and somewhat less for ext4 (metadata):
``free()`` tells.
"""

import errno
import os
import shutil
import subprocess
import tempfile

METHODS = ("tmpfs", "ext4")
EXT4_MIN = 256 * 1024


class FullFSUnavailable(Exception):
    """No small filesystem can be mounted here; the message says why (for pytest.skip)."""


def _run(cmd, timeout):
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except FileNotFoundError:
        raise FullFSUnavailable("%s is not installed" % cmd[0])
    except subprocess.TimeoutExpired:
        raise FullFSUnavailable("%s did not finish in %s s" % (" ".join(cmd), timeout))
    if proc.returncode != 0:
        raise FullFSUnavailable("`%s` failed: %s" % (" ".join(cmd), proc.stdout.decode("utf-8", "replace").strip()))


class FullFS:
    def __init__(self, size, path=None, method="auto", timeout=30):
        if method not in ("auto",) + METHODS:
            raise ValueError("method is auto, tmpfs or ext4, not %r" % (method,))
        if method == "ext4" and size < EXT4_MIN:
            raise ValueError("an ext4 image needs at least %d bytes" % EXT4_MIN)
        self.size = int(size)
        self.path = path
        self.wanted = method
        self.method = None
        self.timeout = timeout
        self._made_dir = False
        self._image_dir = None
        self._filler = None

    def mount(self):
        """Mount; returns self. Raises FullFSUnavailable (nothing left behind) when it cannot."""
        if self.method is not None:
            return self
        if os.geteuid() != 0:
            raise FullFSUnavailable("mounting a small filesystem needs root (euid %d)" % os.geteuid())
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix="fieldkit-fullfs-")
            self._made_dir = True
        methods = METHODS if self.wanted == "auto" else (self.wanted,)
        if self.wanted == "auto" and self.size < EXT4_MIN:
            methods = ("tmpfs",)
        errors = []
        for method in methods:
            try:
                getattr(self, "_mount_" + method)()
                self.method = method
                return self
            except FullFSUnavailable as exc:
                errors.append("%s: %s" % (method, exc))
                self._remove_image()
        self._remove_dir()
        raise FullFSUnavailable("no small filesystem could be mounted (%s)" % "; ".join(errors))

    def _mount_tmpfs(self):
        _run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0755" % self.size, "fieldkit-fullfs", self.path],
             self.timeout)

    def _mount_ext4(self):
        self._image_dir = tempfile.mkdtemp(prefix="fieldkit-fullfs-image-")
        image = os.path.join(self._image_dir, "fs.img")
        with open(image, "wb") as fh:
            fh.truncate(self.size)
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", image], self.timeout)
        _run(["mount", "-o", "loop", image, self.path], self.timeout)

    def unmount(self):
        """Unmount (lazily when busy) and remove what mount() made; never raises for a busy mount."""
        if self.method is not None:
            try:
                _run(["umount", self.path], self.timeout)
            except FullFSUnavailable:
                _run(["umount", "-l", self.path], self.timeout)
            self.method = None
        self._remove_image()
        self._remove_dir()

    def _remove_image(self):
        if self._image_dir is not None:
            shutil.rmtree(self._image_dir, ignore_errors=True)
            self._image_dir = None

    def _remove_dir(self):
        if self._made_dir and self.path is not None and not os.path.ismount(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
            self._made_dir = False

    def __enter__(self):
        return self.mount()

    def __exit__(self, *exc):
        self.unmount()

    def free(self):
        """Bytes an unprivileged writer can still write."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave=0, name=".fieldkit-filler"):
        """Take space with a filler file until about ``leave`` bytes are free (to the block); returns the
        free bytes. ``unfill()`` gives the space back."""
        self._filler = os.path.join(self.path, name)
        want = self.free() - leave
        if want > 0:
            fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                try:
                    os.posix_fallocate(fd, size, want)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
            finally:
                os.close(fd)
        return self.free()

    def unfill(self):
        if self._filler is not None and os.path.exists(self._filler):
            os.unlink(self._filler)
        self._filler = None
