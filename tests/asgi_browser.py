"""A browser in-process: requests straight through an ASGI application, keeping
cookies as a browser does. For tests and measurements of the application daphne
serves, without a socket."""

from http.cookies import SimpleCookie

from asgiref.testing import ApplicationCommunicator

# Headers whose values do not depend on random tokens or the clock.
COMPARED = (
    "content-type",
    "location",
    "vary",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "content-security-policy",
    "cache-control",
)


class Browser:
    """Requests through an ASGI application, keeping cookies as a browser does."""

    def __init__(self, app) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict, set, bytes]:
        body = "&".join(f"{k}={v}" for k, v in (form or {}).items()).encode()
        headers = [(b"host", b"testserver"), (b"referer", b"http://testserver/")]
        if self.cookies:
            headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode()))
        if form is not None:
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
            headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        app = ApplicationCommunicator(self.app, scope)
        await app.send_input({"type": "http.request", "body": body})
        start = await app.receive_output(10)
        content = b""
        while True:
            message = await app.receive_output(10)
            content += message.get("body", b"")
            if not message.get("more_body"):
                break
        await app.wait(10)
        response_headers: dict[str, str] = {}
        set_cookies = set()
        for name, value in start["headers"]:
            name, value = name.decode().lower(), value.decode()
            if name == "set-cookie":
                cookie = SimpleCookie(value)
                for key, morsel in cookie.items():
                    set_cookies.add(key if morsel.value else f"-{key}")
                    if morsel.value:
                        self.cookies[key] = morsel.value
                    else:
                        self.cookies.pop(key, None)
            else:
                response_headers[name] = value
        return start["status"], {k: v for k, v in response_headers.items() if k in COMPARED}, set_cookies, content

    async def csrf_token(self) -> str:
        if "csrftoken" not in self.cookies:
            await self.request("GET", "/accounts/login/")
        return self.cookies["csrftoken"]
