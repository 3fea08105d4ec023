"""Small real radar precipitation samples shipped inside the package.

The samples are subsets of public radar archives (see ``xsuperres/data/README.md``
for provenance, licences and the citations to give when you use them):

``"radolan"`` (default)
    DWD RADOLAN RW hourly radar-gauge adjusted precipitation, 2022-10-18,
    24 frames (00:50 .. 23:50 UTC), 300 x 200 km at 1 km over western Germany,
    with GTOPO30 ``topography``.
``"knmi"``
    KNMI 5-minute radar composite, 2010-08-26 00:00 .. 07:35 UTC, 92 frames,
    200 x 200 km at 1 km over the Netherlands, no topography.

Time labels are the **end** of each accumulation interval, as in the source
archives (see the ``comment`` attribute of ``time``).

Examples
--------
>>> import xsuperres.sample as xs
>>> ds = xs.open_sample()  # doctest: +SKIP
>>> ds.precip.sizes  # doctest: +SKIP
Frozen({'time': 24, 'y': 300, 'x': 200})
"""

from __future__ import annotations

from importlib import resources

import xarray as xr

__all__ = ["open_sample", "list_samples", "DEFAULT_SAMPLE"]

#: Name of the sample returned by :func:`open_sample` when no name is given.
DEFAULT_SAMPLE = "radolan"

#: sample name -> file name inside ``xsuperres/data``
_SAMPLES: dict[str, str] = {
    "radolan": "radolan_rw_2022-10-18_hourly_sample.nc",
    "knmi": "knmi_2010-08-26_5min_sample.nc",
}


def list_samples() -> list[str]:
    """Names of the embedded samples, default first.

    Returns
    -------
    list of str
        Valid values for the ``name`` argument of :func:`open_sample`.
    """
    return [DEFAULT_SAMPLE] + sorted(n for n in _SAMPLES if n != DEFAULT_SAMPLE)


def open_sample(name: str | None = None) -> xr.Dataset:
    """Open an embedded real radar precipitation sample, fully loaded in memory.

    Parameters
    ----------
    name : str, optional
        Sample name, one of :func:`list_samples` (case-insensitive).
        Default ``"radolan"``.

    Returns
    -------
    xarray.Dataset
        ``precip`` (time, y, x): precipitation rate in mm h-1
        (``standard_name = lwe_precipitation_rate``), 0 where dry, float64
        decoded from int16 (0.1 mm h-1 steps for RADOLAN, 0.12 mm h-1 for KNMI
        5-min data);
        ``topography`` (y, x): surface altitude in m (RADOLAN only);
        coordinates ``x``/``y`` (projected, m, cell centres), 2-D ``lat``/``lon``
        (degrees) and the ``crs`` grid-mapping variable (so ``ds.rio.crs`` works
        once :mod:`rioxarray` is imported). Global attributes give ``source``,
        ``institution``, ``licence``/``license``, ``references`` and ``history``.
        The data are in memory; no file handle stays open.

    Raises
    ------
    ValueError
        If ``name`` is not a known sample; the message lists the known names.

    Notes
    -----
    Time labels are the end of each accumulation interval (as in the source):
    the RADOLAN value at 00:50 is the mean rate over 23:50 .. 00:50 UTC.
    Cite the data providers when you use a sample (see the ``references``
    attribute and ``xsuperres/data/README.md``).
    """
    key = DEFAULT_SAMPLE if name is None else str(name).strip().lower()
    if key not in _SAMPLES:
        raise ValueError(
            f"unknown sample {name!r}; known samples: {', '.join(list_samples())}"
        )
    ref = resources.files("xsuperres").joinpath("data", _SAMPLES[key])
    with resources.as_file(ref) as path:
        if not path.is_file():
            raise FileNotFoundError(
                f"embedded sample file {path} is missing from the installed package; "
                "rebuild it with scripts/make_sample.py or reinstall xsuperres"
            )
        # netCDF4 is the package's NetCDF engine (a runtime dependency); naming it keeps the
        # result independent of whichever other engines happen to be installed
        with xr.open_dataset(path, engine="netcdf4", decode_coords="all") as ds:
            ds = ds.load()
    return ds
