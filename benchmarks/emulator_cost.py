"""What the emulator itself costs, so that the benchmark measures the client and not the server.

    python benchmarks/emulator_cost.py sf-puts --files 10000       # whole-file PUTs of 4 KiB into one store
    python benchmarks/emulator_cost.py sf-chunks --mib 1024         # one upload session, 16 MiB chunks
    python benchmarks/emulator_cost.py sf-put --mib 1024            # one whole-file PUT (what curl -T sends)
    python benchmarks/emulator_cost.py zs-slices --mib 1024 [--slice-md5]

The client side is as cheap as Python allows (http.client on kept-alive connections, bodies by sendfile), so
the figures are the emulator's: its CPU seconds (user + sys from /proc/PID/stat) per request or per GiB, and
for ZStack the seconds from the last slice's answer to the image's Ready (the md5Sum the server computes).
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from imagestore_emulator.process import EmulatorProcess  # noqa: E402

MiB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """user + sys CPU seconds of a process (all its threads)."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Conn:
    """One kept-alive HTTP/1.1 connection to the emulator."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.http = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)

    def call(self, method, path, body=None, headers=None):
        self.http.request(method, path, body=body, headers=headers or {})
        rsp = self.http.getresponse()
        data = rsp.read()
        if rsp.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, rsp.status, data[:300]))
        return data

    def send_range(self, method, path, headers, fd, offset, count, head=b"", tail=b""):
        """A request whose body is head + ``count`` bytes of ``fd`` from ``offset`` (by sendfile) + tail."""
        self.http.putrequest(method, path, skip_accept_encoding=True)
        for key, value in headers.items():
            self.http.putheader(key, value)
        self.http.putheader("Content-Length", str(len(head) + count + len(tail)))
        self.http.endheaders()
        sock = self.http.sock
        if head:
            sock.sendall(head)
        with os.fdopen(os.dup(fd), "rb") as fh:     # socket.sendfile waits when the send buffer is full
            sock.sendfile(fh, offset, count)
        if tail:
            sock.sendall(tail)
        rsp = self.http.getresponse()
        data = rsp.read()
        if rsp.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, rsp.status, data[:300]))
        return data


def make_file(path, size):
    block = os.urandom(4 * MiB)
    with open(path, "wb") as fh:
        for i in range(0, size, len(block)):
            fh.write((i.to_bytes(8, "big") + block[8:])[:min(len(block), size - i)])


def sf_puts(emu, args):
    """Whole-file PUTs of --size bytes, folders of 1,000 files, --workers connections: CPU per PUT as the store fills."""
    body = os.urandom(args.size)
    marks = sorted({max(1, min(args.files, m)) for m in (100, 1000, args.files - 1000, args.files)})
    results = []
    done = 0
    conns = [Conn(emu.url) for _ in range(args.workers)]
    for mark in marks:
        count = mark - done
        cpu0, t0 = proc_cpu(emu.proc.pid), time.monotonic()

        def put(i, conn_index):
            path = "/ImageStore/%s?api-version=6.0" % quote("pkg/f%03d/file%05d" % (i // 1000, i), safe="")
            conns[conn_index].call("PUT", path, body, {"Content-Type": "application/octet-stream"})

        def worker(w):
            for i in range(done + w, mark, args.workers):
                put(i, w)
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, cpu = time.monotonic() - t0, proc_cpu(emu.proc.pid) - cpu0
        results.append({"files_after": mark, "puts": count, "emulator_cpu_ms_per_put": 1000 * cpu / count,
                        "wall_ms_per_put": 1000 * wall / count})
        done = mark
    listing_cpu0 = proc_cpu(emu.proc.pid)
    t0 = time.monotonic()
    for f in range(0, args.files, 1000):
        conns[0].call("GET", "/ImageStore/%s?api-version=6.2" % quote("pkg/f%03d" % (f // 1000), safe=""))
    results.append({"listings": -(-args.files // 1000), "wall_ms_per_listing": 1000 * (time.monotonic() - t0) / -(-args.files // 1000),
                    "emulator_cpu_ms_per_listing": 1000 * (proc_cpu(emu.proc.pid) - listing_cpu0) / -(-args.files // 1000)})
    return results


def sf_chunks(emu, args, src):
    size = os.path.getsize(src)
    chunk = args.chunk_mib * MiB
    sid = str(uuid.uuid4())
    path = quote("bench/chunks", safe="")
    fd = os.open(src, os.O_RDONLY)
    conns = [Conn(emu.url) for _ in range(args.workers)]
    offsets = list(range(0, size, chunk))
    cpu0, t0 = proc_cpu(emu.proc.pid), time.monotonic()

    def worker(w):
        for off in offsets[w::args.workers]:
            n = min(chunk, size - off)
            conns[w].send_range("PUT", "/ImageStore/%s/$/UploadChunk?api-version=6.0&session-id=%s" % (path, sid),
                                {"Content-Range": "bytes %d-%d/%d" % (off, off + n - 1, size),
                                 "Content-Type": "application/octet-stream"}, fd, off, n)
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(worker, range(args.workers)))
    conns[0].call("POST", "/ImageStore/$/CommitUploadSession?api-version=6.0&session-id=%s" % sid)
    wall, cpu = time.monotonic() - t0, proc_cpu(emu.proc.pid) - cpu0
    os.close(fd)
    gib = size / (1 << 30)
    return [{"bytes": size, "wall_s": wall, "emulator_cpu_s_per_gib": cpu / gib}]


def sf_put(emu, args, src):
    size = os.path.getsize(src)
    fd = os.open(src, os.O_RDONLY)
    cpu0, t0 = proc_cpu(emu.proc.pid), time.monotonic()
    Conn(emu.url).send_range("PUT", "/ImageStore/%s?api-version=6.0" % quote("bench/whole", safe=""),
                             {"Content-Type": "application/octet-stream"}, fd, 0, size)
    wall, cpu = time.monotonic() - t0, proc_cpu(emu.proc.pid) - cpu0
    os.close(fd)
    return [{"bytes": size, "wall_s": wall, "emulator_cpu_s_per_gib": cpu / (size / (1 << 30))}]


def zs_login_and_job(emu, name):
    from imagestore_emulator.zstack_wire import BACKUP_STORAGE_UUID, sha512_hex
    creds = emu.credentials["zstack"]
    c = Conn(emu.url)
    body = {"logInByAccount": {"accountName": creds["username"], "password": sha512_hex(creds["password"])}}
    session = json.loads(c.call("PUT", "/zstack/v1/accounts/login", json.dumps(body), {"Content-Type": "application/json"}))
    auth = {"Authorization": "OAuth " + session["inventory"]["uuid"], "Content-Type": "application/json"}
    data = {"name": name, "url": "upload://" + name, "mediaType": "RootVolumeTemplate", "format": "raw",
            "platform": "Linux", "backupStorageUuids": [BACKUP_STORAGE_UUID]}
    req = {"params": {"jobName": "APIAddImageMsg", "jobData": json.dumps(data)}, "systemTags": ["uploadImage::" + name]}
    c.http.request("POST", "/zstack/v1/longjobs", body=json.dumps(req), headers=auth)
    rsp = c.http.getresponse()
    location = json.loads(rsp.read())["location"]
    path = urlsplit(location).path
    while True:
        c.http.request("GET", path)
        rsp = c.http.getresponse()
        doc = rsp.read()
        if rsp.status != 202:
            break
        time.sleep(0.01)
    job = json.loads(doc)["inventory"]
    while not job.get("jobResult"):
        time.sleep(0.02)
        job = json.loads(c.call("GET", "/zstack/v1/longjobs/" + job["uuid"], headers=auth))["inventories"][0]
    image = json.loads(job["jobResult"])["inventory"]
    return c, auth, image["uuid"]


def zs_slices(emu, args, src):
    size = os.path.getsize(src)
    slice_size = args.chunk_mib * MiB
    c, auth, image_uuid = zs_login_and_job(emu, "cost-%d" % int(time.time() * 1000))
    fd = os.open(src, os.O_RDONLY)
    boundary = uuid.uuid4().hex
    head = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"image.raw\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % boundary).encode()
    tail = ("\r\n--%s--\r\n" % boundary).encode()
    indexes = list(range(-(-size // slice_size)))
    conns = [Conn(emu.url) for _ in range(args.workers)]
    digests = {}
    if args.slice_md5:
        with open(src, "rb") as fh:
            for i in indexes:
                digests[i] = hashlib.md5(fh.read(slice_size)).hexdigest()
    cpu0, t0 = proc_cpu(emu.proc.pid), time.monotonic()

    def worker(w):
        for i in indexes[w::args.workers]:
            off = i * slice_size
            n = min(slice_size, size - off)
            headers = {"X-IMAGE-UUID": image_uuid, "X-IMAGE-SIZE": str(size), "X-SLICE-OFFSET": str(off),
                       "X-SLICE-SIZE": str(n), "X-SLICE-INDEX": str(i),
                       "Content-Type": "multipart/form-data; boundary=%s" % boundary}
            if args.slice_md5:
                headers["X-SLICE-MD5"] = digests[i]
            conns[w].send_range("POST", "/imagestore/upload", headers, fd, off, n, head, tail)
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(worker, range(args.workers)))
    sent = time.monotonic()
    while True:
        image = json.loads(c.call("GET", "/zstack/v1/images/" + image_uuid, headers=auth))["inventories"][0]
        if image["status"] == "Ready":
            break
        time.sleep(0.01)
    ready = time.monotonic()
    cpu = proc_cpu(emu.proc.pid) - cpu0
    os.close(fd)
    expected = hashlib.md5()
    with open(src, "rb") as fh:
        for block in iter(lambda: fh.read(4 * MiB), b""):
            expected.update(block)
    assert image["md5Sum"] == expected.hexdigest(), "md5Sum %s is wrong" % image["md5Sum"]
    gib = size / (1 << 30)
    return [{"bytes": size, "slice_md5": args.slice_md5, "send_s": sent - t0, "last_slice_to_ready_s": ready - sent,
             "emulator_cpu_s_per_gib": cpu / gib}]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["sf-puts", "sf-chunks", "sf-put", "zs-slices"])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--chunk-mib", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--slice-md5", action="store_true", help="ZStack: send X-SLICE-MD5 with every slice")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args(argv)
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = tempfile.mkdtemp(prefix="imagestore-emucost-", dir=scratch)
    try:
        os.makedirs(os.path.join(work, "emu"))
        emu = EmulatorProcess(os.path.join(work, "emu")).start()
        try:
            src = None
            if args.what != "sf-puts":
                src = os.path.join(work, "src.img")
                make_file(src, args.mib * MiB)
            for _ in range(args.runs):
                emu.reset()
                if args.what == "sf-puts":
                    rows = sf_puts(emu, args)
                elif args.what == "sf-chunks":
                    rows = sf_chunks(emu, args, src)
                elif args.what == "sf-put":
                    rows = sf_put(emu, args, src)
                else:
                    rows = zs_slices(emu, args, src)
                for row in rows:
                    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        finally:
            emu.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
