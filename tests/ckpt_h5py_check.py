#!/usr/bin/python3
"""Check a dsrt checkpoint with h5py alone (no dsrt code).

    ckpt_h5py_check.py MAIN_FILE EXPECTED_TXT
        MAIN_FILE is <save_dir>/<tag>/checkpoint.h5; EXPECTED_TXT is what
        test_ckpt writes with DSRT_CKPT_KEEP=<dir> (<dir>/expected.txt).
    ckpt_h5py_check.py --run TEST_CKPT_BINARY
        runs the binary with DSRT_CKPT_KEEP in a fresh temporary directory,
        then checks what it kept (the ctest entry point).

Checked: /master/<name>, /exp_avg/<name>, /exp_avg_sq/<name> are virtual
float32 datasets of the full shape whose values are bit for bit the expected
ones (whole, and row by row through h5py slicing), every source file they map
exists next to the main file (HDF5 would silently fill a missing one), the
tensors are listed in registration order, the /state values (int64, float64
bits, strings by length and FNV-1a 64) match, and <save_dir>/latest holds the
tag. The file is read from another working directory, so the relative source
paths must resolve against the main file's directory.

Exit status: 0 passed, 1 failed, 77 h5py (or numpy) not importable.
"""
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError:
    print("SKIP: h5py not importable")
    sys.exit(77)

KINDS = ("master", "exp_avg", "exp_avg_sq")


class Failure(Exception):
    pass


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def parse_expected(path):
    exp = {"tensors": [], "i64": [], "f64": [], "str": [], "order": None, "latest": None}
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            what = words[0]
            if what == "latest":
                exp["latest"] = words[1]
            elif what == "order":
                exp["order"] = words[1:]
            elif what == "tensor":
                kind, name, shape = words[1], words[2], tuple(int(d) for d in words[3].split(","))
                bits = np.array([int(w, 16) for w in words[4:]], dtype=np.uint32)
                exp["tensors"].append((kind, name, shape, bits))
            elif what == "i64":
                exp["i64"].append((words[1], int(words[2])))
            elif what == "f64":
                exp["f64"].append((words[1], int(words[2], 16)))
            elif what == "str":
                exp["str"].append((words[1], int(words[2]), int(words[3], 16)))
            else:
                raise Failure(f"{path}: unknown line {line.strip()!r}")
    return exp


def check_tensor(f, main_dir, kind, name, shape, bits):
    path = f"/{kind}/{name}"
    if path not in f:
        raise Failure(f"{path}: missing")
    ds = f[path]
    if not ds.is_virtual:
        raise Failure(f"{path}: not a virtual dataset")
    for src in ds.virtual_sources():
        if src.file_name != "." and not os.path.isfile(os.path.join(main_dir, src.file_name)):
            raise Failure(f"{path}: source file {src.file_name} (for {src.dset_name}) is missing")
        if os.path.isabs(src.file_name):
            raise Failure(f"{path}: source file {src.file_name} is an absolute path")
    if ds.dtype != np.dtype("<f4"):
        raise Failure(f"{path}: dtype {ds.dtype}, expected float32")
    if ds.shape != shape:
        raise Failure(f"{path}: shape {ds.shape}, expected {shape}")
    data = ds[()]
    got = np.ascontiguousarray(data).view(np.uint32).ravel()
    if got.shape != bits.shape or not np.array_equal(got, bits):
        bad = int(np.argmax(got != bits)) if got.shape == bits.shape else -1
        raise Failure(f"{path}: values differ (first at flat index {bad})")
    for i in range(shape[0]):  # hyperslab reads through the virtual dataset
        row = np.ascontiguousarray(ds[i]).view(np.uint32).ravel()
        if not np.array_equal(row, got.reshape(shape)[i].ravel()):
            raise Failure(f"{path}: row {i} read alone differs")


def check(main, expected):
    exp = parse_expected(expected)
    main = os.path.abspath(main)
    main_dir = os.path.dirname(main)
    if exp["latest"] is not None:
        tag = os.path.basename(main_dir)
        if tag != exp["latest"]:
            raise Failure(f"{main}: in directory {tag}, expected the tag {exp['latest']}")
        latest = os.path.join(os.path.dirname(main_dir), "latest")
        with open(latest) as lf:
            text = lf.read()
        if text != tag:
            raise Failure(f"{latest}: holds {text!r}, expected {tag!r} (no newline)")
    os.chdir("/")  # relative source paths must not depend on the working directory
    n_checked = 0
    with h5py.File(main, "r") as f:
        fmt = f.attrs.get("format")
        if fmt != b"dsrt.checkpoint.main":
            raise Failure(f"{main}: root attribute format is {fmt!r}")
        if exp["order"] is not None:
            for kind in KINDS:
                names = list(f[kind].keys())
                if names != exp["order"]:
                    raise Failure(f"/{kind} lists {names}, expected registration order {exp['order']}")
        for kind, name, shape, bits in exp["tensors"]:
            check_tensor(f, main_dir, kind, name, shape, bits)
            n_checked += 1
        for key, value in exp["i64"]:
            ds = f[f"state/{key}"]
            if ds.dtype != np.dtype("<i8") or ds.shape != (1,) or int(ds[0]) != value:
                raise Failure(f"/state/{key}: {ds.dtype} {ds[()]}, expected int64 {value}")
            n_checked += 1
        for key, value in exp["f64"]:
            ds = f[f"state/{key}"]
            got = int(np.asarray(ds[()], dtype="<f8").view(np.uint64)[0]) if ds.dtype == np.dtype("<f8") else None
            if ds.shape != (1,) or got != value:
                raise Failure(f"/state/{key}: {ds.dtype} bits {got if got is None else hex(got)}, "
                              f"expected float64 bits {value:016x}")
            n_checked += 1
        for key, length, digest in exp["str"]:
            ds = f[f"state/{key}"]
            if ds.dtype.kind != "S" or ds.shape != (1,):
                raise Failure(f"/state/{key}: {ds.dtype} {ds.shape}, expected one fixed-length string")
            data = bytes(ds[0])
            if len(data) != length or fnv1a64(data) != digest:
                raise Failure(f"/state/{key}: {len(data)} bytes, hash {fnv1a64(data):016x}; "
                              f"expected {length} bytes, hash {digest:016x}")
            data.decode("utf-8")
            n_checked += 1
    print(f"OK: {n_checked} datasets of {main} checked with h5py {h5py.__version__} "
          f"(HDF5 {h5py.version.hdf5_version})")


def run(binary):
    tmp = tempfile.mkdtemp(prefix="dsrt_ckpt_h5py_")
    try:
        env = dict(os.environ, DSRT_CKPT_KEEP=tmp)
        rc = subprocess.run([binary], env=env).returncode
        if rc != 0:
            print(f"FAIL: {binary} exited with {rc}")
            return rc if rc == 77 else 1
        with open(os.path.join(tmp, "latest")) as lf:
            tag = lf.read()
        check(os.path.join(tmp, tag, "checkpoint.h5"), os.path.join(tmp, "expected.txt"))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "--run":
            return run(argv[2])
        if len(argv) == 3:
            check(argv[1], argv[2])
            return 0
    except (Failure, OSError, KeyError) as e:
        print(f"FAIL: {e}")
        return 1
    print(__doc__.strip().split("\n\n")[1])
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
