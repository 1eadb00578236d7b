"""Runs every (library x mode) bot against one telehook emulator and prints a matrix.

Usage: driver.py --emulator PATH [--only LIB[:MODE],...] [--jobs N]

Each combination gets its own bot token (the emulator keeps separate state per token), its
own bot process and its own webhook port, so combinations run in parallel. The scenario is
driven through the emulator's HTTP control API (/_emulator/{token}/...) and checked against
the calls the emulator recorded and its webhook delivery log. Python standard library only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHOTO = HERE / "photo.png"

# One user (and so one private chat) per step: a step that fails over a webhook holds back its
# chat's queue (as Telegram does), and must not hold back the steps after it.
USERS = {
    "echo": 101,
    "copy": 102,
    "photo": 103,
    "keyboard": 104,
    "inline": 105,
    "delete": 106,
    "retry": 107,
    "fail": 108,
    "chat": 109,
}


def user(step: str) -> dict:
    return {"user_id": USERS[step], "first_name": step.capitalize()}


def sender(step: str) -> dict:
    return {"id": USERS[step], "first_name": step.capitalize()}


# Deadlines, not sleeps: a step takes ~0.1 s, but the 2-core CI machine may be loaded (aiogram
# alone spends ~3.5 s of CPU importing itself).
WAIT = 30.0  # seconds for one expected call
START_WAIT = 120.0  # seconds for a bot to start (its first call, or its webhook set)


@dataclass(frozen=True)
class Combo:
    library: str
    mode: str
    # Methods the library sends as webhook replies in this mode (checked via the call's route).
    replies: tuple[str, ...] = ()
    # The webhook served over https, its self-signed certificate uploaded with setWebhook.
    https: bool = False

    @property
    def webhook(self) -> bool:
        return self.mode.startswith("webhook")

    @property
    def name(self) -> str:
        return f"{self.library}-{self.mode}{'-https' if self.https else ''}"

    @property
    def label(self) -> str:
        return f"{self.mode} https" if self.https else self.mode


COMBOS = [
    Combo("python-telegram-bot", "polling"),
    Combo("python-telegram-bot", "webhook"),
    Combo("aiogram", "polling"),
    Combo("aiogram", "webhook"),
    Combo("aiogram", "webhook-reply", ("sendMessage", "sendPhoto", "answerCallbackQuery", "answerInlineQuery", "deleteMessage")),
    Combo("grammy", "polling"),
    Combo("grammy", "webhook"),
    Combo("grammy", "webhook-reply", ("sendMessage", "answerCallbackQuery", "answerInlineQuery", "deleteMessage")),
    Combo("telegraf", "polling"),
    Combo("telegraf", "webhook"),
    Combo("telegraf", "webhook-reply", ("answerCallbackQuery", "answerInlineQuery", "deleteMessage")),
]

# Steps a combination cannot take, and why.
NOT_APPLICABLE = {
    ("python-telegram-bot", "webhook", "failing webhook answer"): (
        "run_webhook answers 200 as soon as the update is queued, before any handler runs"
    ),
}


def command_for(combo: Combo, python: str) -> list[str]:
    if combo.library == "python-telegram-bot":
        return [python, str(HERE / "python" / "ptb_bot.py")]
    if combo.library == "aiogram":
        return [python, str(HERE / "python" / "aiogram_bot.py")]
    return ["node", str(HERE / "node" / f"{combo.library}_bot.js")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StepFailed(Exception):
    pass


class Control:
    """The emulator's HTTP control API for one token."""

    def __init__(self, base_url: str, token: str, process: subprocess.Popen | None = None):
        self.base_url = base_url
        self.token = token
        self.process = process

    def check_alive(self):
        if self.process is not None and self.process.poll() is not None:
            raise StepFailed(f"the bot exited with {self.process.returncode}")

    def request(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_emulator/{self.token}/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            raise StepFailed(f"{method} /_emulator/{{token}}/{path} -> {error.code}: {text}") from None
        if not answer.get("ok"):
            raise StepFailed(f"{method} /_emulator/{{token}}/{path} -> {answer}")
        return answer["result"]

    def calls(self) -> list[dict]:
        return self.request("GET", "calls")

    def deliveries(self) -> list[dict]:
        return self.request("GET", "deliveries")

    def message(self, chat_id: int, message_id) -> dict | None:
        """A message as the chat holds it now, or None if the chat has no such message."""
        try:
            return self.request("GET", f"messages/{chat_id}/{message_id}")
        except StepFailed as error:
            if "-> 404" in str(error):
                return None
            raise

    def text(self, step: str, text: str) -> dict:
        return self.request("POST", "private_text", {**user(step), "text": text})["update"]

    def wait(self, what: str, found, timeout: float = WAIT):
        """Reads the recorded calls until found(calls) is truthy; returns its value. Between
        reads it waits for the next call with the emulator's calls/wait (no sleeping)."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls()
            value = found(calls)
            if value:
                return value
            self.check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = ", ".join(f"{c['method']}:{outcome(c)}" for c in calls[-12:] if c["method"] != "getUpdates")
                error = self.request("GET", "webhook_info").get("last_error_message")
                hint = f"; webhook last_error_message: {error!r}" if error else ""
                raise StepFailed(f"no {what} within {timeout:.0f}s; last calls: [{seen}]{hint}")
            # At most 1 s at a time, to notice a bot that exited.
            self.wait_for_call(len(calls) + 1, min(remaining, 1.0))

    def wait_for_call(self, count: int, seconds: float):
        """Returns when `count` calls were recorded in all, or after `seconds` (408)."""
        url = f"{self.base_url}/_emulator/{self.token}/calls/wait?count={count}&timeout_ms={max(1, int(seconds * 1000))}"
        try:
            with urllib.request.urlopen(url, timeout=seconds + 10) as response:
                response.read()
        except urllib.error.HTTPError as error:
            if error.code != 408:
                raise StepFailed(f"GET calls/wait -> {error.code}: {error.read().decode(errors='replace')}") from None


def outcome(call: dict) -> str:
    o = call.get("outcome", {})
    if o.get("type") == "error":
        return f"{o.get('error_code')} {o.get('description')}"
    return o.get("type", "?")


def param(call: dict, name: str):
    value = call["params"].get(name)
    return None if value is None else str(value)


def json_param(call: dict, name: str):
    value = call["params"].get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def is_ok(call: dict) -> bool:
    return call.get("outcome", {}).get("type") == "ok"


def to(method: str, **params):
    """A matcher for calls of `method` whose params equal `params` (compared as strings)."""

    def match(call: dict) -> bool:
        return call["method"] == method and all(param(call, k) == str(v) for k, v in params.items())

    return match


def first(calls, match, ok=True):
    for call in calls:
        if match(call) and (not ok or is_ok(call)):
            return call
    return None


@dataclass
class Result:
    combo: Combo
    seconds: float = 0.0
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (step, pass|FAIL|n/a, note)
    log: str = ""

    @property
    def passed(self) -> bool:
        return all(status != "FAIL" for _, status, _ in self.steps)


def check_route(combo: Combo, call: dict, failures: list[str]):
    route = call.get("route", {}).get("type")
    if call["method"] in combo.replies and route != "webhook_reply":
        failures.append(f"{call['method']} came by {route}, expected a webhook reply")


class Scenario:
    def __init__(self, combo: Combo, control: Control, result: Result):
        self.combo = combo
        self.c = control
        self.result = result

    def step(self, name: str, run):
        reason = NOT_APPLICABLE.get((self.combo.library, self.combo.mode, name))
        if reason:
            self.result.steps.append((name, "n/a", reason))
            return
        started = time.monotonic()
        try:
            note = run() or ""
            self.result.steps.append((name, "pass", f"{note} ({time.monotonic() - started:.1f}s)".lstrip()))
        except StepFailed as error:
            self.result.steps.append((name, "FAIL", str(error)))
        except Exception as error:  # a driver bug or an unexpected shape: report, go on
            self.result.steps.append((name, "FAIL", f"{type(error).__name__}: {error}"))

    def routes(self, *calls):
        failures: list[str] = []
        for call in calls:
            check_route(self.combo, call, failures)
        if failures:
            raise StepFailed("; ".join(failures))

    # ---- the steps --------------------------------------------------------------------------

    def ready(self):
        if self.combo.webhook:
            deadline = time.monotonic() + START_WAIT
            while not self.c.request("GET", "webhook_info").get("url"):
                self.c.check_alive()
                if time.monotonic() > deadline:
                    raise StepFailed(f"the bot did not set its webhook within {START_WAIT:.0f}s")
                time.sleep(0.05)
        else:
            # A long poll is recorded when it ends; updates queue until fetched, so a bot that
            # has called the Bot API at all (getMe) is far enough.
            self.c.wait("a first call", lambda calls: calls, timeout=START_WAIT)

    def echo(self):
        self.c.text("echo", "hello")
        call = self.c.wait("echo", lambda calls: first(calls, to("sendMessage", chat_id=USERS["echo"], text="hello")))
        self.routes(call)

    def copy(self):
        update = self.c.text("copy", "/copy")
        message_id = update["message"]["message_id"]
        call = self.c.wait(
            "copyMessage",
            lambda calls: first(calls, to("copyMessage", chat_id=USERS["copy"], from_chat_id=USERS["copy"], message_id=message_id)),
        )
        copy_id = call["outcome"]["result"]["message_id"]
        copied = self.c.message(USERS["copy"], copy_id)
        if not copied or copied.get("text") != "/copy":
            raise StepFailed(f"the copy (message {copy_id}) in the chat: {copied}")

    def photo(self):
        self.c.text("photo", "/photo")
        call = self.c.wait("sendPhoto", lambda calls: first(calls, to("sendPhoto", chat_id=USERS["photo"])))
        self.routes(call)
        want = hashlib.sha256(PHOTO.read_bytes()).hexdigest()
        files = call.get("uploads") or []
        if not files:
            raise StepFailed(f"sendPhoto recorded without an uploaded file; params: {sorted(call['params'])}")
        hashes = [f.get("sha256") for f in files]
        if want not in hashes:
            raise StepFailed(f"uploaded file hash {hashes} != photo.png {want}")
        sent = call["outcome"].get("result") or {}
        stored = self.c.message(USERS["photo"], sent.get("message_id"))
        if not (sent.get("photo") and stored and stored.get("photo")):
            raise StepFailed(f"the sent message has no photo sizes: {sent} / in the chat: {stored}")
        return f"{len(files)} file(s), {files[0].get('size')} bytes"

    def keyboard(self):
        self.c.text("keyboard", "/keyboard")
        sent = self.c.wait("keyboard message", lambda calls: first(calls, to("sendMessage", chat_id=USERS["keyboard"], text="choose")))
        message = sent["outcome"]["result"]
        update = self.c.request(
            "POST",
            "press_button",
            {"from": sender("keyboard"), "chat_id": USERS["keyboard"], "message_id": message["message_id"], "data": "pick:a"},
        )["update"]
        query_id = update["callback_query"]["id"]
        answer = self.c.wait(
            "answerCallbackQuery",
            lambda calls: first(calls, to("answerCallbackQuery", callback_query_id=query_id)),
        )
        edit = self.c.wait(
            "editMessageText",
            lambda calls: first(
                calls, to("editMessageText", chat_id=USERS["keyboard"], message_id=message["message_id"], text="picked a")
            ),
        )
        self.routes(answer, edit)
        now = self.c.request("GET", f"messages/{USERS['keyboard']}/{message['message_id']}")
        if now.get("text") != "picked a":
            raise StepFailed(f"the message after the edit: {now}")

    def inline_query(self):
        update = self.c.request("POST", "inline_query", {"from": sender("inline"), "query": "cats"})["update"]
        query_id = update["inline_query"]["id"]
        call = self.c.wait(
            "answerInlineQuery", lambda calls: first(calls, to("answerInlineQuery", inline_query_id=query_id))
        )
        self.routes(call)
        results = json_param(call, "results")
        if not (isinstance(results, list) and results and results[0].get("title") == "cats"):
            raise StepFailed(f"unexpected results {results!r}")

    def delete(self):
        self.c.text("delete", "/delete")
        sent = self.c.wait("message to delete", lambda calls: first(calls, to("sendMessage", chat_id=USERS["delete"], text="to delete")))
        message_id = sent["outcome"]["result"]["message_id"]
        call = self.c.wait(
            "deleteMessage", lambda calls: first(calls, to("deleteMessage", chat_id=USERS["delete"], message_id=message_id))
        )
        self.routes(call)
        if self.c.message(USERS["delete"], message_id) is not None:
            raise StepFailed(f"message {message_id} is still in the chat after deleteMessage")

    def too_many_requests(self):
        self.c.request(
            "POST", "faults", {"method": "sendMessage", "times": 1, "fault": {"type": "too_many_requests", "retry_after": 1}}
        )
        self.c.text("retry", "/retry")

        def two(calls):
            tries = [c for c in calls if to("sendMessage", chat_id=USERS["retry"], text="retried")(c)]
            return tries if len(tries) >= 2 and is_ok(tries[1]) else None

        tries = self.c.wait("a sendMessage retried after 429", two)
        first_try = tries[0]["outcome"]
        if first_try.get("type") != "error" or first_try.get("error_code") != 429:
            raise StepFailed(f"the first try was answered {first_try}, expected the planned 429")

    def get_chat(self):
        self.c.text("chat", "/chat")
        chat_id = USERS["chat"]
        self.c.wait("getChat", lambda calls: first(calls, to("getChat", chat_id=chat_id)))
        self.c.wait(
            "the chat's details sent back",
            lambda calls: first(calls, to("sendMessage", chat_id=chat_id, text=f"chat {chat_id} private")),
        )

    def failing_webhook_answer(self):
        update_id = self.c.text("fail", "/fail")["update_id"]
        self.c.wait("recovered", lambda calls: first(calls, to("sendMessage", chat_id=USERS["fail"], text="recovered")))
        # The bot sends "recovered" before it answers the delivery that carried /fail.
        self.c.request("GET", f"delivered/wait?update_id={update_id}&timeout_ms={int(WAIT * 1000)}")
        attempts = [d for d in self.c.deliveries() if d["update_id"] == update_id]
        kinds = [(d["attempt"], d["outcome"]["type"], d["outcome"].get("status")) for d in attempts]
        if not (
            len(attempts) >= 2
            and attempts[0]["outcome"]["type"] == "failed"
            and (attempts[0]["outcome"].get("status") or 0) >= 500
            and attempts[-1]["outcome"]["type"] == "delivered"
        ):
            raise StepFailed(f"delivery attempts of update {update_id}: {kinds}")
        recovered = [c for c in self.c.calls() if to("sendMessage", chat_id=USERS["fail"], text="recovered")(c)]
        if len(recovered) != 1:
            raise StepFailed(f"{len(recovered)} 'recovered' messages, expected 1")
        return f"attempts {kinds}"

    def no_unexpected_refusals(self):
        refused = [
            f"{c['method']}: {outcome(c)}"
            for c in self.c.calls()
            if c.get("outcome", {}).get("type") not in ("ok", "ignored")
            and not to("sendMessage", text="retried")(c)
        ]
        if refused:
            raise StepFailed("; ".join(sorted(set(refused))))

    def run(self):
        self.step("start", self.ready)
        if self.result.steps[-1][1] == "FAIL":
            return
        steps = [
            ("text echo", self.echo),
            ("copy", self.copy),
            ("photo upload", self.photo),
            ("inline keyboard press + edit", self.keyboard),
            ("inline query", self.inline_query),
            ("delete", self.delete),
            ("429 retry_after", self.too_many_requests),
            ("getChat (ChatFullInfo)", self.get_chat),
        ]
        if self.combo.webhook:
            steps.append(("failing webhook answer", self.failing_webhook_answer))
        steps.append(("no other refused call", self.no_unexpected_refusals))
        for index, (name, run) in enumerate(steps):
            self.step(name, run)
            if index == 0 and self.result.steps[-1][1] == "FAIL" and self.combo.webhook and not self.delivered_any():
                error = self.c.request("GET", "webhook_info").get("last_error_message")
                for skipped, _ in steps[1:]:
                    self.result.steps.append((skipped, "FAIL", f"not tried: no webhook delivery succeeded ({error!r})"))
                return

    def delivered_any(self) -> bool:
        return any(d["outcome"]["type"] == "delivered" for d in self.c.deliveries())


def run_combo(combo: Combo, base_url: str, token: str, python: str, logs: Path, tls: dict) -> Result:
    # A free port is picked by binding port 0 and closing it; if something else takes it before
    # the bot binds it, the bot exits at start (before setWebhook): run once more on another.
    for attempt in range(2):
        result = run_once(combo, base_url, token, python, logs, tls)
        if attempt == 0 and not result.passed and re.search(r"EADDRINUSE|[Aa]ddress already in use", result.log):
            continue
        return result
    return result


def run_once(combo: Combo, base_url: str, token: str, python: str, logs: Path, tls: dict) -> Result:
    result = Result(combo)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("TLS_CERT", "TLS_KEY")},
        **(tls if combo.https else {}),
        "TELEHOOK_BASE_URL": base_url,
        "BOT_TOKEN": token,
        "BOT_MODE": combo.mode,
        "PHOTO_PATH": str(PHOTO),
        "WEBHOOK_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = logs / f"{combo.name}.log"
    started = time.monotonic()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command_for(combo, python), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            Scenario(combo, Control(base_url, token, process), result).run()
            if process.poll() is not None:
                result.steps.append(("bot still running", "FAIL", f"the bot exited with {process.returncode}"))
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    result.seconds = time.monotonic() - started
    if not result.passed:
        result.log = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
    return result


def start_emulator(binary: str, tokens: list[str], log_path: Path):
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--token", ",".join(tokens)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), "NO_COLOR": "1"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the emulator exited with {process.returncode}:\n{log_path.read_text()}")
        found = re.search(r"base_url=(http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the emulator did not say its base_url within 30s:\n{log_path.read_text()}")


def self_signed_cert(directory: Path) -> dict:
    """A self-signed certificate for 127.0.0.1 for the https webhooks, or {} without openssl."""
    cert, key = directory / "webhook.crt", directory / "webhook.key"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"TLS_CERT": str(cert), "TLS_KEY": str(key)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emulator", required=True, help="the telehook-emulator binary")
    parser.add_argument("--python", default=sys.executable, help="python with the bot libraries")
    parser.add_argument("--only", default="", help="comma-separated LIB or LIB:MODE to run")
    parser.add_argument("--jobs", type=int, default=4, help="combinations run at once")
    parser.add_argument("--https", choices=["both", "only", "off"], default=os.environ.get("CLIENTS_HTTPS", "both"),
                        help="webhook modes over https, with a self-signed certificate uploaded with "
                        "setWebhook (telegraf: launch({webhook})): both (each webhook mode over http "
                        "and over https), only (https only), off (plain http on loopback only)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="telehook-clients-"))
    combos = COMBOS
    tls = self_signed_cert(work) if args.https != "off" else {}
    if args.https != "off" and not tls:
        print("openssl failed: webhook modes over plain http only", flush=True)
    if tls:
        secure = [dataclasses.replace(c, https=True) for c in COMBOS if c.webhook]
        plain = [c for c in COMBOS if not (c.webhook and args.https == "only")]
        combos = sorted(plain + secure, key=lambda c: (COMBOS.index(dataclasses.replace(c, https=False)), c.https))
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        combos = [c for c in combos if any(w in (c.library, f"{c.library}:{c.mode}") for w in wanted)]
    tokens = [f"{7000 + i}:TEST-{combo.name}" for i, combo in enumerate(combos)]
    emulator, base_url = start_emulator(args.emulator, tokens, work / "emulator.log")
    print(f"emulator at {base_url}; logs in {work}", flush=True)
    started = time.monotonic()
    lock = threading.Lock()
    results: list[Result] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [
                pool.submit(run_combo, combo, base_url, token, args.python, work, tls)
                for combo, token in zip(combos, tokens)
            ]
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                with lock:
                    results.append(result)
                    print(f"  {result.combo.name}: {'pass' if result.passed else 'FAIL'} ({result.seconds:.1f}s)", flush=True)
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=5)
        except subprocess.TimeoutExpired:
            emulator.kill()
    total = time.monotonic() - started

    order = {c: i for i, c in enumerate(combos)}
    results.sort(key=lambda r: order[r.combo])
    print()
    print(f"{'library':<20} {'mode':<20} {'result':<7} {'seconds':>7}  failed steps")
    for r in results:
        failed = ", ".join(name for name, status, _ in r.steps if status == "FAIL") or "-"
        print(f"{r.combo.library:<20} {r.combo.label:<20} {'pass' if r.passed else 'FAIL':<7} {r.seconds:>7.1f}  {failed}")
    print(f"total {total:.1f}s for {len(results)} combinations ({args.jobs} at once)")
    for r in results:
        notes = [(n, s, note) for n, s, note in r.steps if s != "pass" or os.environ.get("CLIENTS_VERBOSE")]
        if notes:
            print(f"\n== {r.combo.name}")
            for name, status, note in notes:
                print(f"  [{status}] {name}: {note}")
            if r.log:
                print("  -- last lines of the bot's log:")
                print("\n".join("    " + line for line in r.log.splitlines()))
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
