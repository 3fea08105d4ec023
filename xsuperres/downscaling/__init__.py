"""Lazy, chunked, chunk-invariant ensemble downscaling of xarray precipitation fields.

:func:`downscale` (also ``xsuperres.downscale`` and ``obj.stsr.downscale``) runs an
:class:`~xsuperres.model.SRModel` over a whole period and domain and returns a dask-backed
``xarray`` object on the high-resolution (HR) grid with a ``member`` dimension. Nothing is
computed until the result is computed or written.

The package, one concept per module:

* :mod:`.api` -- the public :func:`downscale` (and :func:`downscale_mean`, the deterministic
  stage through the same tiles): Dataset and extra-dimension mapping, input
  rules per variable, HR coordinates, attributes and history.
* :mod:`.options` -- the checked settings of a call (:class:`~.options.DownscaleOptions`),
  ``MAX_MEMBERS`` and ``MEMBERS_PER_CHUNK``.
* :mod:`.checks` -- input against model: cadence, grid spacing, topography grid, HR time
  labels.
* :mod:`.tiles` -- the global tile layout, blending weights and the seam statistic.
* :mod:`.graph` -- the time halo, the dask graph (one :class:`~.graph.ChunkPlan` per
  output chunk) and the per-chunk computation.
* :mod:`.batching` -- how many samples (tile x LR step) go to the networks per call
  (automatic from the free memory, or ``batch_size``).
* :mod:`.threads` -- torch's intra-op threads inside the tasks (never more than the
  cores divided by the dask tasks running at once; the user's setting restored).
* :mod:`.workers` -- :class:`ModelHandle`, model resolution and the per-process model
  cache (:func:`~.workers.loaded_models`).
* :mod:`.cli` -- ``xsuperres downscale``.

How the work is cut (see ``docs/downscale.md`` for the full story)
------------------------------------------------------------------
* **Time halo.** Output block ``t`` needs the ``L`` LR frames ``x[t-L+1] .. x[t]``. The
  LR input is stacked into a context array ``ctx[t, l] = x[t - L + 1 + l]`` (``L``
  shifted lazy slices), chunked like the output, so every output chunk sees the ``L - 1``
  preceding LR steps whatever the chunking. The first ``L - 1`` blocks have no full
  context: ``context="pad"`` repeats the first frame, ``context="drop"`` leaves them out.
* **Global tiles.** The model runs on square HR tiles of ``tile_size`` pixels
  (``p = tile_size / S`` LR pixels), laid out on a grid fixed to the domain origin:
  starts ``0, q, 2q, ...`` with stride ``q = p - overlap`` LR pixels, the last tile moved
  back to end at the domain edge. The layout never depends on the chunking. Each output
  chunk computes the tiles that overlap it (from an LR spatial halo sliced out of the
  context array) and crops; the diffusion net's cross-attention sees the whole tile, so
  this is what makes results chunk-invariant in space.
* **Blending.** Overlapping tiles are averaged with weights that are constant over each
  LR pixel and ramp linearly across the overlap (``min(1, (i + 1)/(o + 1),
  (p - i)/(o + 1))`` for LR pixel ``i`` of a tile): a cross-fade, so no seams. Because
  the weights are constant over each ``S x S x T`` block and, with
  ``mass_conservation="block"``, every tile conserves every block, the blend conserves
  every block too.
* **Noise.** The diffusion noise of member ``m`` at HR pixel ``(Y, X)`` (global indices)
  and HR step ``k`` of LR step ``t`` (global index) is a counter-based hash of
  ``(seed, m, t, draw, k, Y, X)`` turned into a normal variate (Box-Muller). Overlapping
  tiles therefore see the same noise where they overlap, and a member never depends on
  the chunking, the batch size, the device or the scheduler.
* **Model.** Tasks carry a small picklable :class:`ModelHandle` (the path of a saved
  model and a hash), never the model. Each worker process loads the model once (module
  cache keyed by hash and device); an in-memory model is saved once to a temporary
  model directory (``$XSUPERRES_MODEL_DIR`` or the system temporary folder) so that
  worker processes can load it. Tiles go to the device in batches of samples (all the
  tiles and LR steps of a chunk, as many per call as memory allows), with torch's
  threads set per task so that dask's threads times torch's never exceed the cores.
* **Missing values.** NaN in the LR context is replaced by 0 for the network; output
  blocks whose own LR value is NaN are NaN.
"""

from ..noise import position_noise
from .api import downscale, downscale_mean
from .options import MAX_MEMBERS, MEMBERS_PER_CHUNK
from .tiles import blend_weights, seam_statistic, tile_layout
from .workers import ModelHandle

__all__ = ["downscale", "downscale_mean", "tile_layout", "blend_weights", "seam_statistic", "ModelHandle", "position_noise",
           "MAX_MEMBERS", "MEMBERS_PER_CHUNK"]
