"""HDR test clips: lossless 10-bit HEVC with grey patches of known light and one saturated colour patch.

The patches are written straight as Y'CbCr code values (limited range,
BT.2020 non-constant-luminance matrix) computed here from the standards'
formulas, independently of ``stages.colour``; x265 is lossless, so a
decoder gives those codes back exactly.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GREY_NITS = (1.0, 10.0, 50.0, 100.0, 203.0, 400.0, 1000.0)
"""The grey patches' light, in nits (display light), left to right, top to bottom."""
COLOUR_BT709_LINEAR = (1.0, 0.3, 0.05)
"""The colour patch: this BT.709 linear RGB (an orange, inside BT.709) at 100 nits, carried in BT.2020."""
PATCH_W, PATCH_H = 80, 96
COLUMNS = 4
WIDTH, HEIGHT = PATCH_W * COLUMNS, PATCH_H * 2
MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
"""x265's master-display: P3 primaries, D65, 1000 nits max, 0.005 min (units 0.00002 and 0.0001 nits)."""
MAX_CLL, MAX_FALL = 1000, 400

_BT2020_TO_XYZ_KR = (0.2627, 0.6780, 0.0593)


def _primaries_to_xyz(xy: tuple[tuple[float, float], ...]) -> np.ndarray:
    m = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in xy]).T
    white = np.array([0.3127 / 0.3290, 1.0, (1 - 0.3127 - 0.3290) / 0.3290])
    return m * np.linalg.solve(m, white)


BT709_TO_XYZ = _primaries_to_xyz(((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)))
BT2020_TO_XYZ = _primaries_to_xyz(((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)))


def pq_encode(nits: np.ndarray) -> np.ndarray:
    """ST 2084 inverse EOTF: nits to PQ signal (0..1)."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.power(np.asarray(nits, float) / 10000.0, m1)
    return np.power((c1 + c2 * y) / (1 + c3 * y), m2)


def hlg_encode(display_nits: np.ndarray) -> np.ndarray:
    """BT.2100 HLG signal for display light (1000-nit display, system gamma 1.2) of R, G, B (... x 3)."""
    d = np.asarray(display_nits, float) / 1000.0
    yd = d @ np.array(_BT2020_TO_XYZ_KR)
    scene = d / np.power(np.maximum(yd, 1e-12), 0.2 / 1.2)[..., None]
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    log_part = a * np.log(np.maximum(12 * scene - b, 1e-12)) + c
    return np.where(scene <= 1 / 12, np.sqrt(3 * np.maximum(scene, 0)), log_part)


def ycbcr10(rgb_signal: np.ndarray) -> tuple[int, int, int]:
    """Non-linear BT.2020 R'G'B' (0..1) as 10-bit limited-range Y'CbCr (BT.2020 NCL matrix)."""
    r, g, b = rgb_signal
    kr, kg, kb = _BT2020_TO_XYZ_KR
    y = kr * r + kg * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    return round(64 + 876 * y), round(512 + 896 * cb), round(512 + 896 * cr)


def patch_nits() -> list[np.ndarray]:
    """Each patch's display light as BT.2020 linear RGB in nits: the greys, then the colour."""
    colour709 = np.array(COLOUR_BT709_LINEAR) * 100.0
    colour2020 = np.linalg.solve(BT2020_TO_XYZ, BT709_TO_XYZ @ colour709)
    return [np.full(3, n) for n in GREY_NITS] + [colour2020]


def patch_codes(transfer: str) -> list[tuple[int, int, int]]:
    """Each patch's Y'CbCr codes for ``transfer`` ("smpte2084" or "arib-std-b67")."""
    encode = pq_encode if transfer == "smpte2084" else hlg_encode
    return [ycbcr10(encode(nits)) for nits in patch_nits()]


def patch_centres() -> list[tuple[int, int]]:
    """(x, y) of each patch's centre in a full-size picture."""
    return [((i % COLUMNS) * PATCH_W + PATCH_W // 2, (i // COLUMNS) * PATCH_H + PATCH_H // 2)
            for i in range(len(GREY_NITS) + 1)]


def _picture(transfer: str) -> av.VideoFrame:
    y = np.zeros((HEIGHT, WIDTH), np.uint16)
    u = np.zeros((HEIGHT // 2, WIDTH // 2), np.uint16)
    v = np.zeros((HEIGHT // 2, WIDTH // 2), np.uint16)
    for i, (cy, cb, cr) in enumerate(patch_codes(transfer)):
        x0, y0 = (i % COLUMNS) * PATCH_W, (i // COLUMNS) * PATCH_H
        y[y0:y0 + PATCH_H, x0:x0 + PATCH_W] = cy
        u[y0 // 2:(y0 + PATCH_H) // 2, x0 // 2:(x0 + PATCH_W) // 2] = cb
        v[y0 // 2:(y0 + PATCH_H) // 2, x0 // 2:(x0 + PATCH_W) // 2] = cr
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p10le")
    for plane, values in zip(frame.planes, (y, u, v)):
        padded = np.zeros((values.shape[0], plane.line_size // 2), np.uint16)
        padded[:, :values.shape[1]] = values
        plane.update(padded.tobytes())
    return frame


def make_hdr_clip(path: str | Path, transfer: str = "smpte2084", *, frames: int = 10, fps: int = 10,
                  hdr10_metadata: bool = True) -> Path:
    """A lossless 10-bit HEVC MP4 of the patch picture, tagged BT.2020 / ``transfer`` / bt2020nc / tv.

    With ``hdr10_metadata`` (PQ), x265 writes the mastering display (:data:`MASTERING`) and
    MaxCLL/MaxFALL (:data:`MAX_CLL`, :data:`MAX_FALL`) SEI.
    """
    params = [f"log-level=error:lossless=1:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc:range=limited"]
    if hdr10_metadata and transfer == "smpte2084":
        params.append(f"hdr10=1:master-display={MASTERING}:max-cll={MAX_CLL},{MAX_FALL}")
    with av.open(str(path), "w", format="mp4") as out:
        v = out.add_stream("libx265", rate=fps)
        v.width, v.height, v.pix_fmt = WIDTH, HEIGHT, "yuv420p10le"
        v.options = {"preset": "ultrafast", "x265-params": ":".join(params)}
        cc = v.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 9, 16 if transfer == "smpte2084" else 18, 9, 1
        v.codec_tag = "hvc1"
        for i in range(frames):
            frame = _picture(transfer)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)
    return Path(path)
