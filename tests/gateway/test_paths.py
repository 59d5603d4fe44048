"""The one path normalisation: table of spellings, refusals, properties, and its one home."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bastion
from bastion.gateway import paths
from bastion.gateway.errors import BadRequestPathError, GatewayError
from bastion.gateway.matcher import RouteMatcher
from bastion.gateway.paths import MAX_PATH_BYTES, normalize_path, resolve_dot_segments
from gateway.gateway_support import route

ENCODED_SLASH = "The request path contains an encoded slash (%2F), which is refused."
ENCODED_BACKSLASH = "The request path contains an encoded backslash (%5C), which is refused."
ENCODED_CONTROL = "The request path contains an encoded control character, which is refused."
CONTROL = "The request path contains a control character."
BACKSLASH = "The request path contains a backslash, which is refused."
BAD_ESCAPE = "The request path contains an invalid percent-escape."
ABOVE_ROOT = "The request path climbs above the root ('..')."
NOT_ABSOLUTE = "The request path must start with '/'."
DOT_PARAMETER = (
    "The request path contains a dot segment with a path parameter ('..;'), which is refused."
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/api/x", "/api/x"),
        (b"//api/x", "/api/x"),
        (b"/api//x", "/api/x"),
        (b"/api/./x", "/api/x"),
        (b"/x/../api/x", "/api/x"),
        (b"/api/%2e/x", "/api/x"),
        (b"/api/%2E%2e/api/x", "/api/x"),
        (b"/api/.%2e/api/x", "/api/x"),
        (b"/%61pi/x", "/api/x"),
        (b"/%7e%41%2D%5f", "/~A-_"),
        (b"/api/%3a%3A", "/api/%3A%3A"),  # reserved stays encoded, hex upper-cased
        (b"/a%e2%82%ac", "/a%E2%82%AC"),
        ("/é".encode(), "/%C3%A9"),  # raw non-ASCII is encoded
        (b"/a b", "/a%20b"),
        (b"/a?b", "/a%3Fb"),  # a "?" inside the path must not become a query upstream
        (b"/", "/"),
        (b"//", "/"),
        (b"/api/", "/api/"),
        (b"/api//", "/api/"),
        (b"/api/.", "/api/"),
        (b"/api/x/..", "/api/"),
        (b"/api/..", "/"),
        (b"/.well-known/x", "/.well-known/x"),
        (b"/a/.../b", "/a/.../b"),
        (b"/API/x", "/API/x"),  # case preserved
        (b"/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="),
    ],
)
def test_normalises(raw: bytes, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"/api%2fx", ENCODED_SLASH),
        (b"/api%2Fx", ENCODED_SLASH),
        (b"/api%5cx", ENCODED_BACKSLASH),
        (b"/api\\x", BACKSLASH),
        (b"/api/x%00", ENCODED_CONTROL),
        (b"/api/x\x00", CONTROL),
        (b"/api/x%0d%0a", ENCODED_CONTROL),
        (b"/api/x%7F", ENCODED_CONTROL),
        (b"/api/\tx", CONTROL),
        (b"/api/x%", BAD_ESCAPE),
        (b"/api/x%4", BAD_ESCAPE),
        (b"/api/x%zz", BAD_ESCAPE),
        (b"/../x", ABOVE_ROOT),
        (b"/%2e%2e/x", ABOVE_ROOT),
        (b"/a/../../x", ABOVE_ROOT),
        (b"/..", ABOVE_ROOT),
        (b"api/x", NOT_ABSOLUTE),
        (b"", NOT_ABSOLUTE),
        (b"*", NOT_ABSOLUTE),
        (b"http://evil/x", NOT_ABSOLUTE),
        # Tomcat, Jetty and Spring strip ";..." before resolving dot segments (issue 13).
        (b"/raw/..;/api/key/x", DOT_PARAMETER),
        (b"/raw/..;jsessionid=1/api", DOT_PARAMETER),
        (b"/raw/%2e%2e;/api", DOT_PARAMETER),
        (b"/raw/%2E.;x/api", DOT_PARAMETER),
        (b"/raw/.%2e;/api", DOT_PARAMETER),
        (b"/raw/.;/api", DOT_PARAMETER),
        (b"/raw/..%3b/api", DOT_PARAMETER),
        (b"/raw/..;", DOT_PARAMETER),
        (b"/..;/x", DOT_PARAMETER),
    ],
)
def test_refuses(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequestPathError) as caught:
        normalize_path(raw)
    assert caught.value.code == "invalid_path"
    assert caught.value.status == 400
    assert caught.value.detail == message


@pytest.mark.parametrize("raw", [b"/a/b;c/d", b"/a/..x;/b", b"/a/...;/b", b"/a/b;..", b"/a;v=1/b"])
def test_path_parameters_on_other_segments_are_kept(raw: bytes) -> None:
    assert normalize_path(raw) == raw.decode()


def test_length_limit() -> None:
    longest = b"/" + b"a" * (MAX_PATH_BYTES - 1)
    assert normalize_path(longest) == longest.decode()
    with pytest.raises(BadRequestPathError) as caught:
        normalize_path(longest + b"a")
    assert caught.value.detail == "The request path is longer than 8192 bytes."


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("//admin", "/admin"),
        ("/x/../admin/", "/admin/"),
        ("/../../oauth2/.", "/oauth2/"),  # above the root: dropped, not refused
        ("/a/./b//c", "/a/b/c"),
        ("/..", "/"),
        ("/a/..", "/"),
        ("/a/%2e%2e/b", "/a/%2e%2e/b"),  # nothing decoded
        ("/x/..;/admin", "/x/..;/admin"),  # nothing refused
    ],
)
def test_the_apps_dot_segment_resolution(path: str, expected: str) -> None:
    # The same vectors as the native twin's (native/src/paths.rs, app_normalise).
    assert resolve_dot_segments(path) == expected


@given(st.lists(st.sampled_from(["a", "B", ".", "..", "", "x.y", "~"]), max_size=12))
def test_dot_segments_resolve_alike_where_the_normal_form_exists(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    try:
        normal = normalize_path(path.encode())
    except BadRequestPathError:
        return  # above the root: refused there, dropped by resolve_dot_segments
    assert resolve_dot_segments(path) == normal


TOKENS = [
    "a", "b", "API", ".", "..", "", "%2e", "%2E", "%2e%2E", "%41", "%7e", "%7E", "%20",
    "%e2%82%ac", "~", "x.y", "%25", "%2F", "%00", "\\", "%", "%3a", "é", " ",
]  # fmt: skip


@given(st.lists(st.sampled_from(TOKENS), max_size=12))
def test_properties_of_the_normal_form(segments: list[str]) -> None:
    raw = ("/" + "/".join(segments)).encode()
    try:
        out = normalize_path(raw)
    except BadRequestPathError:
        return
    assert normalize_path(out.encode()) == out  # idempotent
    assert out.startswith("/")
    assert "//" not in out
    assert "/./" not in out and not out.endswith("/.")
    assert "/../" not in out and not out.endswith("/..")


UNRESERVED = "abcXYZ019-._~"


@st.composite
def respelled(draw: st.DrawFn) -> tuple[str, str]:
    """A normal path and an equivalent spelling of it."""
    segments = draw(
        st.lists(
            st.text(UNRESERVED, min_size=1, max_size=6).filter(lambda s: s not in (".", "..")),
            min_size=1,
            max_size=6,
        )
    )
    original = "/" + "/".join(segments)
    out: list[str] = []
    for segment in segments:
        for _ in range(draw(st.integers(0, 2))):
            out.append(draw(st.sampled_from([".", "%2e", "%2E", "", "zz/..", "q/%2e%2E"])))
        spelled = "".join(
            (f"%{ord(c):02x}" if draw(st.booleans()) else f"%{ord(c):02X}")
            if draw(st.booleans())
            else c
            for c in segment
        )
        out.append(spelled)
    return original, "/" + "/".join(out)


MATCHER = RouteMatcher(
    [
        route("root", "/", methods=["GET"]),
        route("a", "/a", methods=["GET", "POST"]),
        route("ab", "/a/b"),
        route("x", "/x.y~"),
    ]
)


def decision(path: str, method: str) -> str:
    try:
        return MATCHER.match("gw.test", normalize_path(path.encode()), method).name
    except GatewayError as exc:
        return exc.code


@given(respelled(), st.sampled_from(["GET", "POST", "DELETE"]))
def test_equivalent_spellings_get_identical_decisions(pair: tuple[str, str], method: str) -> None:
    original, spelling = pair
    assert normalize_path(spelling.encode()) == normalize_path(original.encode()) == original
    assert decision(spelling, method) == decision(original, method)


# -- the rule's one home -----------------------------------------------------------------


def _resolves_dot_segments(tree: ast.AST) -> bool:
    """Whether the module pops a stack on a ".." segment (dot-segment removal)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        constants = {c.value for c in ast.walk(node.test) if isinstance(c, ast.Constant)}
        if not constants & {"..", b".."}:
            continue
        for inner in ast.walk(node):
            if (
                isinstance(inner, ast.Call)
                and isinstance(inner.func, ast.Attribute)
                and inner.func.attr == "pop"
            ):
                return True
    return False


def _names_a_path_normaliser(name: str) -> bool:
    return ("normali" in name and "path" in name) or "dot_segment" in name


def test_path_normalisation_has_one_home() -> None:
    """Only gateway/paths.py removes dot segments or defines a path normaliser: the app
    (http/app.py) and the gateway share its functions instead of a copy of the rule."""
    root = Path(bastion.__file__).parent
    homes = set()
    for module in sorted(root.rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        named = any(
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and _names_a_path_normaliser(node.name.lower())
            for node in ast.walk(tree)
        )
        if named or _resolves_dot_segments(tree):
            homes.add(module.relative_to(root).as_posix())
    assert homes == {"gateway/paths.py"}
    assert Path(paths.__file__).resolve() == (root / "gateway" / "paths.py").resolve()
