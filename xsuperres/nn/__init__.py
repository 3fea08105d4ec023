"""Pure PyTorch building blocks of xsuperres.

Nothing in this sub-package imports xarray, dask or pooch: the modules here
work on ``torch.Tensor`` objects only, so they can be tested and reused
without the xarray layer.
"""
