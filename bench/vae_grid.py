#!/usr/bin/python3
"""Pictures of a trained VAE: samples from the prior and test-set reconstructions as PNGs.

What it does (no bar; for eyeballing a model from `latent fit vae`, e.g. the one that
bench/vae_fashion.py trains)
  - `latent sample --model M --n-samples 64 --seed S --output OUT.h5` -> /data (N x 784,
    the decoder's Bernoulli means in [0, 1]) -> bench/results/vae_samples.png, an 8 x 8
    grid of 28 x 28 images
  - `latent transform --model M --data FIRST32 --output OUT.h5 --reconstruct` on the
    first 32 test rows -> /reconstruction (N x 784 in [0, 1]) ->
    bench/results/vae_reconstructions.png: 8 pairs per band, originals above their
    reconstructions, 4 bands
  Pixels are clipped to [0, 1] and written as 8-bit grayscale (0 = black, Fashion-MNIST's
  background), each pixel enlarged --scale times (default 2). PNGs are written with PIL
  when it is installed, otherwise by a small zlib+struct encoder here.

How to run
  /usr/bin/python3 bench/vae_grid.py                   # the model of bench/vae_fashion.py
  /usr/bin/python3 bench/vae_grid.py --model M.h5 --test DIR
  /usr/bin/python3 bench/vae_grid.py --selftest        # no binary: renders random arrays
                                                       # and test images, checks the PNG
  Options: --n-samples 64 --n-recon 32 --columns 8 --seed 0 --scale 2 --out-dir DIR
           --samples-file F.h5 / --transform-file F.h5 (render existing outputs, do not run
           latent for that part) --nice N
"""
from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SIDE = 28
DEFAULT_MODEL = "runs/vae_fashion/vae_fashion_latent_1r.h5"   # under common.data_dir()


# --------------------------------------------------------------------------- rendering

def to_uint8(X):
    import numpy as np
    X = np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0)
    return np.rint(np.clip(X, 0.0, 1.0) * 255.0).astype(np.uint8)


def tile(images, columns: int, pad: int = 2, band_rows: int = 1, band_gap: int = 0, background: int = 128):
    """(n, 784) images in [0, 1] -> one uint8 picture, `columns` per row, row-major. Every
    `band_rows` image rows are followed by `band_gap` extra pixels of space (used to keep
    original/reconstruction pairs together)."""
    import numpy as np
    imgs = to_uint8(images).reshape(-1, SIDE, SIDE)
    n = imgs.shape[0]
    rows = -(-n // columns)
    bands = -(-rows // band_rows)
    h = rows * (SIDE + pad) + pad + (bands - 1) * band_gap
    w = columns * (SIDE + pad) + pad
    out = np.full((h, w), background, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        y = pad + r * (SIDE + pad) + (r // band_rows) * band_gap
        x = pad + c * (SIDE + pad)
        out[y:y + SIDE, x:x + SIDE] = imgs[i]
    return out


def pairs(originals, reconstructions, columns: int):
    """Interleaves rows of `columns` originals with their reconstructions: band k is
    originals[k*columns:(k+1)*columns] above the matching reconstructions."""
    import numpy as np
    o = np.asarray(originals, dtype=np.float64)
    r = np.asarray(reconstructions, dtype=np.float64)
    if o.shape != r.shape:
        raise SystemExit(f"originals {o.shape} and reconstructions {r.shape} differ in shape")
    n = o.shape[0]
    out, blank = [], np.zeros((1, o.shape[1]))
    for k in range(0, n, columns):
        a, b = o[k:k + columns], r[k:k + columns]
        fill = columns - a.shape[0]
        if fill:
            a = np.concatenate([a, np.repeat(blank, fill, 0)])
            b = np.concatenate([b, np.repeat(blank, fill, 0)])
        out += [a, b]
    return np.concatenate(out)


def enlarge(img, scale: int):
    import numpy as np
    return img if scale <= 1 else np.kron(img, np.ones((scale, scale), dtype=np.uint8))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png_gray(img) -> bytes:
    """8-bit grayscale PNG (colour type 0, no interlace, filter 0 on every scanline)."""
    import numpy as np
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw, 9))
            + _png_chunk(b"IEND", b""))


def decode_png_gray(data: bytes):
    """Decoder for what encode_png_gray writes (8-bit gray, filter 0); for the self-test."""
    import numpy as np
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind}"
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, ctype, interlace) == (8, 0, 0), "only 8-bit gray, no interlace"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, w + 1)
    assert (raw[:, 0] == 0).all(), "only filter type 0"
    return raw[:, 1:].copy()


def write_png(path: Path, img) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:
        Image = None
    tmp = path.with_name(path.name + ".tmp")
    if Image is not None:
        Image.fromarray(img, mode="L").save(tmp, format="PNG")
    else:
        tmp.write_bytes(encode_png_gray(img))
    tmp.replace(path)
    return path


def render_samples(X, out: Path, columns: int, scale: int) -> Path:
    return write_png(out, enlarge(tile(X, columns), scale))


def render_reconstructions(orig, rec, out: Path, columns: int, scale: int) -> Path:
    return write_png(out, enlarge(tile(pairs(orig, rec, columns), columns, band_rows=2, band_gap=6), scale))


# --------------------------------------------------------------------------- latent

def read_h5(path: Path, names: tuple[str, ...]):
    """The first of `names` in an HDF5 file (or, for a shard directory, /data of its shards)."""
    import h5py
    import numpy as np
    path = Path(path)
    if path.is_dir():
        X, _ = common.load_shards(path, with_labels=False)
        return X
    with h5py.File(path, "r") as f:
        for n in names:
            if n in f:
                return np.asarray(f[n][...], dtype=np.float64)
        raise SystemExit(f"{path}: none of the datasets {', '.join('/' + n for n in names)} "
                         f"(has: {', '.join(f.keys())})")


def first_rows_dir(src: Path, rows: int, runs: Path) -> Path:
    """A shard directory with the first `rows` rows of src (rewritten on every run)."""
    import shutil
    import numpy as np
    d = runs / f"first{rows}"
    shutil.rmtree(d, ignore_errors=True)
    X, y = common.load_shards(src, dtype="float32")
    common.write_shard(d / "part-00000.h5", np.ascontiguousarray(X[:rows]),
                       labels=None if y is None else y[:rows])
    return d


def run_samples(args, runs: Path):
    out = runs / "vae_grid_samples.h5"
    out.unlink(missing_ok=True)
    common.run_latent(["sample", "--model", args.model, "--n-samples", args.n_samples, "--output", out,
                       "--seed", args.seed], nice=args.nice)
    return out


def run_transform(args, data: Path, runs: Path):
    out = runs / "vae_grid_transform.h5"
    out.unlink(missing_ok=True)
    common.run_latent(["transform", "--model", args.model, "--data", data, "--output", out, "--reconstruct"],
                      nice=args.nice)
    return out


# --------------------------------------------------------------------------- self-test

def selftest(args) -> int:
    """Renders random arrays (and real test images when an imported copy exists) and
    checks the PNG encoder by decoding what it wrote."""
    import numpy as np
    rng = np.random.default_rng(args.seed)
    out_dir = Path(args.out_dir) if args.out_dir else Path(tempfile.mkdtemp(prefix="vae_grid_selftest-"))
    # encoder round trip on an odd-sized picture
    img = rng.integers(0, 256, size=(37, 53), dtype=np.uint8)
    assert (decode_png_gray(encode_png_gray(img)) == img).all(), "PNG round trip failed"
    # geometry: a known image lands where it should
    X = rng.random((args.n_samples, SIDE * SIDE))
    t = tile(X, args.columns)
    rows = -(-args.n_samples // args.columns)
    assert t.shape == (rows * (SIDE + 2) + 2, args.columns * (SIDE + 2) + 2), t.shape
    assert (t[2:30, 2:30] == to_uint8(X[0]).reshape(SIDE, SIDE)).all()
    assert (t[2:30, 32:60] == to_uint8(X[1]).reshape(SIDE, SIDE)).all()
    test = common.data_dir() / "fashion-mnist" / "test"
    if common.has_shards(test):
        T, _ = common.load_shards(test, with_labels=False)
        orig = T[:args.n_recon]
        src = "first test rows"
    else:
        orig = rng.random((args.n_recon, SIDE * SIDE))
        src = "random"
    rec = np.clip(orig + rng.normal(scale=0.15, size=orig.shape), 0, 1)   # a stand-in "reconstruction"
    p = pairs(orig, rec, args.columns)
    assert (p[:args.columns] == orig[:args.columns]).all() and (p[args.columns:2 * args.columns] == rec[:args.columns]).all()
    s_png = render_samples(X, out_dir / "vae_samples.png", args.columns, args.scale)
    r_png = render_reconstructions(orig, rec, out_dir / "vae_reconstructions.png", args.columns, args.scale)
    for f in (s_png, r_png):
        data = f.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{f} is not a PNG"
        if not _has_pil():   # our encoder: decode it again and compare with the picture
            back = decode_png_gray(data)
            print(f"{f}: {back.shape[1]}x{back.shape[0]} gray PNG, {len(data)} bytes")
    if not _has_pil():
        back = decode_png_gray(s_png.read_bytes())
        assert (back[::args.scale, ::args.scale] == t).all(), "enlarged PNG differs from the tile"
    print(f"self-test passed (samples: random uniform; reconstructions: {src} + noise; "
          f"PNG writer: {'PIL' if _has_pil() else 'zlib+struct'}); PNGs in {out_dir}")
    return 0


def _has_pil() -> bool:
    try:
        import PIL  # noqa: F401
        return True
    except ImportError:
        return False


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None,
                    help=f"VAE model file (default <data_dir>/{DEFAULT_MODEL}, written by vae_fashion.py)")
    ap.add_argument("--test", default=None, help="test data directory (default: Fashion-MNIST test, imported)")
    ap.add_argument("--n-samples", type=int, default=64, help="draws from the prior (default 64)")
    ap.add_argument("--n-recon", type=int, default=32, help="test rows to reconstruct (default 32)")
    ap.add_argument("--columns", type=int, default=8, help="images per row (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=2, help="enlarge every pixel to SCALE x SCALE (default 2)")
    ap.add_argument("--out-dir", default=None, help="where the PNGs go (default bench/results)")
    ap.add_argument("--samples-file", default=None, help="render this `latent sample` output instead of running it")
    ap.add_argument("--transform-file", default=None,
                    help="render this `latent transform --reconstruct` output (of the first --n-recon test rows) "
                         "instead of running it")
    ap.add_argument("--selftest", action="store_true", help="no binary: render random arrays and check the PNGs")
    ap.add_argument("--nice", type=int, default=None, help="run latent under nice -n N")
    args = ap.parse_args()
    if args.selftest:
        return selftest(args)

    out_dir = Path(args.out_dir) if args.out_dir else common.RESULTS_DIR
    runs = common.data_dir() / "runs" / "vae_grid"
    runs.mkdir(parents=True, exist_ok=True)
    if args.samples_file is None or args.transform_file is None:
        args.model = Path(args.model) if args.model else common.data_dir() / DEFAULT_MODEL
        if not args.model.is_file():
            sys.exit(f"{args.model} not found: train one (bench/vae_fashion.py or `latent fit vae`) or pass --model")

    samples = read_h5(Path(args.samples_file) if args.samples_file else run_samples(args, runs),
                      ("data", "samples", "mean"))
    s_png = render_samples(samples, out_dir / "vae_samples.png", args.columns, args.scale)
    print(f"{samples.shape[0]} samples (range {samples.min():.3f} .. {samples.max():.3f}) -> {s_png}")

    test = Path(args.test) if args.test else common.import_fashion_mnist("test", nice=args.nice)
    sub = first_rows_dir(test, args.n_recon, runs)
    orig, _ = common.load_shards(sub, with_labels=False)
    rec = read_h5(Path(args.transform_file) if args.transform_file else run_transform(args, sub, runs),
                  ("reconstruction",))
    if rec.shape[0] != orig.shape[0]:
        sys.exit(f"{rec.shape[0]} reconstructions for {orig.shape[0]} rows")
    r_png = render_reconstructions(orig, rec, out_dir / "vae_reconstructions.png", args.columns, args.scale)
    mse = float(((orig - rec) ** 2).mean())
    print(f"{orig.shape[0]} test rows, reconstruction mean squared error per pixel {mse:.4f} -> {r_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
