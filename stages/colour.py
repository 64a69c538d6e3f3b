"""Colour: what a picture's numbers mean, and turning any of them into SDR BT.709 for people to look at.

A decoded picture's code values only mean something with its **colour tags**:
primaries (which red, green and blue), transfer (how code values map to
light), matrix (how Y'CbCr was made from R'G'B') and range (limited "tv"
16-235, or full "pc" 0-255). HDR10 and HLG pictures also carry the light
levels they were mastered for. :class:`Colour` holds all of it, read once from
a file's first decoded frame by ``Decode`` and carried on ``StreamInfo.colour``
(a frame that crosses processes in a shared-memory slot loses its PyAV tags
and side data: consumers read ``item.stream.colour``, never the frame's).

Untagged pictures get the guess players make: matrix and primaries BT.709
for HD (height >= 720 or width >= 1280), else BT.601 (``bt470bg`` for 576/288
lines, ``smpte170m`` otherwise); BT.2020 primaries imply the ``bt2020nc``
matrix; range "tv" unless the pixel format is ``yuvj*`` or RGB.

**HDR to SDR** (PQ ``smpte2084`` and HLG ``arib-std-b67`` sources), the same
operator as FFmpeg's ``zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,
tonemap=hable:desat=0,zscale=t=bt709``:

1. Y'CbCr to non-linear R'G'B' with the source's matrix and range (swscale),
   scaled to the output size *first* (so a 160-wide sprite tile costs little).
2. Linear light, 1.0 = 100 nits: PQ by the ST 2084 EOTF; HLG as display light
   by the BT.2100 inverse OETF then the OOTF for a 1000-nit display (system
   gamma 1.2, luminance weights of BT.2020), as zimg does.
3. BT.2020 to BT.709 primaries by a 3x3 matrix in linear light; negative
   components (colours outside BT.709) clipped to 0.
4. Hable ("Uncharted 2") tone curve exactly as ``vf_tonemap``: with
   ``sig = max(R, G, B)``, every component is scaled by
   ``hable(sig) / hable(peak) / sig`` (no desaturation), where
   ``hable(x) = (x(0.15x + 0.05) + 0.004) / (x(0.15x + 0.5) + 0.06) - 0.02/0.3``.
   ``peak`` as FFmpeg's ``ff_determine_signal_peak``: MaxCLL / 100, else the
   mastering display's maximum luminance / 100, else 100 for PQ, 10 for HLG.
5. Encoded for a BT.709 (BT.1886, gamma 2.4) display: ``V = L ** (1/2.4)``,
   values above 1 clipped, then 8-bit. This is what zscale's ``t=bt709``
   does to display-referred light; the camera OETF (``1.099 L^0.45 - 0.099``)
   would make the darks several times darker than FFmpeg's tone-map.

Steps 2-5 are one function of (R', G', B'), baked into a 65 x 65 x 65 3D LUT
(per transfer and peak, written once as a ``.cube`` file in the temporary
folder) and applied by FFmpeg's ``lut3d`` filter with tetrahedral
interpolation on 16-bit planar RGB. Measured on a 1280x720 frame (this
machine, one thread): the LUT route adds ~7.6 ms to a 720p proxy frame
(scale to gbrp16le 3.0 ms instead of 1.9 ms to yuv420p, lut3d 5.7 ms, or
2.9 ms on two graph threads, back to yuv420p 0.8 ms), against ~40 ms for
the same formula in numpy with 1,024-entry LUTs. Its error against the exact
formula: at most 1 code value on every 10-bit grey, 0.13 on average over
random 10-bit colours (up to ~35 where a component is clipped at 0 next to
bright ones). On the HDR10 test clip the poster is within 0.67 code values
(mean; max 1) of ffmpeg's zscale + tonemap=hable chain. On HLG the greys
agree as well; saturated colours differ by up to ~13 code values because this
machine's zimg applies HLG's system gamma to each component, where BT.2100's
OOTF (used here) scales by the luminance. SDR sources are
converted by swscale alone, with their own matrix and range.

Not converted: other transfers (``linear``, ``log100``, ``smpte428``...) are
shown as if BT.709 (stages warn once per file); SDR BT.2020 (``bt2020-10``)
is shown without gamut mapping; BT.2020 constant-luminance is decoded with the
non-constant matrix. Dolby Vision: PyAV 18 exposes neither the stream's
configuration record (its profile) nor a parser for the RPU, so only the
presence of its frame side data is noted (``Colour.dolby_vision``); a profile
8.1 file shows its HDR10 base layer, a profile 5 one (IPTPQc2) is wrong.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import av
    import numpy as np

    from pipeline import StageContext

    from .frames import VideoFrameItem

__all__ = ["Colour", "MasteringDisplay", "SDR_BT709", "COLOR_PRIMARIES", "COLOR_TRANSFERS", "COLOR_SPACES",
           "COLOR_RANGES", "HDR_TRANSFERS", "picture_colour", "signal_peak", "to_rgb24", "to_sdr_frame",
           "sws_matrix", "sws_range", "source_args", "tag_encoder", "tag_frame", "x265_hdr_params",
           "srgb_icc_profile", "unconverted_transfer", "tone_map_formula"]

# FFmpeg's names (libavutil's av_color_*_name, what ffprobe prints) for the codes PyAV
# hands back as plain ints; "reserved" and "unknown" (unspecified) are left out: None.
COLOR_PRIMARIES: dict[int, str] = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
    10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
COLOR_TRANSFERS: dict[int, str] = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
    10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
    16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
COLOR_SPACES: dict[int, str] = {
    0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
    9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c",
    14: "ictcp", 15: "ipt-c2", 16: "ycgco-re", 17: "ycgco-ro"}
COLOR_RANGES: dict[int, str] = {1: "tv", 2: "pc"}
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
"""PQ (HDR10, Dolby Vision) and HLG: the transfers that are tone-mapped for SDR outputs."""
# Transfers whose pictures look right through a BT.709-style gamma (they differ by little for display).
_SDR_TRANSFERS = frozenset({"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "iec61966-2-1",
                            "iec61966-2-4", "bt1361e", "bt2020-10", "bt2020-12"})
_CODES = {name: {v: k for k, v in table.items()}
          for name, table in (("primaries", COLOR_PRIMARIES), ("transfer", COLOR_TRANSFERS),
                              ("matrix", COLOR_SPACES), ("range", COLOR_RANGES))}

# swscale's matrices (SWS_CS_*) by FFmpeg matrix name; one it lacks is read as BT.709.
_SWS_MATRIX = {"bt709": "itu709", "fcc": "fcc", "bt470bg": "itu601", "smpte170m": "smpte170m",
               "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}


@dataclass(frozen=True, slots=True)
class MasteringDisplay:
    """The display an HDR picture was graded on (SMPTE ST 2086): CIE 1931 xy chromaticities and nits."""

    red: tuple[float, float] | None
    green: tuple[float, float] | None
    blue: tuple[float, float] | None
    white_point: tuple[float, float] | None
    min_nits: float | None
    max_nits: float | None


@dataclass(frozen=True, slots=True)
class Colour:
    """How a stream's pictures encode colour: FFmpeg's names for its tags (guessed where untagged) and HDR levels.

    ``max_cll`` / ``max_fall`` are the content light levels (brightest pixel,
    brightest frame average) in nits; ``dolby_vision`` is True when frames
    carry Dolby Vision metadata.
    """

    primaries: str
    transfer: str
    matrix: str
    range: str
    mastering: MasteringDisplay | None = None
    max_cll: int | None = None
    max_fall: int | None = None
    dolby_vision: bool = False

    @classmethod
    def guess(cls, width: int, height: int, pix_fmt: str | None = None, *, primaries: str | None = None,
              transfer: str | None = None, matrix: str | None = None, range: str | None = None) -> Colour:
        """The tags given, and for each one missing the guess players make from the picture's size and format."""
        hd = height >= 720 or width >= 1280
        pal = height in (576, 288)
        if primaries is None:
            primaries = "bt709" if hd else "bt470bg" if pal else "smpte170m"
        if matrix is None:
            rgb = pix_fmt is not None and _is_rgb(pix_fmt)
            matrix = ("gbr" if rgb else "bt2020nc" if primaries == "bt2020" else "bt709" if hd
                      else "bt470bg" if pal else "smpte170m")
        if transfer is None:
            transfer = "bt709" if hd or primaries == "bt2020" else "smpte170m"
        if range is None:
            full = pix_fmt is not None and (pix_fmt.startswith("yuvj") or _is_rgb(pix_fmt))
            range = "pc" if full else "tv"
        return cls(primaries, transfer, matrix, range)

    @classmethod
    def from_frame(cls, frame: av.VideoFrame) -> Colour:
        """A decoded frame's tags (guessed where untagged) and HDR side data."""
        colour = cls.guess(frame.width, frame.height, frame.format.name,
                           primaries=COLOR_PRIMARIES.get(int(frame.color_primaries)),
                           transfer=COLOR_TRANSFERS.get(int(frame.color_trc)),
                           matrix=COLOR_SPACES.get(int(frame.colorspace)) if int(frame.colorspace) else None,
                           range=COLOR_RANGES.get(int(frame.color_range)))
        mastering, cll, fall, dovi = _side_data(frame)
        return cls(colour.primaries, colour.transfer, colour.matrix, colour.range, mastering, cll, fall, dovi)

    @property
    def hdr(self) -> bool:
        """Whether the transfer is PQ or HLG."""
        return self.transfer in HDR_TRANSFERS

    def codes(self) -> dict[str, int]:
        """The tags as the FFmpeg codes a codec context takes (``color_primaries``, ``color_trc``...)."""
        return {"color_primaries": _CODES["primaries"].get(self.primaries, 2),
                "color_trc": _CODES["transfer"].get(self.transfer, 2),
                "colorspace": _CODES["matrix"].get(self.matrix, 2),
                "color_range": _CODES["range"].get(self.range, 0)}


SDR_BT709 = Colour("bt709", "bt709", "bt709", "tv")
"""What a tone-mapped output is: BT.709 primaries, transfer and matrix, limited range."""


@lru_cache(maxsize=64)
def _is_rgb(pix_fmt: str) -> bool:
    from ._av import av
    try:
        return bool(av.VideoFormat(pix_fmt).is_rgb)
    except (ValueError, av.FFmpegError):
        return False


# Side data ---------------------------------------------------------------------------

class _Rational(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int32), ("den", ctypes.c_int32)]


class _AVMasteringDisplayMetadata(ctypes.Structure):
    """libavutil/mastering_display_metadata.h (88 bytes, checked against x265's SEI as FFmpeg 8 decodes it)."""

    _fields_ = [("display_primaries", (_Rational * 2) * 3),  # r, g, b
                ("white_point", _Rational * 2), ("min_luminance", _Rational), ("max_luminance", _Rational),
                ("has_primaries", ctypes.c_int), ("has_luminance", ctypes.c_int)]


class _AVContentLightMetadata(ctypes.Structure):
    _fields_ = [("MaxCLL", ctypes.c_uint), ("MaxFALL", ctypes.c_uint)]


def _q(r: _Rational) -> float | None:
    return r.num / r.den if r.den else None


def _xy(pair: Any) -> tuple[float, float] | None:
    x, y = _q(pair[0]), _q(pair[1])
    return (x, y) if x is not None and y is not None else None


def _side_data(frame: av.VideoFrame) -> tuple[MasteringDisplay | None, int | None, int | None, bool]:
    """Mastering display, MaxCLL, MaxFALL and Dolby Vision presence from a decoded frame's side data."""
    mastering = cll = fall = None
    dovi = False
    found = frame.side_data  # a mapping of type -> side data since PyAV 18.1.1, a sequence of side data before
    for sd in found.values() if hasattr(found, "values") else found:
        kind = sd.type.name
        if kind == "MASTERING_DISPLAY_METADATA":
            raw = bytes(sd)
            if len(raw) >= ctypes.sizeof(_AVMasteringDisplayMetadata):
                m = _AVMasteringDisplayMetadata.from_buffer_copy(raw)
                prim = [_xy(p) for p in m.display_primaries] if m.has_primaries else [None, None, None]
                mastering = MasteringDisplay(
                    red=prim[0], green=prim[1], blue=prim[2],
                    white_point=_xy(m.white_point) if m.has_primaries else None,
                    min_nits=_q(m.min_luminance) if m.has_luminance else None,
                    max_nits=_q(m.max_luminance) if m.has_luminance else None)
        elif kind == "CONTENT_LIGHT_LEVEL":
            raw = bytes(sd)
            if len(raw) >= ctypes.sizeof(_AVContentLightMetadata):
                c = _AVContentLightMetadata.from_buffer_copy(raw)
                cll, fall = int(c.MaxCLL) or None, int(c.MaxFALL) or None
        elif kind in ("DOVI_METADATA", "DOVI_RPU_BUFFER"):
            dovi = True
    return mastering, cll, fall, dovi


def picture_colour(item: VideoFrameItem, ctx: StageContext | None = None) -> Colour:
    """The colour of ``item``'s stream (a guess from the picture when the decoder gave none).

    With ``ctx``, warns once per file when the transfer is one that is shown as if BT.709.
    """
    colour = item.stream.colour or Colour.guess(item.width, item.height, item.format)
    if ctx is not None and not ctx.state.get("colour_checked"):
        ctx.state["colour_checked"] = True
        warning = unconverted_transfer(colour)
        if warning:
            ctx.warn(warning)
    return colour


def signal_peak(colour: Colour) -> float:
    """The brightest light to tone-map, in units of 100 nits, as FFmpeg's ``ff_determine_signal_peak``."""
    if colour.max_cll:
        return colour.max_cll / 100.0
    if colour.mastering is not None and colour.mastering.max_nits:
        return colour.mastering.max_nits / 100.0
    return 100.0 if colour.transfer == "smpte2084" else 10.0


def unconverted_transfer(colour: Colour) -> str | None:
    """A warning when ``colour``'s transfer is one that is shown as if BT.709 (neither SDR gamma nor PQ/HLG)."""
    if colour.transfer in _SDR_TRANSFERS or colour.transfer in HDR_TRANSFERS:
        return None
    return f"colour transfer {colour.transfer!r} is not converted: pictures are shown as if it were BT.709"


# The operator -----------------------------------------------------------------------

_PQ_M1, _PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
_PQ_C1, _PQ_C2, _PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A = 0.17883277
_HLG_B = 1 - 4 * _HLG_A
_WHITE_D65 = (0.3127, 0.3290)
_PRIMARIES_XY = {"bt709": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)),
                 "bt2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))}


def _rgb_to_xyz(primaries: str) -> np.ndarray:
    """The 3x3 matrix from linear RGB of ``primaries`` (D65 white) to CIE XYZ."""
    import numpy as np
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in _PRIMARIES_XY[primaries]]).T
    wx, wy = _WHITE_D65
    white = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    return xyz * np.linalg.solve(xyz, white)


@cache
def _bt2020_to_bt709() -> np.ndarray:
    """Linear BT.2020 RGB to linear BT.709 RGB."""
    import numpy as np
    return np.linalg.solve(_rgb_to_xyz("bt709"), _rgb_to_xyz("bt2020"))


def _pq_to_linear(signal: np.ndarray) -> np.ndarray:
    """ST 2084 EOTF: PQ signal (0..1) to light, 1.0 = 100 nits."""
    import numpy as np
    p = np.power(np.clip(signal, 0.0, 1.0), 1 / _PQ_M2)
    return 100.0 * np.power(np.maximum(p - _PQ_C1, 0.0) / (_PQ_C2 - _PQ_C3 * p), 1 / _PQ_M1)


def _hlg_to_linear(rgb: np.ndarray) -> np.ndarray:
    """BT.2100 HLG as display light (1000-nit display, system gamma 1.2), 1.0 = 100 nits; ``rgb`` is ... x 3."""
    import numpy as np
    e = np.clip(rgb, 0.0, 1.0)
    c = 0.5 - _HLG_A * np.log(4 * _HLG_A)
    scene = np.where(e <= 0.5, e * e / 3.0, (np.exp((e - c) / _HLG_A) + _HLG_B) / 12.0)
    ys = scene @ np.array([0.2627, 0.6780, 0.0593], dtype=scene.dtype)
    return scene * (np.power(np.maximum(ys, 0.0), np.float32(0.2)) * np.float32(10.0))[..., None]


def _hable(x: np.ndarray | float) -> np.ndarray | float:
    a, b, c, d, e, f = 0.15, 0.50, 0.10, 0.20, 0.02, 0.30
    return (x * (x * a + b * c) + d * e) / (x * (x * a + b) + d * f) - e / f


def _bt1886_inverse_eotf(linear: np.ndarray) -> np.ndarray:
    """Display light (1.0 = SDR white) to a BT.709 signal for a BT.1886 display: ``L ** (1 / 2.4)``.

    What zscale's ``t=bt709`` does to display-referred light (zimg's default); the camera OETF
    (``1.099 L^0.45 - 0.099``) would make the darks of a tone-mapped picture several times darker
    than FFmpeg's (a 1-nit grey: 4 instead of 25).
    """
    import numpy as np
    return np.power(np.clip(linear, 0.0, 1.0), 1 / 2.4)


def tone_map_formula(rgb: np.ndarray, transfer: str, peak: float) -> np.ndarray:
    """The HDR-to-SDR operator (module docstring) on non-linear BT.2020 R'G'B' (... x 3, 0..1): BT.709 R'G'B'."""
    import numpy as np
    linear = _pq_to_linear(rgb) if transfer == "smpte2084" else _hlg_to_linear(rgb)
    linear = np.maximum(linear @ _bt2020_to_bt709().T.astype(linear.dtype), 0.0)  # float32 in, float32 out
    sig = np.maximum(np.maximum(np.maximum(linear[..., 0], linear[..., 1]), linear[..., 2]), 1e-6)  # max(R, G, B)
    linear = linear * (_hable(sig) / _hable(peak) / sig)[..., None]
    return _bt1886_inverse_eotf(linear)


# The 3D LUT and its filter graphs ---------------------------------------------------

LUT_SIZE = 65
_LUT_VERSION = "2"  # bump when the operator changes: the cached .cube files are named by it
_GRAPHS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_MAX_GRAPHS = 8


@lru_cache(maxsize=16)
def _cube_path(transfer: str, peak: float) -> str:
    """A ``.cube`` file of the operator for (transfer, peak), written once per machine (atomically)."""
    import numpy as np
    key = hashlib.sha1(f"{_LUT_VERSION}:{transfer}:{peak!r}:{LUT_SIZE}".encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), "framepipe-colour")
    path = os.path.join(folder, f"{transfer}-{key}.cube")
    if os.path.isfile(path):
        return path
    os.makedirs(folder, exist_ok=True)
    grid = np.linspace(0.0, 1.0, LUT_SIZE)
    b, g, r = np.meshgrid(grid, grid, grid, indexing="ij")  # .cube order: red varies fastest
    table = tone_map_formula(np.stack([r, g, b], axis=-1).reshape(-1, 3), transfer, peak)
    part = f"{path}.{os.getpid()}.part"
    with open(part, "w") as f:
        f.write(f"LUT_3D_SIZE {LUT_SIZE}\n")
        np.savetxt(f, table, fmt="%.7f")
    os.replace(part, path)
    return path


def _lut_graph(width: int, height: int, transfer: str, peak: float, threads: int) -> Any:
    """A filter graph (cached per process) that applies the operator's LUT to gbrp16le pictures of this size."""
    from ._av import av
    key = (width, height, transfer, peak, threads)
    graph = _GRAPHS.get(key)
    if graph is not None:
        _GRAPHS.move_to_end(key)
        return graph
    graph = av.filter.Graph()
    graph.threads = threads
    nodes = [graph.add_buffer(width=width, height=height, format="gbrp16le", time_base=Fraction(1, 1000)),
             graph.add("lut3d", f"file={_cube_path(transfer, peak)}:interp=tetrahedral"),
             graph.add("buffersink")]
    nodes[0].link_to(nodes[1])
    nodes[1].link_to(nodes[2])
    graph.configure()
    _GRAPHS[key] = graph
    while len(_GRAPHS) > _MAX_GRAPHS:
        _GRAPHS.popitem(last=False)
    return graph


def sws_matrix(colour: Colour) -> str:
    """swscale's name for ``colour``'s matrix (BT.709 for one it lacks)."""
    return _SWS_MATRIX.get(colour.matrix, "itu709")


def sws_range(colour: Colour) -> str:
    """swscale's name for ``colour``'s range."""
    return "JPEG" if colour.range == "pc" else "MPEG"


def source_args(frame: av.VideoFrame, colour: Colour) -> dict[str, str]:
    """swscale's reading of a Y'CbCr ``frame`` (its matrix and range, told explicitly: a frame that crossed
    processes carries no tags); nothing for an RGB one."""
    if _is_rgb(frame.format.name):
        return {}
    return {"src_colorspace": sws_matrix(colour), "src_color_range": sws_range(colour)}


def _tone_mapped(frame: av.VideoFrame, colour: Colour, width: int, height: int, threads: int) -> av.VideoFrame:
    """``frame`` scaled to ``width`` x ``height`` and tone-mapped: gbrp16le, BT.709 R'G'B' full range."""
    rgb = frame.reformat(width=width, height=height, format="gbrp16le", **source_args(frame, colour))
    graph = _lut_graph(width, height, colour.transfer, signal_peak(colour), threads)
    rgb.pts = None
    graph.push(rgb)
    return graph.pull()


def to_sdr_frame(frame: av.VideoFrame, colour: Colour, width: int, height: int, threads: int = 1) -> av.VideoFrame:
    """An HDR ``frame`` scaled and tone-mapped to SDR BT.709 (gbrp16le, full range: convert with ``itu709``)."""
    out = _tone_mapped(frame, colour, width, height, threads)
    out.color_range = 2
    out.colorspace = 0
    return out


# Pictures up to this many pixels (360p: thumbnails, sprite tiles, the blank test) are tone-mapped by the
# exact formula in numpy (4.5 ms a 320x180 thumbnail, 1.5 ms at 64x36), where the LUT's filter graph costs
# ~0.09 s to build (FFmpeg parses the 65^3 .cube file) for every picture size in every worker process.
_EXACT_PIXELS = 640 * 360


def to_rgb24(frame: av.VideoFrame, colour: Colour, width: int, height: int) -> np.ndarray:
    """``frame`` as SDR BT.709 R'G'B' (H x W x 3 uint8) at ``width`` x ``height``, tone-mapped when HDR.

    SDR pictures are converted by swscale with their own matrix and range;
    PQ and HLG ones by the operator of this module: small pictures by its
    exact formula, larger ones through its 3D LUT.
    """
    import numpy as np
    if not colour.hdr:
        return frame.reformat(width=width, height=height, format="rgb24", **source_args(frame, colour)).to_ndarray()
    if width * height <= _EXACT_PIXELS:
        rgb48 = frame.reformat(width=width, height=height, format="rgb48le", **source_args(frame, colour))
        signal = rgb48.to_ndarray().astype(np.float32) * np.float32(1 / 65535)
        sdr = tone_map_formula(signal, colour.transfer, signal_peak(colour))
        return np.rint(sdr * 255).astype(np.uint8)
    out = _tone_mapped(frame, colour, width, height, 1)
    g, b, r = (np.frombuffer(p, np.uint16).reshape(height, p.line_size // 2)[:, :width] for p in out.planes)
    rgb = np.empty((height, width, 3), np.uint8)
    for i, plane in enumerate((r, g, b)):  # 16 to 8 bits, rounded (swscale would truncate or dither)
        rgb[..., i] = (plane.astype(np.uint32) * 255 + 32767) // 65535
    return rgb


# Outputs ----------------------------------------------------------------------------

def tag_encoder(codec_context: Any, colour: Colour) -> None:
    """Tag an encoder (before it opens) with ``colour``'s primaries, transfer, matrix and range."""
    for attr, code in colour.codes().items():
        setattr(codec_context, attr, code)


def tag_frame(frame: av.VideoFrame, colour: Colour) -> av.VideoFrame:
    """``frame`` tagged with ``colour`` (some encoders, ProRes among them, write each frame's own tags)."""
    for attr, code in colour.codes().items():
        setattr(frame, attr, code)
    return frame


def x265_hdr_params(colour: Colour) -> str:
    """x265-params that signal ``colour`` in HEVC's VUI and its HDR10 SEI (mastering display, MaxCLL/MaxFALL).

    Units as x265 documents them: chromaticities in 0.00002, luminance in 0.0001 nits.
    """
    params = [f"colorprim={colour.primaries}", f"transfer={colour.transfer}", f"colormatrix={colour.matrix}",
              f"range={'full' if colour.range == 'pc' else 'limited'}"]
    if colour.transfer == "smpte2084":
        params.insert(0, "hdr10=1")
    m = colour.mastering
    if m is not None and m.red and m.green and m.blue and m.white_point and m.max_nits is not None:
        def xy(p: tuple[float, float]) -> str:
            return f"({round(p[0] * 50000)},{round(p[1] * 50000)})"
        params.append(f"master-display=G{xy(m.green)}B{xy(m.blue)}R{xy(m.red)}WP{xy(m.white_point)}"
                      f"L({round(m.max_nits * 10000)},{round((m.min_nits or 0) * 10000)})")
    if colour.max_cll:
        params.append(f"max-cll={colour.max_cll},{colour.max_fall or 0}")
    return ":".join(params)


@lru_cache(maxsize=1)
def srgb_icc_profile() -> bytes:
    """An sRGB ICC profile (Pillow's), for every picture written: its pixels are BT.709 R'G'B' for sRGB screens."""
    from PIL import ImageCms
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    # The header's creation date (bytes 24-35) is the time it was made: fix it, so that the same picture
    # gives the same file in every process and every run (outputs are compared byte for byte).
    profile[24:36] = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)
    return bytes(profile)
