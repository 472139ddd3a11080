import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from smsbridge.testserver import serve_in_thread


async def hello(request):  # type: ignore[no-untyped-def]
    return JSONResponse({"hello": "world"})


def test_serves_an_app_on_a_free_loopback_port() -> None:
    app = Starlette(routes=[Route("/", hello)])
    with serve_in_thread(app) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/").json() == {"hello": "world"}
    # after the block the server is gone
    try:
        httpx.get(url + "/", timeout=1)
    except httpx.HTTPError:
        pass
    else:
        raise AssertionError("server still answering after the block")
