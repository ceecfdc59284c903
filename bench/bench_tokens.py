"""Cost of validating IAM access tokens in the portal API, as ratios against a peer.

(a) TokenValidator.validate with cached keys against joserfc's bare ``jwt.decode`` (the
    same token, key and algorithm; no issuer, audience, time, scope or group rules),
    interleaved in rounds in this process: mean µs per token and the ratio.
(b) A FastAPI app on uvicorn (one worker, 127.0.0.1, a free port) with a trivial
    endpoint, open and behind TokenValidator: requests/second of each, loaded with a
    bounded number of requests over keep-alive connections from a second process. A
    third, control endpoint has the same dependency shape without the validation, so
    the cost of FastAPI's dependency injection is told apart from the token's.

Run: ``python bench/bench_tokens.py`` (``--quick`` for a smoke run). Figures go to
bench/results/tokens.json. Nothing here asserts on time.
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test issuer lives in tests/support

RESULTS = ROOT / "bench" / "results" / "tokens.json"
AUDIENCE = "gpuaf"
PATHS = ("/open", "/header", "/secure")


def validator_for(issuer_url: str, http):
    from gpuaf.api.tokens import TokenValidator
    from gpuaf.settings import IAMSettings

    iam = IAMSettings(issuer=issuer_url, client_id="bench", audience=AUDIENCE)
    return TokenValidator.from_settings(iam, http)


# --- (a) in process -------------------------------------------------------------------------
async def bench_validate(issuer, token: str, n: int, rounds: int) -> dict:
    import httpx
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.import_key(issuer.keys["key-1"].as_dict(private=False))
    async with httpx.AsyncClient() as http:
        validator = validator_for(issuer.url, http)
        await validator.validate(token, required_scope="compute.read")  # fetches the keys
        fetches = issuer.key_fetches
        per_round = n // rounds
        ours = peer = 0.0
        for _ in range(rounds):  # interleaved: drift hits both alike
            t0 = time.perf_counter()
            for _ in range(per_round):
                await validator.validate(token, required_scope="compute.read")
            t1 = time.perf_counter()
            for _ in range(per_round):
                jwt.decode(token, key, algorithms=["RS256"])
            t2 = time.perf_counter()
            ours += t1 - t0
            peer += t2 - t1
        assert issuer.key_fetches == fetches, "the keys were fetched again"
    count = per_round * rounds
    return {
        "validations": count,
        "token_validator_us": ours / count * 1e6,
        "joserfc_jwt_decode_us": peer / count * 1e6,
        "ratio": ours / peer,
    }


# --- (b) over HTTP -------------------------------------------------------------------------
def serve(port: int, issuer_url: str) -> None:
    """The server process: a FastAPI app on uvicorn, one worker."""
    from contextlib import asynccontextmanager
    from typing import Annotated

    import httpx
    import uvicorn
    from fastapi import Depends, FastAPI, Header, Request
    from fastapi.responses import JSONResponse

    from gpuaf.api.tokens import TokenClaims, TokenRefused

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with httpx.AsyncClient() as http:
            app.state.validator = validator_for(issuer_url, http)
            yield

    app = FastAPI(lifespan=lifespan)

    async def caller(request: Request, authorization: Annotated[str, Header()] = "") -> TokenClaims:
        _scheme, _, token = authorization.partition(" ")
        return await request.app.state.validator.validate(token, required_scope="compute.read")

    @app.exception_handler(TokenRefused)
    async def refused(_request: Request, exc: TokenRefused) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, exc.status)

    @app.get("/open")
    async def open_endpoint() -> dict:
        return {"ok": True}

    async def header_only(authorization: Annotated[str, Header()] = "") -> str:
        return authorization.partition(" ")[2]

    @app.get("/header")
    async def control_endpoint(token: Annotated[str, Depends(header_only)]) -> dict:
        return {"ok": True}

    @app.get("/secure")
    async def secure_endpoint(claims: Annotated[TokenClaims, Depends(caller)]) -> dict:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning")


async def _load(port: int, path: str, token: str, total: int, conns: int, deadline: float):
    """Send ``total`` GETs over ``conns`` keep-alive connections; (ok, failed, seconds)."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    left = [total]
    ok = failed = 0

    async def worker() -> None:
        nonlocal ok, failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0 and time.monotonic() < deadline:
                left[0] -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200"):
                    ok += 1
                else:
                    failed += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return ok, failed, time.perf_counter() - t0


def load_main(port: int, plan: list[tuple[str, int]], conns: int, limit_s: float) -> None:
    """The load process: runs ``plan`` in order, prints one JSON line per step."""
    token = sys.stdin.readline().strip()
    deadline = time.monotonic() + limit_s
    for path, total in plan:
        ok, failed, seconds = asyncio.run(_load(port, path, token, total, conns, deadline))
        print(json.dumps({"path": path, "ok": ok, "failed": failed, "seconds": seconds}))


def bench_http(issuer, token: str, total: int, rounds: int, conns: int) -> dict:
    from support.stack import free_ports

    port = free_ports(1)[0]
    me = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen([*me, "--serve", str(port), issuer.url], cwd=ROOT)
    try:
        _wait_port(port, server)
        per = total // rounds
        plan = [(p, 500) for p in PATHS]  # warm-up, not counted
        plan += [(p, per) for _ in range(rounds) for p in PATHS]
        load = subprocess.run(
            [*me, "--load", str(port), json.dumps(plan), str(conns)],
            input=token + "\n", capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    steps = [json.loads(line) for line in load.stdout.splitlines()][len(PATHS) :]
    out: dict = {"connections": conns, "requests_per_endpoint": 0}
    for path in PATHS:
        mine = [s for s in steps if s["path"] == path]
        ok = sum(s["ok"] for s in mine)
        out[path.strip("/")] = {
            "requests": ok,
            "failed": sum(s["failed"] for s in mine),
            "rps": ok / sum(s["seconds"] for s in mine),
        }
        out["requests_per_endpoint"] = max(out["requests_per_endpoint"], ok)
    out["ratio_secure_to_open"] = out["secure"]["rps"] / out["open"]["rps"]
    out["ratio_secure_to_header"] = out["secure"]["rps"] / out["header"]["rps"]
    return out


def _wait_port(port: int, proc: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the server did not start within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "ISSUER"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--load", nargs=3, metavar=("PORT", "PLAN", "CONNS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        return serve(int(args.serve[0]), args.serve[1])
    if args.load:
        return load_main(int(args.load[0]), json.loads(args.load[1]), int(args.load[2]), 240)

    from support.issuer import TestIssuer

    n, requests = (2_000, 1_000) if args.quick else (30_000, 15_000)
    with TestIssuer(audience=AUDIENCE) as issuer:
        token = issuer.sign(issuer.claims(exp=int(time.time()) + 86400))
        inproc = asyncio.run(bench_validate(issuer, token, n, rounds=5))
        http = bench_http(issuer, token, requests, rounds=3, conns=8)
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "joserfc": version("joserfc"),
            "fastapi": version("fastapi"),
            "uvicorn": version("uvicorn"),
        },
        "token": {"alg": "RS256", "key": "RSA 2048", "chars": len(token)},
        "validate": inproc,
        "http": http,
        "quick": args.quick,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(r: dict) -> None:
    v, h = r["validate"], r["http"]
    rows = [
        ("validate, cached keys (µs/token)", "TokenValidator", "joserfc jwt.decode"),
        ("", f"{v['token_validator_us']:.1f}", f"{v['joserfc_jwt_decode_us']:.1f}"),
        ("  ratio ours/peer", f"{v['ratio']:.2f}", f"({v['validations']} each)"),
        ("HTTP, uvicorn 1 worker (req/s)", "/secure", "/open"),
        ("", f"{h['secure']['rps']:.0f}", f"{h['open']['rps']:.0f}"),
        ("  ratio secure/open", f"{h['ratio_secure_to_open']:.2f}",
         f"({h['requests_per_endpoint']} each, {h['connections']} conns)"),
        ("  control: header dependency only", f"{h['header']['rps']:.0f}", ""),
        ("  ratio secure/control", f"{h['ratio_secure_to_header']:.2f}", ""),
    ]  # fmt: skip
    for a, b, c in rows:
        print(f"{a:<36}{b:>16}  {c}")
    failed = sum(h[p.strip("/")]["failed"] for p in PATHS)
    print(f"failed requests: {failed}   results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
