"""The scenario bot on aiogram 3, pointed at the telehook emulator.

Modes (BOT_MODE): ``polling`` (``Dispatcher.start_polling``), ``webhook`` (aiohttp with
``SimpleRequestHandler``; every call over HTTP) and ``webhook-reply`` (the same server, with
handlers *returning* a method: aiogram then answers the webhook with it as a
``multipart/form-data`` webhook reply, uploads included). With TLS_CERT/TLS_KEY set the webhook
is served over https and the certificate uploaded with setWebhook.

``handle_in_background=False`` in both webhook modes: the handler runs before the webhook is
answered, so a failing handler answers 500 and Telegram retries (with aiogram's default
``True`` every update is acknowledged before it is handled).
"""

import asyncio
import logging
import os
import ssl

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramRetryAfter
from aiogram.filters import Command
from aiogram.types import (
    CallbackQuery,
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQuery,
    InlineQueryResultArticle,
    InputTextMessageContent,
    Message,
    Update,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

BASE_URL = os.environ["TELEHOOK_BASE_URL"]
TOKEN = os.environ["BOT_TOKEN"]
MODE = os.environ["BOT_MODE"]
PHOTO = os.environ["PHOTO_PATH"]
SECRET = os.environ.get("WEBHOOK_SECRET", "client-suite-secret")
REPLY = MODE == "webhook-reply"

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

dp = Dispatcher()
failed_once: set[int] = set()


async def reply_or_call(method):
    """In webhook-reply mode returns the method (aiogram sends it as the webhook reply),
    otherwise calls it."""
    if REPLY:
        return method
    await method
    return None


async def with_retry(call):
    """Calls ``call()``; on 429 waits ``retry_after`` seconds and tries again (three tries)."""
    for attempt in range(3):
        try:
            return await call()
        except TelegramRetryAfter as error:
            if attempt == 2:
                raise
            await asyncio.sleep(error.retry_after)
    return None


@dp.message(Command("copy"))
async def copy(message: Message):
    await message.copy_to(message.chat.id)


@dp.message(Command("photo"))
async def photo(message: Message):
    return await reply_or_call(message.answer_photo(FSInputFile(PHOTO), caption="photo"))


@dp.message(Command("keyboard"))
async def keyboard(message: Message):
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="A", callback_data="pick:a")]]
    )
    await message.answer("choose", reply_markup=markup)


@dp.callback_query(F.data.startswith("pick:"))
async def pressed(query: CallbackQuery, bot: Bot):
    picked = query.data.split(":", 1)[1]
    await bot.edit_message_text(
        text=f"picked {picked}",
        chat_id=query.message.chat.id,
        message_id=query.message.message_id,
    )
    return await reply_or_call(query.answer(f"picked {picked}"))


@dp.inline_query()
async def inline(query: InlineQuery):
    result = InlineQueryResultArticle(
        id="1",
        title=query.query,
        input_message_content=InputTextMessageContent(message_text=query.query),
    )
    return await reply_or_call(query.answer([result], cache_time=0))


@dp.message(Command("delete"))
async def delete(message: Message):
    sent = await message.answer("to delete")
    return await reply_or_call(sent.delete())


@dp.message(Command("retry"))
async def retry(message: Message, bot: Bot):
    await with_retry(lambda: bot.send_message(message.chat.id, "retried"))


@dp.message(Command("chat"))
async def chat(message: Message, bot: Bot):
    info = await bot.get_chat(message.chat.id)
    await bot.send_message(info.id, f"chat {info.id} {info.type}")


@dp.message(Command("fail"))
async def fail(message: Message, event_update: Update, bot: Bot):
    if event_update.update_id not in failed_once:
        failed_once.add(event_update.update_id)
        raise RuntimeError("failing on purpose, the first time this update comes")
    await bot.send_message(message.chat.id, "recovered")


@dp.message(F.text)
async def echo(message: Message):
    return await reply_or_call(message.answer(message.text))


async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(BASE_URL))
    bot = Bot(TOKEN, session=session)
    if MODE == "polling":
        await dp.start_polling(bot, allowed_updates=dp.resolve_used_update_types())
        return
    if MODE not in ("webhook", "webhook-reply"):
        raise SystemExit(f"unknown BOT_MODE {MODE!r}")
    port = int(os.environ["WEBHOOK_PORT"])
    app = web.Application()
    SimpleRequestHandler(
        dispatcher=dp, bot=bot, secret_token=SECRET, handle_in_background=False
    ).register(app, path="/hook")
    setup_application(app, dp, bot=bot)
    # With a certificate: https, and the self-signed certificate uploaded with setWebhook.
    cert, key = os.environ.get("TLS_CERT"), os.environ.get("TLS_KEY")
    tls = None
    if cert and key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    # Listening first, then setWebhook: the first delivery finds the server up.
    await bot.set_webhook(
        f"{'https' if tls else 'http'}://127.0.0.1:{port}/hook",
        secret_token=SECRET,
        allowed_updates=dp.resolve_used_update_types(),
        certificate=FSInputFile(cert) if tls else None,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
