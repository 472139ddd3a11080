import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from smsbridge.loopback import serve_in_thread, wait_for


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


def test_wait_for_returns_the_first_truthy_value() -> None:
    answers = iter([None, [], ["ready"]])
    assert wait_for(lambda: next(answers), "an answer") == ["ready"]


def test_wait_for_names_what_it_waited_for_when_it_gives_up() -> None:
    with pytest.raises(AssertionError, match="the moon"):
        wait_for(lambda: False, "the moon", timeout=0.05)
