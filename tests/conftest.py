"""Fixtures shared by the test modules.

* ``one_torch_thread`` (autouse, whole session): torch runs on one intra-op thread. The
  tensors of the tests are tiny; one thread is as fast, and immune to oversubscription
  when other processes share the CPU. The caller's setting is restored at the end.
* ``synchronous_dask``: the synchronous dask scheduler for a module (``pytestmark =
  pytest.mark.usefixtures("synchronous_dask")``), so that tasks run in the test's thread.
* ``LocalServer`` / ``local_server``: a static file server on 127.0.0.1 (port chosen by
  the OS) that records the paths it was asked for; tests of pooch downloads use it, never
  the network.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def synchronous_dask() -> Iterator[None]:
    with dask.config.set(scheduler="synchronous"):
        yield


class LocalServer:
    """Serves ``root`` on ``url`` (``http://127.0.0.1:PORT/``); ``requests`` lists the GET paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                log.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(self.root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def local_server() -> Iterator[Callable[[Path], LocalServer]]:
    """``local_server(root)`` starts a :class:`LocalServer`; all are closed after the test."""
    started: list[LocalServer] = []

    def start(root: Path) -> LocalServer:
        srv = LocalServer(root)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.close()
